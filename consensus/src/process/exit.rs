//! How a server process ends: its exit code, decided by the error its
//! library's `run` returned, and the error printed to stderr. The codes
//! are part of the operator contract (docs/deploy.md: systemd units set
//! `RestartPreventExitStatus=70`).
//!
//! | Code | Meaning |
//! |---|---|
//! | 0 | Stopped by SIGINT or SIGTERM |
//! | 1 | Any other error (bad config or TLS material, a port in use, ...) |
//! | 70 | Storage failure: look at the disk before restarting |

use std::error::Error;
use std::process::ExitCode;

/// Exit code of a storage failure: the process could no longer persist raft
/// state or applied data, so restarting on the same disk without looking
/// at it would fail again or worse. 70 is `EX_SOFTWARE` in sysexits.h.
pub const EXIT_STORAGE_FAILURE: u8 = 70;

/// Exit code of every other error, as when `main` returns `Err`.
pub const EXIT_FAILURE: u8 = 1;

/// The error type of a server library's `run`, which tells a storage
/// failure (exit [`EXIT_STORAGE_FAILURE`]) from every other error.
pub trait RunError: Error + 'static {
    /// Whether this error means the process lost the ability to persist its
    /// state (a failed raft log sync, a failed apply batch).
    fn is_storage_failure(&self) -> bool;
}

/// The exit code of a finished server process; an error is printed to
/// stderr first as `Error: <component> failed` followed by its causes,
/// the way `main` returning an `anyhow` error prints.
pub fn exit_code<E: RunError>(component: &str, result: Result<(), E>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.is_storage_failure() {
                EXIT_STORAGE_FAILURE
            } else {
                EXIT_FAILURE
            };
            eprintln!("Error: {}", report(&format!("{component} failed"), &e));
            ExitCode::from(code)
        }
    }
}

/// `headline`, then `err` and its sources as "Caused by:" lines (numbered
/// when there is more than one).
pub(super) fn report(headline: &str, err: &(dyn Error + 'static)) -> String {
    let mut causes = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        causes.push(e.to_string());
        next = e.source();
    }
    let mut out = format!("{headline}\n\nCaused by:");
    if let [only] = causes.as_slice() {
        out.push_str(&format!("\n    {only}"));
    } else {
        for (i, cause) in causes.iter().enumerate() {
            out.push_str(&format!("\n    {i}: {cause}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Failure {
        #[error("raft log sync failed")]
        Storage(#[source] std::io::Error),
        #[error("invalid config: {0}")]
        Config(String),
    }

    impl RunError for Failure {
        fn is_storage_failure(&self) -> bool {
            matches!(self, Failure::Storage(_))
        }
    }

    #[test]
    fn success_storage_failure_and_other_errors_map_to_their_codes() {
        assert_eq!(exit_code::<Failure>("node", Ok(())), ExitCode::SUCCESS);
        let storage = Failure::Storage(std::io::Error::other("disk gone"));
        assert_eq!(
            exit_code("node", Err(storage)),
            ExitCode::from(EXIT_STORAGE_FAILURE)
        );
        let config = Failure::Config("no coordinators".into());
        assert_eq!(exit_code("node", Err(config)), ExitCode::from(EXIT_FAILURE));
    }

    #[test]
    fn the_report_lists_every_cause() {
        let one = Failure::Config("no coordinators".into());
        assert_eq!(
            report("node failed", &one),
            "node failed\n\nCaused by:\n    invalid config: no coordinators"
        );
        let two = Failure::Storage(std::io::Error::other("disk gone"));
        assert_eq!(
            report("node failed", &two),
            "node failed\n\nCaused by:\n    0: raft log sync failed\n    1: disk gone"
        );
    }
}
