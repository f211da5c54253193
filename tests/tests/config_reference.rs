//! docs/deploy.md is the config reference: it must name every key of
//! `NodeConfig` and `CoordinatorConfig` (at any depth), and list no key the
//! structs do not have.
//!
//! The keys come from serializing the structs' defaults, so a field added
//! to a struct fails this test until its row is written. A key is "named"
//! when it appears as a code span of its dotted path, e.g.
//! `` `raft.tick_interval_ms` `` or `` `members[].address` ``.

use std::collections::BTreeSet;
use std::path::Path;

use nokv_coordinator::config::MemberConfig;
use nokv_coordinator::CoordinatorConfig;
use nokv_node::NodeConfig;
use serde_json::Value;

/// Every key of the `security` section. It is off (absent) by default, so
/// its keys come from a sample with every field set.
fn security_keys(out: &mut BTreeSet<String>) {
    let sample = nokv_consensus::security::SecurityConfig {
        ca_path: "ca.crt".into(),
        cert_path: "tls.crt".into(),
        key_path: "tls.key".into(),
        admin_allowed_cn: vec!["admin".into()],
        status_tls: true,
    };
    out.insert("security".into());
    let sample = serde_json::to_value(sample).expect("SecurityConfig serializes");
    key_paths(&sample, "security", out);
}

/// Every key path below `value`: `a`, `a.b`, and `a[].b` for the fields of
/// a list's elements. Maps that are empty by default (free-form like
/// `labels`) contribute only their own key.
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Value::Object(map) = value else { return };
    for (key, child) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        out.insert(path.clone());
        match child {
            Value::Object(_) => key_paths(child, &path, out),
            Value::Array(items) => {
                if let Some(first) = items.first() {
                    key_paths(first, &format!("{path}[]"), out);
                }
            }
            _ => {}
        }
    }
}

fn node_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let defaults = serde_json::to_value(NodeConfig::default()).expect("NodeConfig serializes");
    key_paths(&defaults, "", &mut keys);
    security_keys(&mut keys);
    keys
}

fn coordinator_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let defaults =
        serde_json::to_value(CoordinatorConfig::default()).expect("CoordinatorConfig serializes");
    key_paths(&defaults, "", &mut keys);
    // `members` is empty by default; a member parsed from its required keys
    // brings every field of MemberConfig, defaults filled in.
    let member: MemberConfig = serde_yaml::from_str("id: 1\naddress: host:2379\n")
        .expect("a member needs only id and address");
    let member = serde_json::to_value(member).expect("MemberConfig serializes");
    key_paths(&member, "members[]", &mut keys);
    security_keys(&mut keys);
    keys
}

fn deploy_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The first-column keys of the reference table under `heading` (up to the
/// next heading of the same or a higher level).
fn documented_keys(doc: &str, heading: &str) -> BTreeSet<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/deploy.md has no section {heading:?}"));
    let level = heading.chars().take_while(|c| *c == '#').count();
    let mut keys = BTreeSet::new();
    for line in doc[start..].lines().skip(1) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        if let Some(rest) = line.strip_prefix("| `") {
            if let Some((key, _)) = rest.split_once('`') {
                keys.insert(key.to_string());
            }
        }
    }
    keys
}

fn check(component: &str, heading: &str, keys: &BTreeSet<String>) {
    let table = documented_keys(&deploy_md(), heading);
    let missing: Vec<&String> = keys.iter().filter(|k| !table.contains(*k)).collect();
    assert!(
        missing.is_empty(),
        "docs/deploy.md lacks these {component} config keys; add a row for each to the \
         table under {heading:?}: {missing:?}"
    );
    let unknown: Vec<&String> = table.iter().filter(|k| !keys.contains(*k)).collect();
    assert!(
        unknown.is_empty(),
        "the {heading:?} table lists keys the {component} config does not have: {unknown:?}"
    );
}

#[test]
fn every_node_config_key_is_in_the_reference() {
    let keys = node_keys();
    // Guard the walk itself: nested sections must be reached.
    assert!(keys.contains("raft.tick_interval_ms") && keys.contains("limits.max_key_bytes"));
    assert!(keys.contains("security.admin_allowed_cn"));
    check("node", "### Node configuration", &keys);
}

#[test]
fn every_coordinator_config_key_is_in_the_reference() {
    let keys = coordinator_keys();
    assert!(keys.contains("members[].status_address"));
    check("coordinator", "### Coordinator configuration", &keys);
}
