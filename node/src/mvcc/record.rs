//! The byte layout lock and write records share: a format byte, a kind
//! tag, fixed-width big-endian numbers, and an optional short value that
//! runs to the end of the record. Each record type says which fields it
//! has; this module only writes and reads them.

use super::error::{MvccError, MvccResult};

/// The format byte of every record written today.
pub(crate) const FORMAT: u8 = 1;

/// Builds one record.
pub(crate) struct RecordWriter(Vec<u8>);

impl RecordWriter {
    /// Starts a record of kind `tag`, with room for `capacity` bytes.
    pub(crate) fn new(tag: u8, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity + 2);
        out.push(FORMAT);
        out.push(tag);
        RecordWriter(out)
    }

    pub(crate) fn u64(mut self, n: u64) -> Self {
        self.0.extend_from_slice(&n.to_be_bytes());
        self
    }

    pub(crate) fn flag(mut self, b: bool) -> Self {
        self.0.push(b as u8);
        self
    }

    /// Bytes preceded by their length (u32).
    pub(crate) fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(&(b.len() as u32).to_be_bytes());
        self.0.extend_from_slice(b);
        self
    }

    /// Ends the record with its short value, if any.
    pub(crate) fn finish(mut self, short_value: Option<&[u8]>) -> Vec<u8> {
        match short_value {
            Some(v) => {
                self.0.push(1);
                self.0.extend_from_slice(v);
            }
            None => self.0.push(0),
        }
        self.0
    }
}

/// Reads one record front to back; every error names the record type.
pub(crate) struct RecordReader<'a> {
    rest: &'a [u8],
    what: &'static str,
}

impl<'a> RecordReader<'a> {
    /// Checks the format byte and returns the reader and the kind tag.
    pub(crate) fn open(data: &'a [u8], what: &'static str) -> MvccResult<(Self, u8)> {
        let mut r = RecordReader { rest: data, what };
        if r.byte("empty")? != FORMAT {
            return Err(r.bad("unknown format"));
        }
        let tag = r.byte("truncated")?;
        Ok((r, tag))
    }

    /// The error of a malformed record.
    pub(crate) fn bad(&self, detail: &str) -> MvccError {
        MvccError::Corrupted(format!("{} record: {detail}", self.what))
    }

    fn byte(&mut self, missing: &str) -> MvccResult<u8> {
        let (b, rest) = self.rest.split_first().ok_or_else(|| self.bad(missing))?;
        self.rest = rest;
        Ok(*b)
    }

    fn take(&mut self, n: usize) -> MvccResult<&'a [u8]> {
        if self.rest.len() < n {
            return Err(self.bad("truncated"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    pub(crate) fn u64(&mut self) -> MvccResult<u64> {
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| self.bad("truncated"))?;
        Ok(u64::from_be_bytes(b))
    }

    pub(crate) fn flag(&mut self) -> MvccResult<bool> {
        Ok(self.byte("truncated")? != 0)
    }

    /// Length-prefixed bytes (see [`RecordWriter::bytes`]).
    pub(crate) fn bytes(&mut self) -> MvccResult<Vec<u8>> {
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| self.bad("truncated"))?;
        Ok(self.take(u32::from_be_bytes(b) as usize)?.to_vec())
    }

    /// The short value that ends the record.
    pub(crate) fn short_value(mut self) -> MvccResult<Option<Vec<u8>>> {
        Ok(match self.byte("truncated")? {
            0 => None,
            _ => Some(self.rest.to_vec()),
        })
    }
}
