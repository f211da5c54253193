//! Client sessions: how the SDK makes a raw write take effect exactly once.
//!
//! Every raw write (put, batch put, delete, delete range, compare-and-swap)
//! runs on a *lane*: a session id from the coordinator's TSO and the next
//! sequence number in it. The write keeps its `(session, sequence)` through
//! every retry and every region it spans, so a store that already applied
//! it answers with the recorded result instead of applying it again. A lane
//! carries one write at a time, and a client opens as many lanes as it has
//! writes in flight; lanes are reused, and retired once older than
//! [`RawOptions::session_max_age`] so a region never sees a session it may
//! have forgotten.
//!
//! A write whose outcome can no longer be settled (the deadline passed, or
//! the session was forgotten, after an attempt that may have applied)
//! reports [`crate::Error::Undetermined`], never success or a definite
//! failure.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use nokv_proto::errorpb::{region_error::Kind, RegionError};
use nokv_proto::kvrpcpb::WriteSession;

use crate::tso::TsoBatcher;
use crate::Result;
use nokv_proto::poison::MutexExt;

/// How a [`crate::RawClient`] writes and retries.
#[derive(Debug, Clone)]
pub struct RawOptions {
    /// Writes carry a client session, so a retry never applies twice
    /// (default). Off: every attempt is applied as it arrives, and a
    /// retried write may take effect twice; only for comparisons.
    pub exactly_once: bool,
    /// A session older than this takes no new writes (default 5 minutes,
    /// half the stores' default session idle timeout, so no region ever
    /// forgets a session still in use).
    pub session_max_age: Duration,
    /// Time allowed for one attempt before it is abandoned and retried
    /// (doubling on each retry, never past the call's deadline). `None`:
    /// an attempt may take the whole remaining deadline.
    pub attempt_timeout: Option<Duration>,
}

impl Default for RawOptions {
    fn default() -> Self {
        RawOptions {
            exactly_once: true,
            session_max_age: Duration::from_secs(300),
            attempt_timeout: None,
        }
    }
}

/// A session and the sequence its next write takes.
#[derive(Debug)]
pub(crate) struct Lane {
    session_id: u64,
    next_sequence: u64,
    opened: Instant,
}

/// The lanes of one client: idle ones wait here for the next write.
pub(crate) struct SessionPool {
    tso: TsoBatcher,
    max_age: Duration,
    enabled: bool,
    idle: Mutex<Vec<Lane>>,
}

impl SessionPool {
    /// A pool opening sessions from `tso`.
    pub fn new(tso: TsoBatcher, opts: &RawOptions) -> Self {
        SessionPool {
            tso,
            max_age: opts.session_max_age,
            enabled: opts.exactly_once,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Lane>> {
        self.idle.lock_unpoisoned()
    }

    /// A lane for one write: an idle one young enough, or a new session.
    async fn take(&self) -> Result<Lane> {
        loop {
            let lane = self.idle().pop();
            match lane {
                Some(l) if l.opened.elapsed() < self.max_age => return Ok(l),
                Some(_) => continue,
                None => return self.open().await,
            }
        }
    }

    async fn open(&self) -> Result<Lane> {
        Ok(Lane {
            session_id: self.tso.get_ts().await?,
            next_sequence: 1,
            opened: Instant::now(),
        })
    }

    /// The identity of one write about to be sent: `None` when sessions
    /// are off.
    pub async fn ticket(&self) -> Result<WriteTicket<'_>> {
        let lane = if self.enabled {
            Some(self.take().await?)
        } else {
            None
        };
        Ok(WriteTicket {
            pool: self,
            lane,
            maybe_applied: false,
        })
    }
}

/// One write's identity across its attempts and the regions it spans, and
/// what is known of its outcome. Dropping it hands the lane back, moved
/// on to its next sequence.
pub(crate) struct WriteTicket<'a> {
    pool: &'a SessionPool,
    lane: Option<Lane>,
    /// Some attempt may have applied something (it was sent and no answer
    /// said it did not, or a piece succeeded).
    pub maybe_applied: bool,
}

impl WriteTicket<'_> {
    /// The session pair the write's requests carry.
    pub fn session(&self) -> Option<WriteSession> {
        self.lane.as_ref().map(|l| WriteSession {
            session_id: l.session_id,
            sequence: l.next_sequence,
        })
    }

    /// Moves the write to a new session after a region refused the old
    /// one. Only safe while nothing of the write may have applied under
    /// the old session; the caller checks.
    pub async fn renew(&mut self) -> Result<()> {
        self.lane = Some(self.pool.open().await?);
        Ok(())
    }

    /// Forgets the lane: its session is no longer usable.
    pub fn discard(&mut self) {
        self.lane = None;
    }
}

impl Drop for WriteTicket<'_> {
    fn drop(&mut self) {
        if let Some(mut lane) = self.lane.take() {
            lane.next_sequence += 1;
            self.pool.idle().push(lane);
        }
    }
}

/// Whether an attempt answered with `e` certainly did not apply: the store
/// refused it before proposing, or its entry was refused when applied.
/// Anything else (timeouts, dropped or stale proposals, a vanished
/// replica) may still apply under a later leader.
pub(crate) fn refused_for_certain(e: &RegionError) -> bool {
    matches!(
        e.kind,
        Some(Kind::NotLeader(_))
            | Some(Kind::EpochNotMatch(_))
            | Some(Kind::KeyNotInRegion(_))
            | Some(Kind::ServerIsBusy(_))
            | Some(Kind::StoreNotMatch(_))
            | Some(Kind::RaftEntryTooLarge(_))
            | Some(Kind::RegionMerging(_))
            | Some(Kind::SessionExpired(_))
            | Some(Kind::SequenceStale(_))
    )
}
