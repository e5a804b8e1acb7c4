//! Where data comes from: the host's own counters (and, later, log files and the journal).

pub mod files;
pub mod host_metrics;
pub mod journal;
