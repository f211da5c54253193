//! Client sessions: the per-region table that makes a raw write take effect
//! exactly once (the Raft dissertation's §6.3, with one write in flight per
//! session).
//!
//! A client write carries `(session, sequence)`. Each region keeps, per
//! session, the highest sequence applied here and what of it applied: the
//! key span of each piece (a write spanning regions applies piece by piece)
//! with its answer. A repeat inside a recorded span is answered from the
//! record and changes nothing; a lower sequence is a leftover of a write the
//! client has finished with, and is refused.
//!
//! The table is replicated state. It changes only when entries apply, is
//! written in the same RocksDB batch as the data and the apply state, is
//! copied to both sides of a split, merged on a merge and carried by
//! snapshots. Time comes from the log, never from the local clock: every
//! command carries its leader's stamp (raised to the start of each session
//! in it), the region clock is the largest stamp applied, and the policy
//! (idle timeout, table size) travels with the command as well, so every
//! replica keeps and forgets the same sessions.
//!
//! Forgetting is the delicate part. A session the table does not hold is
//! taken for new only if it started at or after the table's floor. The
//! floor rises to `clock - idle` as the clock moves, and past the last
//! activity of every session evicted from a full table. A session's stamps
//! are never below its start, so a session the table forgot always started
//! below the floor: a late copy of one of its writes is refused as
//! `SessionExpired`, never applied a second time.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use nokv_consensus::engine::cf;
use nokv_proto::errorpb::{self, region_error::Kind, RegionError};
use nokv_proto::raft_cmdpb::{RaftCmdRequest, Response};
use nokv_proto::raft_serverpb::{
    AppliedWrite, SessionChange, SessionDelta, SessionRecord, SessionTableState,
};
use prost::Message as _;
use rocksdb::{Direction, IteratorMode, ReadOptions, WriteBatch, DB};

use crate::engine::CF_SESSION;
use crate::Result;
use nokv_proto::poison::MutexExt;

/// Idle time after which a region forgets a session, when a command does
/// not say (entries proposed before sessions existed).
pub const DEFAULT_IDLE_MS: u64 = 600_000;
/// Sessions one region keeps, when a command does not say.
pub const DEFAULT_MAX_SESSIONS: usize = 4096;
/// Apply batches whose session changes are kept as deltas before they are
/// folded into per-session records. Each batch writes one key instead of
/// one per write; a fold writes each session changed since the last one.
const FOLD_AFTER_DELTAS: u64 = 64;

/// The start (unix ms) of a session: its id is a TSO timestamp.
pub fn session_start_ms(session_id: u64) -> u64 {
    crate::mvcc::physical_ms(session_id)
}

/// How long sessions live and how many a region keeps, as the proposing
/// leader was configured; carried in each command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Forget a session idle this long (ms of region clock).
    pub idle_ms: u64,
    /// Keep at most this many sessions (at least one).
    pub max_sessions: usize,
}

impl SessionPolicy {
    /// The policy a command carries (defaults where it carries none).
    pub fn of(cmd: &RaftCmdRequest) -> Self {
        SessionPolicy {
            idle_ms: if cmd.session_idle_ms == 0 {
                DEFAULT_IDLE_MS
            } else {
                cmd.session_idle_ms
            },
            max_sessions: if cmd.max_sessions == 0 {
                DEFAULT_MAX_SESSIONS
            } else {
                cmd.max_sessions as usize
            },
        }
    }
}

/// A half-open key span `[start, end)`; an empty `end` is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpan {
    /// Inclusive lower bound.
    pub start: Vec<u8>,
    /// Exclusive upper bound, empty = unbounded.
    pub end: Vec<u8>,
}

impl KeySpan {
    /// The span of exactly `key`.
    pub fn point(key: &[u8]) -> Self {
        let mut end = Vec::with_capacity(key.len() + 1);
        end.extend_from_slice(key);
        end.push(0);
        KeySpan {
            start: key.to_vec(),
            end,
        }
    }

    /// Whether `key` lies in the span.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && (self.end.is_empty() || key < self.end.as_slice())
    }

    /// Whether `other` lies entirely in the span.
    pub fn contains(&self, other: &KeySpan) -> bool {
        other.start >= self.start
            && (self.end.is_empty() || (!other.end.is_empty() && other.end <= self.end))
    }

    /// Grows the span to cover `other` too.
    pub fn cover(&mut self, other: &KeySpan) {
        if other.start < self.start {
            self.start = other.start.clone();
        }
        if !self.end.is_empty() && (other.end.is_empty() || other.end > self.end) {
            self.end = other.end.clone();
        }
    }

    fn is_point(&self) -> bool {
        self.end.len() == self.start.len() + 1
            && self.end.starts_with(&self.start)
            && self.end.last() == Some(&0)
    }

    /// The parts of the span no span of `covered` includes, in key order.
    pub fn minus(&self, covered: &[KeySpan]) -> Vec<KeySpan> {
        let mut cuts: Vec<&KeySpan> = covered.iter().collect();
        cuts.sort_by(|a, b| a.start.cmp(&b.start));
        let mut out = Vec::new();
        let mut cursor = self.start.clone();
        for c in cuts {
            let reaches_cursor = c.end.is_empty() || c.end > cursor;
            if !reaches_cursor {
                continue;
            }
            if c.start > cursor {
                let stop = if !self.end.is_empty() && c.start >= self.end {
                    self.end.clone()
                } else {
                    c.start.clone()
                };
                if stop > cursor {
                    out.push(KeySpan {
                        start: cursor.clone(),
                        end: stop,
                    });
                }
            }
            if c.end.is_empty() {
                return out;
            }
            if c.end > cursor {
                cursor = c.end.clone();
            }
            if !self.end.is_empty() && cursor >= self.end {
                return out;
            }
        }
        if self.end.is_empty() || cursor < self.end {
            out.push(KeySpan {
                start: cursor,
                end: self.end.clone(),
            });
        }
        out
    }
}

/// One piece of a write that applied in this region.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// The keys the piece covered.
    pub span: KeySpan,
    /// Its answer; empty when every request's answer was empty.
    pub responses: Vec<Response>,
}

#[derive(Debug, Clone, PartialEq)]
struct Session {
    last_active_ms: u64,
    sequence: u64,
    pieces: Vec<Piece>,
}

/// What the table says of a write arriving with `(session, sequence)`.
#[derive(Debug)]
pub enum Check<'a> {
    /// Nothing of it applied here: apply it.
    Fresh,
    /// Its sequence applied here before, these pieces of it: apply only
    /// what they do not cover.
    Seen(&'a [Piece]),
    /// Refused (a leftover, or the session may have been forgotten).
    Refused(RegionError),
}

/// The client sessions of one region replica.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionTable {
    clock_ms: u64,
    floor_ms: u64,
    sessions: HashMap<u64, Session>,
    /// `(last_active_ms, session)`, least recently active first.
    by_activity: BTreeSet<(u64, u64)>,
    /// Sessions changed or removed since the last write to RocksDB.
    dirty: BTreeSet<u64>,
    state_dirty: bool,
    /// How the table is on disk (not replicated state: replicas fold at
    /// different batches, and read back the same table).
    disk: DiskLayout,
}

/// Deltas written since the last fold, and the sessions they touch.
#[derive(Debug, Clone, Default)]
struct DiskLayout {
    /// Number the next delta key gets.
    next_delta: u64,
    /// Deltas on disk.
    deltas: u64,
    /// Sessions changed (or removed) by those deltas.
    unfolded: BTreeSet<u64>,
}

impl PartialEq for DiskLayout {
    /// The layout on disk is no part of the table's meaning.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// A replica's session table, shared by the raftstore (admin entries,
/// snapshots, status) and the apply thread that applies the region's data
/// entries; the two never apply the same region at once, so the lock is
/// uncontended.
#[derive(Debug, Clone, Default)]
pub struct SharedSessions(Arc<Mutex<SessionTable>>);

impl SharedSessions {
    /// Shares `table`.
    pub fn new(table: SessionTable) -> Self {
        SharedSessions(Arc::new(Mutex::new(table)))
    }

    /// The table. A panic while it was held leaves it as the panicking
    /// apply left it; the process stops on such a failure anyway.
    pub fn lock(&self) -> MutexGuard<'_, SessionTable> {
        self.0.lock_unpoisoned()
    }
}

/// The refusal of a write whose session may have been forgotten.
pub fn session_expired(session_id: u64) -> RegionError {
    RegionError {
        message: format!(
            "session {session_id} is unknown to the region and may have expired; open a new session"
        ),
        kind: Some(Kind::SessionExpired(errorpb::SessionExpired { session_id })),
    }
}

/// The refusal of a leftover copy of an earlier write of a session.
pub fn sequence_stale(session_id: u64, sequence: u64, applied: u64) -> RegionError {
    RegionError {
        message: format!(
            "session {session_id}: sequence {sequence} is behind {applied}, already applied here"
        ),
        kind: Some(Kind::SequenceStale(errorpb::SequenceStale {
            session_id,
            sequence,
            applied_sequence: applied,
        })),
    }
}

impl SessionTable {
    /// Sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// No session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The region clock: the largest command stamp applied (unix ms).
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Sessions started before this (unix ms) and not held are expired.
    pub fn floor_ms(&self) -> u64 {
        self.floor_ms
    }

    /// Moves the region clock to a command's stamp and forgets sessions
    /// idle longer than the command's policy allows.
    pub fn advance(&mut self, stamp_ms: u64, policy: SessionPolicy) {
        if stamp_ms > self.clock_ms {
            self.clock_ms = stamp_ms;
            self.state_dirty = true;
        }
        self.raise_floor(self.clock_ms.saturating_sub(policy.idle_ms));
    }

    fn raise_floor(&mut self, floor_ms: u64) {
        if floor_ms <= self.floor_ms {
            return;
        }
        self.floor_ms = floor_ms;
        self.state_dirty = true;
        while let Some(&(active, id)) = self.by_activity.first() {
            if active >= floor_ms {
                break;
            }
            self.remove(id);
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(s) = self.sessions.remove(&id) {
            self.by_activity.remove(&(s.last_active_ms, id));
            self.dirty.insert(id);
        }
    }

    /// What to do with a write of `session_id` at `sequence`.
    pub fn check(&self, session_id: u64, sequence: u64) -> Check<'_> {
        match self.sessions.get(&session_id) {
            Some(s) if sequence < s.sequence => {
                Check::Refused(sequence_stale(session_id, sequence, s.sequence))
            }
            Some(s) if sequence == s.sequence => Check::Seen(&s.pieces),
            Some(_) => Check::Fresh,
            None if session_start_ms(session_id) < self.floor_ms => {
                Check::Refused(session_expired(session_id))
            }
            None => Check::Fresh,
        }
    }

    /// Records that a piece of `(session_id, sequence)` covering `span`
    /// applied with `responses`, then evicts the least recently active
    /// other sessions while the table holds more than the policy allows.
    pub fn record(
        &mut self,
        session_id: u64,
        sequence: u64,
        span: KeySpan,
        responses: Vec<Response>,
        policy: SessionPolicy,
    ) {
        let responses = if responses.iter().all(|r| *r == Response::default()) {
            Vec::new()
        } else {
            responses
        };
        let piece = Piece { span, responses };
        let now = self.clock_ms;
        match self.sessions.get_mut(&session_id) {
            Some(s) => {
                self.by_activity.remove(&(s.last_active_ms, session_id));
                s.last_active_ms = s.last_active_ms.max(now);
                if sequence > s.sequence {
                    s.sequence = sequence;
                    s.pieces = vec![piece];
                } else {
                    // A later piece of the same write: it supersedes the
                    // pieces inside it.
                    s.pieces.retain(|p| !piece.span.contains(&p.span));
                    s.pieces.push(piece);
                }
                self.by_activity.insert((s.last_active_ms, session_id));
            }
            None => {
                self.sessions.insert(
                    session_id,
                    Session {
                        last_active_ms: now,
                        sequence,
                        pieces: vec![piece],
                    },
                );
                self.by_activity.insert((now, session_id));
            }
        }
        self.dirty.insert(session_id);
        self.evict_over(policy.max_sessions.max(1), session_id);
    }

    /// Evicts the least recently active sessions other than `keep` until at
    /// most `max` are held, raising the floor past each so none of them is
    /// ever taken for new again.
    fn evict_over(&mut self, max: usize, keep: u64) {
        while self.sessions.len() > max {
            let victim = self.by_activity.iter().find(|(_, id)| *id != keep).copied();
            let Some((active, id)) = victim else {
                return;
            };
            self.remove(id);
            crate::metrics::SESSION_EVICTIONS.inc();
            if active + 1 > self.floor_ms {
                self.floor_ms = active + 1;
                self.state_dirty = true;
            }
        }
    }

    /// Takes in the sessions of a merge source's table: for each session the
    /// higher sequence wins, and pieces of the same sequence add up; the
    /// clock and floor are the higher of the two.
    pub fn absorb(&mut self, other: &SessionTable) {
        self.clock_ms = self.clock_ms.max(other.clock_ms);
        self.state_dirty = true;
        for (&id, theirs) in &other.sessions {
            match self.sessions.get_mut(&id) {
                None => {
                    self.sessions.insert(id, theirs.clone());
                    self.by_activity.insert((theirs.last_active_ms, id));
                }
                Some(ours) => {
                    self.by_activity.remove(&(ours.last_active_ms, id));
                    ours.last_active_ms = ours.last_active_ms.max(theirs.last_active_ms);
                    if theirs.sequence > ours.sequence {
                        ours.sequence = theirs.sequence;
                        ours.pieces = theirs.pieces.clone();
                    } else if theirs.sequence == ours.sequence {
                        for p in &theirs.pieces {
                            if !ours.pieces.contains(p) {
                                ours.pieces.push(p.clone());
                            }
                        }
                    }
                    self.by_activity.insert((ours.last_active_ms, id));
                }
            }
            self.dirty.insert(id);
        }
        let floor = self.floor_ms.max(other.floor_ms);
        self.floor_ms = 0;
        self.raise_floor(floor);
    }

    /// Writes what changed since the last call into `wb`: one delta key,
    /// or, every [`FOLD_AFTER_DELTAS`] batches, the state and the record of
    /// every session changed since the last fold, with the deltas deleted.
    pub fn write_changes(&mut self, db: &DB, region_id: u64, wb: &mut WriteBatch) -> Result<()> {
        if self.dirty.is_empty() && !self.state_dirty {
            return Ok(());
        }
        let handle = cf(db, CF_SESSION)?;
        self.state_dirty = false;
        let dirty = std::mem::take(&mut self.dirty);
        if self.disk.deltas + 1 < FOLD_AFTER_DELTAS {
            let delta = SessionDelta {
                state: Some(self.state()),
                changes: dirty
                    .iter()
                    .map(|id| SessionChange {
                        session_id: *id,
                        record: self.sessions.get(id).map(record_of),
                    })
                    .collect(),
            };
            wb.put_cf(
                handle,
                delta_key(region_id, self.disk.next_delta),
                delta.encode_to_vec(),
            );
            self.disk.next_delta += 1;
            self.disk.deltas += 1;
            self.disk.unfolded.extend(dirty);
            return Ok(());
        }
        let mut changed = std::mem::take(&mut self.disk.unfolded);
        changed.extend(dirty);
        wb.put_cf(handle, state_key(region_id), self.state().encode_to_vec());
        for id in changed {
            match self.sessions.get(&id) {
                Some(s) => wb.put_cf(
                    handle,
                    session_key(region_id, id),
                    record_of(s).encode_to_vec(),
                ),
                None => wb.delete_cf(handle, session_key(region_id, id)),
            }
        }
        if self.disk.deltas > 0 {
            wb.delete_range_cf(
                handle,
                delta_key(region_id, 0),
                delta_key(region_id, self.disk.next_delta),
            );
        }
        self.disk = DiskLayout {
            next_delta: self.disk.next_delta,
            ..DiskLayout::default()
        };
        Ok(())
    }

    /// Replaces whatever `region_id` has on disk with this whole table,
    /// into `wb`. A split gives each new region a copy of its parent's
    /// table this way: what a table records holds for keys, not regions.
    pub fn write_all(&mut self, db: &DB, region_id: u64, wb: &mut WriteBatch) -> Result<()> {
        clear(db, region_id, wb)?;
        let handle = cf(db, CF_SESSION)?;
        wb.put_cf(handle, state_key(region_id), self.state().encode_to_vec());
        for (id, s) in &self.sessions {
            wb.put_cf(
                handle,
                session_key(region_id, *id),
                record_of(s).encode_to_vec(),
            );
        }
        self.dirty.clear();
        self.state_dirty = false;
        self.disk = DiskLayout::default();
        Ok(())
    }

    fn state(&self) -> SessionTableState {
        SessionTableState {
            clock_ms: self.clock_ms,
            floor_ms: self.floor_ms,
        }
    }

    /// Reads the table of `region_id` (empty if it has none): the state and
    /// records, then the deltas in order.
    pub fn load(db: &DB, region_id: u64) -> Result<SessionTable> {
        let handle = cf(db, CF_SESSION)?;
        let (lower, upper) = key_range(region_id);
        let mut opts = ReadOptions::default();
        opts.set_iterate_upper_bound(upper);
        let mut table = SessionTable::default();
        for item in db.iterator_cf_opt(handle, opts, IteratorMode::From(&lower, Direction::Forward))
        {
            let (k, v) = item?;
            match parse_key(region_id, &k) {
                Some(Key::State) => table.set_state(SessionTableState::decode(v.as_ref())?),
                Some(Key::Session(id)) => {
                    table.put_session(id, session_of(SessionRecord::decode(v.as_ref())?))
                }
                Some(Key::Delta(n)) => {
                    let delta = SessionDelta::decode(v.as_ref())?;
                    if let Some(state) = delta.state {
                        table.set_state(state);
                    }
                    for c in delta.changes {
                        table.drop_session(c.session_id);
                        if let Some(r) = c.record {
                            table.put_session(c.session_id, session_of(r));
                        }
                        table.disk.unfolded.insert(c.session_id);
                    }
                    table.disk.deltas += 1;
                    table.disk.next_delta = n + 1;
                }
                None => {}
            }
        }
        Ok(table)
    }

    fn set_state(&mut self, state: SessionTableState) {
        self.clock_ms = state.clock_ms;
        self.floor_ms = state.floor_ms;
    }

    fn put_session(&mut self, id: u64, s: Session) {
        self.by_activity.insert((s.last_active_ms, id));
        self.sessions.insert(id, s);
    }

    fn drop_session(&mut self, id: u64) {
        if let Some(s) = self.sessions.remove(&id) {
            self.by_activity.remove(&(s.last_active_ms, id));
        }
    }
}

/// Deletes everything `region_id` has in the session column family, into
/// `wb`.
pub fn clear(db: &DB, region_id: u64, wb: &mut WriteBatch) -> Result<()> {
    let (lower, upper) = key_range(region_id);
    wb.delete_range_cf(cf(db, CF_SESSION)?, lower, upper);
    Ok(())
}

/// The keys of `region_id` in the session column family: `[lower, upper)`.
pub fn key_range(region_id: u64) -> (Vec<u8>, Vec<u8>) {
    let lower = region_id.to_be_bytes().to_vec();
    let mut upper = lower.clone();
    upper.extend_from_slice(&[0xff; 9]);
    (lower, upper)
}

const STATE: u8 = 0x00;
const SESSION: u8 = 0x01;
const DELTA: u8 = 0x02;

fn state_key(region_id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&region_id.to_be_bytes());
    k[8] = STATE;
    k
}

fn session_key(region_id: u64, session_id: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&region_id.to_be_bytes());
    k[8] = SESSION;
    k[9..].copy_from_slice(&session_id.to_be_bytes());
    k
}

fn delta_key(region_id: u64, n: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&region_id.to_be_bytes());
    k[8] = DELTA;
    k[9..].copy_from_slice(&n.to_be_bytes());
    k
}

/// What a key of a region's part of the session column family holds.
enum Key {
    State,
    Session(u64),
    Delta(u64),
}

fn parse_key(region_id: u64, k: &[u8]) -> Option<Key> {
    if k.get(..8)? != region_id.to_be_bytes() {
        return None;
    }
    let tail = |k: &[u8]| -> Option<u64> {
        let b: [u8; 8] = k.get(9..17)?.try_into().ok()?;
        (k.len() == 17).then_some(u64::from_be_bytes(b))
    };
    match (k.get(8)?, k.len()) {
        (&STATE, 9) => Some(Key::State),
        (&SESSION, _) => tail(k).map(Key::Session),
        (&DELTA, _) => tail(k).map(Key::Delta),
        _ => None,
    }
}

fn record_of(s: &Session) -> SessionRecord {
    SessionRecord {
        last_active_ms: s.last_active_ms,
        sequence: s.sequence,
        writes: s
            .pieces
            .iter()
            .map(|p| {
                let point = p.span.is_point();
                AppliedWrite {
                    start: p.span.start.clone(),
                    end: if point {
                        Vec::new()
                    } else {
                        p.span.end.clone()
                    },
                    point,
                    responses: p.responses.clone(),
                }
            })
            .collect(),
    }
}

fn session_of(r: SessionRecord) -> Session {
    Session {
        last_active_ms: r.last_active_ms,
        sequence: r.sequence,
        pieces: r
            .writes
            .into_iter()
            .map(|w| Piece {
                span: if w.point {
                    KeySpan::point(&w.start)
                } else {
                    KeySpan {
                        start: w.start,
                        end: w.end,
                    }
                },
                responses: w.responses,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;
