//! Where data goes: CloudWatch (and, for `--dry-run`, standard output).

pub mod cloudwatch_logs;
pub mod cloudwatch_metrics;
