//! Where each log source is, as far as CloudWatch has accepted it: file offsets (by device,
//! inode and a fingerprint of the file's first bytes) and the journal cursor.
//!
//! Positions move only after a PutLogEvents succeeded. Before anything is delivered, where
//! reading began is kept as well (a file's offset when it was first opened, the journal entry
//! reading began at) together with the file paths being followed, so that a restart begins
//! where the last run did and not at what is the end by then. The state file is replaced
//! atomically (temporary file, fsync, rename) soon after each change and at shutdown, with a
//! format version.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metric::now_ms;
use crate::sources::files::{FileKey, Fingerprint, PositionStore, FINGERPRINT_BYTES};
use crate::sources::{JournalKey, Position};

pub const STATE_FILE: &str = "logs-state.json";
const VERSION: u32 = 1;
/// Entries for files that are gone from their path are kept this long (a rotated file may
/// still be found under another name), then forgotten.
const FORGET_AFTER_MS: i64 = 7 * 24 * 3600 * 1000;
/// While positions move they are saved this long after the last save, sooner when much was
/// delivered meanwhile ([`SAVE_AFTER_BYTES`]), and at once at shutdown. A position saved late
/// can only make lines go again after a crash, never lose one; saving every acknowledgement
/// rewrote the file about once a second under a trickle of lines, wearing an SD card for
/// nothing. (Where reading begins is saved before the service is ready.)
pub const SAVE_EVERY: Duration = Duration::from_secs(300);
/// Delivered bytes that make a save due before [`SAVE_EVERY`]: what a crash may send twice.
pub const SAVE_AFTER_BYTES: u64 = 4 * 1024 * 1024;
/// Saves are at least this far apart, however fast lines are delivered.
const SAVE_GAP: Duration = Duration::from_secs(1);
/// What a journal entry delivered counts as, for [`SAVE_AFTER_BYTES`].
const JOURNAL_ENTRY_BYTES: u64 = 1024;
/// How often entries for files long gone are dropped while running.
const PRUNE_EVERY_MS: i64 = 3600 * 1000;
/// How often, at a save, entries of files that are gone (rotated and deleted) are dropped: the
/// state file stays the size of what exists, not of every file generation in a week.
const GONE_EVERY_MS: i64 = 60 * 1000;
/// How long a save waits for the folders of followed files to be looked at (to forget the
/// files that are gone) before it saves without forgetting any.
const GONE_LOOK_MAX: Duration = Duration::from_secs(5);
/// An entry moved this recently is kept even if its file is not found (a rename under way).
const GONE_GRACE_MS: i64 = 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileEntry {
    path: PathBuf,
    dev: u64,
    ino: u64,
    fingerprint: Fingerprint,
    offset: u64,
    updated_ms: i64,
}

impl FileEntry {
    /// `offset` in the file `key` names, as of now.
    fn at(key: &FileKey, offset: u64) -> FileEntry {
        FileEntry {
            path: key.path.clone(),
            dev: key.dev,
            ino: key.ino,
            fingerprint: key.fingerprint,
            offset,
            updated_ms: now_ms(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    version: u32,
    files: Vec<FileEntry>,
    journal_cursor: Option<String>,
    /// With no `journal_cursor`: the entry reading the journal began at (included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    journal_start: Option<String>,
    /// The `file_path`s (paths and patterns) being followed: a file found at one of them after
    /// a restart with no position saved for it appeared after reading began, and is read from
    /// its start.
    #[serde(default)]
    following: BTreeSet<String>,
    /// Each `journald` entry's position, by its key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    journald: BTreeMap<String, JournalState>,
    /// Each unified log reader's place, by its key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    unified_log: BTreeMap<String, String>,
}

/// Where one journal reader is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct JournalState {
    /// The last delivered entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
    /// With none delivered: the entry reading began at (included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<(u64, u64), FileEntry>,
    journal_cursor: Option<String>,
    journal_start: Option<String>,
    following: BTreeSet<String>,
    journald: BTreeMap<String, JournalState>,
    unified_log: BTreeMap<String, String>,
    /// Changes not yet on disk.
    dirty: bool,
    /// When forgotten files were last dropped.
    pruned_ms: i64,
    /// When entries of files that are gone were last dropped.
    gone_ms: i64,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}", path = .path.display())]
pub struct CheckpointError {
    path: PathBuf,
    source: std::io::Error,
}

/// The positions of every log source, shared by readers (which start from them) and senders
/// (which move them on acknowledgement).
#[derive(Debug)]
pub struct Checkpoints {
    path: Option<PathBuf>,
    state: Mutex<State>,
    changed: Notify,
    /// Bytes delivered since the last save (journal entries counted as a KiB each).
    unsaved: std::sync::atomic::AtomicU64,
}

impl Checkpoints {
    /// Positions kept nowhere (for `--dry-run`).
    pub fn in_memory() -> Self {
        Checkpoints {
            path: None,
            state: Mutex::default(),
            changed: Notify::new(),
            unsaved: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Loads the state file in `dir`. A missing file is an empty state; an unreadable or
    /// foreign one is set aside as `*.corrupt` with a warning, so the publisher still starts.
    pub fn load(dir: &Path) -> Result<Self, CheckpointError> {
        let path = dir.join(STATE_FILE);
        let err = |source| CheckpointError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut state = State::default();
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(saved) if saved.version == VERSION => {
                    let now = now_ms();
                    for f in saved.files {
                        // A fingerprint longer than we take would be someone else's file.
                        if f.fingerprint.len as u64 > FINGERPRINT_BYTES {
                            continue;
                        }
                        if keep(&f, now) {
                            state.files.insert((f.dev, f.ino), f);
                        }
                    }
                    state.journal_cursor = saved.journal_cursor;
                    state.journal_start = saved.journal_start;
                    state.following = saved.following;
                    state.journald = saved.journald;
                    state.unified_log = saved.unified_log;
                }
                Ok(saved) => {
                    set_aside(&path, &format!("format version {}", saved.version));
                }
                Err(e) => set_aside(&path, &e.to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
        Ok(Checkpoints {
            path: Some(path),
            state: Mutex::new(state),
            changed: Notify::new(),
            unsaved: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that everything up to `position` is delivered.
    pub fn commit(&self, position: &Position) {
        let mut state = self.state();
        let delivered = match position {
            Position::File(p) => {
                let before = state
                    .files
                    .insert((p.key.dev, p.key.ino), FileEntry::at(&p.key, p.offset))
                    .map_or(0, |e| e.offset);
                p.offset.saturating_sub(before)
            }
            _ => JOURNAL_ENTRY_BYTES,
        };
        self.unsaved
            .fetch_add(delivered, std::sync::atomic::Ordering::Relaxed);
        match position {
            Position::File(_) => {}
            Position::Journal(None, cursor) => {
                state.journal_cursor = Some(cursor.clone());
                state.journal_start = None;
            }
            Position::JournalFrom(None, cursor) => {
                state.journal_cursor = None;
                state.journal_start = Some(cursor.clone());
            }
            Position::Journal(Some(key), cursor) => {
                state.journald.insert(
                    key.to_string(),
                    JournalState {
                        cursor: Some(cursor.clone()),
                        start: None,
                    },
                );
            }
            Position::UnifiedLog(key, mark) => {
                state.unified_log.insert(key.to_string(), mark.clone());
            }
            Position::JournalFrom(Some(key), cursor) => {
                state.journald.insert(
                    key.to_string(),
                    JournalState {
                        cursor: None,
                        start: Some(cursor.clone()),
                    },
                );
            }
        }
        self.changed(state);
    }

    /// Marks the state changed, for the saver.
    fn changed(&self, mut state: std::sync::MutexGuard<'_, State>) {
        state.dirty = true;
        drop(state);
        self.changed.notify_one();
    }

    /// The last delivered journal entry's cursor, for the reader `key` names.
    pub fn journal_cursor(&self, key: &JournalKey) -> Option<String> {
        let state = self.state();
        match key {
            None => state.journal_cursor.clone(),
            Some(k) => state.journald.get(&**k).and_then(|j| j.cursor.clone()),
        }
    }

    /// How far delivery has come in the file now at `path` (by its device and inode); `None`
    /// when nothing is saved for it.
    pub fn file_offset(&self, path: &Path) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        let key = (meta.dev(), meta.ino());
        self.state().files.get(&key).map(|f| f.offset)
    }

    /// Where the unified log reader `key` names is, as its mark wrote it.
    pub fn unified_log_mark(&self, key: &str) -> Option<String> {
        self.state().unified_log.get(key).cloned()
    }

    /// With no delivered journal entry: the one reading began at.
    pub fn journal_start(&self, key: &JournalKey) -> Option<String> {
        let state = self.state();
        match key {
            None => state.journal_start.clone(),
            Some(k) => state.journald.get(&**k).and_then(|j| j.start.clone()),
        }
    }

    /// Records the `file_path`s followed from now on; returns those followed before (by the
    /// last run, as saved).
    pub fn follow(&self, file_paths: impl IntoIterator<Item = String>) -> BTreeSet<String> {
        let mut state = self.state();
        let now: BTreeSet<String> = file_paths.into_iter().collect();
        if now == state.following {
            return now;
        }
        let before = std::mem::replace(&mut state.following, now);
        self.changed(state);
        before
    }

    /// Writes the state file if anything changed since the last write.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        // Looking for files that are gone reads folders (a network file system may take its
        // time): done on a copy, without the lock that every delivery's commit takes.
        let now = now_ms();
        let copy = {
            let mut state = self.state();
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            let prune = now.saturating_sub(state.pruned_ms) > PRUNE_EVERY_MS;
            let gone = now.saturating_sub(state.gone_ms) > GONE_EVERY_MS;
            if prune {
                state.pruned_ms = now;
            }
            if gone {
                state.gone_ms = now;
            }
            (prune || gone).then(|| (prune, gone, state.files.clone()))
        };
        let doomed: Vec<((u64, u64), FileEntry)> = match copy {
            Some((prune, gone, files)) => {
                // On a thread of its own, waited for a while: a folder on a mount that hangs
                // must not stop positions being saved (nothing is forgotten this time).
                let (tx, rx) = std::sync::mpsc::channel();
                let looked =
                    std::thread::Builder::new()
                        .name("gone files".into())
                        .spawn(move || {
                            let mut kept = files.clone();
                            if prune {
                                kept.retain(|_, f| keep(f, now));
                            }
                            if gone {
                                drop_gone(&mut kept, now);
                            }
                            let doomed: Vec<_> = files
                                .into_iter()
                                .filter(|(k, _)| !kept.contains_key(k))
                                .collect();
                            let _ = tx.send(doomed);
                        });
                match looked {
                    Ok(_) => rx.recv_timeout(GONE_LOOK_MAX).unwrap_or_default(),
                    Err(_) => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        let saved = {
            let mut state = self.state();
            // An entry that moved meanwhile is alive.
            for (k, e) in doomed {
                if state.files.get(&k) == Some(&e) {
                    state.files.remove(&k);
                }
            }
            let mut files: Vec<FileEntry> = state.files.values().cloned().collect();
            // By device too: one path on two devices (a remounted disk) would otherwise come
            // out in the map's order, and each save of the same state differ.
            files.sort_by(|a, b| (&a.path, a.ino, a.dev).cmp(&(&b.path, b.ino, b.dev)));
            Saved {
                version: VERSION,
                files,
                journal_cursor: state.journal_cursor.clone(),
                journal_start: state.journal_start.clone(),
                following: state.following.clone(),
                journald: state.journald.clone(),
                unified_log: state.unified_log.clone(),
            }
        };
        let result = crate::durable::write_atomically(path, &serde_json::to_vec(&saved)?);
        if result.is_err() {
            self.state().dirty = true;
        }
        result
    }

    /// Saves changes until `cancel`, then once more: [`SAVE_EVERY`] after the last save, or
    /// sooner once [`SAVE_AFTER_BYTES`] were delivered since, but never within [`SAVE_GAP`].
    pub async fn run_saver(self: Arc<Self>, cancel: CancellationToken) {
        use std::sync::atomic::Ordering;
        let mut failing = false;
        let mut last_save = tokio::time::Instant::now();
        loop {
            let mut stop = tokio::select! {
                _ = self.changed.notified() => false,
                _ = cancel.cancelled() => true,
            };
            // Wait for the save to be due; every change looks again at what was delivered.
            let due = last_save + SAVE_EVERY;
            while !stop && self.unsaved.load(Ordering::Relaxed) < SAVE_AFTER_BYTES {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => break,
                    _ = self.changed.notified() => {}
                    _ = cancel.cancelled() => stop = true,
                }
            }
            self.unsaved.store(0, Ordering::Relaxed);
            let this = Arc::clone(&self);
            let result = tokio::task::spawn_blocking(move || this.save())
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            last_save = tokio::time::Instant::now();
            match result {
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(file = %self.path.as_deref().unwrap_or(Path::new("")).display(), error = %e,
                        "Cannot save log positions; after a restart some lines may be sent twice.");
                }
                Err(_) => {}
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(file = %self.path.as_deref().unwrap_or(Path::new("")).display(),
                        "Log positions are saved again.");
                }
                Ok(()) => {}
            }
            if stop {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(SAVE_GAP) => {}
                _ = cancel.cancelled() => {}
            }
        }
    }
}

impl PositionStore for Checkpoints {
    fn offset(&self, dev: u64, ino: u64) -> Option<(Fingerprint, u64)> {
        self.state()
            .files
            .get(&(dev, ino))
            .map(|f| (f.fingerprint, f.offset))
    }

    fn last_at(&self, path: &Path) -> Option<(u64, u64, Fingerprint, u64)> {
        self.state()
            .files
            .values()
            .filter(|f| f.path == path)
            .max_by_key(|f| f.updated_ms)
            .map(|f| (f.dev, f.ino, f.fingerprint, f.offset))
    }

    fn saved_at(&self, path: &Path) -> Vec<(u64, u64, Fingerprint, u64)> {
        self.state()
            .files
            .values()
            .filter(|f| f.path == path)
            .map(|f| (f.dev, f.ino, f.fingerprint, f.offset))
            .collect()
    }

    fn record_start(&self, key: &FileKey, offset: u64) {
        let mut state = self.state();
        if state.files.contains_key(&(key.dev, key.ino)) {
            return;
        }
        state
            .files
            .insert((key.dev, key.ino), FileEntry::at(key, offset));
        self.changed(state);
    }
}

/// Whether to keep remembering a file: it is still at its path, or was seen lately (a rotated
/// file may still be found under another name).
fn keep(f: &FileEntry, now: i64) -> bool {
    use std::os::unix::fs::MetadataExt;
    now.saturating_sub(f.updated_ms) < FORGET_AFTER_MS
        || std::fs::metadata(&f.path).is_ok_and(|m| m.dev() == f.dev && m.ino() == f.ino)
}

/// Drops the entries of files no longer in their folder (looked up by inode, so a file renamed
/// in its folder by rotation is still there). A folder that cannot be read keeps its entries,
/// and so does an entry moved in the last [`GONE_GRACE_MS`].
fn drop_gone(files: &mut HashMap<(u64, u64), FileEntry>, now: i64) {
    use std::os::unix::fs::{DirEntryExt, MetadataExt};
    #[cfg(test)]
    std::thread::sleep(std::time::Duration::from_millis(
        tests::SLOW_FOLDERS_MS.load(std::sync::atomic::Ordering::Relaxed),
    ));
    let mut folders: HashMap<PathBuf, Option<(u64, std::collections::HashSet<u64>)>> =
        HashMap::new();
    files.retain(|_, f| {
        if now.saturating_sub(f.updated_ms) < GONE_GRACE_MS {
            return true;
        }
        let Some(dir) = f.path.parent() else {
            return true;
        };
        let inodes = folders.entry(dir.to_owned()).or_insert_with(|| {
            let dev = std::fs::metadata(dir).ok()?.dev();
            let entries = std::fs::read_dir(dir).ok()?;
            Some((dev, entries.flatten().map(|e| e.ino()).collect()))
        });
        match inodes {
            // On another device than the entry's (remounted?): not for us to judge.
            Some((dev, inodes)) if *dev == f.dev => inodes.contains(&f.ino),
            _ => true,
        }
    });
}

fn set_aside(path: &Path, why: &str) {
    let aside = path.with_extension("json.corrupt");
    let _ = std::fs::rename(path, &aside);
    tracing::warn!(file = %path.display(), moved_to = %aside.display(), reason = why,
        "Cannot use the saved log positions; starting without them (files are read from their end, the journal from the start of this boot).");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::files::FilePosition;

    /// How long reading folders takes in a save (as on a slow network file system).
    pub(super) static SLOW_FOLDERS_MS: std::sync::atomic::AtomicU64 =
        std::sync::atomic::AtomicU64::new(0);

    #[test]
    fn a_save_reading_slow_folders_never_holds_up_a_commit() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Checkpoints::load(dir.path()).unwrap());
        let a = key("/var/log/a.log", 10);
        c.commit(&Position::File(FilePosition {
            key: Arc::new(a.clone()),
            offset: 1,
        }));
        SLOW_FOLDERS_MS.store(600, std::sync::atomic::Ordering::Relaxed);
        let saver = {
            let c = Arc::clone(&c);
            std::thread::spawn(move || c.save())
        };
        std::thread::sleep(std::time::Duration::from_millis(150));
        let started = std::time::Instant::now();
        c.commit(&Position::File(FilePosition {
            key: Arc::new(a),
            offset: 2,
        }));
        let took = started.elapsed();
        saver.join().unwrap().unwrap();
        SLOW_FOLDERS_MS.store(0, std::sync::atomic::Ordering::Relaxed);
        assert!(
            took < std::time::Duration::from_millis(300),
            "a commit waited {took:?} for the save"
        );
        assert_eq!(c.offset(1, 10).unwrap().1, 2);
    }

    fn key(path: &str, ino: u64) -> FileKey {
        FileKey {
            path: PathBuf::from(path),
            dev: 1,
            ino,
            fingerprint: Fingerprint { len: 4, hash: 7 },
        }
    }

    #[test]
    fn a_start_is_recorded_once_and_never_moves_a_delivered_position() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        let a = key("/var/log/a.log", 10);
        c.record_start(&a, 100);
        assert_eq!(c.offset(1, 10), Some((a.fingerprint, 100)));
        c.record_start(&a, 500);
        assert_eq!(c.offset(1, 10).unwrap().1, 100, "the first start stays");
        c.commit(&Position::File(FilePosition {
            key: Arc::new(a.clone()),
            offset: 300,
        }));
        c.record_start(&a, 0);
        assert_eq!(c.offset(1, 10).unwrap().1, 300, "delivered stays delivered");
        c.save().unwrap();
        let again = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(again.offset(1, 10).unwrap().1, 300);
        assert_eq!(
            again.last_at(Path::new("/var/log/a.log")),
            Some((1, 10, a.fingerprint, 300))
        );
    }

    #[test]
    fn the_followed_paths_and_the_journal_start_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        let before = c.follow(["/var/log/*.log".to_owned(), "/srv/app.log".to_owned()]);
        assert!(before.is_empty(), "nothing followed on a first start");
        c.commit(&Position::JournalFrom(None, "first".into()));
        let key: JournalKey = Some("g/s".into());
        c.commit(&Position::JournalFrom(key.clone(), "other".into()));
        c.save().unwrap();

        let c = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(c.journal_start(&None).as_deref(), Some("first"));
        assert_eq!(c.journal_cursor(&None), None);
        let key: JournalKey = Some("g/s".into());
        assert_eq!(
            c.journal_start(&key).as_deref(),
            Some("other"),
            "each reader its own"
        );
        let before = c.follow(["/srv/app.log".to_owned()]);
        assert_eq!(
            before.into_iter().collect::<Vec<_>>(),
            ["/srv/app.log", "/var/log/*.log"]
        );
        // A delivered entry replaces where reading began.
        c.commit(&Position::Journal(None, "delivered".into()));
        assert_eq!(c.journal_start(&None), None);
        c.save().unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(c.journal_cursor(&None).as_deref(), Some("delivered"));
        assert_eq!(c.journal_start(&key).as_deref(), Some("other"));
        assert_eq!(
            c.follow(Vec::new()).into_iter().collect::<Vec<_>>(),
            ["/srv/app.log"]
        );
    }

    #[test]
    fn nothing_changed_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        c.follow(["/srv/app.log".to_owned()]);
        c.save().unwrap();
        let path = dir.path().join(STATE_FILE);
        std::fs::remove_file(&path).unwrap();
        c.follow(["/srv/app.log".to_owned()]);
        c.record_start(&key("/srv/app.log", 3), 0);
        c.record_start(&key("/srv/app.log", 3), 9);
        c.save().unwrap();
        assert!(path.exists(), "a new start is written");
        std::fs::remove_file(&path).unwrap();
        c.follow(["/srv/app.log".to_owned()]);
        c.record_start(&key("/srv/app.log", 3), 9);
        c.save().unwrap();
        assert!(!path.exists(), "no change, no write");
    }

    #[test]
    fn entries_of_deleted_files_go_and_renamed_ones_stay() {
        use std::os::unix::fs::MetadataExt;
        let logs = tempfile::tempdir().unwrap();
        let real = |name: &str| {
            let path = logs.path().join(name);
            std::fs::write(&path, "x\n").unwrap();
            let m = std::fs::metadata(&path).unwrap();
            FileEntry {
                path,
                dev: m.dev(),
                ino: m.ino(),
                fingerprint: Fingerprint { len: 2, hash: 1 },
                offset: 2,
                updated_ms: 0,
            }
        };
        let (kept, renamed, deleted, recent) = (
            real("app.log"),
            real("app.log.1"),
            real("app.log.2"),
            real("new.log"),
        );
        std::fs::rename(logs.path().join("app.log.1"), logs.path().join("app.log.3")).unwrap();
        std::fs::remove_file(&deleted.path).unwrap();
        std::fs::remove_file(&recent.path).unwrap();
        let now = 10 * GONE_GRACE_MS;
        let recent = FileEntry {
            updated_ms: now - 1,
            ..recent
        };
        let unreadable = FileEntry {
            path: PathBuf::from("/nonexistent-folder/x.log"),
            ..kept.clone()
        };
        let mut files: HashMap<(u64, u64), FileEntry> = [&kept, &renamed, &deleted, &recent]
            .into_iter()
            .map(|f| ((f.dev, f.ino), f.clone()))
            .collect();
        files.insert((unreadable.dev, u64::MAX), unreadable);
        drop_gone(&mut files, now);
        let mut left: Vec<&Path> = files.values().map(|f| f.path.as_path()).collect();
        left.sort();
        let mut want = vec![
            kept.path.as_path(),
            renamed.path.as_path(),
            recent.path.as_path(),
            Path::new("/nonexistent-folder/x.log"),
        ];
        want.sort();
        assert_eq!(left, want);
    }

    #[test]
    fn one_path_on_two_devices_is_saved_in_one_order() {
        // Found by the state file fuzz target: entries differing only in their device came out
        // in the map's order, so saving the same state twice wrote different files.
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        for dev in [9, 1, 5] {
            c.record_start(
                &FileKey {
                    dev,
                    ..key("/var/log/x.log", 7)
                },
                dev,
            );
        }
        c.save().unwrap();
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        let devs: Vec<u64> = saved["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["dev"].as_u64().unwrap())
            .collect();
        assert_eq!(devs, [1, 5, 9]);
    }

    #[test]
    fn a_state_file_from_before_start_positions_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"version":1,"files":[{"path":"/a","dev":1,"ino":2,"fingerprint":{"len":3,"hash":4},"offset":5,"updated_ms":0}],"journal_cursor":"c"}"#,
        )
        .unwrap();
        let c = Checkpoints::load(dir.path()).unwrap();
        assert_eq!(c.journal_cursor(&None).as_deref(), Some("c"));
        assert_eq!(c.journal_start(&None), None);
        assert!(c.follow(Vec::new()).is_empty());
    }
}
