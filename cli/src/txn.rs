//! `nokv get|put|delete|scan`: the transactional API from the command
//! line. Each invocation is one transaction: reads see a snapshot at a
//! fresh timestamp; writes commit (in one phase when the key's region
//! allows).

use nokv_client::TxnClient;
use serde::Serialize;

use crate::kv::{self, ScanRange};
use crate::output::{self, Format};

#[derive(Serialize)]
struct Committed {
    start_ts: u64,
    commit_ts: u64,
}

fn print_commit(format: Format, start_ts: u64, commit_ts: u64) -> anyhow::Result<()> {
    if format == Format::Table {
        println!("OK (commit_ts {commit_ts})");
        return Ok(());
    }
    output::emit(
        format,
        &Committed {
            start_ts,
            commit_ts,
        },
        || output::table(&[]),
    )
}

/// `nokv get KEY`; exit code 3 if absent.
pub async fn get(client: &TxnClient, key: String, format: Format) -> anyhow::Result<i32> {
    let txn = client.begin().await?;
    let value = txn.get(key.as_bytes()).await?;
    kv::print_value(format, key, value)
}

/// `nokv put KEY VALUE` or `nokv delete KEY` (value `None`).
pub async fn write(
    client: &TxnClient,
    key: String,
    value: Option<String>,
    format: Format,
) -> anyhow::Result<i32> {
    if key.is_empty() {
        anyhow::bail!("key must not be empty");
    }
    let mut txn = client.begin().await?;
    let start_ts = txn.start_ts();
    match value {
        Some(v) => txn.put(key.into_bytes(), v.into_bytes()),
        None => txn.delete(key.into_bytes()),
    }
    let commit_ts = txn.commit().await?;
    print_commit(format, start_ts, commit_ts)?;
    Ok(0)
}

/// `nokv scan`.
pub async fn scan(client: &TxnClient, range: ScanRange, format: Format) -> anyhow::Result<i32> {
    let txn = client.begin().await?;
    let pairs = txn
        .scan(
            range.start.as_bytes(),
            range.end.as_bytes(),
            range.limit,
            range.reverse,
        )
        .await?;
    kv::print_pairs(format, pairs)?;
    Ok(0)
}
