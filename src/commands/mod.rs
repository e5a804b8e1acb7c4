//! The commands: the daemon by default, and `validate`, `status`, `configure` and `provision`
//! beside it.
//! Each uses the parts it needs; none is used by the daemon.

#[cfg(feature = "configure")]
pub mod configure;
#[cfg(feature = "provision")]
pub mod provision;
pub mod status;
pub mod validate;

use crate::cli::{Args, Command};
use crate::error::AppError;

/// Runs what the command line asks for.
pub async fn run(args: Args) -> Result<(), AppError> {
    match args.command {
        Some(Command::Validate { config }) => validate::run(&config).await,
        Some(Command::Status {
            config,
            state_dir,
            json,
        }) => status::run(&config, state_dir.as_deref(), json),
        #[cfg(feature = "configure")]
        Some(Command::Configure { config, answers }) => {
            configure::run(&config, answers.as_ref()).await
        }
        #[cfg(feature = "provision")]
        Some(Command::Provision(args)) => {
            crate::logging::init(None, false, true).map_err(AppError::Io)?;
            Ok(provision::run(&args).await?)
        }
        None => crate::app::daemon(&args.config, args.once, args.dry_run, args.daemon).await,
    }
}
