//! Applying committed entries. One loop ([`apply_entries`]) walks a run of
//! a region's committed entries in log order for both appliers: the apply
//! pool, which applies data entries off the raftstore thread, and the
//! raftstore itself, which applies admin entries (and what waits behind
//! them). Each run is one RocksDB write holding the data, the session
//! table's changes and the new `ApplyState`, so a crash never separates
//! applied data from its index; the apply state is put into that write in
//! one place, [`ApplyTarget::persist`].
//!
//! # Layout
//! - [`data`]: data commands (raw writes, compare-and-swap, transactional
//!   commands), each client write checked against its session.
//! - [`pool`]: the apply threads and their tasks.
//! - `replica`: a replica applying on the raftstore thread, admin commands
//!   included.
//! - `dispatch`: which of a replica's committed entries go to the pool and
//!   which apply here, and taking back what the pool applied.

pub mod data;
pub(crate) mod dispatch;
pub mod pool;
pub(crate) mod replica;

use nokv_consensus::metrics::RAFT_APPLIED_ENTRIES;
use nokv_consensus::peer::ProposalCallback;
use nokv_proto::raft_cmdpb::{RaftCmdRequest, RaftCmdResponse};
use nokv_proto::raft_serverpb::ApplyState;
use prost::Message as _;
use protobuf::Message as _;
use raft::prelude::{ConfChange, Entry, EntryType};
use rocksdb::{WriteBatch, DB};

use crate::raftstore::msg::Answers;
use crate::{Error, Result};

/// An admin entry: it changes the region itself (one value per entry,
/// moved once).
#[allow(clippy::large_enum_variant)]
pub(crate) enum AdminEntry {
    /// An admin command (split, merge step, log compaction).
    Command(RaftCmdRequest),
    /// A membership change.
    ConfChange(ConfChange),
    /// A joint membership change (not supported yet).
    ConfChangeV2,
}

/// What one committed entry carries (one value per entry, moved once).
#[allow(clippy::large_enum_variant)]
enum Committed {
    /// The empty entry a new leader commits.
    Empty,
    /// Data writes.
    Data(RaftCmdRequest),
    /// Something that changes the region.
    Admin(AdminEntry),
}

impl Committed {
    fn of(e: &Entry) -> Result<Committed> {
        Ok(match e.get_entry_type() {
            EntryType::EntryNormal if e.data.is_empty() => Committed::Empty,
            EntryType::EntryNormal => {
                let cmd = RaftCmdRequest::decode(e.data.as_ref())?;
                if cmd.admin_request.is_some() {
                    Committed::Admin(AdminEntry::Command(cmd))
                } else {
                    Committed::Data(cmd)
                }
            }
            EntryType::EntryConfChange => Committed::Admin(AdminEntry::ConfChange(
                ConfChange::parse_from_bytes(&e.data)
                    .map_err(|err| Error::Corrupted(format!("conf change: {err}")))?,
            )),
            EntryType::EntryConfChangeV2 => Committed::Admin(AdminEntry::ConfChangeV2),
        })
    }
}

/// Where a run of committed entries applies: what the loop needs of an
/// applier. Implemented by the apply pool's task (data entries only) and
/// by a replica on the raftstore thread (everything).
pub(crate) trait ApplyTarget {
    /// The apply state as of the entries applied so far.
    fn apply_state(&self) -> &ApplyState;
    /// Records that entry `(index, term)` applied.
    fn set_applied(&mut self, index: u64, term: u64);
    /// Applies a data command at the current position into `wb`.
    fn apply_data(
        &mut self,
        db: &DB,
        cmd: RaftCmdRequest,
        wb: &mut WriteBatch,
    ) -> Result<RaftCmdResponse>;
    /// Applies the admin entry at `index` into `wb`. `None`: it cannot
    /// apply yet (a CommitMerge waiting for its source replica) and
    /// nothing changed; it and the entries after it wait.
    fn apply_admin(
        &mut self,
        db: &DB,
        entry: AdminEntry,
        index: u64,
        wb: &mut WriteBatch,
    ) -> Result<Option<RaftCmdResponse>>;
    /// The proposer on this replica of entry `(index, term)`, if any.
    fn proposer(&mut self, index: u64, term: u64) -> Option<ProposalCallback<RaftCmdResponse>>;
    /// Puts the apply state and the session table's changes into `wb`:
    /// the last thing before the run's write.
    fn persist(&mut self, db: &DB, wb: &mut WriteBatch) -> Result<()>;
}

/// What a run of entries came to.
pub(crate) struct Applied {
    /// Proposers to answer, now that the write is done.
    pub answers: Answers,
    /// The entry that could not apply yet and every entry after it.
    pub waiting: Vec<Entry>,
}

/// Applies `entries` (in log order; those already applied are skipped) to
/// `target` and writes everything they changed in one RocksDB write.
pub(crate) fn apply_entries<T: ApplyTarget>(
    db: &DB,
    target: &mut T,
    entries: Vec<Entry>,
) -> Result<Applied> {
    let mut wb = WriteBatch::default();
    let mut answers = Vec::new();
    let mut waiting = Vec::new();
    let mut entries = entries.into_iter();
    while let Some(e) = entries.next() {
        if e.index <= target.apply_state().applied_index {
            continue;
        }
        let resp = match Committed::of(&e)? {
            Committed::Empty => RaftCmdResponse::default(),
            Committed::Data(cmd) => target.apply_data(db, cmd, &mut wb)?,
            Committed::Admin(admin) => match target.apply_admin(db, admin, e.index, &mut wb)? {
                Some(resp) => resp,
                None => {
                    waiting = std::iter::once(e).chain(entries).collect();
                    break;
                }
            },
        };
        target.set_applied(e.index, e.term);
        RAFT_APPLIED_ENTRIES.inc();
        if let Some(cb) = target.proposer(e.index, e.term) {
            answers.push((cb, resp));
        }
    }
    target.persist(db, &mut wb)?;
    db.write(wb)?;
    Ok(Applied { answers, waiting })
}
