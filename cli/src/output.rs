//! Rendering results: a human table by default, or JSON/YAML with stable
//! field names for scripts.

use clap::ValueEnum;
use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde::Serialize;

/// Output format selected with `-o`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable table.
    #[default]
    Table,
    /// JSON (stable field names).
    Json,
    /// YAML (same fields as JSON).
    Yaml,
}

/// Prints `value` as JSON or YAML, or calls `table` for the human form.
pub fn emit<T: Serialize>(
    format: Format,
    value: &T,
    table: impl FnOnce() -> Table,
) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!("{}", serde_yaml::to_string(value)?),
        Format::Table => println!("{}", table()),
    }
    Ok(())
}

/// Prints `value` as JSON or YAML, or the tables `tables` builds, one after
/// the other, for the human form (commands whose answer has parts, like a
/// region and its peers).
pub fn emit_tables<T: Serialize>(
    format: Format,
    value: &T,
    tables: impl FnOnce() -> Vec<Table>,
) -> anyhow::Result<()> {
    match format {
        Format::Table => {
            for t in tables() {
                println!("{t}");
            }
            Ok(())
        }
        _ => emit(format, value, Table::new),
    }
}

/// A table with NoKV's house style.
pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.to_vec());
    t
}

/// A key shown to humans: printable ASCII as is, other bytes as `\xNN`;
/// the empty key as the given placeholder.
pub fn key(k: &[u8], empty: &str) -> String {
    if k.is_empty() {
        return empty.to_string();
    }
    let mut s = String::new();
    for b in k {
        if b.is_ascii_graphic() || *b == b' ' {
            if *b == b'\\' {
                s.push_str("\\\\");
            } else {
                s.push(*b as char);
            }
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Lowercase hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes in human units.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// Bytes in at most five characters (`512`, `1.5K`, `3.0M`), for narrow
/// columns such as the rates in `nokv top`.
pub fn bytes_compact(n: u64) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        n.to_string()
    } else {
        format!("{v:.1}{}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_bytes_fit_five_characters() {
        assert_eq!(bytes_compact(0), "0");
        assert_eq!(bytes_compact(999), "999");
        assert_eq!(bytes_compact(1536), "1.5K");
        assert_eq!(bytes_compact(3 << 20), "3.0M");
        assert_eq!(bytes_compact(u64::MAX), "16.0E");
    }

    #[test]
    fn keys_escape_unprintable_bytes() {
        assert_eq!(key(b"", "-inf"), "-inf");
        assert_eq!(key(b"ab\x00\\", ""), "ab\\x00\\\\");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
