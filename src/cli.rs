//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;

/// Publishes this machine's metrics and logs to Amazon CloudWatch, for machines AWS does not manage
/// (a Raspberry Pi, a Mac mini, a server in a basement).
#[derive(Debug, Parser)]
#[command(
    name = "amazon-cloudwatch-publisher",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// The JSON config file (the CloudWatch Agent's format: agent, metrics, logs).
    #[arg(value_name = "CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,

    /// Collect and publish one round, wait until CloudWatch accepted it, then exit (0 if all
    /// was accepted, 75 if not; unaccepted data stays in the spool).
    #[arg(long)]
    pub once: bool,

    /// Collect for real but print each request that would be sent, one JSON object per line on
    /// standard output, instead of calling AWS. Needs no credentials, no network and no write
    /// access; logs go to standard error.
    #[arg(long)]
    pub dry_run: bool,

    /// Detach from the terminal and run in the background, for systems without a service
    /// manager; logs then also go to the system log. The config is checked first.
    #[arg(long, conflicts_with_all = ["once", "dry_run"])]
    pub daemon: bool,

    /// With --daemon, write the background process's id to this file.
    #[arg(long, value_name = "FILE", requires = "daemon")]
    pub pid_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a config file: print every problem (exit 78), or the effective config with
    /// defaults filled in and secrets redacted (exit 0).
    Validate {
        #[arg(value_name = "CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_forms() {
        let a = Args::try_parse_from(["p"]).unwrap();
        assert_eq!(a.config, PathBuf::from(DEFAULT_CONFIG_PATH));
        let a = Args::try_parse_from(["p", "--once", "--dry-run", "/etc/x.json"]).unwrap();
        assert!(a.once && a.dry_run && a.config.as_path() == std::path::Path::new("/etc/x.json"));
        let a = Args::try_parse_from(["p", "validate", "c.json"]).unwrap();
        assert!(
            matches!(a.command, Some(Command::Validate { config }) if config.as_path() == std::path::Path::new("c.json"))
        );
        assert!(Args::try_parse_from(["p", "--bogus"]).is_err());
    }
}
