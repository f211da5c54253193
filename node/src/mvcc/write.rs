//! The write record: a committed version (or rollback) of a key.

use super::error::MvccResult;
use super::lock::LockKind;
use super::record::{RecordReader, RecordWriter};

/// What a committed version did to the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// Wrote a value.
    Put,
    /// Deleted the key.
    Delete,
    /// Locked it without a change.
    Lock,
    /// Protective record of a rolled-back transaction: it stops a late
    /// prewrite or commit of that transaction.
    Rollback,
}

impl WriteKind {
    fn tag(self) -> u8 {
        match self {
            WriteKind::Put => b'P',
            WriteKind::Delete => b'D',
            WriteKind::Lock => b'L',
            WriteKind::Rollback => b'R',
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'P' => WriteKind::Put,
            b'D' => WriteKind::Delete,
            b'L' => WriteKind::Lock,
            b'R' => WriteKind::Rollback,
            _ => return None,
        })
    }

    /// The write a committed lock of `kind` becomes.
    pub fn from_lock(kind: LockKind) -> Self {
        match kind {
            LockKind::Put => WriteKind::Put,
            LockKind::Delete => WriteKind::Delete,
            LockKind::Lock => WriteKind::Lock,
        }
    }
}

/// A record in the `write` column family, keyed by commit_ts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// What the version did.
    pub kind: WriteKind,
    /// The writing transaction's start timestamp.
    pub start_ts: u64,
    /// The value, when short enough to inline.
    pub short_value: Option<Vec<u8>>,
    /// A rollback of the transaction whose start_ts equals this record's
    /// commit_ts also happened here (the two share one key).
    pub overlapped_rollback: bool,
}

impl Write {
    /// A record without a value.
    pub fn new(kind: WriteKind, start_ts: u64) -> Self {
        Write {
            kind,
            start_ts,
            short_value: None,
            overlapped_rollback: false,
        }
    }

    /// Serialises the record for the `write` column family.
    pub fn to_bytes(&self) -> Vec<u8> {
        RecordWriter::new(
            self.kind.tag(),
            10 + self.short_value.as_ref().map_or(0, |v| v.len()),
        )
        .u64(self.start_ts)
        .flag(self.overlapped_rollback)
        .finish(self.short_value.as_deref())
    }

    /// Parses a stored record.
    pub fn parse(data: &[u8]) -> MvccResult<Write> {
        let (mut r, tag) = RecordReader::open(data, "write")?;
        let kind = WriteKind::from_tag(tag).ok_or_else(|| r.bad("kind"))?;
        let start_ts = r.u64()?;
        let overlapped_rollback = r.flag()?;
        Ok(Write {
            kind,
            start_ts,
            short_value: r.short_value()?,
            overlapped_rollback,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for w in [
            Write::new(WriteKind::Rollback, 7),
            Write {
                kind: WriteKind::Put,
                start_ts: 9,
                short_value: Some(b"abc".to_vec()),
                overlapped_rollback: true,
            },
        ] {
            assert_eq!(Write::parse(&w.to_bytes()).expect("parses"), w);
        }
        assert!(Write::parse(&[crate::mvcc::record::FORMAT, b'X']).is_err());
    }
}
