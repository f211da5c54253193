//! Incoming raft traffic: a message from another store's replica is
//! checked (right store, peer id, not a removed replica talking, a
//! snapshot that fits) and stepped into the replica, creating it first if
//! the region is new here.

use crate::raftstore::store::Raftstore;
use nokv_consensus::transport::decode_message;
use nokv_proto::raft_serverpb::{HibernateSignal, RaftMessage};
use prost::Message as _;
use raft::prelude::MessageType;
use std::time::Instant;
use tracing::{debug, info, warn};

impl Raftstore {
    pub(in crate::raftstore) fn on_raft_message(&mut self, env: RaftMessage) {
        let Some(to) = env.to_peer else {
            return;
        };
        if to.store_id != self.store_id {
            debug!(
                store_id = self.store_id,
                to_store = to.store_id,
                "raft message for another store dropped"
            );
            return;
        }
        if let Some(from) = &env.from_peer {
            self.store_seen.insert(from.store_id, Instant::now());
        }
        if env.store_ping {
            return;
        }
        if env.hibernate() != HibernateSignal::HibernateNone {
            self.on_hibernate_signal(&env);
            return;
        }
        if env.is_tombstone {
            self.on_tombstone(&env, to.id);
            return;
        }
        let msg = match decode_message(&env.message) {
            Ok(m) => m,
            Err(e) => {
                warn!(error = %e, "undecodable raft message dropped");
                return;
            }
        };
        // Peer ids only grow: a message for a newer peer of a region we hold
        // means our replica was removed without learning it (it missed the
        // entry). Make way for the new replica.
        if let Some(old) = self.peers.get(&env.region_id).filter(|p| to.id > p.meta.id) {
            if old.applying.tasks > 0 {
                // Destroyed once the pool is done with it; the leader
                // retries this message.
                return;
            }
            info!(
                region_id = env.region_id,
                new_peer = to.id,
                "replica superseded by a newer peer; destroying it"
            );
            if let Err(e) = self.destroy_peer(env.region_id) {
                warn!(region_id = env.region_id, error = %e, "destroying a superseded replica failed");
                return;
            }
        }
        if !self.peers.contains_key(&env.region_id) && !self.maybe_create_peer(&env, &msg) {
            return;
        }
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if let Some(from) = env.from_peer.filter(|_| peer.is_initialized()) {
            let theirs = env.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
            let ours = peer.region.epoch.map(|e| e.conf_ver).unwrap_or(0);
            if !peer.region.peers.iter().any(|p| p.id == from.id) && theirs < ours {
                // A removed replica still talking: tell it so it can go.
                let tombstone = RaftMessage {
                    region_id: env.region_id,
                    from_peer: Some(peer.meta),
                    to_peer: Some(from),
                    region_epoch: peer.region.epoch,
                    is_tombstone: true,
                    ..Default::default()
                };
                self.transport.send(from.store_id, tombstone);
                return;
            }
        }
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if peer.meta.id != to.id {
            debug!(
                region_id = env.region_id,
                peer_id = peer.meta.id,
                to_peer = to.id,
                "message for another peer id dropped"
            );
            return;
        }
        if msg.get_msg_type() == MessageType::MsgSnapshot {
            let region =
                nokv_proto::raft_serverpb::SnapshotMeta::decode(msg.get_snapshot().get_data())
                    .ok()
                    .and_then(|m| m.region)
                    .unwrap_or_default();
            if !self.snapshot_fits(&region) {
                debug!(
                    region_id = env.region_id,
                    "snapshot overlaps another live region here; dropped"
                );
                return;
            }
        }
        let Some(peer) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if let Some(from) = &env.from_peer {
            peer.peer_stores.insert(from.id, from.store_id);
        }
        // A replica that just started forgets which leader it heard from,
        // and raft-rs would grant votes at once; the old leader may still
        // hold a read lease counted from this replica's acknowledgement. So
        // for one election timeout after start, votes are refused, as if
        // the leader had just been heard (transfer campaigns excepted).
        let vote = matches!(
            msg.get_msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
        ) && msg.get_context() != raft::CAMPAIGN_TRANSFER;
        if vote
            && self.config.lease_reads
            && self.started.elapsed()
                < self.tick * u32::try_from(self.config.election_ticks).unwrap_or(u32::MAX)
        {
            debug!(
                region_id = env.region_id,
                "vote request dropped: this store started less than an election timeout ago"
            );
            return;
        }
        // Heartbeats of the current term keep a sleeping region asleep;
        // anything else means there is work.
        let quiet = matches!(
            msg.get_msg_type(),
            MessageType::MsgHeartbeat | MessageType::MsgHeartbeatResponse
        ) && msg.term == peer.raft.term();
        if !quiet && peer.hibernation.asleep {
            peer.wake();
        }
        if let Err(e) = peer.raft.step(msg) {
            debug!(region_id = env.region_id, error = %e, "raft step failed");
        }
    }
}
