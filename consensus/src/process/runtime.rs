//! From a loaded configuration to the exit code: what a server's `main`
//! does once its flags are parsed.

use std::future::Future;
use std::process::ExitCode;

use super::config::ProcessConfig;
use super::exit::{exit_code, report, RunError, EXIT_FAILURE};
use super::subscriber::init_tracing;
use crate::Error;

/// Runs one server process to its end and returns its exit code:
/// 1. a configuration that failed to load is printed and exits
///    [`EXIT_FAILURE`], before anything starts;
/// 2. the log subscriber starts with the config's `log_level`;
/// 3. a multi-threaded tokio runtime runs `server(config)` (the library's
///    `run`, given a shutdown future such as
///    [`crate::shutdown::process_signal`]) to completion;
/// 4. its result becomes the exit code ([`exit_code`]), `component`
///    naming the process in the error line ("node failed").
pub fn run<C, E, F, Fut>(component: &str, config: crate::Result<C>, server: F) -> ExitCode
where
    C: ProcessConfig,
    E: RunError,
    F: FnOnce(C) -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut config = match config {
        Ok(config) => config,
        Err(e) => return fail(&e),
    };
    init_tracing(config.process_keys().log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&Error::Runtime(e)),
    };
    exit_code(component, runtime.block_on(server(config)))
}

/// Prints an error that stopped the process before its library ran, as
/// `main` returning it would, and returns [`EXIT_FAILURE`].
fn fail(err: &Error) -> ExitCode {
    let headline = err.to_string();
    match std::error::Error::source(err) {
        Some(cause) => eprintln!("Error: {}", report(&headline, cause)),
        None => eprintln!("Error: {headline}"),
    }
    ExitCode::from(EXIT_FAILURE)
}
