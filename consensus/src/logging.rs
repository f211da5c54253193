//! raft-rs logs through `slog`; this bridge hands its records to `tracing`
//! under the target `raft`, so elections and membership changes appear in
//! the process log and can be filtered like everything else
//! (`log_level: info,raft=warn`).

use std::fmt::Write as _;

use slog::{Drain, Key, Level, OwnedKVList, Record, Serializer, KV};

struct TracingDrain;

struct Fields(String);

impl Serializer for Fields {
    fn emit_arguments(&mut self, key: Key, val: &std::fmt::Arguments) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let msg = record.msg();
        let kv = fields.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{msg}{kv}"),
            Level::Warning => tracing::warn!(target: "raft", "{msg}{kv}"),
            Level::Info => tracing::info!(target: "raft", "{msg}{kv}"),
            Level::Debug | Level::Trace => tracing::debug!(target: "raft", "{msg}{kv}"),
        }
        Ok(())
    }
}

/// A logger for raft-rs whose records go to `tracing` (target `raft`),
/// tagged with the raft group (region id; 0 for the coordinator).
pub fn raft_logger(group: u64) -> slog::Logger {
    slog::Logger::root(TracingDrain.fuse(), slog::o!("group" => group))
}
