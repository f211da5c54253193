//! `nokv get|put|delete|scan`: the transactional API from the command
//! line. Each invocation is one transaction: reads see a snapshot at a
//! fresh timestamp; writes commit (in one phase when the key's region
//! allows).

use nokv_client::TxnClient;
use serde::Serialize;

use crate::output::{self, Format};
use crate::raw::EXIT_NOT_FOUND;

#[derive(Serialize)]
struct Pair {
    key: String,
    value: String,
}

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
    match txn.get(key.as_bytes()).await? {
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
    }
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
pub async fn scan(
    client: &TxnClient,
    start: String,
    end: String,
    limit: u32,
    reverse: bool,
    format: Format,
) -> anyhow::Result<i32> {
    let txn = client.begin().await?;
    let pairs = txn
        .scan(start.as_bytes(), end.as_bytes(), limit, reverse)
        .await?;
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
    })?;
    Ok(0)
}
