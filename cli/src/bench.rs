//! `nokv bench`: a closed-loop load generator. N clients each issue one
//! request at a time for a fixed duration; latencies go into HDR
//! histograms. Numbers depend on the machine; nothing here asserts on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use nokv_client::{RawClient, TxnClient, TxnOptions};
use rand::Rng;
use serde::Serialize;

use crate::output::{self, Format};

/// Workload kinds.
#[derive(Debug, Clone, Copy, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Raw puts of random keys.
    Put,
    /// Raw gets of preloaded keys.
    Get,
    /// Raw gets and puts, `--read-ratio` reads.
    Mixed,
    /// Transactions writing `--txn-keys` random keys each (one-phase
    /// commit when they share a region unless `--no-one-pc`).
    Txn,
}

/// `nokv bench` flags.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to run.
    #[arg(long, value_enum, default_value = "put")]
    pub workload: Workload,
    /// Concurrent clients (each with one request in flight).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Size of the key space.
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    pub value_size: usize,
    /// Fraction of reads in the mixed workload.
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Keys written before a get or mixed run.
    #[arg(long, default_value_t = 10_000)]
    pub preload: u64,
    /// Keys each transaction writes (txn workload).
    #[arg(long, default_value_t = 1)]
    pub txn_keys: usize,
    /// Always commit in two phases (txn workload).
    #[arg(long)]
    pub no_one_pc: bool,
}

/// Results of one run.
#[derive(Debug, Serialize)]
pub struct BenchReport {
    /// Workload run.
    pub workload: Workload,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys per transaction (txn workload; 0 otherwise).
    pub txn_keys: usize,
    /// Measured seconds.
    pub duration_seconds: f64,
    /// Successful operations.
    pub ops: u64,
    /// Failed operations.
    pub errors: u64,
    /// Successful operations per second.
    pub ops_per_second: f64,
    /// Median latency in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
    /// 99.9th percentile latency in milliseconds.
    pub p999_ms: f64,
    /// Largest latency in milliseconds.
    pub max_ms: f64,
}

fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:012}").into_bytes()
}

/// Runs the benchmark and prints its report.
pub async fn run(client: RawClient, args: BenchArgs, format: Format) -> anyhow::Result<()> {
    if args.clients == 0 || args.duration == 0 || args.keys == 0 {
        anyhow::bail!("clients, duration and keys must be positive");
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        anyhow::bail!("read-ratio must be between 0 and 1");
    }
    if matches!(args.workload, Workload::Txn) && args.txn_keys == 0 {
        anyhow::bail!("txn-keys must be positive");
    }
    let txn_client = TxnClient::with_raw(
        RawClient::with_coordinator(client.coordinator().clone()),
        TxnOptions {
            try_one_pc: !args.no_one_pc,
            ..TxnOptions::default()
        },
    );
    let client = Arc::new(client);
    let value = vec![b'v'; args.value_size];
    if !matches!(args.workload, Workload::Put | Workload::Txn) {
        let n = args.preload.min(args.keys);
        let mut i = 0;
        while i < n {
            let batch: Vec<(Vec<u8>, Vec<u8>)> = (i..(i + 256).min(n))
                .map(|k| (key(k), value.clone()))
                .collect();
            client.batch_put(&batch).await?;
            i += 256;
        }
    }
    let read_space = if matches!(args.workload, Workload::Put | Workload::Txn) {
        args.keys
    } else {
        args.preload.min(args.keys).max(1)
    };
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let client = client.clone();
        let txn_client = txn_client.clone();
        let txn_keys = args.txn_keys;
        let stop = stop.clone();
        let value = value.clone();
        let (workload, keys, ratio) = (args.workload, args.keys, args.read_ratio);
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds");
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Workload::Txn = workload {
                    let ks: Vec<Vec<u8>> = {
                        let mut rng = rand::rng();
                        (0..txn_keys)
                            .map(|_| key(rng.random_range(0..keys)))
                            .collect()
                    };
                    let t = Instant::now();
                    let ok = async {
                        let mut txn = txn_client.begin().await?;
                        for k in ks {
                            txn.put(k, value.clone());
                        }
                        txn.commit().await
                    }
                    .await
                    .is_ok();
                    if ok {
                        let _ = hist.record((t.elapsed().as_micros() as u64).max(1));
                    } else {
                        errors += 1;
                    }
                    continue;
                }
                let (read, k) = {
                    let mut rng = rand::rng();
                    let read = match workload {
                        Workload::Put | Workload::Txn => false,
                        Workload::Get => true,
                        Workload::Mixed => rng.random_bool(ratio),
                    };
                    let space = if read { read_space } else { keys };
                    (read, key(rng.random_range(0..space)))
                };
                let t = Instant::now();
                let ok = if read {
                    client.get(&k).await.is_ok()
                } else {
                    client.put(&k, &value).await.is_ok()
                };
                if ok {
                    let _ = hist.record((t.elapsed().as_micros() as u64).max(1));
                } else {
                    errors += 1;
                }
            }
            (hist, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    stop.store(true, Ordering::Relaxed);
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
    let mut errors = 0;
    for t in tasks {
        let (h, e) = t.await?;
        hist.add(&h)
            .map_err(|e| anyhow::anyhow!("merging histograms: {e}"))?;
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let report = BenchReport {
        workload: args.workload,
        clients: args.clients,
        txn_keys: if matches!(args.workload, Workload::Txn) {
            args.txn_keys
        } else {
            0
        },
        duration_seconds: elapsed,
        ops: hist.len(),
        errors,
        ops_per_second: hist.len() as f64 / elapsed,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: hist.max() as f64 / 1000.0,
    };
    output::emit(format, &report, || {
        let mut t = output::table(&[
            "WORKLOAD", "CLIENTS", "TXN KEYS", "OPS/S", "P50 MS", "P99 MS", "P999 MS", "MAX MS",
            "OPS", "ERRORS",
        ]);
        t.add_row(vec![
            format!("{:?}", report.workload).to_lowercase(),
            report.clients.to_string(),
            report.txn_keys.to_string(),
            format!("{:.0}", report.ops_per_second),
            format!("{:.2}", report.p50_ms),
            format!("{:.2}", report.p99_ms),
            format!("{:.2}", report.p999_ms),
            format!("{:.2}", report.max_ms),
            report.ops.to_string(),
            report.errors.to_string(),
        ]);
        t
    })
}
