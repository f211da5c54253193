//! Hibernation across the store: leaders ask idle followers to sleep,
//! followers answer, and stores ping each other so a sleeping follower
//! notices a dead leader's store. The replica's own sleep state is
//! `peer::hibernation`.

use crate::raftstore::peer::Peer;
use crate::raftstore::store::Raftstore;
use nokv_proto::metapb::Peer as PeerMeta;
use nokv_proto::metapb::{self};
use nokv_proto::raft_serverpb::{HibernateSignal, RaftMessage};
use tracing::debug;

impl Raftstore {
    /// Asks the followers of idle leader `region_id` to hibernate.
    pub(in crate::raftstore) fn request_hibernation(&mut self, region_id: u64) {
        let Some(p) = self.peers.get(&region_id) else {
            return;
        };
        let (index, term) = p.last_log();
        for other in p.region.peers.iter().filter(|o| o.id != p.meta.id) {
            let env = signal(p, *other, HibernateSignal::HibernateRequest, (index, term));
            self.transport.send(other.store_id, env);
        }
    }

    /// A follower asked to sleep, or a leader hearing a follower agreed.
    pub(in crate::raftstore) fn on_hibernate_signal(&mut self, env: &RaftMessage) {
        let (Some(from), Some(to)) = (env.from_peer, env.to_peer) else {
            return;
        };
        let Some(p) = self.peers.get_mut(&env.region_id) else {
            return;
        };
        if p.meta.id != to.id || !self.config.hibernate_regions {
            return;
        }
        let (index, term) = (env.hibernate_index, env.hibernate_term);
        match env.hibernate() {
            HibernateSignal::HibernateRequest => {
                if !p.may_sleep_for(from.id, term, index, term) {
                    return;
                }
                p.hibernation.asleep = true;
                let ack = signal(p, from, HibernateSignal::HibernateAck, (index, term));
                self.transport.send(from.store_id, ack);
            }
            HibernateSignal::HibernateAck => {
                if !p.idle_leader() || p.last_log() != (index, term) || p.raft.term() != term {
                    return;
                }
                if p.hibernation.acked_at != (term, index) {
                    p.hibernation.acks.clear();
                    p.hibernation.acked_at = (term, index);
                }
                p.hibernation.acks.insert(from.id);
                let all = p
                    .region
                    .peers
                    .iter()
                    .filter(|o| o.id != p.meta.id)
                    .all(|o| p.hibernation.acks.contains(&o.id));
                if all {
                    p.hibernation.asleep = true;
                    debug!(region_id = env.region_id, "region hibernates");
                }
            }
            HibernateSignal::HibernateNone => {}
        }
    }

    /// Tells every store this one shares a region with that it is alive.
    pub(in crate::raftstore) fn ping_stores(&self) {
        let mut stores: std::collections::HashSet<u64> = std::collections::HashSet::new();
        for p in self.peers.values() {
            stores.extend(p.region.peers.iter().map(|o| o.store_id));
        }
        stores.remove(&self.store_id);
        for store in stores {
            let ping = RaftMessage {
                from_peer: Some(metapb::Peer {
                    id: 0,
                    store_id: self.store_id,
                    role: 0,
                }),
                to_peer: Some(metapb::Peer {
                    id: 0,
                    store_id: store,
                    role: 0,
                }),
                store_ping: true,
                ..Default::default()
            };
            self.transport.send(store, ping);
        }
    }
}

/// A hibernation message from `p` to `to` about the log ending at
/// `(index, term)`.
fn signal(p: &Peer, to: PeerMeta, kind: HibernateSignal, (index, term): (u64, u64)) -> RaftMessage {
    RaftMessage {
        region_id: p.region.id,
        from_peer: Some(p.meta),
        to_peer: Some(to),
        region_epoch: p.region.epoch,
        hibernate: kind as i32,
        hibernate_index: index,
        hibernate_term: term,
        ..Default::default()
    }
}
