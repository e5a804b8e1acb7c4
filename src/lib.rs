//! amazon-cloudwatch-publisher: host metrics (and logs) from machines AWS does not manage, to
//! Amazon CloudWatch.
//!
//! The data path, in order: [`sources`] (the host's counters, log files, the journal) →
//! [`pipelines`] (metrics: sample, label, deliver; logs: read, batch, deliver) → [`sinks`]
//! (PutMetricData and PutLogEvents, or standard output for `--dry-run`, with a disk spool for
//! metrics) → [`checkpoint`] (where each log source is). Around it: [`config`], [`instance`]
//! (who this machine is), [`clock`] (whether its time can be believed yet), [`aws`]
//! (credentials, including Cognito), [`logging`], [`signal`], [`status`] (the file the daemon
//! keeps for `status`), [`durable`] (small files written whole, as a power cut would find them);
//! [`app`] runs the daemon, and the commands beside it (`validate`, `configure`, `provision`,
//! `status`) use what they need.

pub mod app;
pub mod aws;
pub mod backoff;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod durable;
pub mod error;
/// Entry points the fuzz targets (fuzz/) and the corpus test (tests/fuzz_corpus.rs) drive:
/// each feeds arbitrary bytes to the real code and checks what must hold.
#[doc(hidden)]
pub mod fuzzing;
pub mod instance;
pub mod logging;
pub mod memory;
pub mod metric;
pub mod pipelines;
pub mod secret;
pub mod service;
pub mod signal;
pub mod sinks;
pub mod sources;
pub mod status;

pub use commands::run;
