//! Pipelines join sources to sinks: [`metrics`] samples on a schedule, labels and delivers (with
//! a disk spool); [`logs`] reads, batches and delivers each log source, and saves positions.

pub mod logs;
pub mod metrics;
