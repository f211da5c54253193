//! The fault layer on raft traffic: drop a percentage of messages, delay
//! them, split the stores into two sides (bipartition) or cut one direction
//! (one-way partition). One seeded RNG makes every choice. A chaos round
//! sets faults and [`Chaos::clear`] removes them all, so faults never pile
//! up across rounds.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use nokv_consensus::{FilterAction, MessageFilter};
use nokv_proto::poison::MutexExt;
use nokv_proto::raft_serverpb::RaftMessage;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Default)]
struct Faults {
    drop_percent: u32,
    max_delay: Option<Duration>,
    /// Two sides that cannot talk to each other.
    partition: Option<(HashSet<u64>, HashSet<u64>)>,
    /// Messages from the first set to the second are lost.
    one_way: Option<(HashSet<u64>, HashSet<u64>)>,
    /// (region, store): that region's traffic to and from that store is lost.
    region_cut: Option<(u64, u64)>,
}

/// The shared fault state, installed as every node's message filter.
pub struct Chaos {
    rng: Mutex<StdRng>,
    faults: Mutex<Faults>,
    /// Region messages offered to the transport (store pings excluded).
    region_messages: std::sync::atomic::AtomicU64,
}

impl Chaos {
    /// A fault layer whose random choices all come from `seed`.
    pub fn new(seed: u64) -> Self {
        Chaos {
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            faults: Mutex::new(Faults::default()),
            region_messages: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Faults) -> T) -> T {
        f(&mut self.faults.lock_unpoisoned())
    }

    /// Draws from the shared seeded RNG (for the harness's own choices).
    pub fn random_range(&self, range: std::ops::Range<u64>) -> u64 {
        self.rng.lock_unpoisoned().random_range(range)
    }

    /// Drops `percent` of messages and delays the rest by up to `max_delay`.
    pub fn unreliable(&self, percent: u32, max_delay: Option<Duration>) {
        self.with(|f| {
            f.drop_percent = percent.min(100);
            f.max_delay = max_delay;
        });
    }

    /// Splits the stores into two sides that cannot talk.
    pub fn partition(&self, a: &[u64], b: &[u64]) {
        self.with(|f| {
            f.partition = Some((a.iter().copied().collect(), b.iter().copied().collect()))
        });
    }

    /// Loses messages from `from` to `to` only.
    pub fn one_way(&self, from: &[u64], to: &[u64]) {
        self.with(|f| {
            f.one_way = Some((from.iter().copied().collect(), to.iter().copied().collect()))
        });
    }

    /// Loses every message of `region_id` to or from `store`, so that one
    /// replica falls behind while the store's other regions stay healthy.
    pub fn isolate_replica(&self, region_id: u64, store: u64) {
        self.with(|f| f.region_cut = Some((region_id, store)));
    }

    /// Removes partitions (keeps the unreliable setting).
    pub fn heal(&self) {
        self.with(|f| {
            f.partition = None;
            f.one_way = None;
            f.region_cut = None;
        });
    }

    /// Region messages (raft traffic and hibernation signals, not store
    /// pings) the nodes tried to send so far.
    pub fn region_messages(&self) -> u64 {
        self.region_messages
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Removes every fault: the end of a chaos round.
    pub fn clear(&self) {
        self.with(|f| *f = Faults::default());
    }
}

impl MessageFilter for Chaos {
    fn check(&self, from: u64, to: u64, msg: &RaftMessage) -> FilterAction {
        if !msg.store_ping {
            self.region_messages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let (drop_percent, max_delay, cut) = self.with(|f| {
            let cut = f.partition.as_ref().is_some_and(|(a, b)| {
                (a.contains(&from) && b.contains(&to)) || (b.contains(&from) && a.contains(&to))
            }) || f
                .one_way
                .as_ref()
                .is_some_and(|(a, b)| a.contains(&from) && b.contains(&to))
                || f.region_cut.is_some_and(|(region, store)| {
                    msg.region_id == region && (from == store || to == store)
                });
            (f.drop_percent, f.max_delay, cut)
        });
        if cut {
            return FilterAction::Drop;
        }
        if drop_percent == 0 && max_delay.is_none() {
            return FilterAction::Deliver;
        }
        let mut rng = self.rng.lock_unpoisoned();
        if drop_percent > 0 && rng.random_range(0..100) < drop_percent {
            return FilterAction::Drop;
        }
        match max_delay {
            Some(d) if !d.is_zero() => FilterAction::Delay(Duration::from_micros(
                rng.random_range(0..d.as_micros() as u64),
            )),
            _ => FilterAction::Deliver,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_cut_both_ways_and_clear_removes_everything() {
        let c = Chaos::new(7);
        let m = RaftMessage::default();
        c.partition(&[1], &[2, 3]);
        assert_eq!(c.check(1, 2, &m), FilterAction::Drop);
        assert_eq!(c.check(3, 1, &m), FilterAction::Drop);
        assert_eq!(c.check(2, 3, &m), FilterAction::Deliver);
        c.clear();
        assert_eq!(c.check(1, 2, &m), FilterAction::Deliver);
    }

    #[test]
    fn an_isolated_replica_loses_only_its_regions_traffic() {
        let c = Chaos::new(7);
        let of = |region_id| RaftMessage {
            region_id,
            ..Default::default()
        };
        c.isolate_replica(4, 2);
        assert_eq!(c.check(1, 2, &of(4)), FilterAction::Drop);
        assert_eq!(c.check(2, 3, &of(4)), FilterAction::Drop);
        assert_eq!(c.check(1, 3, &of(4)), FilterAction::Deliver);
        assert_eq!(c.check(1, 2, &of(5)), FilterAction::Deliver);
        c.heal();
        assert_eq!(c.check(1, 2, &of(4)), FilterAction::Deliver);
    }

    #[test]
    fn one_way_cuts_one_direction() {
        let c = Chaos::new(7);
        let m = RaftMessage::default();
        c.one_way(&[1], &[2]);
        assert_eq!(c.check(1, 2, &m), FilterAction::Drop);
        assert_eq!(c.check(2, 1, &m), FilterAction::Deliver);
    }

    #[test]
    fn the_same_seed_makes_the_same_choices() {
        let run = |seed| {
            let c = Chaos::new(seed);
            c.unreliable(30, None);
            (0..200)
                .map(|_| c.check(1, 2, &RaftMessage::default()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        let dropped = run(42).iter().filter(|a| **a == FilterAction::Drop).count();
        assert!(
            (30..90).contains(&dropped),
            "about 30% dropped, got {dropped}"
        );
    }
}
