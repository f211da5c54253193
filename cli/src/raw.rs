//! `nokv raw …`: the raw KV API from the command line.

use clap::Subcommand;
use nokv_client::{RawClient, ScanOptions};

use crate::kv::{self, ScanRange};
use crate::output::Format;

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
        #[command(flatten)]
        range: ScanRange,
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

/// Runs a raw subcommand; returns the process exit code.
pub async fn run(client: &RawClient, cmd: RawCmd, format: Format) -> anyhow::Result<i32> {
    match cmd {
        RawCmd::Get { key } => {
            let value = client.get(key.as_bytes()).await?;
            return kv::print_value(format, key, value);
        }
        RawCmd::Scan { range, keys_only } => {
            let pairs = client
                .scan(
                    range.start.as_bytes(),
                    range.end.as_bytes(),
                    range.limit,
                    ScanOptions {
                        key_only: keys_only,
                        reverse: range.reverse,
                    },
                )
                .await?;
            kv::print_pairs(format, pairs.into_iter().map(|p| (p.key, p.value)))?;
            return Ok(0);
        }
        RawCmd::Put { key, value, ttl } => {
            client
                .put_with_ttl(key.as_bytes(), value.as_bytes(), ttl)
                .await?
        }
        RawCmd::Delete { key } => client.delete(key.as_bytes()).await?,
        RawCmd::DeleteRange { start, end } => {
            client
                .delete_range(start.as_bytes(), end.as_bytes())
                .await?
        }
    }
    // A write: it applied.
    if format == Format::Table {
        println!("OK");
    }
    Ok(0)
}
