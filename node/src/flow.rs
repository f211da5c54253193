//! Region flow: the bytes and keys each region's leader on this store read
//! and wrote since its last region heartbeat, and the store-wide sums since
//! the last store heartbeat. The coordinator turns them into read and write
//! rates (`nokv regions`, `nokv stores`, `nokv top`).
//!
//! Reads are counted by the `Kv` service as it answers (raw and
//! transactional gets and scans: the pairs returned). Writes are counted
//! by the raftstore as a leader applies them (data commands: key and value
//! bytes of each put, key bytes of each delete, the write batch a
//! transactional command produced). Each heartbeat takes what accumulated
//! and starts a new interval, so a sample covers exactly the time since
//! the one before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use nokv_proto::coordinatorpb::{RegionHeartbeatRequest, StoreStats};

use crate::metrics::{FLOW_BYTES, FLOW_KEYS};
use nokv_proto::poison::MutexExt;

/// Bytes and keys moved in one interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCount {
    /// Bytes of keys and values.
    pub bytes: u64,
    /// Keys.
    pub keys: u64,
}

impl FlowCount {
    /// Adds one key of `bytes` bytes.
    pub fn add(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
        self.keys += 1;
    }

    /// Adds `other` to this count.
    pub fn merge(&mut self, other: FlowCount) {
        self.bytes += other.bytes;
        self.keys += other.keys;
    }

    fn is_zero(&self) -> bool {
        self.bytes == 0 && self.keys == 0
    }
}

/// Reads and writes of one interval, and when the interval began.
#[derive(Debug, Clone, Copy)]
struct Interval {
    read: FlowCount,
    written: FlowCount,
    since: Instant,
}

impl Interval {
    fn new(now: Instant) -> Self {
        Interval {
            read: FlowCount::default(),
            written: FlowCount::default(),
            since: now,
        }
    }

    /// What accumulated, with the interval's length in ms; restarts it.
    fn take(&mut self, now: Instant) -> (FlowCount, FlowCount, u64) {
        let taken = (
            self.read,
            self.written,
            now.saturating_duration_since(self.since).as_millis() as u64,
        );
        *self = Interval::new(now);
        taken
    }
}

/// Flow counters of one store, shared by the `Kv` service, the raftstore
/// and the store heartbeat task.
#[derive(Debug)]
pub struct RegionFlows {
    regions: Mutex<HashMap<u64, Interval>>,
    store: Mutex<Interval>,
}

impl Default for RegionFlows {
    fn default() -> Self {
        RegionFlows {
            regions: Mutex::new(HashMap::new()),
            store: Mutex::new(Interval::new(Instant::now())),
        }
    }
}

impl RegionFlows {
    /// Counts what a read of `region_id` returned.
    pub fn record_read(&self, region_id: u64, read: FlowCount) {
        if read.is_zero() {
            return;
        }
        FLOW_BYTES.with_label_values(&["read"]).inc_by(read.bytes);
        FLOW_KEYS.with_label_values(&["read"]).inc_by(read.keys);
        self.with_region(region_id, |i| i.read.merge(read));
        self.store.lock_unpoisoned().read.merge(read);
    }

    /// Counts what a leader of `region_id` applied.
    pub fn record_write(&self, region_id: u64, written: FlowCount) {
        if written.is_zero() {
            return;
        }
        FLOW_BYTES
            .with_label_values(&["write"])
            .inc_by(written.bytes);
        FLOW_KEYS.with_label_values(&["write"]).inc_by(written.keys);
        self.with_region(region_id, |i| i.written.merge(written));
        self.store.lock_unpoisoned().written.merge(written);
    }

    fn with_region(&self, region_id: u64, f: impl FnOnce(&mut Interval)) {
        let mut regions = self.regions.lock_unpoisoned();
        f(regions
            .entry(region_id)
            .or_insert_with(|| Interval::new(Instant::now())));
    }

    /// Moves the flow of `hb`'s region since its previous heartbeat into
    /// `hb` and starts the next interval. A region seen for the first time
    /// reports an empty interval of length 0.
    pub fn fill_region_heartbeat(&self, hb: &mut RegionHeartbeatRequest) {
        let Some(region_id) = hb.region.as_ref().map(|r| r.id) else {
            return;
        };
        let now = Instant::now();
        let mut regions = self.regions.lock_unpoisoned();
        let (read, written, interval_ms) = regions
            .entry(region_id)
            .or_insert_with(|| Interval::new(now))
            .take(now);
        hb.bytes_read = read.bytes;
        hb.keys_read = read.keys;
        hb.bytes_written = written.bytes;
        hb.keys_written = written.keys;
        hb.interval_ms = interval_ms;
    }

    /// Moves the store-wide flow since the previous store heartbeat into
    /// `stats` (its `interval_ms` becomes the measured interval).
    pub fn fill_store_stats(&self, stats: &mut StoreStats) {
        let (read, written, interval_ms) = self.store.lock_unpoisoned().take(Instant::now());
        stats.bytes_read = read.bytes;
        stats.keys_read = read.keys;
        stats.bytes_written = written.bytes;
        stats.keys_written = written.keys;
        stats.interval_ms = interval_ms;
    }

    /// Drops the counters of a region this store no longer leads: its next
    /// leader reports its flow.
    pub fn forget(&self, region_id: u64) {
        self.regions.lock_unpoisoned().remove(&region_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::metapb::Region;

    fn hb(region_id: u64) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            region: Some(Region {
                id: region_id,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_heartbeat_takes_its_regions_flow_and_starts_a_new_interval() {
        let flows = RegionFlows::default();
        let mut w = FlowCount::default();
        w.add(10);
        w.add(5);
        flows.record_write(1, w);
        flows.record_read(1, FlowCount { bytes: 7, keys: 1 });
        flows.record_read(2, FlowCount { bytes: 3, keys: 1 });

        let mut first = hb(1);
        flows.fill_region_heartbeat(&mut first);
        assert_eq!((first.bytes_written, first.keys_written), (15, 2));
        assert_eq!((first.bytes_read, first.keys_read), (7, 1));

        let mut second = hb(1);
        flows.fill_region_heartbeat(&mut second);
        assert_eq!(
            (second.bytes_written, second.keys_read),
            (0, 0),
            "the next interval starts empty"
        );

        let mut store = StoreStats::default();
        flows.fill_store_stats(&mut store);
        assert_eq!((store.bytes_read, store.keys_read), (10, 2));
        assert_eq!((store.bytes_written, store.keys_written), (15, 2));
        let mut again = StoreStats::default();
        flows.fill_store_stats(&mut again);
        assert_eq!(again.bytes_written, 0);
    }

    #[test]
    fn a_forgotten_region_starts_over() {
        let flows = RegionFlows::default();
        flows.record_read(4, FlowCount { bytes: 9, keys: 3 });
        flows.forget(4);
        let mut h = hb(4);
        flows.fill_region_heartbeat(&mut h);
        assert_eq!((h.bytes_read, h.keys_read, h.interval_ms), (0, 0, 0));
    }
}
