//! TLS and mTLS over real processes (issue 7, acceptance 2 and 3).
//!
//! One `nokv cluster up --tls` cluster (3 coordinators, 3 nodes, so raft
//! between coordinators and between nodes runs over TLS before it is even
//! healthy) with the admin restriction on every process. It serves the CLI
//! over TLS; it refuses plaintext clients, clients whose certificate comes
//! from another CA, and plaintext raft handshakes; a replica catches up by
//! a snapshot streamed over TLS; and a client with a
//! valid but non-admin certificate can read regions but not split or
//! transfer a leader; the status ports answer HTTPS (read by the CLI with
//! the cluster's CA) and never plain HTTP. A second test checks that bad
//! TLS material stops a process with a clear error.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use nokv_client::{CoordinatorClient, RawClient, TlsConfig};
use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::RegionStatusRequest;
use nokv_proto::coordinatorpb::{GetGcSafePointRequest, UpdateGcSafePointRequest};
use nokv_proto::raft_serverpb::raft_transport_client::RaftTransportClient;
use nokv_proto::raft_serverpb::RaftMessageBatch;
use nokv_tests::{bin_dir, json, runtime, LocalCluster};
use tonic::transport::{Channel, Endpoint};

/// Every process admits only the admin certificate `cluster up --tls`
/// makes (CN nokv-admin) to mutating admin calls.
const ADMIN_ONLY: &str = "coordinator_config:\n  security:\n    admin_allowed_cn: [nokv-admin]\nnode_config:\n  security:\n    admin_allowed_cn: [nokv-admin]\n";

/// An upper bound for one refused call, so a hang fails instead of
/// blocking the test.
const CALL_BOUND: Duration = Duration::from_secs(20);

fn tls_dir(c: &LocalCluster) -> PathBuf {
    c.data_dir().join("tls")
}

/// The cluster's CA with one of the client certificates it made
/// (`admin`, `client`) or the shared process certificate (`server`).
fn material(c: &LocalCluster, who: &str) -> TlsConfig {
    let d = tls_dir(c);
    TlsConfig::from_pem_files(
        &d.join("ca.crt"),
        &d.join(format!("{who}.crt")),
        &d.join(format!("{who}.key")),
    )
    .expect("cluster TLS material")
}

/// A CA nobody in the cluster trusts, and a client certificate it signed
/// (CN nokv-admin, so only the chain is wrong), written to `dir`.
fn foreign_client(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "some other CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, "nokv-admin");
    let cert = p.signed_by(&key, &issuer).expect("sign");
    let (cert_path, key_path) = (dir.join("foreign.crt"), dir.join("foreign.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    (cert_path, key_path)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn refused(o: &Output, what: &str) -> String {
    assert!(
        !o.status.success(),
        "{what} should be refused, but succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{what}: the CLI panicked: {err}");
    err
}

fn tls_channel(addr: &str, tls: &TlsConfig) -> Channel {
    Endpoint::from_shared(format!("https://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .tls_config(tls.client())
        .expect("tls config")
        .connect_lazy()
}

fn plain_channel(addr: &str) -> Channel {
    Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy()
}

/// Opens a raft stream on `channel` and waits for its answer.
async fn raft_handshake(channel: Channel) -> Result<(), String> {
    let mut client = RaftTransportClient::new(channel);
    let batches = tokio_stream_of(RaftMessageBatch::default());
    match tokio::time::timeout(CALL_BOUND, client.batch_raft(batches)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(format!("{:?}: {}", status.code(), status.message())),
        Err(_) => panic!("a raft handshake neither succeeded nor failed within {CALL_BOUND:?}"),
    }
}

/// A stream of one message that then stays open (as a raft sender's does).
fn tokio_stream_of(
    batch: RaftMessageBatch,
) -> impl futures::Stream<Item = RaftMessageBatch> + Send + 'static {
    futures::stream::iter([batch]).chain(futures::stream::pending())
}

use futures::StreamExt as _;

/// Region status from a node's Admin service over `channel`.
async fn region_status(channel: Channel) -> Result<usize, tonic::Status> {
    let mut admin = AdminClient::new(channel);
    let r = tokio::time::timeout(
        CALL_BOUND,
        admin.region_status(RegionStatusRequest { region_id: 0 }),
    )
    .await
    .map_err(|_| tonic::Status::deadline_exceeded("bounded wait"))??;
    Ok(r.into_inner().regions.len())
}

#[test]
fn tls_cluster_serves_over_mtls_refuses_strangers_and_restricts_admin_calls() {
    let c = LocalCluster::start_with_args(3, 3, ADMIN_ONLY, &["--tls"]);
    let nodes: Vec<String> = c
        .processes()
        .into_iter()
        .filter(|p| p.kind == "node")
        .map(|p| p.grpc)
        .collect();
    assert_eq!(nodes.len(), 3);

    // 1. The CLI finds the cluster's admin certificate through
    //    NOKV_CLUSTER_DIR and works over TLS.
    c.nokv_ok(&["raw", "put", "tls-key", "tls-value"]);
    assert_eq!(c.nokv_ok(&["raw", "get", "tls-key"]).trim(), "tls-value");
    let store = c.store_ids()[0];
    let cfg = json(&c.nokv_ok(&[
        "config",
        "show",
        "--store",
        &store.to_string(),
        "-o",
        "json",
    ]));
    assert_eq!(cfg["sources"]["tls"], "local cluster", "{cfg:#}");
    assert!(
        cfg["tls"]
            .as_str()
            .is_some_and(|t| t.ends_with("tls/admin.crt")),
        "{cfg:#}"
    );
    assert_eq!(cfg["store"]["id"], store, "the store lookup went over TLS");

    // 2. A plaintext client is refused: the CLI with no certificate to
    //    find, and the SDK without TLS.
    let out = c
        .nokv_command(&["--timeout", "3", "raw", "get", "tls-key"])
        .env("NOKV_CLUSTER_DIR", c.data_dir().join("no-such-cluster"))
        .output()
        .expect("run nokv");
    refused(&out, "a plaintext CLI");
    let rt = runtime();
    rt.block_on(async {
        let plain = RawClient::new(c.coordinators.clone(), Duration::from_secs(3)).expect("client");
        assert!(
            plain.get(b"tls-key").await.is_err(),
            "a plaintext SDK client read through TLS"
        );
        let tls = RawClient::with_coordinator(
            CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(20))
                .expect("client")
                .with_tls(material(&c, "admin")),
        );
        assert_eq!(
            tls.get(b"tls-key").await.expect("TLS SDK read"),
            Some(b"tls-value".to_vec())
        );
    });

    // 3. A client whose certificate another CA signed is refused, by the
    //    coordinators (CLI) and by the nodes (direct Kv/Admin call), even
    //    though it trusts the cluster's CA and claims the admin CN.
    let scratch = tempfile::tempdir().expect("tempdir");
    let (foreign_cert, foreign_key) = foreign_client(scratch.path());
    let ca = tls_dir(&c).join("ca.crt");
    let tls_args = |cert: &Path, key: &Path| -> Vec<String> {
        vec![
            "--tls-ca".into(),
            ca.display().to_string(),
            "--tls-cert".into(),
            cert.display().to_string(),
            "--tls-key".into(),
            key.display().to_string(),
        ]
    };
    let mut args = tls_args(&foreign_cert, &foreign_key);
    args.extend(["--timeout", "3", "raw", "get", "tls-key"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&c.nokv(&args), "a client certificate from another CA");
    let foreign = TlsConfig::from_pem_files(&ca, &foreign_cert, &foreign_key).expect("foreign");
    rt.block_on(async {
        let r = region_status(tls_channel(&nodes[0], &foreign)).await;
        assert!(r.is_err(), "a node served a foreign client: {r:?}");
        // The same call with the cluster's own certificate works: what
        // refused the foreign client is its certificate.
        let own = region_status(tls_channel(&nodes[0], &material(&c, "client"))).await;
        assert!(own.expect("own certificate") > 0);
    });

    // 4. Raft traffic is encrypted: a plaintext raft handshake to any node
    //    (or coordinator) fails, while the nodes themselves replicate
    //    (the cluster became healthy with three voters per region, and the
    //    put above was committed by a quorum).
    rt.block_on(async {
        for addr in nodes.iter().chain(c.coordinators.iter()) {
            let r = raft_handshake(plain_channel(addr)).await;
            assert!(r.is_err(), "plaintext raft stream accepted by {addr}");
            let r = raft_handshake(tls_channel(addr, &foreign)).await;
            assert!(r.is_err(), "foreign-CA raft stream accepted by {addr}");
        }
    });

    // 4b. Snapshots stream over TLS: a follower's replica, removed, is
    //     added back by the coordinator's replica checker and catches up
    //     by a snapshot (with the key written above) from the leader.
    let received = |c: &LocalCluster| -> f64 {
        c.node_metric(
            "nokv_raft_snapshot_bytes_total",
            Some(("direction", "received")),
        )
        .iter()
        .sum()
    };
    let before = received(&c);
    let r = json(&c.nokv_ok(&["region", "--key", "tls-key", "-o", "json"]));
    let leader = r["leader_store_id"].as_u64().expect("leader");
    let follower = r["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["store_id"].as_u64())
        .find(|s| *s != leader)
        .expect("a follower");
    let id = r["id"].as_u64().expect("id").to_string();
    c.nokv_ok(&[
        "remove-peer",
        "--region",
        &id,
        "--store",
        &follower.to_string(),
    ]);
    nokv_tests::wait_until(
        "the replica to be re-added and caught up by snapshot",
        Duration::from_secs(90),
        || {
            let r = json(&c.nokv_ok(&["region", &id, "-o", "json"]));
            let peers = r["peers"].as_array()?.clone();
            let back = peers.len() == 3
                && peers.iter().all(|p| p["role"] == "voter")
                && peers.iter().any(|p| p["store_id"] == follower);
            (back && received(&c) > before).then_some(())
        },
    );

    // 5. Admin restriction. The non-admin certificate (CN nokv-client) of
    //    the same CA reads regions, but cannot split or move a leader; the
    //    admin certificate can.
    let client_dir = tls_dir(&c);
    let as_client = |rest: &[&str]| -> Output {
        let mut a = tls_args(
            &client_dir.join("client.crt"),
            &client_dir.join("client.key"),
        );
        a.extend(rest.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        c.nokv(&a)
    };
    let ok = |o: Output, what: &str| -> String {
        assert!(o.status.success(), "{what} failed: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let regions = json(&ok(as_client(&["regions", "-o", "json"]), "regions"));
    let region = regions.as_array().expect("regions")[0].clone();
    let region_id = region["id"].as_u64().expect("id").to_string();
    let detail = json(&ok(
        as_client(&["region", &region_id, "-o", "json"]),
        "region",
    ));
    assert_eq!(
        detail["id"].as_u64().map(|i| i.to_string()),
        Some(region_id.clone())
    );
    ok(as_client(&["stores"]), "stores");
    ok(as_client(&["raw", "get", "tls-key"]), "a data read");

    let split = as_client(&["split", "--region", &region_id, "--key", "m"]);
    let err = refused(&split, "split with a non-admin certificate");
    assert!(
        err.contains("PermissionDenied") && err.contains("nokv-client"),
        "split: {err}"
    );
    let leader = region["leader_store_id"].as_u64().expect("leader");
    let to = region["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .filter_map(|p| p["store_id"].as_u64())
        .find(|s| *s != leader)
        .expect("a follower store");
    let transfer = as_client(&[
        "transfer-leader",
        "--region",
        &region_id,
        "--to-store",
        &to.to_string(),
    ]);
    let err = refused(&transfer, "transfer-leader with a non-admin certificate");
    assert!(err.contains("PermissionDenied"), "transfer-leader: {err}");

    // The coordinator's mutating admin calls are restricted the same way;
    // its reads are not.
    rt.block_on(async {
        let client = CoordinatorClient::new(c.coordinators.clone(), Duration::from_secs(20))
            .expect("client")
            .with_tls(material(&c, "client"));
        let sp = client
            .call(|mut g, t| async move {
                let mut r = tonic::Request::new(GetGcSafePointRequest::default());
                r.set_timeout(t);
                g.get_gc_safe_point(r).await
            })
            .await
            .expect("a read is open to the non-admin certificate");
        let safe_point = sp.safe_point;
        let denied = client
            .call(|mut g, t| async move {
                let mut r = tonic::Request::new(UpdateGcSafePointRequest {
                    safe_point,
                    ..Default::default()
                });
                r.set_timeout(t);
                g.update_gc_safe_point(r).await
            })
            .await;
        match denied {
            Err(nokv_client::Error::Rpc(s)) => {
                assert_eq!(s.code(), tonic::Code::PermissionDenied, "{s:?}")
            }
            other => panic!("UpdateGcSafePoint with a non-admin certificate: {other:?}"),
        }
    });

    // The admin certificate (what the CLI picks up) may split.
    c.nokv_ok(&["split", "--region", &region_id, "--key", "m"]);
    let after = json(&c.nokv_ok(&["region", "--key", "m", "-o", "json"]));
    assert_eq!(after["start_key"], "m");

    // 6. The status ports speak HTTPS too: the CLI reads a store's /status
    //    with the cluster's CA, and plain HTTP gets no answer from any
    //    process.
    let shown = json(&c.nokv_ok(&[
        "config",
        "show",
        "--store",
        &leader.to_string(),
        "-o",
        "json",
    ]));
    assert_eq!(shown["store"]["status"]["component"], "node", "{shown}");
    for p in c.processes() {
        assert_eq!(
            c.status_get(&p.status, "/ready").map(|r| r.0),
            Some(200),
            "{} /ready over HTTPS",
            p.name
        );
        assert_eq!(
            nokv_tests::http_get(&p.status, "/health"),
            None,
            "{} answered plain HTTP on its status port",
            p.name
        );
    }
    c.assert_no_panics();
}

fn run_with_bad_tls(binary: &str, extra: &[&str], dir: &Path) -> Output {
    std::process::Command::new(bin_dir().join(binary))
        .args(["--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0", "--status-listen", "127.0.0.1:0"])
        .args(extra)
        .output()
        .expect("run")
}

#[test]
fn bad_tls_material_stops_a_process_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let g = garbage.display().to_string();

    // A missing file is named.
    let out = run_with_bad_tls(
        "nokv-node",
        &[
            "--coordinators",
            "127.0.0.1:1",
            "--ca-path",
            "/nonexistent/ca.crt",
            "--cert-path",
            &g,
            "--key-path",
            &g,
        ],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("/nonexistent/ca.crt"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A file that is not PEM is named, with what is wrong.
    let config = dir.path().join("coordinator.yaml");
    std::fs::write(
        &config,
        format!("security:\n  ca_path: {g}\n  cert_path: {g}\n  key_path: {g}\n"),
    )
    .expect("write");
    let out = run_with_bad_tls(
        "nokv-coordinator",
        &["--config", &config.display().to_string()],
        dir.path(),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("garbage.pem") && err.contains("no CERTIFICATE block"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Partial CLI flags are a usage error, not a plaintext fallback.
    let out = std::process::Command::new(bin_dir().join("nokv"))
        .args(["--tls-ca", &g, "stores"])
        .output()
        .expect("run nokv");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("go together"), "{}", stderr(&out));
}
