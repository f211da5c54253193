//! `nokv execution`: a store's execution diagnostics — the last admission
//! outcome per region and request class with its reason, the lifecycle of
//! its topology transitions, and its restart posture.

use std::time::Duration;

use anyhow::anyhow;
use nokv_client::CoordinatorClient;
use nokv_proto::adminpb::admin_client::AdminClient;
use nokv_proto::adminpb::ExecutionStatusRequest;
use serde::Serialize;

use crate::output::{self, Format};

#[derive(Serialize)]
struct AdmissionRow {
    region_id: u64,
    class: String,
    outcome: String,
    reason: String,
    at_ms: u64,
}

#[derive(Serialize)]
struct TransitionRow {
    id: u64,
    region_id: u64,
    kind: String,
    stage: String,
    detail: String,
    error: String,
    updated_at_ms: u64,
}

#[derive(Serialize)]
struct Restart {
    regions_recovered: u64,
    regions_missing_raft_state: Vec<u64>,
    started_at_ms: u64,
}

#[derive(Serialize)]
struct Execution {
    store_id: u64,
    restart: Restart,
    admissions: Vec<AdmissionRow>,
    transitions: Vec<TransitionRow>,
}

/// Prints the execution diagnostics of `store_id`.
pub async fn show(
    coordinator: &CoordinatorClient,
    store_id: u64,
    region_id: u64,
    transition_id: u64,
    format: Format,
) -> anyhow::Result<()> {
    let store = coordinator.get_store(store_id).await?;
    let addr = store
        .store
        .map(|s| s.address)
        .ok_or_else(|| anyhow!("store {store_id} unknown"))?;
    let ch = coordinator.channel_to(&addr, Duration::from_secs(2))?;
    let mut req = tonic::Request::new(ExecutionStatusRequest {
        region_id,
        transition_id,
    });
    req.set_timeout(coordinator.timeout());
    let resp = AdminClient::new(ch)
        .execution_status(req)
        .await?
        .into_inner();
    let restart = resp.restart.unwrap_or_default();
    let out = Execution {
        store_id: resp.store_id,
        restart: Restart {
            regions_recovered: restart.regions_recovered,
            regions_missing_raft_state: restart.regions_missing_raft_state,
            started_at_ms: restart.started_at_ms,
        },
        admissions: resp
            .regions
            .iter()
            .flat_map(|r| {
                r.admissions.iter().map(move |a| AdmissionRow {
                    region_id: r.region_id,
                    class: a.class().as_str_name().to_lowercase(),
                    outcome: a.outcome.clone(),
                    reason: a.reason.clone(),
                    at_ms: a.at_ms,
                })
            })
            .collect(),
        transitions: resp
            .transitions
            .iter()
            .map(|t| TransitionRow {
                id: t.id,
                region_id: t.region_id,
                kind: t.kind.clone(),
                stage: t.stage().as_str_name().to_lowercase(),
                detail: t.detail.clone(),
                error: t.error.clone(),
                updated_at_ms: t.updated_at_ms,
            })
            .collect(),
    };
    if format != Format::Table {
        return output::emit(format, &out, || output::table(&[]));
    }
    println!(
        "store {}: {} regions recovered at start{}",
        out.store_id,
        out.restart.regions_recovered,
        if out.restart.regions_missing_raft_state.is_empty() {
            String::new()
        } else {
            format!(
                ", missing raft state: {:?}",
                out.restart.regions_missing_raft_state
            )
        }
    );
    let mut t = output::table(&["REGION", "CLASS", "OUTCOME", "REASON"]);
    for a in &out.admissions {
        t.add_row(vec![
            a.region_id.to_string(),
            a.class.clone(),
            a.outcome.clone(),
            a.reason.clone(),
        ]);
    }
    println!("{t}");
    let mut t = output::table(&["ID", "REGION", "KIND", "STAGE", "DETAIL", "ERROR"]);
    for tr in &out.transitions {
        t.add_row(vec![
            tr.id.to_string(),
            tr.region_id.to_string(),
            tr.kind.clone(),
            tr.stage.clone(),
            tr.detail.clone(),
            tr.error.clone(),
        ]);
    }
    println!("{t}");
    Ok(())
}
