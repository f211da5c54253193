//! The raftstore's side of the coordinator: region heartbeats from the
//! leaders, and the orders heartbeat responses carry (peer changes, leader
//! transfers, splits, merges).

use crate::metrics;
use crate::raftstore::peer::Peer;
use crate::raftstore::store::Raftstore;
use nokv_proto::coordinatorpb::{change_peer, RegionHeartbeatResponse};
use nokv_proto::metapb::{self};
use nokv_proto::raft_cmdpb::{ChangePeerRequest, ConfChangeType};
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// A hibernating leader reports to the coordinator this many times less
/// often (it still reports, so the coordinator knows it is alive).
const HIBERNATED_HEARTBEAT_FACTOR: u64 = 10;

impl Raftstore {
    /// Sends region heartbeats for leaders whose interval passed or whose
    /// region or leadership changed.
    pub(in crate::raftstore) fn heartbeat_round(&mut self) {
        let every = self.config.region_heartbeat_ticks.max(1);
        let now = Instant::now();
        let down_after = Duration::from_secs(self.config.max_peer_down_secs);
        let (store_seen, started, self_store) = (&self.store_seen, self.started, self.store_id);
        // A peer is down when nothing from its store (raft traffic or the
        // store pings every store sends, asleep or not) arrived for
        // `max_peer_down_secs`.
        let down_peers = |p: &Peer| -> Vec<metapb::Peer> {
            p.region
                .peers
                .iter()
                .filter(|q| q.store_id != self_store)
                .filter(|q| {
                    let seen = store_seen.get(&q.store_id).copied().unwrap_or(started);
                    now.saturating_duration_since(seen) > down_after
                })
                .copied()
                .collect()
        };
        for p in self.peers.values_mut() {
            let leader = p.raft.is_leader();
            if leader != p.was_leader {
                p.was_leader = leader;
                p.heartbeat_due = true;
                metrics::LEADER_CHANGES.inc();
                // Counts from an earlier term may be stale: measure again
                // before the coordinator's merge checker relies on them.
                p.size_measured = false;
                p.written_since_split_check = true;
                if !leader {
                    self.counters.flows.forget(p.region.id);
                }
            }
            if !leader || !p.is_initialized() {
                continue;
            }
            let every = if p.hibernation.asleep {
                every * HIBERNATED_HEARTBEAT_FACTOR
            } else {
                every
            };
            if p.reported_pending > 0 && p.pending_peers().len() != p.reported_pending {
                p.heartbeat_due = true;
            }
            let down = down_peers(p);
            if down.len() != p.reported_down {
                p.heartbeat_due = true;
            }
            if p.heartbeat_due || p.ticks_since_heartbeat >= every {
                p.heartbeat_due = false;
                p.ticks_since_heartbeat = 0;
                let mut hb = p.heartbeat();
                p.reported_pending = hb.pending_peers.len();
                p.reported_down = down.len();
                hb.down_peers = down;
                self.counters.flows.fill_region_heartbeat(&mut hb);
                let _ = self.heartbeats.send(hb);
            }
        }
    }

    pub(in crate::raftstore) fn on_heartbeat_response(&mut self, resp: RegionHeartbeatResponse) {
        let region_id = resp.region_id;
        if let Some(t) = resp.transfer_leader {
            let to_store = t.peer.map(|p| p.store_id).unwrap_or(0);
            match self.on_transfer_leader(region_id, to_store) {
                Ok(_) => info!(
                    region_id,
                    to_store,
                    operator_id = resp.operator_id,
                    "running coordinator order: transfer leader"
                ),
                Err(e) => debug!(region_id, error = %e.message, "coordinator transfer refused"),
            }
            return;
        }
        if let Some(split) = resp.split_region {
            // The split-check worker has the engine and the split driver;
            // it runs the split off this thread.
            let Some(p) = self.peers.get(&region_id).filter(|p| p.raft.is_leader()) else {
                return;
            };
            info!(
                region_id,
                operator_id = resp.operator_id,
                "running coordinator order: split"
            );
            let _ = self
                .split_checks
                .send(crate::worker::split_check::SplitCheck {
                    region: p.region.clone(),
                    peer: p.meta,
                    order: Some(split),
                });
            return;
        }
        if let Some(merge) = resp.merge {
            self.run_merge_order(region_id, resp.operator_id, merge);
            return;
        }
        let Some(order) = resp.change_peer else {
            return;
        };
        let Some(target) = order.peer else {
            return;
        };
        let change_type = match order.kind() {
            change_peer::Kind::AddVoter => ConfChangeType::AddNode,
            change_peer::Kind::AddLearner => ConfChangeType::AddLearnerNode,
            change_peer::Kind::Remove => ConfChangeType::RemoveNode,
        };
        let change = ChangePeerRequest {
            change_type: change_type as i32,
            peer: Some(target),
        };
        info!(region_id, change = ?change_type, "running coordinator order");
        let diagnostics = self.diagnostics.clone();
        let target = change.peer.unwrap_or_default();
        let t = diagnostics.plan(
            region_id,
            "change_peer",
            format!(
                "coordinator order: {change_type:?} peer {} on store {}",
                target.id, target.store_id
            ),
        );
        diagnostics.advance(t, nokv_proto::adminpb::TransitionStage::Proposed);
        self.on_change_peer(
            region_id,
            change,
            Box::new(move |r| match r {
                Ok(resp) if resp.header.as_ref().is_none_or(|h| h.error.is_none()) => {
                    diagnostics.advance(t, nokv_proto::adminpb::TransitionStage::Applied)
                }
                Ok(resp) => diagnostics.fail(
                    t,
                    resp.header
                        .and_then(|h| h.error)
                        .map(|e| e.message)
                        .unwrap_or_default(),
                ),
                Err(e) => {
                    debug!(region_id, error = %e.message, "coordinator order failed");
                    diagnostics.fail(t, e.message);
                }
            }),
        );
    }
}
