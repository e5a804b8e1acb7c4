//! Where data comes from: the host's own counters, log files and the journal.

pub mod files;
pub mod host_metrics;
pub mod journal;

/// Where a log source is: handed on with each batch, and saved as the checkpoint once the
/// batch is delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A byte offset in a file, identified by device, inode and a fingerprint of its start:
    /// everything before it is delivered.
    File(files::FilePosition),
    /// A journal entry's cursor: everything up to and including it is delivered.
    Journal(String),
    /// Where reading the journal begins, nothing of it delivered yet: the entry with this
    /// cursor and everything after it (across boots) is still to be read.
    JournalFrom(String),
}
