//! How big a region's data is and where its middle lies: the bounded
//! scans a split decides on (the automatic split check counts keys and
//! bytes; a split "in half" asks for the middle key). They read RocksDB
//! directly and change nothing.

use nokv_proto::metapb::Region;
use rocksdb::{Direction, IteratorMode, ReadOptions, DB};

use crate::engine::{cf, CF_RAW, CF_WRITE};
use crate::keys::{data_range, decode_bytes};
use crate::Result;

/// The user key in the middle of the region's data (by key count), or
/// `None` when the region holds fewer than two keys. It reads the raw
/// column family and, for transactional data, the decoded keys of the
/// `write` column family; both are scanned, so this costs a pass over the
/// region (an estimate from SST properties is the planned replacement).
pub fn middle_key(db: &DB, region: &Region) -> Result<Option<Vec<u8>>> {
    let mut keys = user_keys(db, region, CF_RAW, u64::MAX, u64::MAX)?.keys;
    if keys.len() < 2 {
        keys = user_keys(db, region, CF_WRITE, u64::MAX, u64::MAX)?.keys;
    }
    if keys.len() < 2 {
        return Ok(None);
    }
    let mid = keys.swap_remove(keys.len() / 2);
    Ok((mid > region.start_key).then_some(mid))
}

/// User keys read from one column family of a region.
struct UserKeys {
    /// Distinct user keys, in order.
    keys: Vec<Vec<u8>>,
    /// Bytes of stored keys and values read.
    bytes: u64,
    /// A limit stopped the read.
    capped: bool,
}

/// Reads the distinct user keys of column family `name` in `region` (raw
/// keys as they are, versioned MVCC keys decoded), stopping once
/// `max_keys` keys or `max_bytes` bytes were read.
fn user_keys(
    db: &DB,
    region: &Region,
    name: &str,
    max_keys: u64,
    max_bytes: u64,
) -> Result<UserKeys> {
    let handle = cf(db, name)?;
    let (lower, upper) = data_range(name, &region.start_key, &region.end_key);
    let mut opts = ReadOptions::default();
    if let Some(u) = upper {
        opts.set_iterate_upper_bound(u);
    }
    let mut out = UserKeys {
        keys: Vec::new(),
        bytes: 0,
        capped: false,
    };
    for item in db.iterator_cf_opt(handle, opts, IteratorMode::From(&lower, Direction::Forward)) {
        let (k, v) = item?;
        out.bytes += (k.len() + v.len()) as u64;
        let user = if name == CF_RAW {
            k.to_vec()
        } else {
            match decode_bytes(&k) {
                Some((u, _)) => u,
                None => continue,
            }
        };
        if out.keys.last() != Some(&user) {
            out.keys.push(user);
        }
        if out.keys.len() as u64 >= max_keys || out.bytes >= max_bytes {
            out.capped = true;
            break;
        }
    }
    Ok(out)
}

/// Key count and bytes of a region's data, counted up to `max_keys`, with
/// the key in the middle of what was counted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RegionScan {
    /// Keys counted (stops at the cap).
    pub keys: u64,
    /// Bytes of keys and values counted.
    pub bytes: u64,
    /// Whether the cap stopped the count.
    pub capped: bool,
    /// The middle counted key.
    pub middle: Option<Vec<u8>>,
}

/// Counts the raw and transactional user keys of `region`, stopping after
/// `max_keys` keys or `max_bytes` bytes, so a check costs at most that.
pub fn scan_region(db: &DB, region: &Region, max_keys: u64, max_bytes: u64) -> Result<RegionScan> {
    let raw = user_keys(db, region, CF_RAW, max_keys, max_bytes)?;
    let (mut keys, mut bytes, mut capped) = (raw.keys, raw.bytes, raw.capped);
    if !capped {
        let txn = user_keys(
            db,
            region,
            CF_WRITE,
            max_keys.saturating_sub(keys.len() as u64),
            max_bytes.saturating_sub(bytes),
        )?;
        keys.extend(txn.keys);
        bytes += txn.bytes;
        capped = txn.capped;
    }
    keys.sort();
    keys.dedup();
    let middle = (keys.len() >= 2).then(|| keys[keys.len() / 2].clone());
    Ok(RegionScan {
        keys: keys.len() as u64,
        bytes,
        capped,
        middle: middle.filter(|m| *m > region.start_key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokv_proto::metapb::RegionEpoch;

    fn region() -> Region {
        Region {
            id: 1,
            epoch: Some(RegionEpoch {
                conf_ver: 3,
                version: 4,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn middle_key_of_raw_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = nokv_consensus::engine::open(dir.path(), &crate::engine::ALL_CFS).unwrap();
        let r = Region {
            start_key: vec![],
            end_key: vec![],
            ..region()
        };
        assert_eq!(middle_key(&db, &r).unwrap(), None);
        for k in [b"a", b"b", b"c", b"d", b"e"] {
            db.put_cf(db.cf_handle(CF_RAW).unwrap(), k, b"v").unwrap();
        }
        assert_eq!(middle_key(&db, &r).unwrap(), Some(b"c".to_vec()));
    }
}
