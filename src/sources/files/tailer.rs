//! Follows one path: waits for it to exist, reads new lines, and keeps going through rename
//! rotation, copytruncate, deletion and inode reuse. A file is known by device, inode and a
//! fingerprint of its first bytes, so a recycled inode is not mistaken for the old file.
//!
//! Blocking code: the reader calls [`Tailer::step`] on tokio's blocking pool.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::lines::LineBuffer;
use super::Registry;

/// Bytes read per system call.
pub const CHUNK: usize = 64 * 1024;
/// How much of a file's start identifies it.
pub const FINGERPRINT_BYTES: u64 = 1024;
/// After the path names a new file, the old one is still read until it has not been written
/// for this long: a writer may not have reopened its log yet (logrotate's `create` before the
/// HUP).
pub const ROTATE_QUIET: Duration = Duration::from_secs(1);
/// Files that replaced one another at the path while the one being read was finished; more
/// than this many rotations before the reader catches up is not a log but a storm.
const MAX_PENDING: usize = 16;

/// A hash of a file's first `len` bytes (at most [`FINGERPRINT_BYTES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: u64,
}

/// Which file a position is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileKey {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub fingerprint: Fingerprint,
}

/// A byte offset in a file: everything before it is delivered once this is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePosition {
    pub key: Arc<FileKey>,
    pub offset: u64,
}

/// Saved positions, as the tailer needs them.
pub trait PositionStore: Send + Sync {
    /// The saved fingerprint and offset of the file with this device and inode.
    fn offset(&self, dev: u64, ino: u64) -> Option<(Fingerprint, u64)>;
    /// The most recent saved file at `path`: (device, inode, fingerprint, offset).
    fn last_at(&self, path: &Path) -> Option<(u64, u64, Fingerprint, u64)>;
    /// Every saved file that was read at `path` (as [`PositionStore::last_at`] gives one).
    fn saved_at(&self, path: &Path) -> Vec<(u64, u64, Fingerprint, u64)> {
        self.last_at(path).into_iter().collect()
    }
    /// Keeps where reading a file with no saved position began, so that a restart before
    /// anything of it is delivered begins there too (and not at what is its end by then).
    fn record_start(&self, key: &FileKey, offset: u64);
}

/// Where lines go.
pub trait LineSink {
    /// One line's text (`None` for a line with nothing to send) and the position after it.
    fn line(&mut self, text: Option<&str>, position: FilePosition);
    /// False once the sink would rather hand out a full batch than take more.
    fn wants_more(&self) -> bool;
}

/// Where to start in a file there is no saved position for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    End,
    Beginning,
}

/// What [`Tailer::look`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    Unchanged,
    /// The file only grew, by this many bytes not read yet.
    Grew(u64),
    /// Anything else: read now.
    Changed,
}

/// What a call to [`Tailer::step`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Lines were read; call again soon.
    Read,
    /// Nothing new: at the end of the file.
    Idle,
    /// No readable file at the path (yet).
    Missing,
}

struct Current {
    file: File,
    key: Arc<FileKey>,
    /// Offset of the end of what has been read into the line buffer.
    read_offset: u64,
}

pub struct Tailer {
    path: PathBuf,
    start: StartAt,
    current: Option<Current>,
    lines: LineBuffer,
    /// The files the path named after the one being read, oldest first, each opened as soon
    /// as it was seen there ([`Tailer::watch`]), so it is read in turn even if it is rotated
    /// away before the reader gets to it.
    pending: VecDeque<(File, u64, u64)>,
    /// While `current` is the copy a copytruncate left, the truncated file itself, to be read
    /// from its start once the copy is finished.
    after_copy: Option<Current>,
    /// The last problem reported, so each is reported once.
    problem: Option<String>,
    registry: Option<Arc<Registry>>,
    /// Set until the first open: the place a rotated-while-stopped file may be found.
    first_open: bool,
    /// Hand each rotated file, once finished, to the registry to be removed when delivered.
    auto_removal: bool,
    /// Bytes the last [`Tailer::step`] read.
    last_read: usize,
}

impl Tailer {
    /// `start` applies to a file with no saved position seen on the first look; files that
    /// appear later are always read from the beginning. Where reading a file begins is
    /// decided when it is opened: by the first [`Tailer::step`], or earlier by
    /// [`Tailer::open_now`].
    pub fn new(path: PathBuf, start: StartAt, registry: Option<Arc<Registry>>) -> Self {
        Tailer {
            path,
            start,
            current: None,
            lines: LineBuffer::default(),
            pending: VecDeque::new(),
            after_copy: None,
            problem: None,
            registry,
            first_open: true,
            auto_removal: false,
            last_read: 0,
        }
    }

    /// Rotated files are removed once delivered (`auto_removal`); needs a registry.
    pub fn with_auto_removal(mut self, on: bool) -> Self {
        self.auto_removal = on;
        self
    }

    /// A rotated file read to its end `end`: to be removed once that is delivered.
    fn retire(&self, key: &Arc<FileKey>, end: u64) {
        if let (true, Some(r)) = (self.auto_removal, &self.registry) {
            r.retire(super::removal::Retired {
                followed: self.path.clone(),
                key: Arc::clone(key),
                end,
            });
        }
    }

    /// Reads the file as `encoding` (UTF-8 unless given).
    pub fn with_encoding(mut self, encoding: super::Encoding) -> Self {
        self.lines = LineBuffer::new(encoding);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many bytes the last [`Tailer::step`] read: less than its budget plus [`CHUNK`].
    pub fn last_read(&self) -> usize {
        self.last_read
    }

    /// A cheap look (two `stat`s, and a read of the first bytes of a file that grew) for
    /// whether a [`Tailer::step`] could find anything, telling apart a file that only grew (more lines, which can wait a moment) from every other change
    /// (truncation, also when written past the old length since; rotation; deletion: looked at
    /// at once).
    pub fn look(&self) -> Look {
        match &self.current {
            Some(cur) => {
                let Ok(meta) = cur.file.metadata() else {
                    return Look::Changed;
                };
                let same = meta.nlink() > 0
                    && std::fs::metadata(&self.path)
                        .is_ok_and(|m| (m.dev(), m.ino()) == (cur.key.dev, cur.key.ino));
                match (same, meta.len().cmp(&cur.read_offset)) {
                    (true, std::cmp::Ordering::Equal) => Look::Unchanged,
                    // Longer, and still starting as it did: not truncated and written again.
                    (true, std::cmp::Ordering::Greater)
                        if same_start(&cur.file, &cur.key.fingerprint) =>
                    {
                        Look::Grew(meta.len() - cur.read_offset)
                    }
                    _ => Look::Changed,
                }
            }
            None if !self.first_open && std::fs::metadata(&self.path).is_err() => Look::Unchanged,
            None => Look::Changed,
        }
    }

    /// Looks at the path (a `stat`, and an `open` when it names a file not seen yet) and
    /// queues a file that replaced the one being read. Cheap enough to call every few hundred
    /// milliseconds, also while the reader waits for CloudWatch, so a file that lives at the
    /// path only briefly before being rotated away again is still seen.
    pub fn watch(&mut self) {
        let Some(cur) = &self.current else {
            return;
        };
        let known = |dev: u64, ino: u64, t: &Tailer| {
            (dev, ino) == (cur.key.dev, cur.key.ino)
                || t.after_copy
                    .as_ref()
                    .is_some_and(|a| (dev, ino) == (a.key.dev, a.key.ino))
                || t.pending.iter().any(|p| (p.1, p.2) == (dev, ino))
        };
        let Ok(m) = std::fs::metadata(&self.path) else {
            return;
        };
        if !m.is_file() || known(m.dev(), m.ino(), self) {
            return;
        }
        // What was opened is what counts: the path may have changed again in between.
        let Ok(file) = File::open(&self.path) else {
            return;
        };
        let Ok(m) = file.metadata() else {
            return;
        };
        if known(m.dev(), m.ino(), self) {
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.report(format!(
                "was replaced more than {MAX_PENDING} times before the reader caught up; \
                 skipping a rotated file"
            ));
            return;
        }
        self.pending.push_back((file, m.dev(), m.ino()));
    }

    /// Whether files are queued behind the one being finished: then the path should be
    /// watched closely.
    pub fn rotating(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Opens the file at the path now, if there is one, so where reading begins is decided
    /// (and recorded in `store`) before the first read. False if no file could be opened.
    pub fn open_now(&mut self, store: &dyn PositionStore) -> bool {
        self.current.is_some() || self.open(store)
    }

    /// Reads up to about `budget` bytes into `sink`.
    pub fn step(
        &mut self,
        lookup: &dyn PositionStore,
        sink: &mut dyn LineSink,
        budget: usize,
    ) -> Step {
        if self.current.is_none() && !self.open(lookup) {
            return Step::Missing;
        }
        // Truncated while we were not reading (CloudWatch slow, say) and grown again: notice it
        // before reading new bytes as if they followed the old ones.
        if self.after_copy.is_none() {
            if let Some(cur) = &self.current {
                if cur.file.metadata().is_ok_and(|m| m.len() < cur.read_offset)
                    || !same_start(&cur.file, &cur.key.fingerprint)
                {
                    self.truncated();
                }
            }
        }
        self.last_read = 0;
        let mut total = 0;
        loop {
            let Some(cur) = self.current.as_mut() else {
                return Step::Missing;
            };
            let spare = self.lines.spare(CHUNK);
            let n = match cur.file.read(spare) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => 0,
                Err(e) => {
                    self.lines.filled(CHUNK, 0);
                    self.report(format!("cannot read: {e}; trying again"));
                    return Step::Idle;
                }
            };
            self.lines.filled(CHUNK, n);
            if n == 0 {
                self.lines.release_if_empty();
                return match self.at_eof(lookup, sink) {
                    Step::Idle if total > 0 => Step::Read,
                    step => step,
                };
            }
            self.problem = None;
            cur.read_offset += n as u64;
            total += n;
            self.last_read = total;
            let base = cur.read_offset - self.lines.pending() as u64;
            let key = &cur.key;
            self.lines.drain(|text, end| {
                sink.line(
                    text,
                    FilePosition {
                        key: Arc::clone(key),
                        offset: base + end as u64,
                    },
                )
            });
            if !sink.wants_more() || total >= budget {
                self.lines.shrink();
                return Step::Read;
            }
        }
    }

    /// Opens the file at the path, at its saved offset, or else where `start` says.
    fn open(&mut self, lookup: &dyn PositionStore) -> bool {
        // Opening a pipe or a device could block for good; only regular files are followed.
        if let Ok(meta) = std::fs::metadata(&self.path) {
            if !meta.is_file() && !meta.is_dir() {
                self.report(
                    "is not a regular file (a pipe or a device); only files are followed".into(),
                );
                return false;
            }
        }
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if std::mem::replace(&mut self.first_open, false) {
                    // A path with no file now: whatever appears later is read from its start.
                    self.start = StartAt::Beginning;
                }
                return false;
            }
            Err(e) => {
                self.report(format!(
                    "cannot open: {e}; trying again until it can be read"
                ));
                return false;
            }
        };
        self.adopt(file, lookup)
    }

    /// Starts reading `file`, which the path named when it was opened.
    fn adopt(&mut self, file: File, lookup: &dyn PositionStore) -> bool {
        let first = std::mem::replace(&mut self.first_open, false);
        let Ok(meta) = file.metadata() else {
            return false;
        };
        if meta.is_dir() {
            self.report(
                "is a directory, not a file; to ship the files in it, give a pattern such as DIR/*.log"
                    .into(),
            );
            return false;
        }
        if first {
            let saved = lookup.saved_at(&self.path);
            if !saved.is_empty() {
                self.start = StartAt::Beginning;
            }
            let others: Vec<_> = saved
                .into_iter()
                .filter(|s| (s.0, s.1) != (meta.dev(), meta.ino()))
                .collect();
            let file = match self.resume_rotated(&others, file, (meta.dev(), meta.ino())) {
                Ok(started) => return started,
                Err(file) => file,
            };
            return self.adopt_at_path(file, meta, lookup);
        }
        self.adopt_at_path(file, meta, lookup)
    }

    /// Starts reading `file` (with `meta`), found at the path.
    fn adopt_at_path(
        &mut self,
        file: File,
        meta: std::fs::Metadata,
        lookup: &dyn PositionStore,
    ) -> bool {
        let fingerprint = fingerprint(&file, meta.len()).unwrap_or(Fingerprint { len: 0, hash: 0 });
        let mut copy = None;
        // A file with a saved position needs no record of where reading it began: the saved
        // position leads a restart to the same place (for a file truncated while stopped, to
        // its copy), and replacing it now could lose that copy's rest.
        let mut record_start = false;
        let offset = match lookup.offset(meta.dev(), meta.ino()) {
            Some((saved, offset)) if same_start(&file, &saved) && offset <= meta.len() => offset,
            Some((saved, offset)) => {
                // Same inode, other content: truncated while stopped (or a recycled inode).
                // If a copy with the old start is beside it, its rest comes first.
                let old = FileKey {
                    path: self.path.clone(),
                    dev: meta.dev(),
                    ino: meta.ino(),
                    fingerprint: saved,
                };
                copy = find_copy(&self.path, &old, offset).map(|(f, k)| {
                    let from = match lookup.offset(k.dev, k.ino) {
                        Some((fp, done)) if same_start(&f, &fp) => done.max(offset),
                        _ => offset,
                    };
                    (f, k, from)
                });
                0
            }
            // A file never read: where it begins is recorded, since a restart before anything
            // of it is delivered would otherwise decide anew, from what is there by then.
            None => {
                record_start = true;
                match self.start {
                    StartAt::End => meta.len(),
                    StartAt::Beginning => 0,
                }
            }
        };
        self.start = StartAt::Beginning;
        if self.problem.take().is_some() {
            tracing::info!(file = %self.path.display(), "Log file can be read now.");
        }
        let key = FileKey {
            path: self.path.clone(),
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint,
        };
        if record_start {
            lookup.record_start(&key, offset);
        }
        if !self.set_current(file, key, offset) {
            return false;
        }
        if let Some((file, key, from)) = copy {
            self.start_copy(file, key, from);
        }
        true
    }

    /// Reads the copy `file` from `from` to its end before going on with the current file
    /// (which the caller has set to read from its start).
    fn start_copy(&mut self, mut file: File, key: FileKey, from: u64) {
        if file.seek(SeekFrom::Start(from)).is_err() {
            return;
        }
        tracing::info!(file = %self.path.display(), copy = %key.path.display(), from,
            "Log file was truncated (copytruncate); sending the rest from the copy first.");
        if let Some(r) = &self.registry {
            r.opened(key.dev, key.ino);
        }
        let copy = Current {
            file,
            key: Arc::new(key),
            read_offset: from,
        };
        self.after_copy = self.current.replace(copy);
    }

    fn set_current(&mut self, mut file: File, key: FileKey, offset: u64) -> bool {
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return false;
        }
        if let Some(r) = &self.registry {
            r.opened(key.dev, key.ino);
        }
        tracing::debug!(file = %key.path.display(), offset, "Following log file.");
        self.lines.clear();
        self.current = Some(Current {
            file,
            key: Arc::new(key),
            read_offset: offset,
        });
        true
    }

    fn close(&mut self) {
        for cur in [self.current.take(), self.after_copy.take()]
            .into_iter()
            .flatten()
        {
            if let Some(r) = &self.registry {
                r.closed(cur.key.dev, cur.key.ino);
            }
        }
        self.lines.clear();
    }

    /// At the first open: files read at this path before (`saved`, the one at the path now
    /// left out) that were rotated away with lines not yet delivered, while the publisher was
    /// stopped or before it stopped: find them beside the path by device and inode and read
    /// what is left of each first, oldest first, then `at_path` (queued behind them). A
    /// restart soon after a rotation must not go by the newest saved file alone: the new file
    /// is recorded as soon as it is opened, while the old one's last lines may still wait for
    /// CloudWatch. Gives `at_path` back when no such file is found.
    fn resume_rotated(
        &mut self,
        saved: &[(u64, u64, Fingerprint, u64)],
        at_path: File,
        (path_dev, path_ino): (u64, u64),
    ) -> Result<bool, File> {
        let mut found: Vec<(std::time::SystemTime, File, FileKey, u64, PathBuf)> = Vec::new();
        let entries = match self.path.parent().map(std::fs::read_dir) {
            Some(Ok(entries)) if !saved.is_empty() => entries,
            _ => return Err(at_path),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let Some(&(dev, ino, fp, offset)) = saved
                .iter()
                .find(|s| (s.0, s.1) == (meta.dev(), meta.ino()))
            else {
                continue;
            };
            if !meta.is_file() || meta.len() <= offset {
                continue;
            }
            let Ok(file) = File::open(entry.path()) else {
                continue;
            };
            if !same_start(&file, &fp) {
                continue;
            }
            let key = FileKey {
                path: self.path.clone(),
                dev,
                ino,
                fingerprint: fp,
            };
            let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.push((mtime, file, key, offset, entry.path()));
        }
        // Oldest first: the order they were written in.
        found.sort_by_key(|f| f.0);
        let mut found = found.into_iter();
        let Some((_, file, key, offset, rotated_to)) = found.next() else {
            return Err(at_path);
        };
        tracing::info!(file = %self.path.display(), rotated_to = %rotated_to.display(),
            "The log file was rotated with lines not yet delivered; sending the rest of the old file first.");
        // The others wait in turn, each from its saved position, then the file at the path.
        for (_, file, key, _, _) in found {
            self.pending.push_back((file, key.dev, key.ino));
        }
        self.pending.push_back((at_path, path_dev, path_ino));
        Ok(self.set_current(file, key, offset))
    }

    /// At the end of the current file: look for truncation, rotation and deletion.
    fn at_eof(&mut self, lookup: &dyn PositionStore, sink: &mut dyn LineSink) -> Step {
        if let Some(original) = self.after_copy.take() {
            // The copy is finished: its last line too, then the truncated file from its start.
            if let Some(copy) = self.current.replace(original) {
                let base = copy.read_offset - self.lines.pending() as u64;
                self.lines.finish(|text, e| {
                    sink.line(
                        text,
                        FilePosition {
                            key: Arc::clone(&copy.key),
                            offset: base + e as u64,
                        },
                    )
                });
                if let Some(r) = &self.registry {
                    r.closed(copy.key.dev, copy.key.ino);
                }
                self.retire(&copy.key, copy.read_offset);
            }
            self.lines.clear();
            return Step::Read;
        }
        let Some(cur) = self.current.as_mut() else {
            return Step::Missing;
        };
        let Ok(meta) = cur.file.metadata() else {
            return Step::Idle;
        };
        if meta.len() < cur.read_offset || !same_start(&cur.file, &cur.key.fingerprint) {
            self.truncated();
            return Step::Read;
        }
        if cur.key.fingerprint.len < FINGERPRINT_BYTES as u32
            && meta.len() > cur.key.fingerprint.len as u64
        {
            if let Ok(fp) = fingerprint(&cur.file, meta.len()) {
                let mut key = (*cur.key).clone();
                key.fingerprint = fp;
                cur.key = Arc::new(key);
            }
        }
        let at_path = std::fs::metadata(&self.path);
        if let Ok(m) = &at_path {
            if (m.dev(), m.ino()) == (cur.key.dev, cur.key.ino) {
                return Step::Idle;
            }
        }
        // The path is gone or names another file: finish the old one first.
        let replaced = at_path.is_ok() || !self.pending.is_empty();
        self.watch();
        let deleted = meta.nlink() == 0;
        let quiet = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age >= ROTATE_QUIET);
        if deleted || (replaced && quiet) {
            let Some(cur) = &self.current else {
                return Step::Missing;
            };
            let key = Arc::clone(&cur.key);
            let end = cur.read_offset;
            let base = end - self.lines.pending() as u64;
            self.lines.finish(|text, e| {
                sink.line(
                    text,
                    FilePosition {
                        key: Arc::clone(&key),
                        offset: base + e as u64,
                    },
                )
            });
            tracing::info!(file = %self.path.display(), offset = end,
                how = if deleted { "deleted" } else { "rotated" },
                "Finished the old log file.");
            if !deleted {
                self.retire(&key, end);
            }
            let next = self.pending.pop_front().map(|(file, _, _)| file);
            self.close();
            return match next.map(|file| self.adopt(file, lookup)) {
                Some(true) => Step::Read,
                _ => Step::Missing,
            };
        }
        Step::Idle
    }

    /// The file got shorter or its start changed: copytruncate. The current file starts again
    /// at its beginning; if the copy is beside it, the part not read yet comes from the copy
    /// first, a budget at a time like any file.
    fn truncated(&mut self) {
        let Some(cur) = self.current.as_mut() else {
            return;
        };
        let (old, old_offset) = (Arc::clone(&cur.key), cur.read_offset);
        let _ = cur.file.seek(SeekFrom::Start(0));
        cur.read_offset = 0;
        let len = cur.file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut key = (*cur.key).clone();
        key.fingerprint = fingerprint(&cur.file, len).unwrap_or(Fingerprint { len: 0, hash: 0 });
        cur.key = Arc::new(key);
        match find_copy(&self.path, &old, old_offset) {
            // The incomplete last line read so far goes on in the copy.
            Some((file, key)) => self.start_copy(file, key, old_offset),
            None => {
                self.lines.clear();
                tracing::info!(file = %self.path.display(),
                    "Log file was truncated; reading it again from the start (no copy of it found beside it).");
            }
        }
    }

    fn report(&mut self, problem: String) {
        if self.problem.as_deref() != Some(problem.as_str()) {
            tracing::warn!(file = %self.path.display(), "Log file {problem}.");
            self.problem = Some(problem);
        }
    }
}

impl Drop for Tailer {
    fn drop(&mut self) {
        self.close();
    }
}

/// A file beside `path` that starts like `key`'s file and is at least `len` long: the copy
/// copytruncate made.
fn find_copy(path: &Path, key: &FileKey, len: u64) -> Option<(File, FileKey)> {
    if key.fingerprint.len == 0 {
        return None;
    }
    let mut best: Option<(std::time::SystemTime, PathBuf, std::fs::Metadata)> = None;
    for entry in std::fs::read_dir(path.parent()?).ok()?.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || (meta.dev(), meta.ino()) == (key.dev, key.ino) || meta.len() < len {
            continue;
        }
        let Ok(file) = File::open(entry.path()) else {
            continue;
        };
        if !same_start(&file, &key.fingerprint) {
            continue;
        }
        let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        if best.as_ref().is_none_or(|b| mtime > b.0) {
            best = Some((mtime, entry.path(), meta));
        }
    }
    let (_, path, meta) = best?;
    let file = File::open(&path).ok()?;
    let fingerprint = fingerprint(&file, meta.len()).ok()?;
    Some((
        file,
        FileKey {
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint,
        },
    ))
}

/// The fingerprint of a file of length `len`.
pub fn fingerprint(file: &File, len: u64) -> std::io::Result<Fingerprint> {
    let n = len.min(FINGERPRINT_BYTES) as usize;
    let mut buf = vec![0u8; n];
    file.read_exact_at(&mut buf, 0)?;
    Ok(Fingerprint {
        len: n as u32,
        hash: fnv1a(&buf),
    })
}

/// Whether the file starts with the bytes `fp` was taken from.
pub(super) fn same_start(file: &File, fp: &Fingerprint) -> bool {
    if fp.len == 0 {
        return true;
    }
    let mut buf = vec![0u8; fp.len as usize];
    file.read_exact_at(&mut buf, 0).is_ok() && fnv1a(&buf) == fp.hash
}

/// 64-bit FNV-1a: stable across versions and platforms, which a saved fingerprint needs.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::Mutex;

    /// Saved positions by (device, inode): fingerprint, offset, path.
    type Positions = HashMap<(u64, u64), (Fingerprint, u64, PathBuf)>;

    #[derive(Default)]
    struct Saved(Mutex<Positions>);

    impl PositionStore for Saved {
        fn offset(&self, dev: u64, ino: u64) -> Option<(Fingerprint, u64)> {
            let saved = self.0.lock().unwrap();
            saved.get(&(dev, ino)).map(|s| (s.0, s.1))
        }
        fn last_at(&self, path: &Path) -> Option<(u64, u64, Fingerprint, u64)> {
            let saved = self.0.lock().unwrap();
            saved
                .iter()
                .find(|(_, s)| s.2 == path)
                .map(|(k, s)| (k.0, k.1, s.0, s.1))
        }
        fn record_start(&self, key: &FileKey, offset: u64) {
            let mut saved = self.0.lock().unwrap();
            saved
                .entry((key.dev, key.ino))
                .or_insert((key.fingerprint, offset, key.path.clone()));
        }
    }

    #[derive(Default)]
    struct Lines(Vec<(String, u64)>);

    impl Lines {
        fn texts(&self) -> Vec<&str> {
            self.0.iter().map(|l| l.0.as_str()).collect()
        }
    }

    impl LineSink for Lines {
        fn line(&mut self, text: Option<&str>, position: FilePosition) {
            if let Some(t) = text {
                self.0.push((t.to_owned(), position.offset));
            }
        }
        fn wants_more(&self) -> bool {
            true
        }
    }

    fn texts(lines: &Lines) -> Vec<&str> {
        lines.texts()
    }

    #[test]
    fn a_saved_offset_is_used_only_for_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let file = File::open(&path).unwrap();
        let fp = fingerprint(&file, meta.len()).unwrap();
        let saved = Saved::default();
        saved
            .0
            .lock()
            .unwrap()
            .insert((meta.dev(), meta.ino()), (fp, 4, path.clone()));
        let mut t = Tailer::new(path.clone(), StartAt::End, None);
        let mut out = Lines::default();
        assert_eq!(t.step(&saved, &mut out, 1 << 20), Step::Read);
        assert_eq!(t.look(), Look::Unchanged, "at the end, nothing new");
        assert_eq!(texts(&out), ["two", "three"], "resumed at the saved offset");
        assert_eq!(out.0.last().unwrap().1, 14);

        // Same device and inode, other first bytes: a recycled inode is a new file.
        let other = Fingerprint {
            len: fp.len,
            hash: fp.hash ^ 1,
        };
        saved
            .0
            .lock()
            .unwrap()
            .insert((meta.dev(), meta.ino()), (other, 4, path.clone()));
        let mut t = Tailer::new(path.clone(), StartAt::End, None);
        let mut out = Lines::default();
        t.step(&saved, &mut out, 1 << 20);
        assert_eq!(texts(&out), ["one", "two", "three"], "read from its start");
    }

    #[test]
    fn where_a_file_is_opened_is_recorded_and_lines_after_it_are_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.log");
        std::fs::write(&path, "before the start\n").unwrap();
        let saved = Saved::default();
        let mut t = Tailer::new(path.clone(), StartAt::End, None);
        assert!(t.open_now(&saved));
        let meta = std::fs::metadata(&path).unwrap();
        let recorded = saved.offset(meta.dev(), meta.ino());
        assert_eq!(recorded.map(|r| r.1), Some(17), "its end when opened");
        append_line(&path, "after the start");
        let mut out = Lines::default();
        t.step(&saved, &mut out, 1 << 20);
        assert_eq!(texts(&out), ["after the start"]);

        // A restart before anything was delivered begins at the recorded place, not at what
        // is the end by then.
        append_line(&path, "while stopped");
        let mut t = Tailer::new(path.clone(), StartAt::End, None);
        let mut out = Lines::default();
        t.step(&saved, &mut out, 1 << 20);
        assert_eq!(texts(&out), ["after the start", "while stopped"]);

        // A file read from its start is recorded at 0; a saved position is left as it is.
        let later = dir.path().join("later.log");
        std::fs::write(&later, "one\n").unwrap();
        let mut t = Tailer::new(later.clone(), StartAt::Beginning, None);
        assert!(t.open_now(&saved));
        let m = std::fs::metadata(&later).unwrap();
        assert_eq!(saved.offset(m.dev(), m.ino()).map(|r| r.1), Some(0));
        saved
            .0
            .lock()
            .unwrap()
            .get_mut(&(m.dev(), m.ino()))
            .unwrap()
            .1 = 4;
        let mut t = Tailer::new(later.clone(), StartAt::Beginning, None);
        assert!(t.open_now(&saved));
        assert_eq!(saved.offset(m.dev(), m.ino()).map(|r| r.1), Some(4));
    }

    /// Sets a file's modification time `ago` in the past.
    fn age(path: &Path, ago: Duration) {
        let f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.set_modified(std::time::SystemTime::now() - ago).unwrap();
    }

    #[test]
    fn a_file_rotated_in_and_out_while_the_old_one_is_finished_is_read_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        std::fs::write(&path, "a1\n").unwrap();
        let saved = Saved::default();
        let mut t = Tailer::new(path.clone(), StartAt::Beginning, None);
        let mut out = Lines::default();
        t.step(&saved, &mut out, 1 << 20);
        assert_eq!(texts(&out), ["a1"]);
        // Rotated, and the writer still adds to the old file. The reader is not reading now
        // (waiting for CloudWatch, say) but watches the path, and sees the new file...
        std::fs::rename(&path, path.with_extension("log.1")).unwrap();
        std::fs::write(&path, "b1\nb2\n").unwrap();
        append_line(&path.with_extension("log.1"), "a2");
        t.watch();
        assert!(t.rotating(), "the new file is queued");
        // ... which is rotated away too before the reader reads again.
        std::fs::rename(&path, path.with_extension("log.2")).unwrap();
        std::fs::write(&path, "c1\n").unwrap();
        age(&path.with_extension("log.1"), Duration::from_secs(5));
        age(&path.with_extension("log.2"), Duration::from_secs(5));
        for _ in 0..10 {
            t.step(&saved, &mut out, 1 << 20);
        }
        assert_eq!(texts(&out), ["a1", "a2", "b1", "b2", "c1"]);
        assert!(!t.rotating());
    }

    fn append_line(path: &Path, line: &str) {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        writeln!(f, "{line}").unwrap();
    }

    #[test]
    fn a_new_file_starts_at_its_end_unless_asked_and_later_files_at_their_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.log");
        std::fs::write(&path, "old\n").unwrap();
        let none = Saved::default();
        let mut out = Lines::default();
        let mut t = Tailer::new(path.clone(), StartAt::End, None);
        assert_eq!(t.step(&none, &mut out, 1 << 20), Step::Idle);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"new\n")
            .unwrap();
        t.step(&none, &mut out, 1 << 20);
        assert_eq!(texts(&out), ["new"]);

        let mut out = Lines::default();
        let mut t = Tailer::new(path.clone(), StartAt::Beginning, None);
        t.step(&Saved::default(), &mut out, 1 << 20);
        assert_eq!(texts(&out), ["old", "new"]);

        // A path with no file at the first look: what appears later is read whole.
        let later = dir.path().join("later.log");
        let mut t = Tailer::new(later.clone(), StartAt::End, None);
        let mut out = Lines::default();
        assert_eq!(t.step(&none, &mut out, 1 << 20), Step::Missing);
        std::fs::write(&later, "first\n").unwrap();
        t.step(&none, &mut out, 1 << 20);
        assert_eq!(texts(&out), ["first"]);
    }

    #[test]
    fn deletion_finishes_the_file_including_a_last_line_without_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        std::fs::write(&path, "").unwrap();
        let none = Saved::default();
        let mut t = Tailer::new(path.clone(), StartAt::End, None);
        let mut out = Lines::default();
        t.step(&none, &mut out, 1 << 20);
        std::fs::write(&path, "whole\npartial").unwrap();
        t.step(&none, &mut out, 1 << 20);
        assert_eq!(texts(&out), ["whole"]);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(t.step(&none, &mut out, 1 << 20), Step::Missing);
        assert_eq!(texts(&out), ["whole", "partial"]);
    }

    #[test]
    fn copytruncate_while_not_reading_takes_the_unread_rest_from_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.log");
        std::fs::write(&path, "a\nb\n").unwrap();
        let none = Saved::default();
        let mut t = Tailer::new(path.clone(), StartAt::Beginning, None);
        let mut out = Lines::default();
        t.step(&none, &mut out, 1 << 20);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"c\n").unwrap();
        // copytruncate, then the writer goes on past the old length before the next look.
        std::fs::copy(&path, dir.path().join("d.log.1")).unwrap();
        f.set_len(0).unwrap();
        f.write_all(b"d\nlonger line\n").unwrap();
        while t.step(&none, &mut out, 1 << 20) == Step::Read {}
        assert_eq!(texts(&out), ["a", "b", "c", "d", "longer line"]);
    }

    #[test]
    fn a_file_truncated_while_stopped_is_resumed_from_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let fp = fingerprint(&File::open(&path).unwrap(), meta.len()).unwrap();
        let saved = Saved::default();
        saved
            .0
            .lock()
            .unwrap()
            .insert((meta.dev(), meta.ino()), (fp, 4, path.clone()));
        std::fs::copy(&path, dir.path().join("e.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap()
            .write_all(b"d\n")
            .unwrap();
        let mut t = Tailer::new(path.clone(), StartAt::End, None);
        let mut out = Lines::default();
        while t.step(&saved, &mut out, 1 << 20) == Step::Read {}
        assert_eq!(texts(&out), ["c", "d"]);
    }

    /// A file empty when followed from its end gets two lines, is copied and truncated (as
    /// logrotate's copytruncate does) and gets three more; `read_between` reads it before
    /// the copytruncate. Returns every line read.
    fn copytruncate_of_a_file_empty_at_start(read_between: bool) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.log");
        std::fs::write(&path, "").unwrap();
        let saved = Saved::default();
        let mut t = Tailer::new(path.clone(), StartAt::End, None);
        assert!(t.open_now(&saved));
        let mut out = Lines::default();
        std::fs::write(&path, "head 1\nhead 2\n").unwrap();
        if read_between {
            while t.step(&saved, &mut out, 1 << 20) == Step::Read {}
        }
        std::fs::copy(&path, dir.path().join("w.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append_line(&path, "tail 1\ntail 2\nnext record");
        for _ in 0..5 {
            t.step(&saved, &mut out, 1 << 20);
        }
        out.texts().into_iter().map(str::to_owned).collect()
    }

    #[test]
    fn the_rest_after_a_copytruncate_of_a_file_that_was_empty_at_start() {
        assert_eq!(
            copytruncate_of_a_file_empty_at_start(true),
            ["head 1", "head 2", "tail 1", "tail 2", "next record"]
        );
    }

    #[test]
    fn a_copytruncate_before_the_first_read_of_a_file_empty_at_start() {
        // Nothing was read, so nothing shows it was ever truncated: the copy's lines are
        // not found (as with any tailer), what follows is read.
        assert_eq!(
            copytruncate_of_a_file_empty_at_start(false),
            ["tail 1", "tail 2", "next record"]
        );
    }
}
