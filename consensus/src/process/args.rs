//! The flags every server process has. [`ProcessArgs`] is flattened into
//! each binary's own clap `Args`, so the names, value names and help text
//! are written once. Their defaults differ per process (a node listens on
//! 20160, a coordinator on 2379), so [`command`] reads them from the config
//! type's `Default` and adds them to the long help: the help cannot
//! disagree with the code.
//!
//! Parsing only records what was typed; the file is read afterwards
//! ([`super::load_config`]).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, Command, CommandFactory, FromArgMatches};

use super::config::ProcessConfig;

/// Flags shared by `nokv-node` and `nokv-coordinator`. Each one that is
/// given overrides the config file's key of the same name.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessArgs {
    /// YAML configuration file; flags override its values.
    ///
    /// Without it every key has its built-in default (docs/deploy.md,
    /// "Configuration reference"). Unknown keys are an error.
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory; sets `data_dir`.
    ///
    /// RocksDB lives in `<DIR>/db`. Default: the file's `data_dir`, else
    /// the built-in default below.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// gRPC listen address; sets `listen`.
    ///
    /// HOST:PORT; port 0 takes any free port. Default: the file's
    /// `listen`, else the built-in default below.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// HTTP status listen address; sets `status_listen`.
    ///
    /// HOST:PORT serving /metrics, /health, /ready and /status. Default:
    /// the file's `status_listen`, else the built-in default below.
    #[arg(long, value_name = "ADDR")]
    pub status_listen: Option<String>,
    /// Log filter, e.g. `info` or `info,raft=warn`; sets `log_level`.
    ///
    /// tracing-subscriber filter syntax: a level, or comma-separated
    /// `target=level` directives. Logs go to stderr. Default: the file's
    /// `log_level`, else the built-in default below.
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// CA certificate (PEM) for mutual TLS; sets security.ca_path.
    ///
    /// Give all three of --ca-path, --cert-path and --key-path, or none.
    /// They keep the file's `admin_allowed_cn` and `status_tls`. Default:
    /// the file's `security` section, else none (plaintext).
    #[arg(long, value_name = "PATH", requires_all = ["cert_path", "key_path"])]
    pub ca_path: Option<PathBuf>,
    /// This process's certificate (PEM); sets security.cert_path.
    ///
    /// Presented when serving and when dialing other processes. Needs
    /// --ca-path and --key-path. Default: none (plaintext).
    #[arg(long, value_name = "PATH", requires_all = ["ca_path", "key_path"])]
    pub cert_path: Option<PathBuf>,
    /// The certificate's private key (PEM); sets security.key_path.
    ///
    /// PKCS#8, PKCS#1 or SEC1. Needs --ca-path and --cert-path. Default:
    /// none (plaintext).
    #[arg(long, value_name = "PATH", requires_all = ["ca_path", "cert_path"])]
    pub key_path: Option<PathBuf>,
}

/// The clap command of `A` (a binary's `Args` with [`ProcessArgs`]
/// flattened in), with the built-in defaults of `C` added to the long help
/// of the shared flags.
///
/// # Panics
/// If `A` does not flatten [`ProcessArgs`] (clap cannot find the flags).
pub fn command<A: CommandFactory, C: ProcessConfig>() -> Command {
    let mut defaults = C::default();
    let keys = defaults.process_keys();
    let shown = [
        ("data_dir", keys.data_dir.display().to_string()),
        ("listen", keys.listen.clone()),
        ("status_listen", keys.status_listen.clone()),
        ("log_level", keys.log_level.clone()),
    ];
    shown.into_iter().fold(A::command(), |cmd, (id, value)| {
        cmd.mut_arg(id, |arg| with_default(arg, &value))
    })
}

/// Parses the process's command line into `A`, the way `Parser::parse`
/// does (usage errors exit 2, `--help` and `--version` exit 0), with the
/// help of [`command`].
pub fn parse<A: CommandFactory + FromArgMatches, C: ProcessConfig>() -> A {
    let mut cmd = command::<A, C>();
    let matches = cmd.get_matches_mut();
    A::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// [`parse`] over the given words (the first is the binary name), returning
/// clap's error instead of exiting.
///
/// # Errors
/// A usage error, or the help or version "error" clap uses to print them.
pub fn try_parse_from<A, C, I, T>(words: I) -> Result<A, clap::Error>
where
    A: CommandFactory + FromArgMatches,
    C: ProcessConfig,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut cmd = command::<A, C>();
    let matches = cmd.try_get_matches_from_mut(words)?;
    A::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
}

/// `arg` with `[default: value]` closing its long help.
fn with_default(arg: Arg, value: &str) -> Arg {
    let long = arg
        .get_long_help()
        .or_else(|| arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    arg.long_help(format!("{long}\n\n[default: {value}]"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::ProcessKeys;
    use crate::security::SecurityConfig;

    /// A stand-in for a process's config type.
    #[derive(Debug, Clone, serde::Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Config {
        data_dir: PathBuf,
        listen: String,
        status_listen: String,
        log_level: String,
        security: Option<SecurityConfig>,
    }

    impl Default for Config {
        fn default() -> Self {
            Config {
                data_dir: "test-data".into(),
                listen: "127.0.0.1:7000".into(),
                status_listen: "127.0.0.1:7001".into(),
                log_level: "warn".into(),
                security: None,
            }
        }
    }

    impl ProcessConfig for Config {
        fn process_keys(&mut self) -> ProcessKeys<'_> {
            ProcessKeys {
                data_dir: &mut self.data_dir,
                listen: &mut self.listen,
                status_listen: &mut self.status_listen,
                log_level: &mut self.log_level,
                security: &mut self.security,
            }
        }
    }

    /// A binary's flags: the shared ones plus one of its own.
    #[derive(clap::Parser, Debug)]
    #[command(name = "nokv-test")]
    struct Args {
        #[command(flatten)]
        process: ProcessArgs,
        /// A flag of this binary only.
        #[arg(long)]
        id: Option<u64>,
    }

    fn parse(words: &[&str]) -> Result<Args, clap::Error> {
        try_parse_from::<Args, Config, _, _>(
            std::iter::once("nokv-test").chain(words.iter().copied()),
        )
    }

    #[test]
    fn the_definition_is_consistent() {
        command::<Args, Config>().debug_assert();
    }

    #[test]
    fn shared_and_own_flags_parse_together() {
        let a = parse(&[
            "-c",
            "x.yaml",
            "--data-dir",
            "d",
            "--listen",
            "127.0.0.1:0",
            "--status-listen",
            "127.0.0.1:1",
            "--log-level",
            "debug",
            "--id",
            "3",
        ])
        .expect("parses");
        assert_eq!(a.process.config, Some(PathBuf::from("x.yaml")));
        assert_eq!(a.process.data_dir, Some(PathBuf::from("d")));
        assert_eq!(a.process.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(a.process.status_listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(a.process.log_level.as_deref(), Some("debug"));
        assert_eq!(a.id, Some(3));
        assert_eq!(parse(&[]).expect("parses").process, ProcessArgs::default());
        let long = parse(&["--config", "y.yaml"]).expect("parses");
        assert_eq!(long.process.config, Some(PathBuf::from("y.yaml")));
    }

    #[test]
    fn tls_flags_go_together() {
        let all =
            parse(&["--ca-path", "a", "--cert-path", "b", "--key-path", "c"]).expect("parses");
        assert_eq!(all.process.key_path, Some(PathBuf::from("c")));
        for partial in [
            &["--ca-path", "a"][..],
            &["--cert-path", "b", "--key-path", "c"][..],
        ] {
            let err = parse(partial).expect_err("partial TLS flags are refused");
            assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
    }

    #[test]
    fn long_help_shows_the_config_types_defaults() {
        let help = command::<Args, Config>().render_long_help().to_string();
        for shown in [
            "[default: test-data]",
            "[default: 127.0.0.1:7000]",
            "[default: 127.0.0.1:7001]",
            "[default: warn]",
        ] {
            assert!(help.contains(shown), "{shown} missing from:\n{help}");
        }
        for flag in [
            "-c, --config <FILE>",
            "--data-dir <DIR>",
            "--listen <ADDR>",
            "--status-listen <ADDR>",
            "--log-level <FILTER>",
            "--ca-path <PATH>",
            "--cert-path <PATH>",
            "--key-path <PATH>",
        ] {
            assert!(help.contains(flag), "{flag} missing from:\n{help}");
        }
    }

    #[test]
    fn first_help_lines_fit_a_terminal() {
        let cmd = command::<Args, Config>();
        for arg in cmd.get_arguments() {
            let short = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            assert!(short.len() < 79, "{:?}: {short}", arg.get_id());
        }
    }
}
