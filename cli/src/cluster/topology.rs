//! The shape of a local cluster: how many coordinators and nodes, where
//! their data lives, which ports they use, and per-process config
//! overrides. Read from an optional YAML file; flags override it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A local cluster topology.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Topology {
    /// Where every process keeps its data, config and log.
    pub data_dir: PathBuf,
    /// Coordinator members (1, 3 or 5).
    pub coordinators: usize,
    /// Store nodes.
    pub nodes: usize,
    /// Ports are allocated from here: coordinators use base+i (gRPC) and
    /// base+10+i (status), nodes base+20+i and base+30+i.
    pub port_base: u16,
    /// Host the processes listen on.
    pub host: String,
    /// Extra keys merged into every coordinator's YAML config.
    pub coordinator_config: serde_yaml::Mapping,
    /// Extra keys merged into every node's YAML config.
    pub node_config: serde_yaml::Mapping,
    /// Run every process with mutual TLS, from a throwaway CA and
    /// certificates in `<data_dir>/tls`. A `security` mapping in
    /// `coordinator_config` or `node_config` (e.g. `admin_allowed_cn`) is
    /// merged into the generated section.
    pub tls: bool,
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            data_dir: PathBuf::from("nokv-cluster"),
            coordinators: 3,
            nodes: 3,
            port_base: 23700,
            host: "127.0.0.1".into(),
            coordinator_config: Default::default(),
            node_config: Default::default(),
            tls: false,
        }
    }
}

/// One process of the cluster as planned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProcessPlan {
    /// `coordinator-N` or `node-N`.
    pub name: String,
    /// `coordinator` or `node`.
    pub kind: String,
    /// gRPC address.
    pub grpc: String,
    /// HTTP status address.
    pub status: String,
    /// The process's own directory (data, config, log).
    pub dir: PathBuf,
}

impl Topology {
    /// Loads a topology file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading topology {}: {e}", path.display()))?;
        serde_yaml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("parsing topology {}: {e}", path.display()))
    }

    /// Checks the counts and port range.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !matches!(self.coordinators, 1 | 3 | 5) {
            anyhow::bail!("coordinators must be 1, 3 or 5 (got {})", self.coordinators);
        }
        if self.nodes == 0 || self.nodes > 10 {
            anyhow::bail!("nodes must be between 1 and 10 (got {})", self.nodes);
        }
        if self.port_base == 0 || self.port_base > u16::MAX - 40 {
            anyhow::bail!("port base {} leaves no room for 40 ports", self.port_base);
        }
        Ok(())
    }

    fn addr(&self, offset: u16) -> String {
        format!("{}:{}", self.host, self.port_base + offset)
    }

    /// Coordinator gRPC addresses.
    pub fn coordinator_addresses(&self) -> Vec<String> {
        (0..self.coordinators)
            .map(|i| self.addr(i as u16))
            .collect()
    }

    /// Every process, coordinators first.
    pub fn plan(&self) -> Vec<ProcessPlan> {
        let mut out = Vec::new();
        for i in 0..self.coordinators {
            let name = format!("coordinator-{}", i + 1);
            out.push(ProcessPlan {
                dir: self.data_dir.join(&name),
                name,
                kind: "coordinator".into(),
                grpc: self.addr(i as u16),
                status: self.addr(10 + i as u16),
            });
        }
        for i in 0..self.nodes {
            let name = format!("node-{}", i + 1);
            out.push(ProcessPlan {
                dir: self.data_dir.join(&name),
                name,
                kind: "node".into(),
                grpc: self.addr(20 + i as u16),
                status: self.addr(30 + i as u16),
            });
        }
        out
    }

    /// Where `tls: true` keeps the cluster's CA and certificates.
    pub fn tls_dir(&self) -> PathBuf {
        self.data_dir.join("tls")
    }

    /// With TLS, sets the generated `security` section in a process's
    /// config, keeping keys the topology's override gave (such as
    /// `admin_allowed_cn`).
    fn merge_security(&self, m: &mut serde_yaml::Mapping) -> anyhow::Result<()> {
        if !self.tls {
            return Ok(());
        }
        let mut security = super::certs::security_section(&self.tls_dir())?;
        if let Some(serde_yaml::Value::Mapping(given)) = m.get("security") {
            for (k, v) in given {
                security.insert(k.clone(), v.clone());
            }
        }
        m.insert("security".into(), security.into());
        Ok(())
    }

    /// The YAML config of one planned process.
    pub fn config_for(&self, p: &ProcessPlan) -> anyhow::Result<String> {
        let mut m = serde_yaml::Mapping::new();
        let data_dir = std::path::absolute(&p.dir)?;
        m.insert(
            "data_dir".into(),
            data_dir.to_string_lossy().to_string().into(),
        );
        m.insert("listen".into(), p.grpc.clone().into());
        m.insert("status_listen".into(), p.status.clone().into());
        if p.kind == "coordinator" {
            let id: u64 = p.name.trim_start_matches("coordinator-").parse()?;
            m.insert("id".into(), id.into());
            let members: Vec<serde_yaml::Value> = self
                .plan()
                .into_iter()
                .filter(|q| q.kind == "coordinator")
                .map(|q| {
                    let mut mm = serde_yaml::Mapping::new();
                    let qid: u64 = q
                        .name
                        .trim_start_matches("coordinator-")
                        .parse()
                        .unwrap_or(0);
                    mm.insert("id".into(), qid.into());
                    mm.insert("name".into(), q.name.clone().into());
                    mm.insert("address".into(), q.grpc.clone().into());
                    mm.insert("status_address".into(), q.status.clone().into());
                    serde_yaml::Value::Mapping(mm)
                })
                .collect();
            m.insert("members".into(), members.into());
            for (k, v) in &self.coordinator_config {
                m.insert(k.clone(), v.clone());
            }
            self.merge_security(&mut m)?;
        } else {
            let coords: Vec<serde_yaml::Value> = self
                .coordinator_addresses()
                .into_iter()
                .map(Into::into)
                .collect();
            m.insert("coordinators".into(), coords.into());
            for (k, v) in &self.node_config {
                m.insert(k.clone(), v.clone());
            }
            self.merge_security(&mut m)?;
        }
        Ok(serde_yaml::to_string(&m)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_allocates_distinct_ports() {
        let t = Topology {
            port_base: 30000,
            ..Default::default()
        };
        let plan = t.plan();
        assert_eq!(plan.len(), 6);
        let mut ports: Vec<_> = plan
            .iter()
            .flat_map(|p| [p.grpc.clone(), p.status.clone()])
            .collect();
        ports.sort();
        ports.dedup();
        assert_eq!(ports.len(), 12);
    }

    #[test]
    fn rejects_bad_counts() {
        assert!(Topology {
            coordinators: 2,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(Topology {
            nodes: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(Topology::default().validate().is_ok());
    }

    #[test]
    fn tls_adds_a_security_section_keeping_given_keys() {
        let mut t = Topology {
            tls: true,
            ..Default::default()
        };
        let yaml = "security:\n  admin_allowed_cn: [nokv-admin]\n";
        t.node_config = serde_yaml::from_str(yaml).unwrap();
        let plan = t.plan();
        let node: serde_yaml::Value =
            serde_yaml::from_str(&t.config_for(&plan[3]).unwrap()).unwrap();
        let s = &node["security"];
        assert!(s["ca_path"]
            .as_str()
            .unwrap()
            .ends_with("nokv-cluster/tls/ca.crt"));
        assert!(s["key_path"].as_str().unwrap().ends_with("tls/server.key"));
        assert_eq!(s["admin_allowed_cn"][0].as_str(), Some("nokv-admin"));
        let coordinator: serde_yaml::Value =
            serde_yaml::from_str(&t.config_for(&plan[0]).unwrap()).unwrap();
        assert!(coordinator["security"]["cert_path"].as_str().is_some());
        assert!(coordinator["security"].get("admin_allowed_cn").is_none());
        t.tls = false;
        let plain: serde_yaml::Value =
            serde_yaml::from_str(&t.config_for(&plan[0]).unwrap()).unwrap();
        assert!(plain.get("security").is_none());
    }

    #[test]
    fn coordinator_config_lists_all_members_and_overrides_apply() {
        let mut t = Topology::default();
        t.coordinator_config
            .insert("max_store_down_time_ms".into(), 5000.into());
        let plan = t.plan();
        let text = t.config_for(&plan[0]).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["members"].as_sequence().unwrap().len(), 3);
        assert_eq!(v["max_store_down_time_ms"].as_u64(), Some(5000));
        let node = t.config_for(&plan[3]).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&node).unwrap();
        assert_eq!(v["coordinators"].as_sequence().unwrap().len(), 3);
    }
}
