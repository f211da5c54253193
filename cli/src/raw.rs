//! `nokv raw …`: the raw KV API from the command line.

use clap::Subcommand;
use nokv_client::{RawClient, ScanOptions};
use serde::Serialize;

use crate::output::{self, Format};

/// `nokv raw …`
#[derive(Debug, Subcommand)]
pub enum RawCmd {
    /// Print the value of KEY (exit code 3 if absent).
    Get {
        /// The key.
        key: String,
    },
    /// Set KEY to VALUE.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Expire after this many seconds.
        #[arg(long, default_value_t = 0)]
        ttl: u64,
    },
    /// Delete KEY.
    Delete {
        /// The key.
        key: String,
    },
    /// List pairs in [START, END).
    Scan {
        /// First key (inclusive); empty = beginning. With --reverse, the
        /// exclusive upper bound; empty = end.
        #[arg(long, default_value = "")]
        start: String,
        /// Last key (exclusive); empty = end. With --reverse, the inclusive
        /// lower bound.
        #[arg(long, default_value = "")]
        end: String,
        /// Most pairs to return.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Descending order.
        #[arg(long)]
        reverse: bool,
        /// Keys only.
        #[arg(long)]
        keys_only: bool,
    },
    /// Delete every key in [START, END).
    DeleteRange {
        /// First key (inclusive).
        start: String,
        /// Last key (exclusive); empty = to the end.
        #[arg(default_value = "")]
        end: String,
    },
}

/// Exit code `nokv raw get` uses when the key does not exist.
pub const EXIT_NOT_FOUND: i32 = 3;

#[derive(Serialize)]
struct Pair {
    key: String,
    value: String,
}

/// Runs a raw subcommand; returns the process exit code.
pub async fn run(client: &RawClient, cmd: RawCmd, format: Format) -> anyhow::Result<i32> {
    match cmd {
        RawCmd::Get { key } => match client.get(key.as_bytes()).await? {
            Some(v) => {
                let v = String::from_utf8_lossy(&v).to_string();
                match format {
                    Format::Table => println!("{v}"),
                    _ => output::emit(format, &Pair { key, value: v }, || output::table(&[]))?,
                }
                Ok(0)
            }
            None => {
                eprintln!("key not found: {key}");
                Ok(EXIT_NOT_FOUND)
            }
        },
        RawCmd::Put { key, value, ttl } => {
            client
                .put_with_ttl(key.as_bytes(), value.as_bytes(), ttl)
                .await?;
            if format == Format::Table {
                println!("OK");
            }
            Ok(0)
        }
        RawCmd::Delete { key } => {
            client.delete(key.as_bytes()).await?;
            if format == Format::Table {
                println!("OK");
            }
            Ok(0)
        }
        RawCmd::DeleteRange { start, end } => {
            client
                .delete_range(start.as_bytes(), end.as_bytes())
                .await?;
            if format == Format::Table {
                println!("OK");
            }
            Ok(0)
        }
        RawCmd::Scan {
            start,
            end,
            limit,
            reverse,
            keys_only,
        } => {
            let pairs = client
                .scan(
                    start.as_bytes(),
                    end.as_bytes(),
                    limit,
                    ScanOptions {
                        key_only: keys_only,
                        reverse,
                    },
                )
                .await?;
            let rows: Vec<Pair> = pairs
                .into_iter()
                .map(|p| Pair {
                    key: output::key(&p.key, ""),
                    value: String::from_utf8_lossy(&p.value).to_string(),
                })
                .collect();
            output::emit(format, &rows, || {
                let mut t = output::table(&["KEY", "VALUE"]);
                for r in &rows {
                    t.add_row(vec![r.key.clone(), r.value.clone()]);
                }
                t
            })?;
            Ok(0)
        }
    }
}
