//! Raft timing, the one thing about a raft group that the node's regions
//! and the coordinator group configure the same way: how long a tick is,
//! after how many silent ticks a follower campaigns, and how often a
//! leader sends heartbeats. This module owns the defaults of those three
//! values and the rule they must satisfy; [`RaftTiming`] is the checked
//! result, with the durations derived from it (election timeout, leader
//! lease).
//!
//! The YAML keys stay where users write them (`raft.tick_interval_ms` on a
//! node, `tick_interval_ms` at the top of a coordinator's file): each
//! config struct keeps its plain fields, takes its defaults from the
//! constants here and builds a [`RaftTiming`] from them to validate.
//! Sharing one serde struct instead would need `#[serde(flatten)]`, which
//! does not work with `deny_unknown_fields`, so unknown keys would no
//! longer be rejected.

use std::time::Duration;

use crate::error::RaftTimingError;
use crate::peer::RaftPeerConfig;

/// Checked raft timing: a tick longer than zero and an election timeout
/// longer than the heartbeat interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    tick: Duration,
    election_ticks: usize,
    heartbeat_ticks: usize,
}

impl RaftTiming {
    /// Default length of one tick, in milliseconds.
    pub const DEFAULT_TICK_INTERVAL_MS: u64 = 100;
    /// Default ticks without a leader before a follower campaigns.
    pub const DEFAULT_ELECTION_TICKS: usize = 10;
    /// Default ticks between leader heartbeats.
    pub const DEFAULT_HEARTBEAT_TICKS: usize = 2;

    /// Checks the three configured values.
    ///
    /// # Errors
    /// [`RaftTimingError::ZeroTick`] for a zero tick,
    /// [`RaftTimingError::ElectionNotAboveHeartbeat`] when `election_ticks`
    /// does not exceed `heartbeat_ticks`.
    pub fn new(
        tick_interval_ms: u64,
        election_ticks: usize,
        heartbeat_ticks: usize,
    ) -> Result<Self, RaftTimingError> {
        if tick_interval_ms == 0 {
            return Err(RaftTimingError::ZeroTick);
        }
        if election_ticks <= heartbeat_ticks {
            return Err(RaftTimingError::ElectionNotAboveHeartbeat {
                election_ticks,
                heartbeat_ticks,
            });
        }
        Ok(RaftTiming {
            tick: Duration::from_millis(tick_interval_ms),
            election_ticks,
            heartbeat_ticks,
        })
    }

    /// Length of one tick.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Ticks without a leader before a follower campaigns.
    pub fn election_ticks(&self) -> usize {
        self.election_ticks
    }

    /// Ticks between leader heartbeats.
    pub fn heartbeat_ticks(&self) -> usize {
        self.heartbeat_ticks
    }

    /// How long a follower waits for its leader before campaigning.
    pub fn election_timeout(&self) -> Duration {
        self.tick * u32::try_from(self.election_ticks).unwrap_or(u32::MAX)
    }

    /// How long a ReadIndex round that confirmed leadership lets the leader
    /// serve reads without another round: 4/5 of the election timeout, so
    /// the lease ends before any other peer can have been elected even with
    /// some clock drift between the peers.
    pub fn lease(&self) -> Duration {
        self.election_timeout() * 4 / 5
    }

    /// Sets the election and heartbeat ticks of a peer's raft config.
    pub fn configure(&self, peer: &mut RaftPeerConfig) {
        peer.election_tick = self.election_ticks;
        peer.heartbeat_tick = self.heartbeat_ticks;
    }
}

impl Default for RaftTiming {
    fn default() -> Self {
        RaftTiming::new(
            Self::DEFAULT_TICK_INTERVAL_MS,
            Self::DEFAULT_ELECTION_TICKS,
            Self::DEFAULT_HEARTBEAT_TICKS,
        )
        .expect("the default timing satisfies its own rule")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_derive_the_timeouts() {
        let t = RaftTiming::default();
        assert_eq!(t.tick(), Duration::from_millis(100));
        assert_eq!((t.election_ticks(), t.heartbeat_ticks()), (10, 2));
        assert_eq!(t.election_timeout(), Duration::from_secs(1));
        assert_eq!(t.lease(), Duration::from_millis(800));
    }

    #[test]
    fn a_zero_tick_is_refused() {
        assert_eq!(RaftTiming::new(0, 10, 2), Err(RaftTimingError::ZeroTick));
    }

    #[test]
    fn an_election_timeout_must_exceed_the_heartbeat_interval() {
        let err = RaftTiming::new(100, 2, 2).unwrap_err();
        assert_eq!(
            err,
            RaftTimingError::ElectionNotAboveHeartbeat {
                election_ticks: 2,
                heartbeat_ticks: 2
            }
        );
        assert!(err.to_string().contains("election_ticks > heartbeat_ticks"));
        assert!(RaftTiming::new(100, 3, 2).is_ok());
    }

    #[test]
    fn configure_sets_the_peer_ticks() {
        let mut peer = RaftPeerConfig::new(1, 0);
        RaftTiming::new(50, 20, 4)
            .expect("valid")
            .configure(&mut peer);
        assert_eq!((peer.election_tick, peer.heartbeat_tick), (20, 4));
    }
}
