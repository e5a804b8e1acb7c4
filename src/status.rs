//! The status file: what the running daemon is doing, rewritten (atomically, at most every
//! [`EVERY`], and only when something changed) for `amazon-cloudwatch-publisher status` to read.
//! No socket and no server: a file the service user and its group (`adm` under the Debian
//! package's unit) can read, and no one else.
//!
//! It lives in `state_dir` as `status.json`. Under systemd, which gives the service a runtime
//! directory in memory (`RuntimeDirectory=`, `$RUNTIME_DIRECTORY`), the file is written there
//! and `state_dir/status.json` is a link to it, so that its rewrites never wear an SD card.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How often the daemon looks whether the status changed, with the file in a runtime directory
/// (memory).
pub const EVERY: Duration = Duration::from_secs(5);
/// The same with the file in `state_dir`, on the disk: a trickle of lines changes the status
/// every time, and a rewrite every 5 s would cost an SD card several MB an hour.
pub const EVERY_ON_DISK: Duration = Duration::from_secs(60);
pub const FILE: &str = "status.json";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusFile {
    pub version: u32,
    /// `running`, or `stopped` (written as the daemon exits).
    pub state: String,
    pub pid: u32,
    pub started_ms: i64,
    /// When this was written.
    pub written_ms: i64,
    pub instance_id: String,
    pub region: String,
    /// Where the credentials come from: a Cognito user, or the default AWS credential chain.
    pub credentials: String,
    /// The service manager's status line, as last sent.
    pub line: String,
    pub metrics: MetricsStatus,
    pub logs: Vec<LogStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsStatus {
    pub namespace: String,
    /// When CloudWatch last accepted metrics.
    pub last_accepted_ms: Option<i64>,
    /// Why the last request was not accepted, while that is so.
    pub error: Option<String>,
    /// Requests waiting in the spool, and their size.
    pub spooled_requests: u64,
    pub spooled_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogStatus {
    /// A file's path, `journal`, `journald <key>` or `unified log <key>`.
    pub source: String,
    pub group: String,
    pub stream: String,
    /// For a file: bytes between the last delivered line and the file's end.
    pub behind_bytes: Option<u64>,
    pub events: u64,
    /// The time of the newest event delivered, and when that was.
    pub newest_event_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    /// The last delivery error, and when (kept until a delivery succeeds).
    pub error: Option<String>,
    pub error_ms: Option<i64>,
    /// Refused for good (the role may not write it): parked until this time, when it is tried
    /// again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_until_ms: Option<i64>,
}

/// Where `status` finds the file for a config's `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// Where the daemon writes it, and how often at most: in the runtime directory systemd gives the
/// service every [`EVERY`], else in `state_dir` every [`EVERY_ON_DISK`]. With a runtime
/// directory, `state_dir/status.json` is made a link to it.
pub fn place(state_dir: &Path) -> (PathBuf, Duration) {
    place_with(state_dir, std::env::var_os("RUNTIME_DIRECTORY"))
}

/// [`place`], with `$RUNTIME_DIRECTORY` as given.
fn place_with(state_dir: &Path, runtime: Option<std::ffi::OsString>) -> (PathBuf, Duration) {
    let runtime = runtime
        .map(PathBuf::from)
        // Several directories are separated by colons; the first is this service's.
        .and_then(|p| p.to_string_lossy().split(':').next().map(PathBuf::from))
        .filter(|p| p.is_absolute() && p.is_dir());
    match runtime {
        Some(dir) => {
            let target = dir.join(FILE);
            let link = path(state_dir);
            if std::fs::read_link(&link).ok().as_deref() != Some(target.as_path()) {
                let _ = std::fs::remove_file(&link);
                if let Err(e) = std::os::unix::fs::symlink(&target, &link) {
                    tracing::warn!(link = %link.display(), error = %e, "Cannot link the status file into the state directory; status will not find it.");
                }
            }
            (target, EVERY)
        }
        None => (path(state_dir), EVERY_ON_DISK),
    }
}

/// Writes `status` to `path` whole: beside it, then renamed over it. Not synced: it is only
/// ever as current as the daemon, and a crash leaves the last whole one.
pub fn write(path: &Path, status: &StatusFile) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    // A partial file (a full disk) is not left behind.
    let written = write_new(&tmp, status).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_new(tmp: &Path, status: &StatusFile) -> std::io::Result<()> {
    use std::io::Write;
    // Readable by the service's group, which the unit makes the one `status` is for (adm), and
    // no one else: its errors may name hosts, groups and paths. The temporary file is in a
    // folder the service user writes, so it is made new and no link there is followed.
    let mut f = crate::durable::create_temporary(tmp, 0o640)?;
    // The service's umask (0077) would leave it to the service user alone.
    f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o640))?;
    f.write_all(&serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?)?;
    f.write_all(b"\n")
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{path}: no status file: the publisher has not run with this state directory (or cannot write it)", path = .0.display())]
    Missing(PathBuf),
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a status file this version can read: {message}", path = .path.display())]
    Foreign { path: PathBuf, message: String },
}

pub fn read(path: &Path) -> Result<StatusFile, ReadError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ReadError::Missing(path.to_owned()))
        }
        Err(source) => {
            return Err(ReadError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let status: StatusFile = serde_json::from_slice(&bytes).map_err(|e| ReadError::Foreign {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    if status.version != VERSION {
        return Err(ReadError::Foreign {
            path: path.to_owned(),
            message: format!("version {}", status.version),
        });
    }
    Ok(status)
}

impl StatusFile {
    pub fn new() -> StatusFile {
        StatusFile {
            version: VERSION,
            state: "running".into(),
            pid: std::process::id(),
            ..StatusFile::default()
        }
    }

    /// The same status but for when it was written, to tell whether a rewrite is due.
    fn same_as(&self, other: &StatusFile) -> bool {
        let mut a = self.clone();
        a.written_ms = other.written_ms;
        a == *other
    }
}

/// Whether the process that wrote `status` still runs (a process of that id that is this
/// program; on Linux its name is checked, against a reused id).
pub fn is_running(status: &StatusFile) -> bool {
    let Ok(pid) = libc::pid_t::try_from(status.pid) else {
        return false;
    };
    if pid <= 0 || status.state != "running" {
        return false;
    }
    // SAFETY: signal 0 only asks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !alive {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        // The kernel keeps 15 bytes of the name.
        Ok(comm) => "amazon-cloudwatch-publisher".starts_with(&comm.trim_end().replace('_', "-")),
        Err(_) => true,
    }
}

/// What the writer remembers between rounds.
struct Writer {
    path: PathBuf,
    last: Option<StatusFile>,
    warned: bool,
}

impl Writer {
    /// Writes `status` unless it is what was written last. Blocking.
    fn save(&mut self, mut status: StatusFile) {
        if self.last.as_ref().is_some_and(|l| status.same_as(l)) {
            return;
        }
        status.written_ms = crate::clock::wall_ms();
        match write(&self.path, &status) {
            Ok(()) => self.last = Some(status),
            Err(e) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(file = %self.path.display(), error = %e, "Cannot write the status file; status cannot show this run.");
                }
            }
        }
    }
}

/// Rewrites the status file from `snapshot` every `every` when it changed, until `stop`;
/// then writes it once more as stopped. The snapshot (which looks at files) and the write run
/// on the blocking pool.
pub async fn run_writer(
    (path, every): (PathBuf, Duration),
    snapshot: impl Fn() -> StatusFile + Send + Sync + 'static,
    stop: tokio_util::sync::CancellationToken,
) {
    let writer = Arc::new(Mutex::new(Writer {
        path,
        last: None,
        warned: false,
    }));
    let snapshot = Arc::new(snapshot);
    let round = |stopped: bool| {
        let (writer, snapshot) = (Arc::clone(&writer), Arc::clone(&snapshot));
        tokio::task::spawn_blocking(move || {
            let mut status = snapshot();
            if stopped {
                status.state = "stopped".into();
            }
            writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .save(status);
        })
    };
    // A round still running (a file on a mount that hangs) is not waited for, and no other
    // starts beside it: the status holds at most one blocking thread, whatever hangs.
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        if running.as_ref().is_none_or(|r| r.is_finished()) {
            running = Some(round(false));
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => break,
        }
    }
    if running.as_ref().is_none_or(|r| r.is_finished()) {
        let _ = round(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        assert!(matches!(read(&p), Err(ReadError::Missing(_))));
        let mut s = StatusFile::new();
        s.instance_id = "rpi-1".into();
        s.logs.push(LogStatus {
            source: "/var/log/syslog".into(),
            behind_bytes: Some(10),
            ..LogStatus::default()
        });
        write(&p, &s).unwrap();
        assert_eq!(read(&p).unwrap(), s);
        assert!(!dir.path().join("status.json.tmp").exists());
        assert!(is_running(&s), "this process");
        s.state = "stopped".into();
        assert!(!is_running(&s));
        std::fs::write(&p, "{\"version\": 9}").unwrap();
        assert!(matches!(read(&p), Err(ReadError::Foreign { .. })));
    }

    #[test]
    fn readable_by_the_service_user_and_its_group_only_and_never_through_a_planted_link() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let victim = dir.path().join("elsewhere");
        std::fs::write(&victim, "keep me\n").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("status.json.tmp")).unwrap();
        write(&p, &StatusFile::new()).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me\n");
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        // The group is the service's (`Group=` in the unit): the one `status` is meant for.
        // SAFETY: getegid cannot fail.
        assert_eq!(meta.gid(), unsafe { libc::getegid() });
        // A temporary file a crash left does not stop the next write.
        std::fs::write(dir.path().join("status.json.tmp"), "half").unwrap();
        write(&p, &StatusFile::new()).unwrap();
        assert!(read(&p).is_ok());
    }

    #[test]
    fn in_a_runtime_directory_every_5_s_else_on_the_disk_once_a_minute() {
        let (state, run) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(
            place_with(state.path(), None),
            (path(state.path()), EVERY_ON_DISK)
        );
        let target = run.path().join(FILE);
        assert_eq!(
            place_with(state.path(), Some(run.path().into())),
            (target.clone(), EVERY)
        );
        assert_eq!(std::fs::read_link(path(state.path())).unwrap(), target);
    }

    #[test]
    fn a_dead_process_is_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let s = StatusFile {
            pid,
            ..StatusFile::new()
        };
        assert!(!is_running(&s));
    }
}
