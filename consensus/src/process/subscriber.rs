//! The log subscriber of a server process: `tracing` events filtered by
//! the configured `log_level`, written to stderr without colour so that
//! journald and `kubectl logs` show them as they are.

/// Installs the process-wide subscriber with `filter` (tracing-subscriber
/// `EnvFilter` syntax, e.g. `info,raft=warn`). Directives it cannot parse
/// are ignored, as `EnvFilter::new` does.
///
/// # Panics
/// If a global subscriber is already installed: call it once, from `main`.
pub fn init_tracing(filter: &str) {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}
