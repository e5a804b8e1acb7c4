//! The publisher's own log: to `agent.logfile` (rotated by size) and to standard error when a
//! person or a service manager is watching it. `agent.debug` turns on detail for the publisher
//! only; the AWS SDK's own chatter stays at warnings, since its debug output is not ours to vet
//! for secrets.

mod rotate;
mod syslog;

use std::io::{self, IsTerminal};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub use rotate::RotatingFile;
pub use syslog::SOCKET_ENV as SYSLOG_SOCKET_ENV;

/// 100 MiB × 5 files, like the CloudWatch Agent.
pub const MAX_LOG_BYTES: u64 = 100 * 1024 * 1024;
pub const KEEP_LOG_FILES: usize = 5;

static ACTIVE: AtomicBool = AtomicBool::new(false);
static TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Whether [`init`] has run, so errors can go to the log.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Whether log lines already reach standard error.
pub fn to_stderr() -> bool {
    TO_STDERR.load(Ordering::Relaxed)
}

fn filter(debug: bool) -> EnvFilter {
    let ours = if debug { "debug" } else { "info" };
    EnvFilter::new(format!("warn,amazon_cloudwatch_publisher={ours}"))
}

/// Whether standard error is read by someone: a terminal, or systemd's journal.
pub fn stderr_is_watched() -> bool {
    io::stderr().is_terminal()
        || std::env::var_os("JOURNAL_STREAM").is_some()
        || std::env::var_os("INVOCATION_ID").is_some()
}

#[derive(Clone)]
struct SharedFile(Arc<Mutex<RotatingFile>>);

struct FileGuard<'a>(std::sync::MutexGuard<'a, RotatingFile>);

/// The own log could not be written at the last try (a full disk, say); said once on
/// standard error (the journal, under systemd) until it can again.
static FILE_FAILING: AtomicBool = AtomicBool::new(false);

impl io::Write for FileGuard<'_> {
    /// A line the own log cannot take is dropped, never an error that stops anything.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.0.write(buf) {
            Ok(n) => {
                if FILE_FAILING.swap(false, Ordering::Relaxed) {
                    eprintln!("amazon-cloudwatch-publisher: its log file can be written again");
                }
                Ok(n)
            }
            Err(e) => {
                if !FILE_FAILING.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "amazon-cloudwatch-publisher: cannot write its log file ({e}); its lines are dropped until it can, publishing goes on"
                    );
                }
                Ok(buf.len())
            }
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = FileGuard<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        FileGuard(self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Sets up logging. With `logfile` None, logs go to standard error only (used before the config
/// is read, and by `--dry-run` and `validate`, which must not need write access anywhere).
pub fn init(logfile: Option<&Path>, debug: bool, force_stderr: bool) -> io::Result<()> {
    init_with_syslog(logfile, debug, force_stderr, false)
}

/// [`init`], and with `to_syslog` the system log too. If the system log cannot be reached, that
/// is said in the other logs and they carry on.
pub fn init_with_syslog(
    logfile: Option<&Path>,
    debug: bool,
    force_stderr: bool,
    to_syslog: bool,
) -> io::Result<()> {
    let (syslog_layer, syslog_problem) = if to_syslog {
        match syslog::SyslogLayer::connect() {
            Ok(l) => (Some(l.with_filter(filter(debug))), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let file_layer = match logfile {
        Some(path) => {
            let file = RotatingFile::open(path, MAX_LOG_BYTES, KEEP_LOG_FILES).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot open log file {} (agent.logfile): {e}",
                        path.display()
                    ),
                )
            })?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(SharedFile(Arc::new(Mutex::new(file))))
                    .with_filter(filter(debug)),
            )
        }
        None => None,
    };
    let stderr_layer = (force_stderr || logfile.is_none() || stderr_is_watched()).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .with_filter(filter(debug))
    });
    ACTIVE.store(true, Ordering::Relaxed);
    TO_STDERR.store(stderr_layer.is_some(), Ordering::Relaxed);
    let _ = tracing_subscriber::registry()
        .with(file_layer)
        .with(stderr_layer)
        .with(syslog_layer)
        .try_init();
    if let Some(problem) = syslog_problem {
        tracing::warn!("agent.syslog: {problem}; logging to the other places only.");
    }
    Ok(())
}
