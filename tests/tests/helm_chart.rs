//! The Helm chart (`charts/nokv`) rendered by a real Helm engine, linted,
//! and checked against the binaries it deploys.
//!
//! The engine is Helm's own Go SDK (Helm v4), from the `helm-python-sdk`
//! wheel on PyPI, which bundles it as a shared library driven through
//! Python's ctypes. It comes from PyPI rather than get.helm.sh because PyPI
//! is what CI can reach (it already reaches crates.io); the wheel is
//! installed once, with pip checking the pinned hashes below, into
//! `~/.cache/nokv-tools/` (or `$NOKV_TOOLS_DIR`), outside the repository,
//! and reused on later runs (`nokv_tests::pinned_wheel`). If it cannot be
//! installed the tests fail and say why; they never pass without rendering.
//!
//! What is asserted: replica counts, probes on the status port the config
//! listens on, PVCs mounted at the config's data directory, the coordinator
//! member list equal to the StatefulSet's pod DNS names (and the nodes'
//! coordinator list and advertised address likewise), TLS mounts when
//! enabled, HTTPS probes and scrapes exactly when the configs set
//! `security.status_tls`, and that every rendered config file deserializes
//! into the binaries' own config structs, which reject unknown keys, so the
//! chart and `NodeConfig` / `CoordinatorConfig` cannot drift apart.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use nokv_coordinator::CoordinatorConfig;
use nokv_node::NodeConfig;
use nokv_tests::pinned_wheel::{python, PinnedWheel};
use serde::Deserialize as _;
use serde_json::json;
use serde_yaml::Value;

/// The pinned `helm-python-sdk` release and the Helm SDK it bundles.
const SDK_VERSION: &str = "0.2.2";
const HELM_VERSION: &str = "v4.2.3";

/// sha256 of every `helm-python-sdk` 0.2.2 wheel we accept, from PyPI:
/// manylinux_2_28 x86_64 and aarch64, macOS arm64 and x86_64. pip refuses a
/// download whose hash is not in this list.
const WHEEL_SHA256: &[&str] = &[
    "28cc13abaf134c3a7e37f070c939be8d9cdc9825c3c8b8b2d35161073bcd4578",
    "078bac2464ea2f4b5af24cf7873e8f78ee3f3c216766fcdea41b7c61f47275b1",
    "16fd94117e4bc8c6f854801bda6fd84fceb608e083bc5333f8f934e79bd3dcdf",
    "6119b40eaac5cc23d2c25d3da91848df477f8b347d6226ee7b5680c46164716f",
];

/// Release name and namespace every render uses; the DNS names below
/// follow from them.
const RELEASE: &str = "nokv";
const NAMESPACE: &str = "nokv-test";

/// Reads one JSON request on stdin (`site`, `chart`, `values`, `release`,
/// `namespace`), renders the chart and lints it with the same values (strict:
/// warnings count), and prints `{helm, manifests, lint}` as JSON. A render
/// error goes to stderr with exit code 3.
const DRIVER: &str = r#"
import json, sys
req = json.load(sys.stdin)
sys.path.insert(0, req["site"])
import helm_python as helm
try:
    with helm.Chart.load(req["chart"]) as chart:
        manifests = chart.render(req["values"], name=req["release"],
                                 namespace=req["namespace"], is_install=True)
    lint = helm.lint(req["chart"], req["values"], strict=True,
                     namespace=req["namespace"])
except helm.HelmError as e:
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(3)
json.dump({"helm": helm.helm_sdk_version(), "manifests": manifests, "lint": lint},
          sys.stdout)
"#;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `helm-python-sdk` wheel, checked to bundle [`HELM_VERSION`].
const HELM_WHEEL: PinnedWheel = PinnedWheel {
    package: "helm-python-sdk",
    version: SDK_VERSION,
    sha256: WHEEL_SHA256,
    marker: "helm_python/__init__.py",
    probe: Some((
        "import helm_python; print(helm_python.helm_sdk_version())",
        HELM_VERSION,
    )),
};

/// The directory holding the installed `helm_python` package, installing it
/// on first use.
fn helm_site() -> &'static Path {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| match HELM_WHEEL.install() {
        Ok(site) => site,
        Err(why) => panic!(
            "cannot get the Helm engine (helm-python-sdk {SDK_VERSION} from PyPI, which \
             bundles Helm {HELM_VERSION}); the chart tests need it and do not skip: {why}"
        ),
    })
}

/// One rendered chart (already linted clean): its manifests and NOTES.txt.
struct Rendered {
    docs: Vec<Value>,
    notes: String,
}

/// Renders the chart with `values` and lints it; `Err` carries Helm's
/// message when a template refuses the values.
fn try_render(values: serde_json::Value) -> Result<Rendered, String> {
    let request = json!({
        "site": helm_site(),
        "chart": repo_root().join("charts/nokv"),
        "values": values,
        "release": RELEASE,
        "namespace": NAMESPACE,
    });
    let mut child = python()
        .arg("-c")
        .arg(DRIVER)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs the Helm driver");
    serde_json::to_writer(child.stdin.take().expect("stdin is piped"), &request)
        .expect("request written to the driver");
    let out = child.wait_with_output().expect("driver finishes");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.code() == Some(3) {
        return Err(stderr);
    }
    assert!(out.status.success(), "Helm driver failed: {stderr}");
    let answer: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("driver prints JSON");
    assert_eq!(answer["helm"], HELM_VERSION);

    let lint = &answer["lint"];
    assert_eq!(
        lint["errors"],
        json!([]),
        "helm lint --strict failed: {lint}"
    );
    // Severity 2 is a warning, 3 an error; 1 (info, e.g. "icon is
    // recommended") is allowed.
    let findings: Vec<&serde_json::Value> = lint["messages"]
        .as_array()
        .expect("lint messages")
        .iter()
        .filter(|m| m["severity"].as_u64().unwrap_or(3) >= 2)
        .collect();
    assert!(findings.is_empty(), "helm lint findings: {findings:?}");

    let manifests = answer["manifests"].as_object().expect("manifests map");
    let mut docs = Vec::new();
    let mut notes = String::new();
    for (template, text) in manifests {
        let text = text.as_str().expect("manifest text");
        if template.ends_with("NOTES.txt") {
            notes = text.to_string();
            continue;
        }
        for doc in serde_yaml::Deserializer::from_str(text) {
            let doc = Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{template} is not valid YAML: {e}\n{text}"));
            if !doc.is_null() {
                docs.push(doc);
            }
        }
    }
    Ok(Rendered { docs, notes })
}

fn render(values: serde_json::Value) -> Rendered {
    try_render(values).unwrap_or_else(|e| panic!("the chart did not render: {e}"))
}

impl Rendered {
    fn get(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
    }

    fn count(&self, kind: &str) -> usize {
        self.docs.iter().filter(|d| d["kind"] == kind).count()
    }

    /// The one config file of a ConfigMap, parsed as YAML.
    fn config_file(&self, configmap: &str, key: &str) -> Value {
        let text = self.get("ConfigMap", configmap)["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("ConfigMap {configmap} has no {key}"));
        serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{key} is not YAML: {e}"))
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v:?}"))
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("expected a list, got {v:?}"))
}

fn port_of(address: &str) -> u64 {
    address
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{address} has no port"))
}

/// The one container of a StatefulSet's pods.
fn container(sts: &Value) -> &Value {
    let containers = seq(&sts["spec"]["template"]["spec"]["containers"]);
    assert_eq!(containers.len(), 1);
    &containers[0]
}

/// The containerPort of a container's named port.
fn named_port(container: &Value, name: &str) -> u64 {
    seq(&container["ports"])
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no port named {name}"))
}

fn mount_path<'a>(container: &'a Value, volume: &str) -> Option<&'a Value> {
    seq(&container["volumeMounts"])
        .iter()
        .find(|m| m["name"] == volume)
}

fn volume<'a>(sts: &'a Value, name: &str) -> Option<&'a Value> {
    seq(&sts["spec"]["template"]["spec"]["volumes"])
        .iter()
        .find(|v| v["name"] == name)
}

/// The liveness and readiness probes of a StatefulSet's container, with
/// their names.
fn probes(sts: &Value) -> [(&Value, &str); 2] {
    let c = container(sts);
    [
        (&c["livenessProbe"], "livenessProbe"),
        (&c["readinessProbe"], "readinessProbe"),
    ]
}

/// The one endpoint of the chart's ServiceMonitor.
fn monitor_endpoint(r: &Rendered) -> &Value {
    let endpoints = seq(&r.get("ServiceMonitor", "nokv")["spec"]["endpoints"]);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "status");
    assert_eq!(endpoints[0]["path"], "/metrics");
    &endpoints[0]
}

/// `<pod>.<headless service>.<namespace>.svc.cluster.local:<port>` for
/// every pod of a StatefulSet, from the StatefulSet itself.
fn pod_addresses(sts: &Value, port: u64) -> Vec<String> {
    let name = str_of(&sts["metadata"]["name"]);
    let service = str_of(&sts["spec"]["serviceName"]);
    let replicas = sts["spec"]["replicas"].as_u64().expect("replicas");
    (0..replicas)
        .map(|i| format!("{name}-{i}.{service}.{NAMESPACE}.svc.cluster.local:{port}"))
        .collect()
}

/// The facts every rendering must have, whatever the values: returns the
/// coordinator and node configs (as YAML, `security` still in them) for
/// the caller's own checks.
fn check_cluster_shape(r: &Rendered, coordinators: u64, nodes: u64) -> (Vec<Value>, Value) {
    let coord_sts = r.get("StatefulSet", "nokv-coordinator");
    let node_sts = r.get("StatefulSet", "nokv-node");
    assert_eq!(
        coord_sts["spec"]["replicas"].as_u64(),
        Some(coordinators),
        "coordinator replicas"
    );
    assert_eq!(
        node_sts["spec"]["replicas"].as_u64(),
        Some(nodes),
        "node replicas"
    );
    // Members become ready only once a quorum elected a leader, so they
    // must not wait for each other to start.
    assert_eq!(coord_sts["spec"]["podManagementPolicy"], "Parallel");

    // Each StatefulSet's pods are named by a headless Service that also
    // publishes pods before they are ready.
    for sts in [coord_sts, node_sts] {
        let service = r.get("Service", str_of(&sts["spec"]["serviceName"]));
        assert_eq!(service["spec"]["clusterIP"], "None");
        assert_eq!(service["spec"]["publishNotReadyAddresses"], true);
        let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
        for (k, v) in service["spec"]["selector"].as_mapping().expect("selector") {
            assert_eq!(&pod_labels[k], v, "Service selector must match the pods");
        }
    }

    // Coordinator configs: one file per pod, with that pod's id, and a
    // member list naming every pod by its stable DNS name.
    let coord = container(coord_sts);
    let coord_sts_name = str_of(&coord_sts["metadata"]["name"]);
    assert_eq!(
        coord["args"],
        serde_yaml::to_value(["--config", "/etc/nokv/config/$(POD_NAME).yaml"]).expect("yaml")
    );
    assert_pod_name_env(coord);
    let config_mount = mount_path(coord, "config").expect("config mounted");
    assert_eq!(config_mount["mountPath"], "/etc/nokv/config");
    let config_map =
        str_of(&volume(coord_sts, "config").expect("config volume")["configMap"]["name"]);
    let grpc = named_port(coord, "grpc");
    let members = pod_addresses(coord_sts, grpc);
    let mut coordinator_configs = Vec::new();
    for i in 0..coordinators {
        let file = r.config_file(config_map, &format!("{coord_sts_name}-{i}.yaml"));
        assert_eq!(file["id"].as_u64(), Some(i + 1));
        let listed: Vec<&str> = seq(&file["members"])
            .iter()
            .map(|m| str_of(&m["address"]))
            .collect();
        assert_eq!(
            listed, members,
            "coordinator peer list = StatefulSet pod DNS names"
        );
        let ids: Vec<u64> = seq(&file["members"])
            .iter()
            .map(|m| m["id"].as_u64().expect("member id"))
            .collect();
        assert_eq!(ids, (1..=coordinators).collect::<Vec<_>>());
        for m in seq(&file["members"]) {
            let host = str_of(&m["address"]).rsplit_once(':').expect("host:port").0;
            assert_eq!(
                str_of(&m["status_address"]),
                format!("{host}:{}", named_port(coord, "status"))
            );
        }
        assert_eq!(port_of(str_of(&file["listen"])), grpc);
        coordinator_configs.push(file);
    }
    assert_eq!(
        r.get("ConfigMap", config_map)["data"]
            .as_mapping()
            .expect("data")
            .len() as u64,
        coordinators,
        "one config file per member, no stale ones"
    );

    // The node config: one file; each pod advertises its own DNS name and
    // finds the coordinators by theirs.
    let node = container(node_sts);
    assert_pod_name_env(node);
    let node_map = str_of(&volume(node_sts, "config").expect("config volume")["configMap"]["name"]);
    let node_config = r.config_file(node_map, "node.yaml");
    let node_grpc = named_port(node, "grpc");
    let args: Vec<&str> = seq(&node["args"]).iter().map(str_of).collect();
    let node_service = str_of(&node_sts["spec"]["serviceName"]);
    assert_eq!(
        args,
        [
            "--config",
            "/etc/nokv/config/node.yaml",
            "--advertise-address",
            &format!("$(POD_NAME).{node_service}.{NAMESPACE}.svc.cluster.local:{node_grpc}"),
        ]
    );
    let listed: Vec<&str> = seq(&node_config["coordinators"])
        .iter()
        .map(str_of)
        .collect();
    assert_eq!(listed, members, "nodes dial every coordinator member");
    assert_eq!(port_of(str_of(&node_config["listen"])), node_grpc);
    for c in [coord, node] {
        let env = seq(&c["env"])
            .iter()
            .find(|e| e["name"] == "NOKV_COORDINATOR")
            .expect("NOKV_COORDINATOR set for `kubectl exec ... nokv`");
        assert_eq!(str_of(&env["value"]), members.join(","));
    }

    // Probes hit /health and /ready on the port the config's status_listen
    // binds; the data volume is a PVC mounted at the config's data_dir.
    let configs = [
        (coord_sts, &coordinator_configs[0]),
        (node_sts, &node_config),
    ];
    for (sts, config) in configs {
        let c = container(sts);
        let status = named_port(c, "status");
        assert_eq!(port_of(str_of(&config["status_listen"])), status);
        // The probes speak what the status port serves: HTTPS exactly when
        // the config sets security.status_tls.
        let https = config["security"]["status_tls"] == true;
        for (probe, path) in [("livenessProbe", "/health"), ("readinessProbe", "/ready")] {
            let get = &c[probe]["httpGet"];
            assert_eq!(get["path"], path, "{probe}");
            assert_eq!(get["port"], "status", "{probe} uses the status port");
            assert_eq!(
                get["scheme"] == "HTTPS",
                https,
                "{probe} scheme {:?} vs status_tls {https}",
                get["scheme"]
            );
        }
        let claims = seq(&sts["spec"]["volumeClaimTemplates"]);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0]["metadata"]["name"], "data");
        assert_eq!(claims[0]["spec"]["accessModes"][0], "ReadWriteOnce");
        assert!(claims[0]["spec"]["resources"]["requests"]["storage"].is_string());
        let data = mount_path(c, "data").expect("PVC mounted");
        assert_eq!(data["mountPath"], config["data_dir"]);
        assert!(
            volume(sts, "data").is_none(),
            "data comes from the PVC template"
        );

        // Non-root, read-only root filesystem, resources set.
        let pod_security = &sts["spec"]["template"]["spec"]["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], true);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert!(c["resources"]["requests"]["memory"].is_string());

        // Spread over Kubernetes nodes.
        let anti = &sts["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"];
        assert!(anti.is_mapping(), "pod anti-affinity is set");

        // A disruption budget that selects exactly these pods.
        let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
        let pdb = r.get("PodDisruptionBudget", str_of(&sts["metadata"]["name"]));
        assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1));
        for (k, v) in pdb["spec"]["selector"]["matchLabels"]
            .as_mapping()
            .expect("PDB selector")
        {
            assert_eq!(&pod_labels[k], v, "PDB selector must match the pods");
        }
    }
    (coordinator_configs, node_config)
}

fn assert_pod_name_env(container: &Value) {
    let env = seq(&container["env"])
        .iter()
        .find(|e| e["name"] == "POD_NAME")
        .expect("POD_NAME env");
    assert_eq!(env["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
}

/// Deserializes rendered configs into the binaries' structs, which reject
/// unknown keys at every level, and runs their own validation.
fn check_configs_load(coordinators: &[Value], node: &Value) {
    for file in coordinators {
        let config: CoordinatorConfig = serde_yaml::from_value(file.clone())
            .unwrap_or_else(|e| panic!("coordinator config the binary would refuse: {e}"));
        let members = config
            .resolved_members()
            .unwrap_or_else(|e| panic!("coordinator member list: {e}"));
        assert_eq!(members.len(), seq(&file["members"]).len());
    }
    let config: NodeConfig = serde_yaml::from_value(node.clone())
        .unwrap_or_else(|e| panic!("node config the binary would refuse: {e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("node config: {e}"));
}

#[test]
fn default_values_render_three_coordinators_and_three_nodes_the_binaries_accept() {
    let r = render(json!({}));
    let (coordinators, node) = check_cluster_shape(&r, 3, 3);
    check_configs_load(&coordinators, &node);

    // TLS and the ServiceMonitor are off by default.
    for file in coordinators.iter().chain([&node]) {
        assert!(file.get("security").is_none());
    }
    for name in ["nokv-coordinator", "nokv-node"] {
        let sts = r.get("StatefulSet", name);
        assert!(volume(sts, "tls").is_none());
        assert!(mount_path(container(sts), "tls").is_none());
    }
    assert_eq!(r.count("ServiceMonitor"), 0);
    assert_eq!(r.count("StatefulSet"), 2);
    assert_eq!(r.count("PodDisruptionBudget"), 2);

    // The client Service reaches coordinators on gRPC only (so the
    // ServiceMonitor, when on, scrapes each member once via the headless one).
    let client = r.get("Service", "nokv-coordinator");
    let ports: Vec<&str> = seq(&client["spec"]["ports"])
        .iter()
        .map(|p| str_of(&p["name"]))
        .collect();
    assert_eq!(ports, ["grpc"]);

    // NOTES.txt tells the user how to reach the cluster with nokv.
    assert!(
        r.notes
            .contains("kubectl -n nokv-test exec nokv-coordinator-0 -- nokv stores"),
        "{}",
        r.notes
    );
    assert!(r
        .notes
        .contains("nokv --coordinator nokv-coordinator.nokv-test.svc.cluster.local:2379"));
}

#[test]
fn tls_values_mount_the_secret_and_point_the_security_keys_at_it() {
    let r = render(json!({
        "tls": { "enabled": true, "secretName": "nokv-certs", "certKey": "node.crt" },
    }));
    let (coordinators, node) = check_cluster_shape(&r, 3, 3);

    for name in ["nokv-coordinator", "nokv-node"] {
        let sts = r.get("StatefulSet", name);
        let tls = volume(sts, "tls").expect("TLS volume");
        assert_eq!(tls["secret"]["secretName"], "nokv-certs");
        let items: Vec<(&str, &str)> = seq(&tls["secret"]["items"])
            .iter()
            .map(|i| (str_of(&i["key"]), str_of(&i["path"])))
            .collect();
        assert_eq!(
            items,
            [
                ("ca.crt", "ca.crt"),
                ("node.crt", "tls.crt"),
                ("tls.key", "tls.key")
            ]
        );
        let mount = mount_path(container(sts), "tls").expect("TLS mount");
        assert_eq!(mount["mountPath"], "/etc/nokv/tls");
        assert_eq!(mount["readOnly"], true);
    }
    let expected = serde_yaml::to_value(json!({
        "ca_path": "/etc/nokv/tls/ca.crt",
        "cert_path": "/etc/nokv/tls/tls.crt",
        "key_path": "/etc/nokv/tls/tls.key",
    }))
    .expect("yaml");
    for file in coordinators.iter().chain([&node]) {
        assert_eq!(file["security"], expected, "security section rendered");
    }
    // The binaries accept the section as rendered.
    check_configs_load(&coordinators, &node);
    let node_config: NodeConfig = serde_yaml::from_value(node.clone()).expect("node config");
    let security = node_config.security.expect("security");
    assert_eq!(
        security.ca_path,
        std::path::PathBuf::from("/etc/nokv/tls/ca.crt")
    );
    // Without tls.statusTls the status ports stay plain HTTP: no
    // status_tls in the configs, no HTTPS probes.
    assert!(!security.status_tls);
    for file in coordinators.iter().chain([&node]) {
        assert!(file["security"].get("status_tls").is_none());
    }
    for name in ["nokv-coordinator", "nokv-node"] {
        for (probe, _) in probes(r.get("StatefulSet", name)) {
            assert_ne!(probe["httpGet"]["scheme"], "HTTPS", "{name}");
        }
    }
    assert!(
        r.notes.contains("status ports stay plaintext HTTP"),
        "{}",
        r.notes
    );

    // The in-pod CLI presents the mounted certificate.
    for name in ["nokv-coordinator", "nokv-node"] {
        let env = seq(&container(r.get("StatefulSet", name))["env"]).to_vec();
        for (var, file) in [
            ("NOKV_TLS_CA", "ca.crt"),
            ("NOKV_TLS_CERT", "tls.crt"),
            ("NOKV_TLS_KEY", "tls.key"),
        ] {
            let e = env
                .iter()
                .find(|e| e["name"] == var)
                .unwrap_or_else(|| panic!("{var} set in {name}"));
            assert_eq!(str_of(&e["value"]), format!("/etc/nokv/tls/{file}"));
        }
    }
    assert!(r.notes.contains("mutual TLS"), "{}", r.notes);

    // An admin CN list given in the component configs is merged with the
    // chart's keys.
    let r = render(json!({
        "tls": { "enabled": true, "secretName": "nokv-certs" },
        "coordinator": { "config": { "security": { "admin_allowed_cn": ["ops"] } } },
        "node": { "config": { "security": { "admin_allowed_cn": ["ops"] } } },
    }));
    let (coordinators, node) = check_cluster_shape(&r, 3, 3);
    check_configs_load(&coordinators, &node);
    for file in coordinators.iter().chain([&node]) {
        assert_eq!(
            file["security"]["admin_allowed_cn"][0].as_str(),
            Some("ops")
        );
        assert_eq!(
            file["security"]["key_path"].as_str(),
            Some("/etc/nokv/tls/tls.key")
        );
    }
}

#[test]
fn status_tls_serves_the_status_ports_over_https_to_probes_and_prometheus() {
    let server_name = "nokv-coordinator.nokv-test.svc.cluster.local";
    let r = render(json!({
        "tls": {
            "enabled": true,
            "secretName": "nokv-certs",
            "caKey": "root.crt",
            "statusTls": true,
        },
        "node": { "config": { "security": { "admin_allowed_cn": ["ops"] } } },
        "metrics": { "serviceMonitor": { "enabled": true, "serverName": server_name } },
    }));
    let (coordinators, node) = check_cluster_shape(&r, 3, 3);

    // Every config turns status_tls on, next to the chart's paths (and a
    // merged admin list), and the binaries accept it.
    for file in coordinators.iter().chain([&node]) {
        assert_eq!(file["security"]["status_tls"], true, "{file:?}");
        assert_eq!(file["security"]["cert_path"], "/etc/nokv/tls/tls.crt");
        assert_eq!(file["security"]["key_path"], "/etc/nokv/tls/tls.key");
    }
    assert_eq!(node["security"]["admin_allowed_cn"][0], "ops");
    check_configs_load(&coordinators, &node);
    let node_config: NodeConfig = serde_yaml::from_value(node.clone()).expect("node config");
    assert!(node_config.security.expect("security").status_tls);
    for file in &coordinators {
        let config: CoordinatorConfig =
            serde_yaml::from_value(file.clone()).expect("coordinator config");
        assert!(config.security.expect("security").status_tls);
    }

    // Every probe speaks HTTPS to the status port.
    for name in ["nokv-coordinator", "nokv-node"] {
        for (probe, which) in probes(r.get("StatefulSet", name)) {
            assert_eq!(probe["httpGet"]["scheme"], "HTTPS", "{name} {which}");
            assert_eq!(probe["httpGet"]["port"], "status", "{name} {which}");
        }
    }

    // Prometheus scrapes https, trusting the CA from the TLS Secret and
    // checking the certificate for the name given.
    let endpoint = monitor_endpoint(&r);
    assert_eq!(endpoint["scheme"], "https");
    let tls = &endpoint["tlsConfig"];
    assert_eq!(tls["ca"]["secret"]["name"], "nokv-certs");
    assert_eq!(tls["ca"]["secret"]["key"], "root.crt");
    assert_eq!(tls["serverName"], server_name);
    assert!(tls.get("insecureSkipVerify").is_none());
    assert!(tls.get("cert").is_none(), "no client certificate needed");
    assert!(r.notes.contains("serve HTTPS"), "{}", r.notes);
    assert!(!r.notes.contains("WARNING"), "{}", r.notes);

    // Without a serverName the key is left out, and NOTES warns.
    let r = render(json!({
        "tls": { "enabled": true, "secretName": "nokv-certs", "statusTls": true },
        "metrics": { "serviceMonitor": { "enabled": true } },
    }));
    check_cluster_shape(&r, 3, 3);
    let endpoint = monitor_endpoint(&r);
    assert_eq!(endpoint["scheme"], "https");
    assert_eq!(endpoint["tlsConfig"]["ca"]["secret"]["key"], "ca.crt");
    assert!(endpoint["tlsConfig"].get("serverName").is_none());
    assert!(
        r.notes
            .contains("metrics.serviceMonitor.serverName is empty"),
        "{}",
        r.notes
    );

    // TLS without statusTls: the ServiceMonitor stays on plain http.
    let r = render(json!({
        "tls": { "enabled": true, "secretName": "nokv-certs" },
        "metrics": { "serviceMonitor": { "enabled": true, "serverName": server_name } },
    }));
    let (coordinators, node) = check_cluster_shape(&r, 3, 3);
    for file in coordinators.iter().chain([&node]) {
        assert!(file["security"].get("status_tls").is_none());
    }
    let endpoint = monitor_endpoint(&r);
    assert_eq!(endpoint["scheme"], "http");
    assert!(endpoint.get("tlsConfig").is_none());
}

#[test]
fn overrides_reach_the_configs_and_impossible_values_are_refused() {
    let r = render(json!({
        "coordinator": {
            "replicas": 5,
            "antiAffinity": "hard",
            // `listen` is the chart's: the override below must lose.
            "config": { "max_replicas": 3, "log_level": "debug", "listen": "1.2.3.4:1" },
        },
        "node": {
            "replicas": 4,
            "config": { "raft": { "tick_interval_ms": 50 }, "labels": { "zone": "a" } },
        },
        "metrics": { "serviceMonitor": { "enabled": true, "labels": { "release": "prom" } } },
    }));
    let (coordinators, node) = check_cluster_shape(&r, 5, 4);
    check_configs_load(&coordinators, &node);
    assert_eq!(coordinators[4]["log_level"], "debug");
    assert_eq!(coordinators[4]["listen"], "0.0.0.0:2379");
    assert_eq!(node["raft"]["tick_interval_ms"].as_u64(), Some(50));
    assert_eq!(node["labels"]["zone"], "a");
    let anti = &r.get("StatefulSet", "nokv-coordinator")["spec"]["template"]["spec"]["affinity"]
        ["podAntiAffinity"];
    assert!(anti["requiredDuringSchedulingIgnoredDuringExecution"].is_sequence());

    let monitor = r.get("ServiceMonitor", "nokv");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    let endpoints = seq(&monitor["spec"]["endpoints"]);
    assert_eq!(endpoints[0]["port"], "status");
    assert_eq!(endpoints[0]["path"], "/metrics");
    assert_eq!(endpoints[0]["scheme"], "http");
    assert!(endpoints[0].get("tlsConfig").is_none());

    // A key the structs lack, given through the values, is caught by the
    // same check that guards the chart's own keys.
    let r = render(json!({ "node": { "config": { "raft": { "tick_ms": 50 } } } }));
    let (_, node) = check_cluster_shape(&r, 3, 3);
    let err = serde_yaml::from_value::<NodeConfig>(node).expect_err("unknown key refused");
    assert!(err.to_string().contains("tick_ms"), "{err}");

    for (values, needle) in [
        (
            json!({ "coordinator": { "replicas": 2 } }),
            "coordinator.replicas must be 1, 3 or 5",
        ),
        (
            json!({ "tls": { "enabled": true } }),
            "tls.enabled needs tls.secretName",
        ),
        (
            json!({ "node": { "antiAffinity": "maybe" } }),
            "node.antiAffinity must be",
        ),
        (
            json!({ "tls": { "statusTls": true } }),
            "tls.statusTls needs tls.enabled",
        ),
        // status_tls is the chart's: the probes and the ServiceMonitor
        // follow tls.statusTls, so a config key could only contradict them.
        (
            json!({
                "tls": { "enabled": true, "secretName": "nokv-certs" },
                "node": { "config": { "security": { "status_tls": true } } },
            }),
            "set tls.statusTls, not node.config.security.status_tls",
        ),
        (
            json!({
                "tls": { "enabled": true, "secretName": "nokv-certs", "statusTls": true },
                "coordinator": { "config": { "security": { "status_tls": false } } },
            }),
            "set tls.statusTls, not coordinator.config.security.status_tls",
        ),
    ] {
        match try_render(values.clone()) {
            Ok(_) => panic!("{values} rendered"),
            Err(e) => assert!(e.contains(needle), "{values}: {e}"),
        }
    }
}
