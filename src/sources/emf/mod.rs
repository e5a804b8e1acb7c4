//! Embedded metric format (EMF): JSON documents that programs send to a local port (TCP and
//! UDP on 127.0.0.1:25888, as the CloudWatch Agent), each shipped as a log event to its log
//! group and stream, where CloudWatch extracts its metrics.
//!
//! A document is on disk before anything else is done with it: the receiver appends it, one
//! line, to its destination's buffer file under `state/emf/`, and the log pipeline follows
//! that file like any log file, so what was received survives an outage, a restart or a crash
//! (the saved position says what is delivered). A buffer file past [`ROTATE_BYTES`] is rotated
//! as a log file would be, and the rotated file removed once delivered; one that reaches
//! [`MAX_BUFFER_BYTES`] while CloudWatch Logs takes nothing takes no more (the documents refused
//! are counted and logged). Each document is checked against the EMF specification; an invalid one is still
//! shipped, as a plain log event, and the first of each destination is logged with the reason.

pub mod document;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::hash::Hash;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Listen, Transport};
use crate::sources::files::PositionStore;
use crate::sources::tcp_lines::{self, Received};

/// A buffer file larger than this is rotated.
pub const ROTATE_BYTES: u64 = 1024 * 1024;
/// A buffer file holding this much undelivered takes no more documents.
pub const MAX_BUFFER_BYTES: u64 = 64 * 1024 * 1024;
/// The buffer files' folder under the state directory.
pub const FOLDER: &str = "emf";
const EVENTS: &str = "events.jsonl";
const DESTINATION: &str = "destination.json";
/// Longest document taken (CloudWatch's largest event).
const MAX_DOCUMENT: usize = document::MAX_DOCUMENT_BYTES;
/// How often buffer files are flushed to the disk (fsync), and refusals told of.
const SYNC_EVERY: Duration = Duration::from_secs(1);
const COMPLAINT_EVERY: Duration = Duration::from_secs(60);
/// Destinations (log group and stream) received in one run, at most.
const MAX_DESTINATIONS: usize = 64;
/// Chunks received and not yet written; the sockets wait when it is full...
const WRITE_QUEUE: usize = 1024;
/// ...or when the chunks queued hold this many bytes (a chunk is a datagram or a line of up
/// to a megabyte).
const WRITE_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// A chunk received, with its room in the write queue (given back once written).
type Chunk = (Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>);

/// Where a document goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Target {
    pub group: String,
    pub stream: String,
}

/// A destination's buffer file, found at start or made by the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    pub target: Target,
    pub path: PathBuf,
}

/// Where documents that name no group or stream go, resolved, and which groups a document may
/// name.
#[derive(Debug, Clone)]
pub struct Defaults {
    pub group: String,
    pub stream: String,
    /// Groups a document may name (globs) besides `group`; a document naming another goes
    /// to `group`, counted.
    pub allowed: Vec<glob::Pattern>,
}

impl Defaults {
    /// Whether a document may send its events to `group`.
    pub fn allows(&self, group: &str) -> bool {
        group == self.group || self.allowed.iter().any(|p| p.matches(group))
    }
}

/// The buffer files left by an earlier run, each with its destination. A buffer whose
/// destination cannot be read is left to the receiver, which knows the default destination
/// and rebuilds it at its start ([`recover`]).
pub fn existing(state_dir: &Path) -> Vec<Buffer> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(state_dir.join(FOLDER)) else {
        return out;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if let Some(target) = read_destination(&dir) {
            out.push(Buffer {
                target,
                path: dir.join(EVENTS),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The destination a buffer folder's `destination.json` names, when it can be read and is the
/// one the folder is named for (a damaged file that still parses is no destination).
fn read_destination(dir: &Path) -> Option<Target> {
    let target = serde_json::from_slice::<Target>(&fs::read(dir.join(DESTINATION)).ok()?).ok()?;
    (dir.file_name()? == folder(&target).as_str()).then_some(target)
}

/// Writes a buffer folder's `destination.json` as a power cut would find it: whole or not at
/// all, with the folder's other entries (its `events.jsonl`).
fn write_destination(dir: &Path, target: &Target) -> io::Result<()> {
    let json = serde_json::to_vec(target).map_err(io::Error::other)?;
    crate::durable::write_atomically(&dir.join(DESTINATION), &json)
}

/// Documents, and bytes, read from the head of a buffer at most to find what they name.
const RECOVER_LINES: usize = 100;
const RECOVER_BYTES: u64 = 4 * 1024 * 1024;

/// Rebuilds the destination of each buffer under `dir` (the buffers' folder) whose
/// `destination.json` cannot be read (a power cut while an older version wrote it, a damaged
/// disk): the folder is named for its destination, so the one among the log groups and streams
/// its documents name, the other buffers' and the defaults (what documents that name none go
/// to) whose folder it is, is it. The buffers rebuilt are returned, to be followed. One whose
/// destination is none of those is left on disk and said; it is rebuilt when a document for its
/// destination arrives ([`Buffers::open_buffer`]).
fn recover(dir: &Path, defaults: &Defaults) -> Vec<Buffer> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let (mut known, mut damaged) = (Vec::new(), Vec::new());
    for d in entries.flatten().map(|e| e.path()).filter(|d| d.is_dir()) {
        match read_destination(&d) {
            Some(target) => known.push(target),
            None => damaged.push(d),
        }
    }
    let mut rebuilt = Vec::new();
    for d in damaged {
        let mut groups: std::collections::BTreeSet<String> =
            known.iter().map(|t| t.group.clone()).collect();
        let mut streams: std::collections::BTreeSet<String> =
            known.iter().map(|t| t.stream.clone()).collect();
        groups.insert(defaults.group.clone());
        streams.insert(defaults.stream.clone());
        let mut documents = 0;
        for file in [d.join(EVENTS).with_extension("jsonl.1"), d.join(EVENTS)] {
            let Ok(f) = File::open(&file) else { continue };
            let head = io::BufReader::new(io::Read::take(f, RECOVER_BYTES));
            let lines = io::BufRead::split(head, b'\n');
            for line in lines.take(RECOVER_LINES).map_while(Result::ok) {
                documents += 1;
                if let Ok(named) = document::inspect(&String::from_utf8_lossy(&line)) {
                    groups.extend(
                        named
                            .log_group
                            .filter(|g| crate::config::check_log_group(g).is_ok()),
                    );
                    streams.extend(
                        named
                            .log_stream
                            .filter(|s| crate::config::check_log_stream(s).is_ok()),
                    );
                }
            }
        }
        let name = d.file_name().unwrap_or_default();
        let target = groups
            .iter()
            .flat_map(|g| {
                streams.iter().map(move |s| Target {
                    group: g.clone(),
                    stream: s.clone(),
                })
            })
            .find(|t| name == folder(t).as_str());
        match target {
            Some(target) => match write_destination(&d, &target) {
                Ok(()) => {
                    tracing::warn!(folder = %d.display(), group = %target.group, stream = %target.stream,
                        "Rebuilt the unreadable destination of an embedded metric format buffer from its documents.");
                    rebuilt.push(Buffer {
                        target,
                        path: d.join(EVENTS),
                    });
                }
                Err(e) => tracing::error!(folder = %d.display(), error = %e,
                    "Cannot rebuild the unreadable destination of an embedded metric format buffer; its documents wait on disk until the next start."),
            },
            None if documents > 0 => tracing::error!(folder = %d.display(),
                "An embedded metric format buffer whose destination cannot be read or told from its documents: they wait on disk, and are shipped when a document for their destination arrives (or give its destination.json a group and stream by hand, and restart)."),
            None => {}
        }
    }
    rebuilt
}

/// One open buffer file.
struct Open {
    file: File,
    path: PathBuf,
    len: u64,
    dirty: bool,
    /// An invalid document was said for this destination.
    said_invalid: bool,
}

/// The receiver's side of the buffers.
struct Buffers {
    dir: PathBuf,
    open: HashMap<Target, Open>,
    positions: Arc<dyn PositionStore>,
    /// New destinations, for the pipeline to follow.
    new: mpsc::UnboundedSender<Buffer>,
    /// Where documents that name no destination go.
    defaults: Defaults,
    refused_full: u64,
    refused_long: u64,
    invalid: u64,
    rerouted: u64,
    /// Documents naming a group the config does not allow.
    not_allowed: u64,
    told: Option<Instant>,
}

/// A short, stable folder name for a destination.
fn folder(t: &Target) -> String {
    // FNV-1a: stable across runs and builds (unlike the standard hasher's seed).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in t.group.bytes().chain([0]).chain(t.stream.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Buffers {
    /// Takes every document (line) of `text`.
    fn take(&mut self, text: &[u8]) {
        for line in text.split(|&c| c == b'\n') {
            let line = line.trim_ascii();
            let line = line.strip_prefix(b"\0").unwrap_or(line);
            if line.is_empty() || line.iter().all(|&c| c == 0) {
                continue;
            }
            if line.len() > MAX_DOCUMENT {
                self.refused_long += 1;
                continue;
            }
            let text = String::from_utf8_lossy(line);
            let (group, stream, invalid) = match document::inspect(&text) {
                Ok(d) => (d.log_group, d.log_stream, d.validity.err()),
                Err(e) => (None, None, Some(e)),
            };
            // A group the config does not allow goes to the default one: a local sender must
            // not choose any group the device's role may write (or one it may not, which
            // would be parked for good).
            let group = match group {
                Some(g) if !self.defaults.allows(&g) => {
                    self.not_allowed += 1;
                    None
                }
                g => g,
            };
            let mut target = Target {
                group: group
                    .filter(|g| crate::config::check_log_group(g).is_ok())
                    .unwrap_or_else(|| self.defaults.group.clone()),
                stream: stream
                    .filter(|s| crate::config::check_log_stream(s).is_ok())
                    .unwrap_or_else(|| self.defaults.stream.clone()),
            };
            if !self.open.contains_key(&target) && self.open.len() >= MAX_DESTINATIONS {
                // Each destination is a file, a reader and a sender: past the most, documents
                // go where those that name none go.
                self.rerouted += 1;
                target = Target {
                    group: self.defaults.group.clone(),
                    stream: self.defaults.stream.clone(),
                };
            }
            if let Err(e) = self.append(target.clone(), text.as_bytes()) {
                tracing::error!(group = %target.group, stream = %target.stream, error = %e,
                    "Cannot keep an embedded metric format document on disk; it is lost.");
                continue;
            }
            if let Some(reason) = invalid {
                let first = self
                    .open
                    .get_mut(&target)
                    .is_some_and(|o| !std::mem::replace(&mut o.said_invalid, true));
                if first {
                    tracing::warn!(group = %target.group, stream = %target.stream, %reason,
                        "A document that is not valid embedded metric format: shipped as a plain log event, no metrics are extracted (said once per destination).");
                } else {
                    self.invalid += 1;
                }
            }
        }
    }

    /// Appends `doc` (one line) to `target`'s buffer.
    fn append(&mut self, target: Target, doc: &[u8]) -> io::Result<()> {
        if !self.open.contains_key(&target) {
            let opened = self.open_buffer(&target)?;
            self.open.insert(target.clone(), opened);
        }
        let b = self.open.get_mut(&target).expect("opened above");
        if b.len >= MAX_BUFFER_BYTES {
            self.refused_full += 1;
            return Ok(());
        }
        let mut line = Vec::with_capacity(doc.len() + 1);
        line.extend_from_slice(doc);
        line.push(b'\n');
        b.file.write_all(&line)?;
        b.len += line.len() as u64;
        b.dirty = true;
        Ok(())
    }

    fn open_buffer(&mut self, target: &Target) -> io::Result<Open> {
        let dir = self.dir.join(folder(target));
        let made = !dir.exists();
        fs::create_dir_all(&dir)?;
        let path = dir.join(EVENTS);
        let file = create(&path)?;
        let len = file.metadata()?.len();
        // A buffer with its destination was found at the start and is followed; one without it
        // (new, or one whose destination.json could not be read nor rebuilt) gets it now and is
        // followed from its first document, those an earlier run left included.
        let fresh = read_destination(&dir).as_ref() != Some(target);
        if fresh {
            write_destination(&dir, target)?;
            if made {
                // The new folder's entry in the buffers' folder, and that one's, if it is new too.
                crate::durable::sync_folder(&dir)?;
                crate::durable::sync_folder(&self.dir)?;
            }
            let _ = self.new.send(Buffer {
                target: target.clone(),
                path: path.clone(),
            });
        }
        Ok(Open {
            file,
            path,
            len,
            dirty: false,
            said_invalid: false,
        })
    }

    /// Rotates each buffer past [`ROTATE_BYTES`] to `events.jsonl.1`, as logrotate would (the
    /// reader finishes the old file, then reads the new one), once the one rotated before is
    /// delivered and removed: so at most one rotated file waits, which a restart finds again
    /// beside the path.
    fn rotate(&mut self) {
        for b in self.open.values_mut() {
            let rotated = b.path.with_extension("jsonl.1");
            if let Ok(meta) = fs::metadata(&rotated) {
                let delivered = self
                    .positions
                    .offset(meta.dev(), meta.ino())
                    .map(|(_, offset)| offset);
                if delivered != Some(meta.len()) {
                    continue;
                }
                if let Err(e) = fs::remove_file(&rotated) {
                    tracing::debug!(file = %rotated.display(), error = %e, "Cannot remove a delivered embedded metric format buffer.");
                    continue;
                }
            }
            if b.len < ROTATE_BYTES {
                continue;
            }
            let _ = b.file.sync_data();
            let renewed = fs::rename(&b.path, &rotated).and_then(|()| create(&b.path));
            match renewed {
                Ok(file) => {
                    b.file = file;
                    b.len = 0;
                    b.dirty = false;
                }
                Err(e) => {
                    tracing::warn!(file = %b.path.display(), error = %e, "Cannot rotate an embedded metric format buffer.")
                }
            }
        }
    }

    /// Flushes what was written to the disk.
    fn sync(&mut self) {
        for b in self.open.values_mut().filter(|b| b.dirty) {
            if let Err(e) = b.file.sync_data() {
                tracing::debug!(file = %b.path.display(), error = %e, "Cannot sync an embedded metric format buffer.");
            }
            b.dirty = false;
        }
    }

    fn tell(&mut self, force: bool) {
        if self.refused_full + self.refused_long + self.invalid + self.rerouted + self.not_allowed
            == 0
        {
            return;
        }
        if !force && self.told.is_some_and(|t| t.elapsed() < COMPLAINT_EVERY) {
            return;
        }
        self.told = Some(Instant::now());
        if self.refused_full > 0 {
            tracing::error!(documents = self.refused_full, most_mib = MAX_BUFFER_BYTES >> 20,
                "Refused embedded metric format documents: their destination's buffer is full while CloudWatch Logs does not take them.");
        }
        if self.refused_long > 0 {
            tracing::warn!(
                documents = self.refused_long,
                most = MAX_DOCUMENT,
                "Refused embedded metric format documents longer than a log event may be."
            );
        }
        if self.invalid > 0 {
            tracing::info!(
                documents = self.invalid,
                "Shipped more documents that are not valid embedded metric format as plain log events (no metrics are extracted from them)."
            );
        }
        if self.rerouted > 0 {
            tracing::warn!(documents = self.rerouted, most = MAX_DESTINATIONS,
                "Sent embedded metric format documents naming yet another log group or stream to the default destination.");
        }
        if self.not_allowed > 0 {
            tracing::warn!(documents = self.not_allowed, group = %self.defaults.group,
                "Sent embedded metric format documents naming a log group the config does not allow to the default group (logs.metrics_collected.emf.log_group_names allows more).");
        }
        self.refused_full = 0;
        self.refused_long = 0;
        self.invalid = 0;
        self.rerouted = 0;
        self.not_allowed = 0;
    }
}

fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The receiver: its sockets, bound at start.
pub struct EmfReceiver {
    sockets: Vec<(Listen, Bound)>,
}

enum Bound {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

impl EmfReceiver {
    /// Binds every address (a port in use is an error at start).
    pub fn bind(listen: &[Listen]) -> Result<EmfReceiver, (Listen, io::Error)> {
        let mut sockets = Vec::new();
        for &l in listen {
            let bound = match l.transport {
                Transport::Udp => std::net::UdpSocket::bind(l.address)
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .and_then(UdpSocket::from_std)
                    .map(Bound::Udp),
                Transport::Tcp => std::net::TcpListener::bind(l.address)
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .and_then(TcpListener::from_std)
                    .map(Bound::Tcp),
            }
            .map_err(|e| (l, e))?;
            sockets.push((l, bound));
        }
        Ok(EmfReceiver { sockets })
    }

    /// Receives until `stop`, writing each document to its destination's buffer under
    /// `state_dir`; new destinations go to `new`.
    pub async fn run(
        self,
        state_dir: PathBuf,
        defaults: Defaults,
        positions: Arc<dyn PositionStore>,
        new: mpsc::UnboundedSender<Buffer>,
        stop: CancellationToken,
    ) {
        let (dir, d) = (state_dir.join(FOLDER), defaults.clone());
        let rebuilt = tokio::task::spawn_blocking(move || recover(&dir, &d)).await;
        for buffer in rebuilt.unwrap_or_default() {
            let _ = new.send(buffer);
        }
        let buffers = Arc::new(Mutex::new(Buffers {
            dir: state_dir.join(FOLDER),
            open: HashMap::new(),
            positions,
            new,
            defaults,
            refused_full: 0,
            refused_long: 0,
            invalid: 0,
            rerouted: 0,
            not_allowed: 0,
            told: None,
        }));
        // The sockets' tasks only receive; one blocking task checks and writes to disk.
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = {
            let buffers = Arc::clone(&buffers);
            tokio::task::spawn_blocking(move || write(rx, &buffers))
        };
        let receiver = Receiver {
            tx,
            room: Arc::new(tokio::sync::Semaphore::new(WRITE_QUEUE_BYTES)),
            refused_long: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let tracker = tokio_util::task::TaskTracker::new();
        for (listen, socket) in self.sockets {
            tracing::info!(%listen, "Receiving embedded metric format documents.");
            let (r, stop) = (receiver.clone(), stop.clone());
            match socket {
                Bound::Udp(s) => tracker.spawn(r.udp(s, stop)),
                Bound::Tcp(s) => tracker.spawn(r.tcp(s, stop)),
            };
        }
        tracker.close();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(SYNC_EVERY) => {}
                _ = stop.cancelled() => break,
            }
            let (buffers, long) = (Arc::clone(&buffers), receiver.refused_long());
            let _ = tokio::task::spawn_blocking(move || {
                let mut b = buffers.lock().unwrap_or_else(|e| e.into_inner());
                b.refused_long += long;
                b.sync();
                b.rotate();
                b.tell(false);
            })
            .await;
        }
        tracker.wait().await;
        // The last sender goes: the writer writes what is queued, and ends.
        let long = receiver.refused_long();
        drop(receiver);
        let _ = writer.await;
        let _ = tokio::task::spawn_blocking(move || {
            let mut b = buffers.lock().unwrap_or_else(|e| e.into_inner());
            b.refused_long += long;
            b.sync();
            b.tell(true);
        })
        .await;
    }
}

/// Writes what the sockets received, a chunk (a datagram, a TCP line) at a time; whatever is
/// queued is written under one lock.
fn write(mut rx: mpsc::Receiver<Chunk>, buffers: &Mutex<Buffers>) {
    while let Some((chunk, _room)) = rx.blocking_recv() {
        let mut b = buffers.lock().unwrap_or_else(|e| e.into_inner());
        b.take(&chunk);
        while let Ok((more, _room)) = rx.try_recv() {
            b.take(&more);
        }
    }
}

/// The sockets' side: they never take the buffers' lock (the writer holds it while it writes
/// to the disk), so a slow disk stalls only the writer, and the sockets wait on the queue.
#[derive(Clone)]
struct Receiver {
    tx: mpsc::Sender<Chunk>,
    /// The write queue's room in bytes.
    room: Arc<tokio::sync::Semaphore>,
    /// Lines longer than a document may be, since the last look.
    refused_long: Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    fn refused_long(&self) -> u64 {
        self.refused_long
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `chunk` for the writer once the queue has room for its bytes; false if the
    /// writer is gone.
    async fn queue(&self, chunk: Vec<u8>) -> bool {
        let bytes = chunk.len().clamp(1, WRITE_QUEUE_BYTES) as u32;
        let room = Arc::clone(&self.room).acquire_many_owned(bytes).await.ok();
        self.tx.send((chunk, room)).await.is_ok()
    }

    async fn udp(self, socket: UdpSocket, stop: CancellationToken) {
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                r = socket.recv(&mut buf) => match r {
                    Ok(n) => {
                        if !self.queue(buf[..n].to_vec()).await {
                            return;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "An embedded metric format datagram could not be received."),
                },
                _ = stop.cancelled() => break,
            }
        }
        // What is queued at the stop is still taken, within a bound: a sender flooding the
        // port cannot hold the stop up.
        let until = Instant::now() + crate::sources::DRAIN_AT_STOP;
        while let Ok(n) = socket.try_recv(&mut buf) {
            if !self.queue(buf[..n].to_vec()).await || Instant::now() >= until {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    async fn tcp(self, listener: TcpListener, stop: CancellationToken) {
        tcp_lines::serve(listener, MAX_DOCUMENT, stop, move |received| {
            let this = self.clone();
            async move {
                match received {
                    Received::Line(line) => {
                        this.queue(line).await;
                    }
                    Received::TooLong => {
                        this.refused_long
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_write_queue_holds_at_most_its_bytes() {
        let (tx, _rx) = mpsc::channel(WRITE_QUEUE);
        let receiver = Receiver {
            tx,
            room: Arc::new(tokio::sync::Semaphore::new(WRITE_QUEUE_BYTES)),
            refused_long: Arc::default(),
        };
        // Nothing is written: megabyte lines queue up to the bound, then the socket waits.
        let mut queued = 0;
        while tokio::time::timeout(
            Duration::from_millis(50),
            receiver.queue(vec![b'x'; 1 << 20]),
        )
        .await
        .is_ok()
        {
            queued += 1;
            assert!(queued <= WRITE_QUEUE, "unbounded");
        }
        assert_eq!(queued, WRITE_QUEUE_BYTES >> 20);
    }
    use crate::sources::files::{FileKey, Fingerprint};

    /// Nothing delivered yet.
    struct Undelivered;

    impl PositionStore for Undelivered {
        fn offset(&self, _: u64, _: u64) -> Option<(Fingerprint, u64)> {
            None
        }
        fn last_at(&self, _: &Path) -> Option<(u64, u64, Fingerprint, u64)> {
            None
        }
        fn record_start(&self, _: &FileKey, _: u64) {}
    }

    fn buffers(dir: &Path) -> (Buffers, mpsc::UnboundedReceiver<Buffer>) {
        let (new, rx) = mpsc::unbounded_channel();
        let b = Buffers {
            dir: dir.join(FOLDER),
            open: HashMap::new(),
            positions: Arc::new(Undelivered),
            new,
            defaults: Defaults {
                group: "default-group".into(),
                stream: "device".into(),
                allowed: vec![glob::Pattern::new("*").unwrap()],
            },
            refused_full: 0,
            refused_long: 0,
            invalid: 0,
            rerouted: 0,
            not_allowed: 0,
            told: None,
        };
        (b, rx)
    }

    fn doc(group: &str) -> String {
        format!(
            r#"{{"_aws":{{"Timestamp":1,"LogGroupName":"{group}","CloudWatchMetrics":[{{"Namespace":"N","Dimensions":[[]],"Metrics":[{{"Name":"M"}}]}}]}},"M":1}}"#
        )
    }

    #[test]
    fn documents_go_to_their_destinations_buffer_and_new_ones_are_announced() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, mut new) = buffers(dir.path());
        let text = format!(
            "{}\n\n{}\r\nnot json\n{}\nnor this\n",
            doc("a"),
            doc("a"),
            doc("bad name*")
        );
        b.take(text.as_bytes());
        let mut found = existing(dir.path());
        found.sort_by(|x, y| x.target.group.cmp(&y.target.group));
        let groups: Vec<&str> = found.iter().map(|f| f.target.group.as_str()).collect();
        // Not JSON, and a group CloudWatch would refuse: the default destination.
        assert_eq!(groups, ["a", "default-group"]);
        assert_eq!(
            std::fs::read_to_string(&found[0].path)
                .unwrap()
                .lines()
                .count(),
            2
        );
        assert_eq!(
            std::fs::read_to_string(&found[1].path)
                .unwrap()
                .lines()
                .count(),
            3
        );
        assert_eq!(new.try_recv().unwrap().target.group, "a");
        assert_eq!(new.try_recv().unwrap().target.group, "default-group");
        // The first invalid one is said; the second is counted for the summary.
        assert_eq!(b.invalid, 1);
    }

    #[test]
    fn past_the_most_destinations_documents_go_to_the_default_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _new) = buffers(dir.path());
        for n in 0..MAX_DESTINATIONS + 3 {
            b.take(doc(&format!("g{n}")).as_bytes());
        }
        assert_eq!(b.open.len(), MAX_DESTINATIONS + 1);
        assert_eq!(b.rerouted, 3);
        let huge = "x".repeat(MAX_DOCUMENT + 1);
        b.take(huge.as_bytes());
        assert_eq!(b.refused_long, 1);
    }

    #[test]
    fn a_destinations_folder_name_is_stable() {
        let t = Target {
            group: "g".into(),
            stream: "s".into(),
        };
        assert_eq!(folder(&t), folder(&t.clone()));
        assert_ne!(
            folder(&t),
            folder(&Target {
                group: "gs".into(),
                stream: String::new()
            })
        );
        assert_eq!(folder(&t).len(), 16);
    }
}
