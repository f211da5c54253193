//! `nokv config show`: the settings this CLI runs with (coordinators,
//! timeout, output format) and where each came from (flag, environment or
//! default), and with `--store` what that store's status port reports.
//!
//! The CLI has no config file; a store's own configuration is not served
//! over the network, so `/status` (component, version, ids, role,
//! readiness, uptime) is what can be shown for it.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::parser::ValueSource;
use clap::Subcommand;
use nokv_client::CoordinatorClient;
use serde::Serialize;

use crate::output::{self, Format};
use crate::status_http;

/// `nokv config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Show the effective client settings and where each came from.
    Show {
        /// Also show what this store's status port reports (GET /status).
        #[arg(long, value_name = "STORE_ID")]
        store: Option<u64>,
    },
}

/// The settings as resolved after parsing.
#[derive(Debug, Clone)]
pub struct Effective {
    /// Coordinator addresses.
    pub coordinators: Vec<String>,
    /// Where they came from.
    pub coordinators_source: Option<ValueSource>,
    /// Per-call deadline.
    pub timeout: Duration,
    /// Where it came from.
    pub timeout_source: Option<ValueSource>,
    /// Output format.
    pub output: Format,
    /// Where it came from.
    pub output_source: Option<ValueSource>,
    /// The TLS flags as given (resolved against the coordinators here).
    pub tls: crate::tls::TlsFlags,
}

/// Printed form of `nokv config show`.
#[derive(Debug, Serialize)]
pub struct ClientConfig {
    /// Coordinator addresses the CLI calls.
    pub coordinators: Vec<String>,
    /// Overall deadline of each call, seconds.
    pub timeout_seconds: f64,
    /// `table`, `json` or `yaml`.
    pub output: String,
    /// The client certificate presented, or `plaintext`.
    pub tls: String,
    /// Per setting: `flag`, `env` or `default`.
    pub sources: BTreeMap<&'static str, &'static str>,
    /// With `--store`: the store and its `/status`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreStatus>,
}

/// A store's record and what its status port reports.
#[derive(Debug, Serialize)]
pub struct StoreStatus {
    /// Store id.
    pub id: u64,
    /// gRPC address.
    pub address: String,
    /// HTTP status address.
    pub status_address: String,
    /// State from the coordinator.
    pub state: String,
    /// The `/status` JSON, as the node serves it.
    pub status: serde_json::Value,
}

/// `flag`, `env` or `default`.
pub fn source_name(s: Option<ValueSource>) -> &'static str {
    match s {
        Some(ValueSource::CommandLine) => "flag",
        Some(ValueSource::EnvVariable) => "env",
        _ => "default",
    }
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Table => "table",
        Format::Json => "json",
        Format::Yaml => "yaml",
    }
}

/// Builds the printed form (no I/O beyond finding a local TLS cluster's
/// state file).
///
/// # Errors
/// Only some of the TLS flags given.
pub fn client_config(e: &Effective) -> anyhow::Result<ClientConfig> {
    use crate::tls::TlsSource;
    let (tls, tls_source) = match e.tls.source(&e.coordinators)? {
        TlsSource::Plaintext => ("plaintext".to_string(), "default"),
        TlsSource::Flags(f) => (f.cert.display().to_string(), "flag or env"),
        TlsSource::Cluster(_, f) => (f.cert.display().to_string(), "local cluster"),
    };
    Ok(ClientConfig {
        coordinators: e.coordinators.clone(),
        timeout_seconds: e.timeout.as_secs_f64(),
        output: format_name(e.output).to_string(),
        tls,
        sources: [
            ("coordinators", source_name(e.coordinators_source)),
            ("timeout_seconds", source_name(e.timeout_source)),
            ("output", source_name(e.output_source)),
            ("tls", tls_source),
        ]
        .into_iter()
        .collect(),
        store: None,
    })
}

/// Runs a `config` subcommand.
pub async fn run(cmd: ConfigCmd, e: &Effective) -> anyhow::Result<()> {
    let ConfigCmd::Show { store } = cmd;
    let mut out = client_config(e)?;
    if let Some(id) = store {
        let mut client = CoordinatorClient::new(e.coordinators.clone(), e.timeout)?;
        if let Some(tls) = e.tls.load(&e.coordinators)? {
            client = client.with_tls(tls);
        }
        let s = client
            .get_store(id)
            .await?
            .store
            .ok_or_else(|| anyhow!("store {id} unknown"))?;
        if s.status_address.is_empty() {
            bail!("store {id} registered no status address");
        }
        let body = status_http::get(&s.status_address, "/status", e.timeout, client.tls()).await?;
        let status: serde_json::Value = serde_json::from_str(&body)
            .with_context(|| format!("store {id} answered /status with something not JSON"))?;
        out.store = Some(StoreStatus {
            id: s.id,
            state: s.state().as_str_name().to_string(),
            address: s.address,
            status_address: s.status_address,
            status,
        });
    }
    output::emit(e.output, &out, || table(&out))
}

fn table(c: &ClientConfig) -> comfy_table::Table {
    let mut t = output::table(&["SETTING", "VALUE", "SOURCE"]);
    let src = |k: &str| c.sources.get(k).copied().unwrap_or("").to_string();
    t.add_row(vec![
        "coordinators".to_string(),
        c.coordinators.join(","),
        src("coordinators"),
    ]);
    t.add_row(vec![
        "timeout_seconds".to_string(),
        c.timeout_seconds.to_string(),
        src("timeout_seconds"),
    ]);
    t.add_row(vec!["output".to_string(), c.output.clone(), src("output")]);
    t.add_row(vec!["tls".to_string(), c.tls.clone(), src("tls")]);
    if let Some(s) = &c.store {
        let from = format!("store {}", s.id);
        for (k, v) in [
            ("store.address", s.address.clone()),
            ("store.status_address", s.status_address.clone()),
            ("store.state", s.state.clone()),
        ] {
            t.add_row(vec![k.to_string(), v, "coordinator".to_string()]);
        }
        if let Some(obj) = s.status.as_object() {
            for (k, v) in obj {
                let v = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                t.add_row(vec![
                    format!("store.status.{k}"),
                    v,
                    format!("{from} /status"),
                ]);
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_named_and_the_table_lists_every_setting() {
        let e = Effective {
            coordinators: vec!["a:1".into(), "b:2".into()],
            coordinators_source: Some(ValueSource::EnvVariable),
            timeout: Duration::from_millis(2500),
            timeout_source: Some(ValueSource::CommandLine),
            output: Format::Json,
            output_source: Some(ValueSource::DefaultValue),
            tls: crate::tls::TlsFlags {
                ca: Some("ca.crt".into()),
                cert: Some("admin.crt".into()),
                key: Some("admin.key".into()),
            },
        };
        let mut c = client_config(&e).expect("config");
        let v = serde_json::to_value(&c).expect("json");
        assert_eq!(v["coordinators"], serde_json::json!(["a:1", "b:2"]));
        assert_eq!(v["timeout_seconds"], 2.5);
        assert_eq!(v["output"], "json");
        assert_eq!(v["sources"]["coordinators"], "env");
        assert_eq!(v["sources"]["timeout_seconds"], "flag");
        assert_eq!(v["sources"]["output"], "default");
        assert_eq!(v["tls"], "admin.crt");
        assert_eq!(v["sources"]["tls"], "flag or env");
        assert!(v.get("store").is_none(), "no store without --store");
        c.store = Some(StoreStatus {
            id: 4,
            address: "h:1".into(),
            status_address: "h:2".into(),
            state: "Up".into(),
            status: serde_json::json!({"component": "node", "uptime_seconds": 9}),
        });
        let t = table(&c).to_string();
        for part in [
            "a:1,b:2",
            "2.5",
            "store.status.component",
            "node",
            "store 4 /status",
        ] {
            assert!(t.contains(part), "{part:?} missing in\n{t}");
        }
    }
}
