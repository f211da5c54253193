//! Data key encodings.
//!
//! Raw keys are stored as they are. MVCC keys use a memcomparable encoding
//! so that `enc(key) ++ ts` sorts by key first for any key bytes, even when
//! one key is a prefix of another: the key is cut into 8-byte groups, each
//! padded with zeros and followed by a marker `0xFF - padding`.

use crate::engine::CF_RAW;

const GROUP: usize = 8;
const MARKER: u8 = 0xFF;

/// Memcomparable encoding of `key`.
pub fn encode_bytes(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity((key.len() / GROUP + 1) * (GROUP + 1));
    let mut chunks = key.chunks(GROUP);
    loop {
        match chunks.next() {
            Some(c) if c.len() == GROUP => {
                out.extend_from_slice(c);
                out.push(MARKER);
            }
            other => {
                let c = other.unwrap_or(&[]);
                let pad = GROUP - c.len();
                out.extend_from_slice(c);
                out.extend(std::iter::repeat_n(0u8, pad));
                out.push(MARKER - pad as u8);
                return out;
            }
        }
    }
}

/// Decodes a memcomparable key; returns the key and the bytes after it.
/// `None` if the input is not a valid encoding.
pub fn decode_bytes(data: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        if rest.len() < GROUP + 1 {
            return None;
        }
        let (group, tail) = rest.split_at(GROUP + 1);
        let marker = group[GROUP];
        let pad = (MARKER - marker) as usize;
        if pad > GROUP {
            return None;
        }
        out.extend_from_slice(&group[..GROUP - pad]);
        if pad != 0 {
            if group[GROUP - pad..GROUP].iter().any(|b| *b != 0) {
                return None;
            }
            return Some((out, tail));
        }
        rest = tail;
    }
}

/// The stored key range of user range `[start, end)` in column family `cf`
/// (empty `end` = unbounded, returned as `None`).
pub fn data_range(cf: &str, start: &[u8], end: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    if cf == CF_RAW {
        return (start.to_vec(), (!end.is_empty()).then(|| end.to_vec()));
    }
    let lower = if start.is_empty() {
        Vec::new()
    } else {
        encode_bytes(start)
    };
    (lower, (!end.is_empty()).then(|| encode_bytes(end)))
}

/// The smaller of two exclusive upper bounds, where empty is unbounded.
pub fn min_upper(a: &[u8], b: &[u8]) -> Vec<u8> {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_vec(),
        (_, true) => a.to_vec(),
        _ => a.min(b).to_vec(),
    }
}

/// Upper bound used when a range is unbounded: sorts after every stored
/// key of every encoding we use.
pub fn unbounded_upper() -> Vec<u8> {
    vec![0xFF; 64]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefix_keys_order_correctly_with_suffixes() {
        let mut a = encode_bytes(b"ab");
        a.extend_from_slice(&u64::MAX.to_be_bytes());
        let mut b = encode_bytes(b"abc");
        b.extend_from_slice(&0u64.to_be_bytes());
        assert!(a < b, "\"ab\" with any suffix must sort before \"abc\"");
    }

    #[test]
    fn round_trip_and_rejects_garbage() {
        for k in [&b""[..], b"a", b"12345678", b"123456789", &[0u8, 0, 0xFF]] {
            let e = encode_bytes(k);
            let (d, rest) = decode_bytes(&e).expect("decodes");
            assert_eq!(d, k);
            assert!(rest.is_empty());
        }
        assert!(decode_bytes(b"short").is_none());
    }

    proptest! {
        #[test]
        fn encoding_preserves_order(a in proptest::collection::vec(any::<u8>(), 0..40),
                                    b in proptest::collection::vec(any::<u8>(), 0..40),
                                    ts_a in any::<u64>(), ts_b in any::<u64>()) {
            let mut ea = encode_bytes(&a);
            ea.extend_from_slice(&ts_a.to_be_bytes());
            let mut eb = encode_bytes(&b);
            eb.extend_from_slice(&ts_b.to_be_bytes());
            if a != b {
                prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            }
        }
    }
}
