//! The coordinator as a control plane: `members`, `tso`, `operator
//! list|show|add|cancel`, `scheduler list|pause|resume` and `store delete`.
//! Each command calls the coordinator leader once and returns rows for
//! [`crate::output`].

use anyhow::{anyhow, bail};
use clap::Subcommand;
use nokv_client::CoordinatorClient;
use nokv_proto::coordinatorpb::{
    change_peer, operator_step::Step, AddOperatorRequest, CancelOperatorRequest, ChangePeer,
    DeleteStoreRequest, GetSchedulersRequest, MergeRegion, Operator, OperatorState, OperatorStep,
    PauseSchedulerRequest, SplitRegion, TransferLeader,
};
use nokv_proto::metapb::{Peer, Region};
use serde::Serialize;

use crate::output::{self, Format};

/// `nokv operator …`.
#[derive(Debug, Subcommand)]
pub enum OperatorCmd {
    /// List operators in flight (and recent finished ones with --history).
    List {
        /// Only this region's operators.
        #[arg(long, value_name = "ID")]
        region: Option<u64>,
        /// Include recently finished operators.
        #[arg(long)]
        history: bool,
    },
    /// One operator with each step's progress.
    Show {
        /// Operator id.
        #[arg(value_name = "ID")]
        id: u64,
    },
    /// Start an operator on a region from steps run in order.
    ///
    /// Each STEP is one of `add-learner:STORE`, `promote:STORE`,
    /// `remove-peer:STORE`, `transfer-leader:STORE`, `split:KEY`,
    /// `split-half`, `merge-into:REGION`.
    Add {
        /// Region the operator works on.
        #[arg(long, value_name = "ID")]
        region: u64,
        /// Timeout of each step in seconds (0 = the coordinator's default,
        /// `operator_step_timeout_ms`).
        #[arg(long, value_name = "SECS", default_value_t = 0.0)]
        step_timeout: f64,
        /// The steps, in order.
        #[arg(value_name = "STEP", required = true, value_parser = parse_step)]
        steps: Vec<OperatorStep>,
    },
    /// Cancel an operator in flight (a step already handed to the region
    /// leader may still complete; no further step is handed out).
    Cancel {
        /// Operator id.
        #[arg(value_name = "ID")]
        id: u64,
    },
}

/// `nokv scheduler …`.
#[derive(Debug, Subcommand)]
pub enum SchedulerCmd {
    /// Checkers and schedulers with their state and limits.
    List,
    /// Stop a checker or scheduler from creating operators (kept across
    /// coordinator leader changes).
    Pause {
        /// `replica-checker`, `balance-leader` or `balance-region`.
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Let a paused checker or scheduler create operators again.
    Resume {
        /// `replica-checker`, `balance-leader` or `balance-region`.
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// `nokv store …`.
#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Decommission a store: it goes Offline, its replicas move to other
    /// stores, then it becomes Tombstone and may never rejoin.
    Delete {
        /// Store id.
        #[arg(value_name = "ID")]
        id: u64,
    },
}

/// Parses one `STEP` of `nokv operator add`.
fn parse_step(s: &str) -> Result<OperatorStep, String> {
    let (verb, arg) = s.split_once(':').unwrap_or((s, ""));
    let store = || -> Result<Peer, String> {
        let store_id: u64 = arg
            .parse()
            .map_err(|_| format!("`{verb}` needs a store id: `{verb}:STORE`"))?;
        Ok(Peer {
            id: 0,
            store_id,
            role: 0,
        })
    };
    let change = |kind: change_peer::Kind| -> Result<Step, String> {
        Ok(Step::ChangePeer(ChangePeer {
            kind: kind as i32,
            peer: Some(store()?),
        }))
    };
    let step = match verb {
        "add-learner" => change(change_peer::Kind::AddLearner)?,
        "promote" => change(change_peer::Kind::AddVoter)?,
        "remove-peer" => change(change_peer::Kind::Remove)?,
        "transfer-leader" => Step::TransferLeader(TransferLeader {
            peer: Some(store()?),
        }),
        "split" if !arg.is_empty() => Step::SplitRegion(SplitRegion {
            split_key: arg.as_bytes().to_vec(),
            half: false,
        }),
        "split-half" => Step::SplitRegion(SplitRegion {
            split_key: Vec::new(),
            half: true,
        }),
        "merge-into" => Step::Merge(MergeRegion {
            target: Some(Region {
                id: arg
                    .parse()
                    .map_err(|_| "`merge-into` needs a region id: `merge-into:REGION`")?,
                ..Default::default()
            }),
        }),
        _ => {
            return Err(format!(
                "unknown step `{s}`: use add-learner:STORE, promote:STORE, remove-peer:STORE, \
                 transfer-leader:STORE, split:KEY, split-half or merge-into:REGION"
            ))
        }
    };
    Ok(OperatorStep {
        step: Some(step),
        timeout_ms: 0,
    })
}

/// One step of an operator as shown.
#[derive(Debug, Serialize)]
pub struct StepRow {
    /// Position in the operator.
    pub index: usize,
    /// What it does.
    pub step: String,
    /// `done`, `running` or `pending` (or the operator's end state for the
    /// step it ended on).
    pub status: String,
    /// Its timeout in milliseconds.
    pub timeout_ms: u64,
}

/// One operator as shown.
#[derive(Debug, Serialize)]
pub struct OperatorRow {
    /// Operator id.
    pub id: u64,
    /// Region it works on.
    pub region_id: u64,
    /// What it does (`add-replica`, `move-replica`, `transfer-leader`, …).
    pub kind: String,
    /// Who created it: a checker, a scheduler, or `manual`.
    pub source: String,
    /// `Running`, `Succeeded`, `Cancelled`, `TimedOut` or `Failed`.
    pub state: String,
    /// Index of the step in progress (or where it ended).
    pub current_step: u32,
    /// Its steps.
    pub steps: Vec<StepRow>,
    /// Unix ms of creation.
    pub created_at_ms: u64,
    /// Unix ms it finished (0 while running).
    pub finished_at_ms: u64,
    /// Why it ended, when it did not succeed.
    pub message: String,
}

/// Describes one step in words.
pub fn describe_step(step: &OperatorStep) -> String {
    let store = |p: &Option<Peer>| p.map(|p| p.store_id).unwrap_or(0);
    match &step.step {
        Some(Step::ChangePeer(c)) => match c.kind() {
            change_peer::Kind::AddLearner => format!("add learner on store {}", store(&c.peer)),
            change_peer::Kind::AddVoter => format!("promote learner on store {}", store(&c.peer)),
            change_peer::Kind::Remove => format!("remove peer on store {}", store(&c.peer)),
        },
        Some(Step::TransferLeader(t)) => format!("transfer leader to store {}", store(&t.peer)),
        Some(Step::SplitRegion(s)) if s.half => "split in half".into(),
        Some(Step::SplitRegion(s)) => {
            format!("split at {:?}", String::from_utf8_lossy(&s.split_key))
        }
        Some(Step::Merge(m)) => format!(
            "merge into region {}",
            m.target.as_ref().map_or(0, |t| t.id)
        ),
        None => "empty".into(),
    }
}

fn operator_row(o: &Operator) -> OperatorRow {
    let state = o.state();
    let steps = o
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let cur = o.current_step as usize;
            let status = if i < cur {
                "done".to_string()
            } else if i > cur {
                "pending".to_string()
            } else if state == OperatorState::Running {
                "running".to_string()
            } else {
                state.as_str_name().to_string()
            };
            StepRow {
                index: i,
                step: describe_step(s),
                status,
                timeout_ms: s.timeout_ms,
            }
        })
        .collect();
    OperatorRow {
        id: o.id,
        region_id: o.region_id,
        kind: o.kind.clone(),
        source: o.source.clone(),
        state: state.as_str_name().to_string(),
        current_step: o.current_step,
        steps,
        created_at_ms: o.created_at_ms,
        finished_at_ms: o.finished_at_ms,
        message: o.message.clone(),
    }
}

fn operators_table(rows: &[OperatorRow]) -> comfy_table::Table {
    let mut t = output::table(&[
        "ID", "REGION", "KIND", "SOURCE", "STATE", "STEP", "STEPS", "MESSAGE",
    ]);
    for r in rows {
        t.add_row(vec![
            r.id.to_string(),
            r.region_id.to_string(),
            r.kind.clone(),
            r.source.clone(),
            r.state.clone(),
            format!(
                "{}/{}",
                (r.current_step as usize).min(r.steps.len()),
                r.steps.len()
            ),
            r.steps
                .iter()
                .map(|s| s.step.clone())
                .collect::<Vec<_>>()
                .join(" → "),
            r.message.clone(),
        ]);
    }
    t
}

fn show_operator(format: Format, row: &OperatorRow) -> anyhow::Result<()> {
    output::emit_tables(format, row, || {
        let head = operators_table(std::slice::from_ref(row));
        let mut steps = output::table(&["#", "STEP", "STATUS", "TIMEOUT_MS"]);
        for s in &row.steps {
            steps.add_row(vec![
                s.index.to_string(),
                s.step.clone(),
                s.status.clone(),
                s.timeout_ms.to_string(),
            ]);
        }
        vec![head, steps]
    })
}

/// Runs `nokv operator …`.
pub async fn operator(
    c: &CoordinatorClient,
    cmd: OperatorCmd,
    format: Format,
) -> anyhow::Result<()> {
    match cmd {
        OperatorCmd::List { region, history } => {
            let rows: Vec<OperatorRow> = c
                .get_operators(region.unwrap_or(0), history)
                .await?
                .iter()
                .map(operator_row)
                .collect();
            output::emit(format, &rows, || operators_table(&rows))
        }
        OperatorCmd::Show { id } => {
            let op = c
                .get_operators(0, true)
                .await?
                .into_iter()
                .rfind(|o| o.id == id)
                .ok_or_else(|| {
                    anyhow!("operator {id} is neither in flight nor in recent history")
                })?;
            show_operator(format, &operator_row(&op))
        }
        OperatorCmd::Add {
            region,
            step_timeout,
            mut steps,
        } => {
            if !(0.0..=86_400.0).contains(&step_timeout) {
                bail!("--step-timeout must be between 0 and 86400 seconds");
            }
            for s in &mut steps {
                s.timeout_ms = (step_timeout * 1000.0) as u64;
            }
            let resp = c
                .call(|mut g, t| {
                    let steps = steps.clone();
                    async move {
                        let mut req = tonic::Request::new(AddOperatorRequest {
                            header: None,
                            region_id: region,
                            steps,
                        });
                        req.set_timeout(t);
                        g.add_operator(req).await
                    }
                })
                .await?;
            let op = resp
                .operator
                .ok_or_else(|| anyhow!("the coordinator returned no operator"))?;
            show_operator(format, &operator_row(&op))
        }
        OperatorCmd::Cancel { id } => {
            c.call(|mut g, t| async move {
                let mut req = tonic::Request::new(CancelOperatorRequest {
                    header: None,
                    operator_id: id,
                });
                req.set_timeout(t);
                g.cancel_operator(req).await
            })
            .await?;
            let op = c
                .get_operators(0, true)
                .await?
                .into_iter()
                .rfind(|o| o.id == id)
                .ok_or_else(|| anyhow!("operator {id} cancelled but no longer listed"))?;
            show_operator(format, &operator_row(&op))
        }
    }
}

/// One checker or scheduler as shown.
#[derive(Debug, Serialize)]
pub struct SchedulerRow {
    /// Name.
    pub name: String,
    /// Whether it is paused.
    pub paused: bool,
    /// Operators it has in flight.
    pub in_flight: u32,
    /// Most operators it keeps in flight.
    pub max_in_flight: u32,
}

/// Runs `nokv scheduler …`.
pub async fn scheduler(
    c: &CoordinatorClient,
    cmd: SchedulerCmd,
    format: Format,
) -> anyhow::Result<()> {
    let (name, pause) = match cmd {
        SchedulerCmd::List => (None, false),
        SchedulerCmd::Pause { name } => (Some(name), true),
        SchedulerCmd::Resume { name } => (Some(name), false),
    };
    if let Some(name) = name {
        c.call(|mut g, t| {
            let name = name.clone();
            async move {
                let mut req = tonic::Request::new(PauseSchedulerRequest {
                    header: None,
                    name,
                    pause,
                });
                req.set_timeout(t);
                g.pause_scheduler(req).await
            }
        })
        .await?;
    }
    let resp = c
        .call(|mut g, t| async move {
            let mut req = tonic::Request::new(GetSchedulersRequest { header: None });
            req.set_timeout(t);
            g.get_schedulers(req).await
        })
        .await?;
    let rows: Vec<SchedulerRow> = resp
        .schedulers
        .iter()
        .map(|s| SchedulerRow {
            name: s.name.clone(),
            paused: s.paused,
            in_flight: s.in_flight,
            max_in_flight: s.max_in_flight,
        })
        .collect();
    output::emit(format, &rows, || {
        let mut t = output::table(&["NAME", "PAUSED", "IN_FLIGHT", "MAX_IN_FLIGHT"]);
        for r in &rows {
            t.add_row(vec![
                r.name.clone(),
                r.paused.to_string(),
                r.in_flight.to_string(),
                r.max_in_flight.to_string(),
            ]);
        }
        t
    })
}

/// Result of `nokv store delete`.
#[derive(Debug, Serialize)]
pub struct StoreDeleted {
    /// The store.
    pub store_id: u64,
    /// Its state now (`Offline` until its replicas moved, then `Tombstone`).
    pub state: String,
}

/// Runs `nokv store …`.
pub async fn store(c: &CoordinatorClient, cmd: StoreCmd, format: Format) -> anyhow::Result<()> {
    let StoreCmd::Delete { id } = cmd;
    c.call(|mut g, t| async move {
        let mut req = tonic::Request::new(DeleteStoreRequest {
            header: None,
            store_id: id,
        });
        req.set_timeout(t);
        g.delete_store(req).await
    })
    .await?;
    let state = c
        .get_store(id)
        .await?
        .store
        .map(|s| s.state().as_str_name().to_string())
        .unwrap_or_default();
    let row = StoreDeleted {
        store_id: id,
        state,
    };
    output::emit(format, &row, || {
        let mut t = output::table(&["STORE", "STATE"]);
        t.add_row(vec![row.store_id.to_string(), row.state.clone()]);
        t
    })
}

/// One coordinator member as shown.
#[derive(Debug, Serialize)]
pub struct MemberRow {
    /// Raft id.
    pub id: u64,
    /// Name.
    pub name: String,
    /// gRPC address.
    pub address: String,
    /// HTTP status address.
    pub status_address: String,
    /// Whether it leads the group now.
    pub leader: bool,
}

/// Runs `nokv members`.
pub async fn members(c: &CoordinatorClient, format: Format) -> anyhow::Result<()> {
    let resp = c.members().await?;
    let leader = resp.leader.as_ref().map(|l| l.id);
    let rows: Vec<MemberRow> = resp
        .members
        .iter()
        .map(|m| MemberRow {
            id: m.id,
            name: m.name.clone(),
            address: m.address.clone(),
            status_address: m.status_address.clone(),
            leader: Some(m.id) == leader,
        })
        .collect();
    output::emit(format, &rows, || {
        let mut t = output::table(&["ID", "NAME", "ADDRESS", "STATUS_ADDRESS", "LEADER"]);
        for r in &rows {
            t.add_row(vec![
                r.id.to_string(),
                r.name.clone(),
                r.address.clone(),
                r.status_address.clone(),
                if r.leader { "*".into() } else { String::new() },
            ]);
        }
        t
    })
}

/// A timestamp from the TSO.
#[derive(Debug, Serialize)]
pub struct TsoRow {
    /// The timestamp (`physical_ms << 18 | logical`).
    pub timestamp: u64,
    /// Its physical part, unix ms.
    pub physical_ms: u64,
    /// Its logical part.
    pub logical: u64,
}

/// Runs `nokv tso`.
pub async fn tso(c: &CoordinatorClient, format: Format) -> anyhow::Result<()> {
    let ts = c.get_timestamp(1).await?;
    let row = TsoRow {
        timestamp: ts,
        physical_ms: ts >> 18,
        logical: ts & ((1 << 18) - 1),
    };
    output::emit(format, &row, || {
        let mut t = output::table(&["TIMESTAMP", "PHYSICAL_MS", "LOGICAL"]);
        t.add_row(vec![
            row.timestamp.to_string(),
            row.physical_ms.to_string(),
            row.logical.to_string(),
        ]);
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_parse_and_bad_ones_are_explained() {
        let s = parse_step("add-learner:4").expect("valid");
        assert_eq!(describe_step(&s), "add learner on store 4");
        assert_eq!(
            describe_step(&parse_step("transfer-leader:2").expect("valid")),
            "transfer leader to store 2"
        );
        assert_eq!(
            describe_step(&parse_step("split:k5").expect("valid")),
            "split at \"k5\""
        );
        assert_eq!(
            describe_step(&parse_step("split-half").expect("valid")),
            "split in half"
        );
        assert!(parse_step("promote:x").unwrap_err().contains("store id"));
        assert!(parse_step("merge:3").unwrap_err().contains("unknown step"));
        assert_eq!(
            describe_step(&parse_step("merge-into:3").expect("valid")),
            "merge into region 3"
        );
        assert!(parse_step("merge-into:x")
            .unwrap_err()
            .contains("region id"));
        assert!(parse_step("split:").is_err());
    }
}
