//! The process kit: what `nokv-node` and `nokv-coordinator` do the same
//! way around their library's `run`, defined once so the two binaries
//! cannot drift apart. Each `main` is then a few lines:
//!
//! 1. [`parse`] the binary's own `Args`, which flattens the shared
//!    [`ProcessArgs`] (`--config`, `--data-dir`, `--listen`,
//!    `--status-listen`, `--log-level`, the TLS paths); `--help` shows each
//!    shared flag's built-in default, read from the config type;
//! 2. [`load_config`]: read the YAML file (or take the defaults), then lay
//!    the shared flags over it through [`ProcessConfig`], which each config
//!    type implements; the binary then applies its own flags;
//! 3. [`run`]: start tracing ([`init_tracing`]) and the async runtime, run
//!    the library until SIGINT or SIGTERM, and turn its result into the
//!    exit code ([`exit_code`]: 0, 1, or [`EXIT_STORAGE_FAILURE`] for an
//!    error whose [`RunError::is_storage_failure`] says so).
//!
//! Inside the library's `run`, [`Listeners::bind`] loads the `security`
//! section ([`crate::security`]) and binds the gRPC and status ports;
//! [`GrpcListener::serve`] and [`StatusListener::spawn`] serve them.
//! What each process serves, and what its config means, stays with it.
//!
//! # Layout
//! - `args.rs`: [`ProcessArgs`], [`parse`], [`command`]: the shared flags
//!   and their help.
//! - `config.rs`: [`ProcessConfig`]: where a config keeps the shared keys.
//! - `load.rs`: [`load_config`]: file first, flags over it.
//! - `subscriber.rs`: [`init_tracing`]: the log subscriber.
//! - `listen.rs`: [`Listeners`]: TLS loaded, ports bound, gRPC served with
//!   a bounded drain, the status port spawned.
//! - `exit.rs`: [`RunError`], [`exit_code`]: how a process ends.
//! - `runtime.rs`: [`run`]: from loaded config to exit code.

mod args;
mod config;
mod exit;
mod listen;
mod load;
mod runtime;
mod subscriber;

pub use args::{command, parse, try_parse_from, ProcessArgs};
pub use config::{ProcessConfig, ProcessKeys};
pub use exit::{exit_code, RunError, EXIT_FAILURE, EXIT_STORAGE_FAILURE};
pub use listen::{GrpcListener, Listeners, StatusListener};
pub use load::load_config;
pub use runtime::run;
pub use subscriber::init_tracing;
