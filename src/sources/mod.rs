//! Where data comes from: the host's own counters, log files, the journal and macOS's unified
//! log.

mod capped_lines;
pub mod emf;
pub mod files;
pub mod host_metrics;
pub mod journal;
pub mod statsd;
mod tcp_lines;
pub mod unified_log;

/// Which journal reader a position belongs to: `None` for `logs_collected.journal`, else the
/// `journald` entry's key (its log group and stream).
pub type JournalKey = Option<std::sync::Arc<str>>;

/// Where a log source is: handed on with each batch, and saved as the checkpoint once the
/// batch is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A byte offset in a file, identified by device, inode and a fingerprint of its start:
    /// everything before it is delivered.
    File(files::FilePosition),
    /// A journal entry's cursor: everything up to and including it is delivered.
    Journal(JournalKey, String),
    /// Where reading the journal begins, nothing of it delivered yet: the entry with this
    /// cursor and everything after it (across boots) is still to be read.
    JournalFrom(JournalKey, String),
    /// A unified log reader's place (by its key), as [`unified_log::Mark`] writes it: entries
    /// before that time, and those at it that it names, are delivered.
    UnifiedLog(std::sync::Arc<str>, String),
}

/// At a stop, how long a receiver still takes what local senders have already sent (queued
/// datagrams, lines on a connection), at most: a sender that keeps sending cannot hold the
/// stop up.
pub const DRAIN_AT_STOP: std::time::Duration = std::time::Duration::from_secs(1);
