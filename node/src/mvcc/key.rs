//! MVCC keys: the memcomparable user key, optionally followed by an
//! inverted big-endian timestamp.

use crate::keys::{decode_bytes, encode_bytes};

/// The `lock`-CF key of `user_key` (also the prefix of its versions).
pub fn encode_key(user_key: &[u8]) -> Vec<u8> {
    encode_bytes(user_key)
}

/// The versioned key of `user_key` at `ts`.
pub fn versioned_key(user_key: &[u8], ts: u64) -> Vec<u8> {
    append_ts(encode_bytes(user_key), ts)
}

/// Appends `ts` (inverted) to an encoded key.
pub fn append_ts(mut encoded: Vec<u8>, ts: u64) -> Vec<u8> {
    encoded.extend_from_slice(&(!ts).to_be_bytes());
    encoded
}

/// Splits a versioned key into its encoded user key and timestamp.
pub fn split_ts(versioned: &[u8]) -> Option<(&[u8], u64)> {
    let cut = versioned.len().checked_sub(8)?;
    let (enc, ts) = versioned.split_at(cut);
    let ts: [u8; 8] = ts.try_into().ok()?;
    Some((enc, !u64::from_be_bytes(ts)))
}

/// The user key of an encoded (unversioned) key.
pub fn decode_key(encoded: &[u8]) -> Option<Vec<u8>> {
    match decode_bytes(encoded) {
        Some((key, [])) => Some(key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn newer_versions_sort_first() {
        assert!(versioned_key(b"k", 20) < versioned_key(b"k", 10));
        assert!(versioned_key(b"k", u64::MAX) < versioned_key(b"k", 0));
    }

    proptest! {
        /// Ordering is preserved for arbitrary byte keys, including keys
        /// that are prefixes of each other, whatever their timestamps.
        #[test]
        fn versioned_keys_order_by_key_then_newest_first(
            a in proptest::collection::vec(any::<u8>(), 0..24),
            b in proptest::collection::vec(any::<u8>(), 0..24),
            ta in any::<u64>(), tb in any::<u64>())
        {
            let (ka, kb) = (versioned_key(&a, ta), versioned_key(&b, tb));
            let expected = a.cmp(&b).then(tb.cmp(&ta));
            prop_assert_eq!(ka.cmp(&kb), expected);
            let (enc, ts) = split_ts(&ka).expect("splits");
            prop_assert_eq!(ts, ta);
            prop_assert_eq!(decode_key(enc), Some(a.clone()));
        }

        #[test]
        fn prefix_keys_sort_before_their_extensions(
            a in proptest::collection::vec(any::<u8>(), 0..24),
            ext in proptest::collection::vec(any::<u8>(), 1..8),
            ta in any::<u64>(), tb in any::<u64>())
        {
            let mut longer = a.clone();
            longer.extend_from_slice(&ext);
            prop_assert!(versioned_key(&a, ta) < versioned_key(&longer, tb));
        }
    }
}
