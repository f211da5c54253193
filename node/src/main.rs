//! `nokv-node`: runs one NoKV store node. The flags it shares with
//! `nokv-coordinator`, config loading, logging and exit codes are
//! `nokv_consensus::process`; this file adds the node's own flags.

use std::process::ExitCode;

use clap::Parser;
use nokv_consensus::process::{self, ProcessArgs};
use nokv_consensus::shutdown::process_signal;
use nokv_node::NodeConfig;

/// A NoKV store node.
#[derive(Parser, Debug)]
#[command(name = "nokv-node", version, about)]
struct Args {
    #[command(flatten)]
    process: ProcessArgs,
    /// Coordinator addresses, comma separated; sets `coordinators`.
    ///
    /// Any subset of the members works; all of them is best. Default: the
    /// file's `coordinators`, else 127.0.0.1:2379.
    #[arg(long, value_name = "A,B,...", value_delimiter = ',')]
    coordinators: Option<Vec<String>>,
    /// Address advertised to other processes (defaults to --listen).
    ///
    /// Sets `advertise_address`, the address registered with the
    /// coordinator. Default: the file's `advertise_address`, else the
    /// listen address (the bound one when listening on port 0).
    #[arg(long, value_name = "ADDR")]
    advertise_address: Option<String>,
}

impl Args {
    /// The node's own flags over the loaded configuration.
    fn apply(self, mut config: NodeConfig) -> NodeConfig {
        if let Some(v) = self.coordinators {
            config.coordinators = v;
        }
        if let Some(v) = self.advertise_address {
            config.advertise_address = v;
        }
        config
    }
}

fn main() -> ExitCode {
    let args: Args = process::parse::<Args, NodeConfig>();
    let config = process::load_config(&args.process).map(|config| args.apply(config));
    process::run("node", config, |config| {
        nokv_node::run(config, process_signal())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Args {
        let words = std::iter::once("nokv-node").chain(words.iter().copied());
        process::try_parse_from::<Args, NodeConfig, _, _>(words).expect("parses")
    }

    #[test]
    fn the_definition_is_consistent() {
        process::command::<Args, NodeConfig>().debug_assert();
    }

    #[test]
    fn own_flags_apply_over_the_file() {
        let args = parse(&["--coordinators", "a:1,b:2", "--advertise-address", "n:1"]);
        let config = args.apply(NodeConfig::default());
        assert_eq!(config.coordinators, ["a:1", "b:2"]);
        assert_eq!(config.advertise_address, "n:1");
        assert_eq!(
            parse(&[]).apply(NodeConfig::default()).coordinators,
            ["127.0.0.1:2379"]
        );
    }

    #[test]
    fn help_shows_node_defaults_and_names_no_other_binary() {
        let help = process::command::<Args, NodeConfig>()
            .render_long_help()
            .to_string();
        assert!(help.contains("[default: 127.0.0.1:20160]"), "{help}");
        assert!(help.contains("[default: nokv-node-data]"), "{help}");
        let coordinators = NodeConfig::default().coordinators.join(",");
        assert!(help.contains(&format!("else {coordinators}.")), "{help}");
        assert!(!help.contains("coordinator="), "{help}");
        assert!(!help.contains("nokv-coordinator"), "{help}");
    }
}
