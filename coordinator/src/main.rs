//! `nokv-coordinator`: runs one member of the coordinator group. The flags
//! it shares with `nokv-node`, config loading, logging and exit codes are
//! `nokv_consensus::process`; this file adds the member's own flag.

use std::process::ExitCode;

use clap::Parser;
use nokv_consensus::process::{self, ProcessArgs};
use nokv_consensus::shutdown::process_signal;
use nokv_coordinator::CoordinatorConfig;

/// One member of NoKV's control plane.
#[derive(Parser, Debug)]
#[command(name = "nokv-coordinator", version, about)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
    /// Member id (must be in the member list); sets `id`.
    ///
    /// Non-zero; the member list itself is only read from the file.
    /// Default: the file's `id`, else 1.
    #[arg(long, value_name = "N")]
    id: Option<u64>,
}

impl Args {
    /// The member's own flag over the loaded configuration.
    fn apply(self, mut config: CoordinatorConfig) -> CoordinatorConfig {
        if let Some(v) = self.id {
            config.id = v;
        }
        config
    }
}

fn main() -> ExitCode {
    let args: Args = process::parse::<Args, CoordinatorConfig>();
    let config = process::load_config(&args.process).map(|config| args.apply(config));
    process::run("coordinator", config, |config| {
        nokv_coordinator::run(config, process_signal())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Args {
        let words = std::iter::once("nokv-coordinator").chain(words.iter().copied());
        process::try_parse_from::<Args, CoordinatorConfig, _, _>(words).expect("parses")
    }

    #[test]
    fn the_definition_is_consistent() {
        process::command::<Args, CoordinatorConfig>().debug_assert();
    }

    #[test]
    fn the_id_flag_applies_over_the_file() {
        assert_eq!(
            parse(&["--id", "3"]).apply(CoordinatorConfig::default()).id,
            3
        );
        let default_id = CoordinatorConfig::default().id;
        assert_eq!(
            parse(&[]).apply(CoordinatorConfig::default()).id,
            default_id
        );
    }

    #[test]
    fn help_shows_coordinator_defaults() {
        let help = process::command::<Args, CoordinatorConfig>()
            .render_long_help()
            .to_string();
        assert!(help.contains("[default: 127.0.0.1:2379]"), "{help}");
        assert!(help.contains("[default: nokv-coordinator-data]"), "{help}");
        let id = CoordinatorConfig::default().id;
        assert!(help.contains(&format!("else {id}.")), "{help}");
    }
}
