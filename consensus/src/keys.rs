//! Key layout of raft state. Every key starts with the group id in
//! big-endian so one group's records are contiguous and ordered by index.
//!
//! In `raft`: `group ++ 0x01 ++ index` → entry, `group ++ 0x02` → hard state.
//! In `meta`: `group ++ 0x01` → apply state, `group ++ 0x02` → region state,
//! and the store-wide keys below.

const ENTRY: u8 = 0x01;
const HARD_STATE: u8 = 0x02;
const APPLY_STATE: u8 = 0x01;
const REGION_STATE: u8 = 0x02;

/// Key of the store identity record in `meta`.
pub const STORE_IDENT_KEY: &[u8] = b"\xffstore_ident";
/// Key of the bootstrap-in-progress marker in `meta`.
pub const PREPARE_BOOTSTRAP_KEY: &[u8] = b"\xffprepare_bootstrap";

/// Key of the log entry `index` of `group`.
pub fn entry_key(group: u64, index: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = ENTRY;
    k[9..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Parses the index out of an entry key of `group`; `None` if the key is
/// not an entry key of that group.
pub fn parse_entry_key(group: u64, key: &[u8]) -> Option<u64> {
    if key.len() != 17 || key[..8] != group.to_be_bytes() || key[8] != ENTRY {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[9..]);
    Some(u64::from_be_bytes(b))
}

/// Key of the hard state of `group`.
pub fn hard_state_key(group: u64) -> [u8; 9] {
    suffixed(group, HARD_STATE)
}

/// Key of the apply state of `group`.
pub fn apply_state_key(group: u64) -> [u8; 9] {
    suffixed(group, APPLY_STATE)
}

/// Key of the region local state of `group`.
pub fn region_state_key(group: u64) -> [u8; 9] {
    suffixed(group, REGION_STATE)
}

/// Parses the group id out of a region state key.
pub fn parse_region_state_key(key: &[u8]) -> Option<u64> {
    if key.len() != 9 || key[8] != REGION_STATE {
        return None;
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&key[..8]);
    Some(u64::from_be_bytes(b))
}

fn suffixed(group: u64, suffix: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = suffix;
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_order_by_group_then_index() {
        assert!(entry_key(1, 9) < entry_key(1, 10));
        assert!(entry_key(1, u64::MAX) < entry_key(2, 0));
        // Every entry of a group sorts before its hard state.
        assert!(entry_key(1, u64::MAX)[..] < hard_state_key(1)[..]);
    }

    #[test]
    fn entry_key_round_trips_and_rejects_other_groups() {
        let k = entry_key(7, 42);
        assert_eq!(parse_entry_key(7, &k), Some(42));
        assert_eq!(parse_entry_key(8, &k), None);
        assert_eq!(parse_entry_key(7, &hard_state_key(7)), None);
    }

    #[test]
    fn region_state_key_round_trips() {
        assert_eq!(parse_region_state_key(&region_state_key(99)), Some(99));
        assert_eq!(parse_region_state_key(&apply_state_key(99)), None);
    }
}
