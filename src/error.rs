//! The one error the commands and the daemon end with, and the exit code each kind maps to.

use std::path::PathBuf;

use crate::checkpoint::CheckpointError;
use crate::config::ConfigError;
use crate::instance::InstanceError;
use crate::sinks::cloudwatch_metrics::SpoolError;

/// sysexits.h codes, so a service manager can tell a bad config (don't restart) from trouble.
pub const EX_UNAVAILABLE: u8 = 69;
pub const EX_SOFTWARE: u8 = 70;
pub const EX_CANTCREAT: u8 = 73;
pub const EX_TEMPFAIL: u8 = 75;
pub const EX_CONFIG: u8 = 78;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{path}: {source}", path = .path.display())]
    Instance {
        path: PathBuf,
        source: InstanceError,
    },
    #[error("{path}: {message}", path = .path.display())]
    Setting { path: PathBuf, message: String },
    #[error("{0} (agent.state_dir must be a writable directory)")]
    Spool(#[from] SpoolError),
    #[error("{0} (agent.state_dir must be a writable directory)")]
    State(#[from] CheckpointError),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("cannot receive {what} on {listen}: {source}")]
    Listen {
        what: &'static str,
        listen: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    HostMetrics(#[from] crate::sources::host_metrics::HostMetricsError),
    #[error("not everything was accepted by CloudWatch; what was not is kept in the spool")]
    NotAccepted,
    /// `status`: the publisher is not running (LSB's status code 3).
    #[error("the publisher is not running")]
    NotRunning,
    /// `status`: no status can be read (LSB's status code 4).
    #[error("{0}")]
    StatusUnknown(#[from] crate::status::ReadError),
    #[cfg(feature = "provision")]
    #[error("{0}")]
    Provision(#[from] crate::commands::provision::ProvisionError),
}

impl AppError {
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Config(_) | AppError::Instance { .. } | AppError::Setting { .. } => EX_CONFIG,
            AppError::Spool(_) | AppError::State(_) | AppError::Io(_) => EX_CANTCREAT,
            AppError::Listen { .. } => EX_UNAVAILABLE,
            AppError::HostMetrics(_) => EX_SOFTWARE,
            AppError::NotAccepted => EX_TEMPFAIL,
            AppError::NotRunning => 3,
            AppError::StatusUnknown(_) => 4,
            #[cfg(feature = "provision")]
            AppError::Provision(e) => e.exit_code(),
        }
    }
}
