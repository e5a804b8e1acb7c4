//! amazon-cloudwatch-publisher: host metrics (and logs) from machines AWS does not manage, to
//! Amazon CloudWatch.
//!
//! The data path, in order: [`sources`] (the host's counters) → [`pipeline`] (every interval,
//! label and deliver) → [`sinks`] (PutMetricData, or standard output for `--dry-run`), with a
//! disk spool for what CloudWatch has not accepted yet. Around it: [`config`], [`instance`]
//! (who this machine is), [`aws`] (credentials, including Cognito), [`logging`], [`signal`].

pub mod app;
pub mod aws;
pub mod backoff;
pub mod checkpoint;
pub mod cli;
pub mod config;
#[cfg(feature = "configure")]
pub mod configure;
pub mod instance;
pub mod logging;
pub mod logs;
pub mod metric;
pub mod pipeline;
#[cfg(feature = "provision")]
pub mod provision;
pub mod secret;
pub mod service;
pub mod signal;
pub mod sinks;
pub mod sources;

pub use app::run;
