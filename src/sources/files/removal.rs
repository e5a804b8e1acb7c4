//! `auto_removal`: a log file that is no longer written is removed once every line of it is
//! delivered, so rotated logs do not fill a small disk. Two kinds of file qualify:
//!
//! - a file rotated away from a followed path (renamed, or the copy `copytruncate` left),
//!   once its tailer has read it to the end;
//! - for a pattern, a file older than the newest one it matches (the CloudWatch Agent's rule:
//!   a newer file means the writer has moved on).
//!
//! Never the active file: not the file at a followed path, not the newest match of a pattern,
//! not a file written lately or since it was read, not a file the saved positions do not show
//! delivered to its end.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::tailer::same_start;
use super::{expand, FileKey, PositionStore, Registry};

/// How long a file must have gone unwritten before it may be removed.
pub const QUIET: Duration = Duration::from_secs(5);
/// Rotated files waiting for their lines to be delivered, at most; more are left in place.
pub const MAX_WAITING: usize = 1024;

/// A rotated file read to `end`, to be removed once that is delivered.
#[derive(Debug)]
pub struct Retired {
    /// The path the file was followed at; it is looked for in the same folder.
    pub followed: PathBuf,
    pub key: Arc<FileKey>,
    pub end: u64,
}

/// What is done with a retired file.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Not delivered or not quiet yet: look again later.
    Wait,
    /// Removed, or never to be: forget it.
    Done,
}

/// Removes what `auto_removal` allows, a look at a time.
#[derive(Debug, Default)]
pub struct Remover {
    waiting: Vec<Retired>,
    /// Patterns of the entries with `auto_removal`.
    patterns: Vec<String>,
    /// Every entry's plain (non-pattern) path: never removed.
    active: Vec<PathBuf>,
}

impl Remover {
    pub fn new(patterns: Vec<String>, active: Vec<PathBuf>) -> Self {
        Remover {
            waiting: Vec::new(),
            patterns,
            active,
        }
    }

    /// One look at every candidate. Blocking.
    pub fn sweep(&mut self, registry: &Registry, store: &dyn PositionStore) {
        let room = MAX_WAITING.saturating_sub(self.waiting.len());
        self.waiting
            .extend(registry.take_retired().into_iter().take(room));
        self.waiting
            .retain(|r| retired(r, &self.active, store) == Verdict::Wait);
        for pattern in &self.patterns {
            superseded(pattern, &self.active, registry, store);
        }
    }
}

/// Whether the saved positions show the file with this device and inode delivered to `len`;
/// `None` when they know nothing of it.
fn delivered(store: &dyn PositionStore, dev: u64, ino: u64, len: u64) -> Option<bool> {
    store.offset(dev, ino).map(|(_, offset)| offset >= len)
}

fn quiet(meta: &std::fs::Metadata) -> bool {
    meta.modified()
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= QUIET)
}

fn retired(r: &Retired, active: &[PathBuf], store: &dyn PositionStore) -> Verdict {
    let (dev, ino) = (r.key.dev, r.key.ino);
    match delivered(store, dev, ino, r.end) {
        Some(true) => {}
        Some(false) => return Verdict::Wait,
        None => return Verdict::Done,
    }
    let Some((path, meta)) = find(r) else {
        tracing::debug!(file = %r.followed.display(),
            "A rotated log file to remove is no longer beside its path; nothing removed.");
        return Verdict::Done;
    };
    if path == r.followed || active.contains(&path) {
        return Verdict::Done;
    }
    if meta.len() != r.end {
        if meta.len() > r.end {
            tracing::warn!(file = %path.display(), read_to = r.end, size = meta.len(),
                "A rotated log file was written to after it was read to its end; leaving it in place (auto_removal).");
        }
        return Verdict::Done;
    }
    if !quiet(&meta) {
        return Verdict::Wait;
    }
    remove(&path, &r.key, "rotated");
    Verdict::Done
}

/// The rotated file: at the path it was last known by, or anywhere beside the followed path.
fn find(r: &Retired) -> Option<(PathBuf, std::fs::Metadata)> {
    let same = |m: &std::fs::Metadata| m.is_file() && (m.dev(), m.ino()) == (r.key.dev, r.key.ino);
    if let Ok(m) = std::fs::metadata(&r.key.path) {
        if same(&m) {
            return Some((r.key.path.clone(), m));
        }
    }
    std::fs::read_dir(r.followed.parent()?)
        .ok()?
        .flatten()
        .find_map(|e| {
            let m = e.metadata().ok()?;
            same(&m).then(|| (e.path(), m))
        })
}

/// Removes every file `pattern` matches that is older than its newest match, quiet, read by a
/// tailer right now (so a late line is still read from the open file), and delivered to its
/// end.
fn superseded(pattern: &str, active: &[PathBuf], registry: &Registry, store: &dyn PositionStore) {
    let found: Vec<(PathBuf, std::fs::Metadata)> = expand(pattern)
        .into_iter()
        .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m)))
        .collect();
    let Some(newest) = found.iter().filter_map(|(_, m)| m.modified().ok()).max() else {
        return;
    };
    for (path, meta) in &found {
        if meta.modified().ok() == Some(newest) || active.contains(path) || !quiet(meta) {
            continue;
        }
        if !registry.is_open(meta.dev(), meta.ino())
            || delivered(store, meta.dev(), meta.ino(), meta.len()) != Some(true)
        {
            continue;
        }
        let Some((fingerprint, _)) = store.offset(meta.dev(), meta.ino()) else {
            continue;
        };
        let key = FileKey {
            path: path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint,
        };
        remove(path, &key, "superseded by a newer file");
    }
}

/// Removes `path` if it is still `key`'s file.
fn remove(path: &Path, key: &FileKey, why: &str) {
    let Ok(file) = std::fs::File::open(path) else {
        return;
    };
    let Ok(meta) = file.metadata() else { return };
    if (meta.dev(), meta.ino()) != (key.dev, key.ino) || !same_start(&file, &key.fingerprint) {
        return;
    }
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(file = %path.display(), bytes = meta.len(), why,
            "Removed a log file: every line of it is delivered (auto_removal)."),
        Err(e) => tracing::warn!(file = %path.display(), error = %e,
            "Cannot remove a delivered log file (auto_removal); the publisher needs write access to its folder."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::files::{fingerprint, Fingerprint};
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Saved(Mutex<HashMap<(u64, u64), (Fingerprint, u64)>>);

    impl PositionStore for Saved {
        fn offset(&self, dev: u64, ino: u64) -> Option<(Fingerprint, u64)> {
            self.0.lock().unwrap().get(&(dev, ino)).copied()
        }
        fn last_at(&self, _: &Path) -> Option<(u64, u64, Fingerprint, u64)> {
            None
        }
        fn record_start(&self, _: &FileKey, _: u64) {}
    }

    fn key_of(path: &Path) -> FileKey {
        let m = std::fs::metadata(path).unwrap();
        let f = std::fs::File::open(path).unwrap();
        FileKey {
            path: path.to_owned(),
            dev: m.dev(),
            ino: m.ino(),
            fingerprint: fingerprint(&f, m.len()).unwrap(),
        }
    }

    fn age(path: &Path, ago: Duration) {
        let t = std::time::SystemTime::now() - ago;
        std::fs::File::options()
            .append(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_rotated_file_goes_only_once_delivered_to_its_end_and_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let followed = dir.path().join("app.log");
        let rotated = dir.path().join("app.log.1");
        std::fs::write(&rotated, "one\ntwo\n").unwrap();
        std::fs::write(&followed, "three\n").unwrap();
        let key = Arc::new(key_of(&rotated));
        let saved = Saved::default();
        let registry = Registry::default();
        let mut remover = Remover::new(Vec::new(), Vec::new());
        registry.retire(Retired {
            followed: followed.clone(),
            key: Arc::clone(&key),
            end: 8,
        });
        // Half delivered: kept.
        saved
            .0
            .lock()
            .unwrap()
            .insert((key.dev, key.ino), (key.fingerprint, 4));
        age(&rotated, QUIET * 2);
        remover.sweep(&registry, &saved);
        assert!(rotated.exists());
        // Delivered but written a moment ago: kept.
        saved
            .0
            .lock()
            .unwrap()
            .insert((key.dev, key.ino), (key.fingerprint, 8));
        age(&rotated, Duration::ZERO);
        remover.sweep(&registry, &saved);
        assert!(rotated.exists());
        // Delivered and quiet, and renamed again meanwhile: found beside the path, removed.
        let older = dir.path().join("app.log.2");
        std::fs::rename(&rotated, &older).unwrap();
        age(&older, QUIET * 2);
        remover.sweep(&registry, &saved);
        assert!(!older.exists());
        assert!(followed.exists(), "the active file stays");
        assert!(remover.waiting.is_empty());
    }

    #[test]
    fn a_rotated_file_written_after_it_was_read_stays() {
        let dir = tempfile::tempdir().unwrap();
        let rotated = dir.path().join("app.log.1");
        std::fs::write(&rotated, "one\ntwo\n").unwrap();
        let key = Arc::new(key_of(&rotated));
        std::fs::write(&rotated, "one\ntwo\nlate\n").unwrap();
        age(&rotated, QUIET * 2);
        let saved = Saved::default();
        saved
            .0
            .lock()
            .unwrap()
            .insert((key.dev, key.ino), (key.fingerprint, 8));
        let registry = Registry::default();
        registry.retire(Retired {
            followed: dir.path().join("app.log"),
            key,
            end: 8,
        });
        let mut remover = Remover::new(Vec::new(), Vec::new());
        remover.sweep(&registry, &saved);
        assert!(rotated.exists());
        assert!(remover.waiting.is_empty(), "not looked at again");
    }

    #[test]
    fn of_a_patterns_files_the_newest_stays_and_older_ones_go_once_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("app-1.log"),
            dir.path().join("app-2.log"),
            dir.path().join("app-3.log"),
        );
        for p in [&a, &b, &c] {
            std::fs::write(p, format!("{}\n", p.display())).unwrap();
        }
        age(&a, QUIET * 4);
        age(&b, QUIET * 3);
        age(&c, QUIET * 2);
        let saved = Saved::default();
        let registry = Registry::default();
        for p in [&a, &b, &c] {
            let k = key_of(p);
            let len = std::fs::metadata(p).unwrap().len();
            registry.opened(k.dev, k.ino);
            // app-2 is not delivered to its end.
            let offset = if p == &b { len - 1 } else { len };
            saved
                .0
                .lock()
                .unwrap()
                .insert((k.dev, k.ino), (k.fingerprint, offset));
        }
        let pattern = dir.path().join("app-*.log").to_string_lossy().into_owned();
        let mut remover = Remover::new(vec![pattern], Vec::new());
        remover.sweep(&registry, &saved);
        assert!(!a.exists(), "older and delivered");
        assert!(b.exists(), "older but not delivered");
        assert!(c.exists(), "the newest is the active file");
    }
}
