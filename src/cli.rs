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
    /// Ask for the settings the Debian package asks for (region, Cognito ids, password without
    /// echo, instance id prefix and serial command), show the instance id, and write the config
    /// (mode 0600) if it validates, keeping its other settings. For machines without debconf.
    /// (Built in by default; the Debian package's binary leaves it out.)
    #[cfg(feature = "configure")]
    Configure {
        #[arg(value_name = "CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Take answers from this file, in debconf-set-selections form (as provision's
        /// <id>.preseed). What it leaves out is asked, or without a terminal kept as it is.
        #[arg(long, value_name = "FILE")]
        answers: Option<PathBuf>,
    },
    /// Show what the running publisher is doing: whether it runs, its instance id, region and
    /// credentials, when metrics were last accepted, the spool, and each log source's stream,
    /// how far it is behind, its newest delivered event and last error. Reads the status file
    /// in the state directory (the config's, when it can be read; --state-dir otherwise).
    /// Exits 0 when running, 3 when not, 4 when there is no status to read.
    Status {
        #[arg(value_name = "CONFIG", default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The state directory, instead of the config's.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// Print the status as one JSON object, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Create a Cognito user for each device in systems.txt that has none, and write each new
    /// device's config and debconf answers. Run it where you deploy the backend, with AWS
    /// credentials allowed to manage the user pool; it never deletes a user. (Built in by
    /// default; the binaries built for devices leave it out.)
    #[cfg(feature = "provision")]
    Provision(ProvisionArgs),
}

/// Where the backend is, which devices to provision, and where their files go.
#[cfg(feature = "provision")]
#[derive(Debug, clap::Args)]
pub struct ProvisionArgs {
    /// The outputs file `cdk deploy --outputs-file` wrote for the infrastructure stack
    /// (Region, AccountId, UserPoolId, IdentityPoolId, AppClientId).
    #[arg(long, value_name = "FILE", required_unless_present = "user_pool_id")]
    pub outputs: Option<PathBuf>,

    /// The user pool, instead of --outputs; then --identity-pool-id, --app-client-id and
    /// --account-id are needed too, for the devices' configs.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with = "outputs",
        requires_all = ["identity_pool_id", "app_client_id", "account_id"]
    )]
    pub user_pool_id: Option<String>,

    /// The identity pool the devices get AWS credentials from (with --user-pool-id).
    #[arg(long, value_name = "ID", requires = "user_pool_id")]
    pub identity_pool_id: Option<String>,

    /// The user pool's app client the devices sign in with (with --user-pool-id).
    #[arg(long, value_name = "ID", requires = "user_pool_id")]
    pub app_client_id: Option<String>,

    /// The AWS account id (with --user-pool-id).
    #[arg(long, value_name = "ID", requires = "user_pool_id")]
    pub account_id: Option<String>,

    /// The region the devices publish to [default: the user pool's].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// The list of devices: one instance id per line; `#` starts a comment.
    #[arg(long, value_name = "FILE", default_value = "systems.txt")]
    pub systems: PathBuf,

    /// Where each new device's files go: <id>.json (its config) and <id>.preseed (answers for
    /// the Debian package), mode 0600.
    #[arg(long, value_name = "DIR", default_value = "provisioned")]
    pub out_dir: PathBuf,

    /// Say what would be created, and create and write nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Devices handled at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// Most calls a second of each kind (user creations, password settings), to stay within
    /// Cognito's request-rate quotas for the account, which other programs share.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub rate: u16,

    /// Give these devices (instance ids, listed in systems.txt) new passwords, and write their
    /// new files; their old passwords stop working.
    #[arg(long, value_name = "ID", num_args = 1.., conflicts_with = "rotate_all")]
    pub rotate: Vec<String>,

    /// Give every device in systems.txt that has a user a new password.
    #[arg(long)]
    pub rotate_all: bool,
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
