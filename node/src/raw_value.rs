//! Raw values as stored in the `raw` column family: the user value followed
//! by an optional 8-byte big-endian expiry (unix seconds) and one flag
//! byte, so values without TTL cost one byte.

use std::time::{SystemTime, UNIX_EPOCH};

const NO_TTL: u8 = 0;
const HAS_TTL: u8 = 1;

/// Seconds since the unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Encodes `value` expiring `ttl_seconds` from now (0 = never).
pub fn encode(value: &[u8], ttl_seconds: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len() + 9);
    out.extend_from_slice(value);
    if ttl_seconds == 0 {
        out.push(NO_TTL);
    } else {
        out.extend_from_slice(&now_secs().saturating_add(ttl_seconds).to_be_bytes());
        out.push(HAS_TTL);
    }
    out
}

/// Decodes a stored value as seen at `now` (unix seconds): `None` if it
/// has expired or is malformed.
pub fn decode(stored: &[u8], now: u64) -> Option<&[u8]> {
    let (flag, rest) = stored.split_last()?;
    match *flag {
        NO_TTL => Some(rest),
        HAS_TTL if rest.len() >= 8 => {
            let (value, expiry) = rest.split_at(rest.len() - 8);
            let mut b = [0u8; 8];
            b.copy_from_slice(expiry);
            (u64::from_be_bytes(b) > now).then_some(value)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_ttl_values_round_trip() {
        assert_eq!(decode(&encode(b"v", 0), now_secs()), Some(&b"v"[..]));
        let e = encode(b"v", 10);
        assert_eq!(decode(&e, now_secs()), Some(&b"v"[..]));
        assert_eq!(decode(&e, now_secs() + 11), None, "expired");
        assert_eq!(decode(&encode(b"", 0), 0), Some(&b""[..]));
        assert_eq!(decode(&[], 0), None);
        assert_eq!(decode(&[7], 0), None);
    }
}
