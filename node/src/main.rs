//! `nokv-node`: runs one NoKV store node.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use nokv_node::NodeConfig;

/// A NoKV store node.
#[derive(Parser, Debug)]
#[command(name = "nokv-node", version, about)]
struct Args {
    /// YAML configuration file; flags override its values.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Coordinator addresses, comma separated.
    #[arg(long, value_delimiter = ',')]
    coordinators: Option<Vec<String>>,
    /// Address advertised to other processes (defaults to --listen).
    #[arg(long)]
    advertise_address: Option<String>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long)]
    listen: Option<String>,
    /// HTTP status listen address.
    #[arg(long)]
    status_listen: Option<String>,
    /// Log filter, e.g. `info` or `nokv_coordinator=debug`.
    #[arg(long)]
    log_level: Option<String>,
    /// CA certificate (PEM) for mutual TLS; sets security.ca_path.
    #[arg(long, value_name = "PATH", requires_all = ["cert_path", "key_path"])]
    ca_path: Option<PathBuf>,
    /// This process's certificate (PEM); sets security.cert_path.
    #[arg(long, value_name = "PATH", requires_all = ["ca_path", "key_path"])]
    cert_path: Option<PathBuf>,
    /// The certificate's private key (PEM); sets security.key_path.
    #[arg(long, value_name = "PATH", requires_all = ["ca_path", "cert_path"])]
    key_path: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_yaml::from_str::<NodeConfig>(&text)
                .with_context(|| format!("parsing {}", path.display()))?
        }
        None => NodeConfig::default(),
    };
    if let Some(v) = args.coordinators {
        config.coordinators = v;
    }
    if let Some(v) = args.advertise_address {
        config.advertise_address = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.listen {
        config.listen = v;
    }
    if let Some(v) = args.status_listen {
        config.status_listen = v;
    }
    if let Some(v) = args.log_level {
        config.log_level = v;
    }
    if let (Some(ca_path), Some(cert_path), Some(key_path)) =
        (args.ca_path, args.cert_path, args.key_path)
    {
        // Flags name the files; the rest of the section stays as
        // configured.
        let kept = config.security.take();
        config.security = Some(nokv_consensus::security::SecurityConfig {
            ca_path,
            cert_path,
            key_path,
            admin_allowed_cn: kept
                .as_ref()
                .map(|s| s.admin_allowed_cn.clone())
                .unwrap_or_default(),
            status_tls: kept.is_some_and(|s| s.status_tls),
        });
    }
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_level))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(nokv_node::run(
        config,
        nokv_consensus::shutdown::process_signal(),
    ));
    match result {
        // The raftstore stopped because the store can no longer keep its
        // state: exit 70 (docs/deploy.md), so a supervisor does not restart
        // onto a failing disk.
        Err(nokv_node::Error::Fatal(e)) => {
            eprintln!("nokv-node: {e}");
            std::process::exit(70)
        }
        r => r.context("node failed"),
    }
}
