//! Replica lifecycle on this store: created from a raft message or by a
//! split, told it was removed (tombstone), destroyed.

use crate::raftstore::peer::Peer;
use crate::raftstore::snapshot::clear_range;
use crate::raftstore::store::Raftstore;
use crate::region::overlaps;
use crate::{Error, Result};
use nokv_consensus::engine::{cf, CF_META};
use nokv_consensus::keys::{apply_state_key, region_state_key};
use nokv_consensus::peer::ProposeError;
use nokv_proto::metapb::{self, Region};
use nokv_proto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use prost::Message as _;
use raft::prelude::{Message, MessageType};
use rocksdb::{WriteBatch, WriteOptions};
use tracing::{debug, info, warn};

impl Raftstore {
    /// A member told this replica it was removed: destroy it if the sender's
    /// membership is newer than ours.
    pub(in crate::raftstore) fn on_tombstone(&mut self, env: &RaftMessage, to_peer: u64) {
        let Some(peer) = self.peers.get(&env.region_id) else {
            return;
        };
        let theirs = env.region_epoch.map(|e| e.conf_ver).unwrap_or(0);
        let ours = peer.region.epoch.map(|e| e.conf_ver).unwrap_or(0);
        if peer.meta.id != to_peer || (peer.is_initialized() && theirs <= ours) {
            return;
        }
        info!(
            region_id = env.region_id,
            peer_id = to_peer,
            "told by a member that this replica was removed"
        );
        if let Err(e) = self.destroy_peer(env.region_id) {
            warn!(region_id = env.region_id, error = %e, "destroying a removed replica failed");
        }
    }

    /// Creates an uninitialized replica for a region this store has never
    /// seen, when a leader reaches out to it. Returns whether it exists now.
    pub(in crate::raftstore) fn maybe_create_peer(
        &mut self,
        env: &RaftMessage,
        msg: &Message,
    ) -> bool {
        if !matches!(
            msg.get_msg_type(),
            MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
        ) {
            return false;
        }
        let Some(to) = &env.to_peer else {
            return false;
        };
        // A tombstone means this replica was removed: never resurrect it
        // from an old message.
        match self.load_region_state(env.region_id) {
            Ok(Some(local)) if local.state() == PeerState::Tombstone => {
                let local_epoch = local.region.and_then(|r| r.epoch).unwrap_or_default();
                let msg_epoch = env.region_epoch.unwrap_or_default();
                if msg_epoch.conf_ver <= local_epoch.conf_ver {
                    debug!(
                        region_id = env.region_id,
                        "message for a destroyed peer dropped"
                    );
                    return false;
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(region_id = env.region_id, error = %e, "cannot read region state");
                return false;
            }
        }
        let probe = Region {
            id: env.region_id,
            start_key: env.start_key.clone(),
            end_key: env.end_key.clone(),
            ..Default::default()
        };
        if self
            .peers
            .values()
            .any(|p| p.is_initialized() && overlaps(&p.region, &probe))
        {
            debug!(
                region_id = env.region_id,
                "new peer would overlap an existing region; dropped"
            );
            return false;
        }
        let region = Region {
            id: env.region_id,
            ..Default::default()
        };
        match Peer::open(
            self.db.clone(),
            self.store_id,
            region,
            to.id,
            &self.config,
            self.snapshots.clone(),
        ) {
            Ok(p) => {
                info!(
                    region_id = env.region_id,
                    peer_id = to.id,
                    "created peer from raft message"
                );
                self.peers.insert(env.region_id, p);
                true
            }
            Err(e) => {
                warn!(region_id = env.region_id, error = %e, "failed to create peer");
                false
            }
        }
    }

    pub(in crate::raftstore) fn load_region_state(
        &self,
        region_id: u64,
    ) -> Result<Option<RegionLocalState>> {
        let b = self
            .db
            .get_cf(cf(&self.db, CF_META)?, region_state_key(region_id))?;
        Ok(b.map(|b| RegionLocalState::decode(b.as_slice()))
            .transpose()?)
    }

    /// Opens this store's replicas of the regions a split of `parent` just
    /// created. When the parent's replica here leads, the new replicas
    /// campaign at once so the new regions serve without an election
    /// timeout.
    pub(in crate::raftstore) fn open_split_regions(&mut self, parent: u64) -> Result<()> {
        let Some(p) = self.peers.get_mut(&parent) else {
            return Ok(());
        };
        let regions: Vec<Region> = p.pending_splits.drain(..).collect();
        let lead = p.raft.is_leader();
        for region in regions {
            match self.peers.get(&region.id) {
                Some(existing) if existing.is_initialized() => {
                    warn!(
                        region_id = region.id,
                        "split target already initialized here; kept"
                    );
                    continue;
                }
                Some(_) => {
                    // An uninitialized replica created by an early message
                    // from the new region's leader: the split supersedes it.
                    self.peers.remove(&region.id);
                }
                None => {}
            }
            let Some(me) = region.peers.iter().find(|p| p.store_id == self.store_id) else {
                continue;
            };
            let mut peer = Peer::open(
                self.db.clone(),
                self.store_id,
                region.clone(),
                me.id,
                &self.config,
                self.snapshots.clone(),
            )?;
            if lead && me.role() == metapb::PeerRole::Voter {
                peer.raft.campaign()?;
            }
            info!(
                region_id = region.id,
                peer_id = me.id,
                "replica created by split"
            );
            self.peers.insert(region.id, peer);
        }
        Ok(())
    }

    pub(in crate::raftstore) fn destroy_peer(&mut self, region_id: u64) -> Result<()> {
        if let Some(p) = self.peers.get_mut(&region_id) {
            if p.applying.tasks > 0 {
                // The pool still writes into the range: destroyed when it
                // reports back.
                p.pending_destroy = true;
                return Ok(());
            }
        }
        let Some(mut peer) = self.peers.remove(&region_id) else {
            return Ok(());
        };
        self.close_mailbox(region_id);
        let mut wb = WriteBatch::default();
        peer.raft.clear_log(&mut wb)?;
        crate::raftstore::session::clear(&self.db, region_id, &mut wb)?;
        let still_owned = self
            .peers
            .values()
            .any(|p| p.is_initialized() && overlaps(&p.region, &peer.region));
        if !still_owned {
            clear_range(
                &self.db,
                &peer.region.start_key,
                &peer.region.end_key,
                &mut wb,
            )?;
        }
        peer.persist_region(&self.db, PeerState::Tombstone, &mut wb)?;
        wb.delete_cf(cf(&self.db, CF_META)?, apply_state_key(region_id));
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts).map_err(Error::from)?;
        peer.raft
            .fail_all(ProposeError::Dropped("peer removed".into()));
        self.counters.flows.forget(region_id);
        info!(region_id, peer_id = peer.meta.id, "peer destroyed");
        Ok(())
    }
}
