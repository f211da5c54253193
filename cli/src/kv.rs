//! What the key-value commands share, raw (`nokv raw …`) and
//! transactional (`nokv get|put|delete|scan`): the scan range flags, and
//! how a read's answer is printed (a value, exit code 3 when the key is
//! absent, or a list of pairs).

use clap::Args;
use serde::Serialize;

use crate::output::{self, Format};

/// Exit code of a read whose key does not exist.
pub const EXIT_NOT_FOUND: i32 = 3;

/// The range flags of a scan.
#[derive(Debug, Args)]
pub struct ScanRange {
    /// First key (inclusive); empty = beginning. With --reverse, the
    /// exclusive upper bound; empty = end.
    #[arg(long, default_value = "")]
    pub start: String,
    /// Last key (exclusive); empty = end. With --reverse, the inclusive
    /// lower bound.
    #[arg(long, default_value = "")]
    pub end: String,
    /// Most pairs to return.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Descending order.
    #[arg(long)]
    pub reverse: bool,
}

/// One pair as printed. JSON field names are stable.
#[derive(Serialize)]
struct Pair {
    key: String,
    value: String,
}

/// Prints the value read for `key` (bare in a table, a pair otherwise),
/// or says on stderr that it is absent. Returns the exit code: 0, or
/// [`EXIT_NOT_FOUND`].
pub fn print_value(format: Format, key: String, value: Option<Vec<u8>>) -> anyhow::Result<i32> {
    let Some(v) = value else {
        eprintln!("key not found: {key}");
        return Ok(EXIT_NOT_FOUND);
    };
    let v = String::from_utf8_lossy(&v).to_string();
    match format {
        Format::Table => println!("{v}"),
        _ => output::emit(format, &Pair { key, value: v }, || output::table(&[]))?,
    }
    Ok(0)
}

/// Prints scanned pairs, keys escaped for the terminal.
pub fn print_pairs(
    format: Format,
    pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<()> {
    let rows: Vec<Pair> = pairs
        .into_iter()
        .map(|(k, v)| Pair {
            key: output::key(&k, ""),
            value: String::from_utf8_lossy(&v).to_string(),
        })
        .collect();
    output::emit(format, &rows, || {
        let mut t = output::table(&["KEY", "VALUE"]);
        for r in &rows {
            t.add_row(vec![r.key.clone(), r.value.clone()]);
        }
        t
    })
}
