//! The log pipeline: sources (files, the journal, the unified log) → filters → batches →
//! PutLogEvents → checkpoint. Each source has a reader task and a sender task joined by a one-batch channel:
//! when CloudWatch is slow or away the reader stops reading, and the file is the buffer.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::Backoff;
use crate::checkpoint::Checkpoints;
use crate::config::{self, Config, FileSource, Filters, JournalSource, UnifiedLogSource};
use crate::service::{Health, Heartbeat};
use crate::sinks::cloudwatch_logs::budget::{Budget, Held};
use crate::sinks::cloudwatch_logs::{
    in_window, run_sender, Batch, BatchBuilder, Destination, LogsSink, SenderEnd,
};
use crate::sources::emf::{self, EmfReceiver};
use crate::sources::files::multiline::{Assembler, Event};
use crate::sources::files::removal::Remover;
use crate::sources::files::timestamp::{LocalOffset, TimestampFormat};
use crate::sources::files::{
    self, Claim, FilePosition, LineSink, Look, Registry, StartAt, Step, Tailer,
};
use crate::sources::journal::{Journal, Resume};
use crate::sources::unified_log::{Mark, UnifiedLog};
use crate::sources::Position;

/// How often a file at its end is looked at again: soon after it last grew, then less often.
/// How far back an embedded metric format document's time may be from the one before it and
/// still be raised to it (see `FileLines::emf_event`).
const REORDER_MS: i64 = 60_000;
const POLL_MIN: Duration = Duration::from_millis(250);
const POLL_MAX: Duration = Duration::from_secs(1);
/// Longest rest of a file read to its end that keeps growing (see [`FileReader::rest`]).
const REST_MAX: Duration = Duration::from_secs(5);
/// How often patterns are matched again for new files.
const DISCOVER: Duration = Duration::from_secs(2);
/// Bytes a reader reads before it checks its deadline and the channel again.
const READ_BUDGET: usize = 1024 * 1024;
/// How often `auto_removal` looks for delivered files it may remove.
const REMOVAL_SWEEP: Duration = Duration::from_secs(5);
/// Stream name when neither an entry nor `logs.log_stream_name` gives one: the file's base
/// name, as the original did.
const DEFAULT_STREAM: &str = "{file_name}";

/// Everything the log pipeline needs to start.
pub struct LogsPipeline {
    pub config: Arc<Config>,
    pub instance_id: String,
    pub hostname: String,
    pub sink: LogsSink,
    pub checkpoints: Arc<Checkpoints>,
    /// Read what is there now, deliver it and stop (`--once`).
    pub once: bool,
    pub health: Arc<Health>,
    /// Room for lines read and not yet delivered, shared by every file, the journal and the
    /// unified log.
    pub budget: Budget,
    /// The embedded metric format buffers' room: a share of their own, taken from the budget
    /// (see [`EMF_BUDGET_SHARE`]).
    pub emf_budget: Budget,
    /// `metrics_collected.emf`'s sockets, bound.
    pub emf: Option<EmfReceiver>,
}

/// Tokens that end the pipeline: `stop` ends reading (what was read is still delivered),
/// `abort` ends delivery.
#[derive(Clone)]
pub struct Shutdown {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
}

impl LogsPipeline {
    fn flush_interval(&self) -> Duration {
        self.config
            .logs
            .force_flush_interval
            .unwrap_or(self.config.agent.logs_collection_interval)
    }

    fn resolve(&self, template: &str) -> String {
        template
            .replace("{instance_id}", &self.instance_id)
            .replace("{hostname}", &self.hostname)
    }

    fn journal_destination(&self, j: &JournalSource) -> Destination {
        let logs = &self.config.logs;
        Destination {
            group: self.resolve(j.log_group_name.as_deref().unwrap_or(&logs.log_group_name)),
            stream: sanitize_stream(&self.resolve(&j.log_stream_name)),
            retention_in_days: j.retention_in_days.or(logs.retention_in_days),
            log_group_class: None,
            emf: false,
        }
    }

    fn unified_log_destination(&self, u: &UnifiedLogSource) -> Destination {
        Destination {
            group: self.resolve(&u.log_group_name),
            stream: sanitize_stream(&self.resolve(&u.log_stream_name)),
            retention_in_days: u.retention_in_days.or(self.config.logs.retention_in_days),
            log_group_class: None,
            emf: false,
        }
    }

    fn destination(&self, entry: &FileSource, file_name: &str) -> Destination {
        let logs = &self.config.logs;
        let group = self.resolve(
            entry
                .log_group_name
                .as_deref()
                .unwrap_or(&logs.log_group_name),
        );
        let stream = self
            .resolve(
                entry
                    .log_stream_name
                    .as_deref()
                    .or(logs.log_stream_name.as_deref())
                    .unwrap_or(DEFAULT_STREAM),
            )
            .replace("{file_name}", file_name);
        Destination {
            group,
            stream: sanitize_stream(&stream),
            retention_in_days: entry.retention_in_days.or(logs.retention_in_days),
            log_group_class: entry.log_group_class.clone(),
            emf: entry.emf,
        }
    }

    /// Starts every source on `tracker`, once where each begins is saved. Returns false if
    /// there is nothing to ship.
    pub async fn start(mut self, tracker: &TaskTracker, shutdown: Shutdown) -> bool {
        let config = Arc::clone(&self.config);
        let logs = &config.logs;
        let unified_logs: Vec<&UnifiedLogSource> =
            logs.unified_logs.iter().filter(|u| u.collect).collect();
        let emf = self.emf.take();
        if logs.files.is_empty()
            && logs.journals.is_empty()
            && unified_logs.is_empty()
            && emf.is_none()
        {
            return false;
        }
        let this = Arc::new(self);
        if let LogsSink::CloudWatch(cw) = &this.sink {
            let mut retention = BTreeMap::new();
            for entry in &this.config.logs.files {
                let d = this.destination(entry, "x");
                if let Some(days) = d.retention_in_days {
                    retention.insert(d.group, days);
                }
            }
            for j in &logs.journals {
                let d = this.journal_destination(j);
                if let Some(days) = d.retention_in_days {
                    retention.insert(d.group, days);
                }
            }
            for u in &unified_logs {
                let d = this.unified_log_destination(u);
                if let Some(days) = d.retention_in_days {
                    retention.insert(d.group, days);
                }
            }
            let (cw, abort) = (Arc::clone(cw), shutdown.abort.clone());
            tracker.spawn(async move {
                for (group, days) in retention {
                    tokio::select! {
                        _ = cw.sync_retention(&group, days) => {}
                        _ = abort.cancelled() => return,
                    }
                }
            });
        }
        // Where each source begins is decided now and saved before the pipeline counts as
        // started (and the service as ready): a restart or a crash from here on begins there
        // too, not at what is the end of a file by then.
        let registry = Arc::new(Registry::default());
        let followed_before = this
            .checkpoints
            .follow(logs.files.iter().map(|e| e.file_path.clone()));
        let opened = {
            let (this, registry) = (Arc::clone(&this), Arc::clone(&registry));
            tokio::task::spawn_blocking(move || this.open_first(&registry, &followed_before))
                .await
                .expect("opening log files does not panic")
        };
        // One journalctl per reader: each keeps its own position, and journalctl does the
        // filtering by unit, priority and fields.
        let mut journals = Vec::new();
        for source in &logs.journals {
            let journal = Journal {
                program: Journal::program(),
                source: source.clone(),
                once: this.once,
                flush_interval: this.flush_interval(),
            };
            let resume = this.journal_resume(&journal).await;
            journals.push((journal, resume));
        }
        // Each unified log reader goes on from its mark; with none saved, from now, which is
        // saved as its mark.
        let mut unified = Vec::new();
        for source in unified_logs {
            let saved = this.checkpoints.unified_log_mark(&source.key);
            let mark = match saved.as_deref().and_then(Mark::parse) {
                Some(m) => m,
                None => {
                    let m = Mark::starting(crate::clock::wall_ms() * 1000);
                    this.checkpoints
                        .commit(&Position::UnifiedLog(source.key.clone(), m.encode()));
                    m
                }
            };
            let reader = UnifiedLog {
                program: UnifiedLog::program(),
                source: source.clone(),
                once: this.once,
                flush_interval: this.flush_interval(),
            };
            unified.push((reader, mark));
        }
        let saved = {
            let checkpoints = Arc::clone(&this.checkpoints);
            tokio::task::spawn_blocking(move || checkpoints.save())
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        if let Err(e) = saved {
            tracing::error!(directory = %this.config.agent.state_dir.display(), error = %e,
                "Cannot save where the log sources begin; lines written before a restart may be missed.");
        }

        for (index, tailer) in opened {
            this.follow(index, tailer, &registry, tracker, &shutdown);
        }
        if !this.once && logs.files.iter().any(|e| e.auto_removal) {
            tracker.spawn(
                Arc::clone(&this).remove_delivered(Arc::clone(&registry), shutdown.stop.clone()),
            );
        }
        if !this.once {
            for (index, entry) in logs.files.iter().enumerate() {
                if files::is_pattern(&entry.file_path) {
                    let (this, registry, tracker2, shutdown) = (
                        Arc::clone(&this),
                        Arc::clone(&registry),
                        tracker.clone(),
                        shutdown.clone(),
                    );
                    tracker.spawn(async move {
                        this.discover(index, registry, tracker2, shutdown).await
                    });
                }
            }
        }
        for (journal, resume) in journals {
            let dest = Arc::new(this.journal_destination(&journal.source));
            let source = match &journal.source.key {
                None => "journal".to_owned(),
                Some(k) => format!("journald {k}"),
            };
            let (budget, journal_again) = (this.budget.clone(), journal.clone());
            this.supervise(
                dest,
                source,
                resume,
                // After a parking, from the last entry delivered.
                move |this: Arc<Self>| {
                    let journal = journal_again.clone();
                    async move { this.journal_resume(&journal).await }
                },
                move |resume, tx, stop, beat| {
                    journal.clone().run(resume, tx, budget.clone(), stop, beat)
                },
                tracker,
                &shutdown,
            );
        }
        if let Some(receiver) = emf {
            this.receive_emf(receiver, &registry, tracker, &shutdown);
        }
        for (reader, mark) in unified {
            let dest = Arc::new(this.unified_log_destination(&reader.source));
            let source = format!("unified log {}", reader.source.key);
            let (budget, key) = (this.budget.clone(), reader.source.key.clone());
            this.supervise(
                dest,
                source,
                mark,
                // After a parking, from the mark of the last entry delivered.
                move |this: Arc<Self>| {
                    let mark = this
                        .checkpoints
                        .unified_log_mark(&key)
                        .as_deref()
                        .and_then(Mark::parse)
                        .unwrap_or_else(|| Mark::starting(crate::clock::wall_ms() * 1000));
                    std::future::ready(mark)
                },
                move |mark, tx, stop, beat| {
                    reader.clone().run(mark, tx, budget.clone(), stop, beat)
                },
                tracker,
                &shutdown,
            );
        }
        true
    }

    /// Ships the embedded metric format buffers an earlier run left, and starts the receiver,
    /// following each new destination's buffer as it appears.
    fn receive_emf(
        self: &Arc<Self>,
        receiver: EmfReceiver,
        registry: &Arc<Registry>,
        tracker: &TaskTracker,
        shutdown: &Shutdown,
    ) {
        let state_dir = self.config.agent.state_dir.clone();
        for buffer in emf::existing(&state_dir) {
            self.follow_buffer(buffer, registry, tracker, shutdown);
        }
        let logs = &self.config.logs;
        let e = logs.emf.as_ref();
        let defaults = emf::Defaults {
            group: self.resolve(
                e.and_then(|e| e.log_group_name.as_deref())
                    .unwrap_or(&logs.log_group_name),
            ),
            stream: sanitize_stream(
                &self.resolve(
                    e.and_then(|e| e.log_stream_name.as_deref())
                        .or(logs.log_stream_name.as_deref())
                        .unwrap_or("{instance_id}"),
                ),
            ),
            // The logs' default group, and whatever the config allows besides.
            allowed: std::iter::once(&self.resolve(&logs.log_group_name))
                .filter_map(|g| glob::Pattern::new(&glob::Pattern::escape(g)).ok())
                .chain(e.map(|e| e.log_group_names.clone()).unwrap_or_default())
                .collect(),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let positions: Arc<dyn files::PositionStore> = self.checkpoints.clone();
        tracker.spawn(receiver.run(state_dir, defaults, positions, tx, shutdown.stop.clone()));
        let (this, registry, tracker2, shutdown) = (
            Arc::clone(self),
            Arc::clone(registry),
            tracker.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            while let Some(buffer) = rx.recv().await {
                this.follow_buffer(buffer, &registry, &tracker2, &shutdown);
            }
        });
    }

    /// Where the journal reader begins: after the last delivered entry, or at the entry
    /// reading began at; with neither saved, at the first entry of this boot, which is
    /// recorded as that beginning.
    async fn journal_resume(&self, journal: &Journal) -> Resume {
        let key = &journal.source.key;
        let after = self.checkpoints.journal_cursor(key);
        let from = self.checkpoints.journal_start(key);
        if after.is_some() || from.is_some() {
            return Resume {
                after,
                from,
                boot: None,
            };
        }
        match journal.first_of_this_boot().await {
            Some((boot, first)) => {
                self.checkpoints
                    .commit(&Position::JournalFrom(key.clone(), first.clone()));
                Resume {
                    after: None,
                    from: Some(first),
                    boot: Some(boot),
                }
            }
            None => Resume::default(),
        }
    }

    /// The files each entry names now, opened, so that where reading each begins is decided
    /// and recorded. A file with no saved position at a `file_path` followed before (by the
    /// last run) appeared after reading began and is read from its start; otherwise from its
    /// end, unless the entry says `from_beginning`. Blocking.
    fn open_first(
        &self,
        registry: &Arc<Registry>,
        followed_before: &BTreeSet<String>,
    ) -> Vec<(usize, Tailer)> {
        let mut opened = Vec::new();
        for (index, entry) in self.config.logs.files.iter().enumerate() {
            let paths = if files::is_pattern(&entry.file_path) {
                files::expand(&entry.file_path)
            } else {
                vec![PathBuf::from(&entry.file_path)]
            };
            let start = if entry.from_beginning || followed_before.contains(&entry.file_path) {
                StartAt::Beginning
            } else {
                StartAt::End
            };
            for path in paths {
                if self.claim(index, &path, registry) {
                    let mut tailer = self.tailer(index, path, start, registry);
                    tailer.open_now(&*self.checkpoints);
                    opened.push((index, tailer));
                }
            }
        }
        opened
    }

    /// A tailer for `path`, found for entry `index`, in the entry's encoding.
    fn tailer(
        &self,
        index: usize,
        path: PathBuf,
        start: StartAt,
        registry: &Arc<Registry>,
    ) -> Tailer {
        let entry = &self.config.logs.files[index];
        Tailer::new(path, start, Some(Arc::clone(registry)))
            .with_encoding(entry.encoding)
            .with_auto_removal(entry.auto_removal)
    }

    /// Starts the task that delivers one source's batches to `dest`; returns its channel.
    /// A sender task for `dest`, fed by `source` (reading `file`, for a file), and its
    /// channel.
    fn sender(
        &self,
        dest: Arc<Destination>,
        source: &str,
        file: Option<&Path>,
        tracker: &TaskTracker,
        shutdown: &Shutdown,
    ) -> (mpsc::Sender<Batch>, JoinHandle<SenderEnd>) {
        self.sink.stats().register(&dest, source, file);
        let (tx, rx) = mpsc::channel(1);
        let beat = self
            .health
            .register(format!("sender {}/{}", dest.group, dest.stream));
        let sender = tracker.spawn(run_sender(
            rx,
            dest,
            self.sink.clone(),
            Arc::clone(&self.checkpoints),
            shutdown.abort.clone(),
            beat,
        ));
        (tx, sender)
    }

    /// Runs a reader of a child process's output (the journal, the unified log) from `first`
    /// with a sender of its own to `dest`; after each parking of `dest`, again from where
    /// `resume` says (its saved position).
    #[allow(clippy::too_many_arguments)]
    fn supervise<P, R, RFut, F, Fut>(
        self: &Arc<Self>,
        dest: Arc<Destination>,
        source: String,
        first: P,
        resume: R,
        read: F,
        tracker: &TaskTracker,
        shutdown: &Shutdown,
    ) where
        P: Send + 'static,
        R: Fn(Arc<Self>) -> RFut + Send + 'static,
        RFut: std::future::Future<Output = P> + Send,
        F: Fn(P, mpsc::Sender<Batch>, CancellationToken, Heartbeat) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let (this, tracker2, shutdown) = (Arc::clone(self), tracker.clone(), shutdown.clone());
        tracker.spawn(async move {
            let mut first = Some(first);
            let mut parked = Backoff::new(PARK_FIRST, PARK_MAX);
            loop {
                let from = match first.take() {
                    Some(p) => p,
                    None => resume(Arc::clone(&this)).await,
                };
                let (tx, sender) =
                    this.sender(Arc::clone(&dest), &source, None, &tracker2, &shutdown);
                let beat = this.health.register(format!("{source} reader"));
                read(from, tx, shutdown.stop.clone(), beat).await;
                if !this.parked(sender, &dest, &mut parked, &shutdown).await {
                    return;
                }
            }
        });
    }

    /// Whether a source whose reader ended is to read again: its sender ended because the
    /// destination refused for good, and it has waited parked (see [`LogsPipeline::park`]).
    async fn parked(
        &self,
        sender: JoinHandle<SenderEnd>,
        dest: &Destination,
        backoff: &mut Backoff,
        shutdown: &Shutdown,
    ) -> bool {
        match sender.await {
            Ok(SenderEnd::Refused(reason)) if !self.once => {
                self.park(dest, &reason, backoff, &shutdown.stop).await
            }
            _ => false,
        }
    }

    /// After its destination refused (`reason`): says so (once, until it is delivered to
    /// again), shows it in the status, and waits before the next try, longer each time up to
    /// [`PARK_MAX`]. False if the publisher stops meanwhile.
    async fn park(
        &self,
        dest: &Destination,
        reason: &str,
        backoff: &mut Backoff,
        stop: &CancellationToken,
    ) -> bool {
        let delay = backoff.next_delay();
        if backoff.failures() == 1 {
            tracing::error!(group = %dest.group, stream = %dest.stream, error = %reason,
                retry_in_s = delay.as_secs(),
                "CloudWatch Logs refuses this destination (the role may not write or create it): it is parked, its lines stay on disk and it is tried again now and then, longer apart each time; the other sources go on.");
        } else {
            tracing::debug!(group = %dest.group, stream = %dest.stream, error = %reason,
                retry_in_s = delay.as_secs(), "The destination still refuses; parked again.");
        }
        self.sink.stats().park(
            dest,
            reason,
            crate::clock::wall_ms() + delay.as_millis() as i64,
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stop.cancelled() => false,
        }
    }

    /// Whether `path`, found for entry `index`, is to be followed now (and by this entry): not
    /// the publisher's own log, not a rotated file still being finished, not followed already.
    fn claim(&self, index: usize, path: &Path, registry: &Registry) -> bool {
        let entry = &self.config.logs.files[index];
        if let Some(re) = &entry.blacklist {
            if path
                .file_name()
                .is_some_and(|n| re.is_match(&n.to_string_lossy()))
            {
                return false;
            }
        }
        if files::is_own_log(path, &self.config.agent.logfile) {
            if registry.first_warning(path) {
                tracing::warn!(file = %path.display(), entry = %entry_key(index),
                    "Not shipping the publisher's own log: every shipment would be logged, and shipped, without end.");
            }
            return false;
        }
        if files::is_pattern(&entry.file_path) {
            // A rotated file still being finished under its old path is not new.
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(path).is_ok_and(|m| registry.is_open(m.dev(), m.ino())) {
                return false;
            }
        }
        match registry.claim(path, index) {
            Claim::Claimed => true,
            Claim::Mine => false,
            Claim::Taken(other) => {
                if registry.first_warning(path) {
                    tracing::warn!(file = %path.display(), entry = %entry_key(index), first = %entry_key(other),
                        "File matched by two collect_list entries; it is shipped once, as the first says.");
                }
                false
            }
        }
    }

    /// `auto_removal`: every few seconds, removes the files it allows (see [`Remover`]).
    async fn remove_delivered(self: Arc<Self>, registry: Arc<Registry>, stop: CancellationToken) {
        let files = &self.config.logs.files;
        let mut remover = Remover::new(
            files
                .iter()
                .filter(|e| e.auto_removal && files::is_pattern(&e.file_path))
                .map(|e| e.file_path.clone())
                .collect(),
            files
                .iter()
                .filter(|e| !files::is_pattern(&e.file_path))
                .map(|e| PathBuf::from(&e.file_path))
                .collect(),
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REMOVAL_SWEEP) => {}
                _ = stop.cancelled() => return,
            }
            let (registry, checkpoints) = (Arc::clone(&registry), Arc::clone(&self.checkpoints));
            remover = match tokio::task::spawn_blocking(move || {
                remover.sweep(&registry, &*checkpoints);
                remover
            })
            .await
            {
                Ok(r) => r,
                Err(_) => return,
            };
        }
    }

    /// Matches entry `index`'s pattern again every few seconds; files found that are not
    /// followed yet are new, and read from their start.
    async fn discover(
        self: Arc<Self>,
        index: usize,
        registry: Arc<Registry>,
        tracker: TaskTracker,
        shutdown: Shutdown,
    ) {
        let entry = &self.config.logs.files[index];
        loop {
            tokio::select! {
                _ = tokio::time::sleep(DISCOVER) => {}
                _ = shutdown.stop.cancelled() => return,
            }
            let paths = {
                let p = entry.file_path.clone();
                tokio::task::spawn_blocking(move || files::expand(&p))
                    .await
                    .unwrap_or_default()
            };
            for path in paths {
                if self.claim(index, &path, &registry) {
                    let tailer = self.tailer(index, path, StartAt::Beginning, &registry);
                    self.follow(index, tailer, &registry, &tracker, &shutdown);
                }
            }
        }
    }

    /// Starts reading `tailer`'s file for entry `index`, with a sender of its own.
    fn follow(
        self: &Arc<Self>,
        index: usize,
        tailer: Tailer,
        registry: &Arc<Registry>,
        tracker: &TaskTracker,
        shutdown: &Shutdown,
    ) {
        let entry = &self.config.logs.files[index];
        let path = tailer.path();
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = Arc::new(self.destination(entry, &file_name));
        tracing::info!(file = %path.display(), group = %dest.group, stream = %dest.stream, "Shipping log file.");
        let lines = self.file_lines(index, path);
        let ends_when_missing = files::is_pattern(&entry.file_path);
        let remake: Remake = {
            let (this, registry, path) = (Arc::clone(self), Arc::clone(registry), path.to_owned());
            Box::new(move || {
                (
                    this.tailer(index, path.clone(), StartAt::Beginning, &registry),
                    this.file_lines(index, &path),
                )
            })
        };
        self.follow_with(
            tailer,
            dest,
            lines,
            remake,
            ends_when_missing,
            registry,
            tracker,
            shutdown,
        );
    }

    /// What turns the lines of `path`, found for entry `index`, into batches.
    fn file_lines(&self, index: usize, path: &Path) -> FileLines {
        let entry = &self.config.logs.files[index];
        FileLines {
            builder: BatchBuilder::new(),
            filters: entry.filters.clone(),
            full: Vec::new(),
            ts: 0,
            timestamp: entry.timestamp.clone(),
            trim_timestamp: entry.trim_timestamp,
            local: LocalOffset::default(),
            last_found: None,
            multiline: entry.multi_line_start.clone().map(Assembler::new),
            emf: entry.emf.then(|| EmfLines {
                check: Some(path.to_owned()),
                said_invalid: false,
            }),
        }
    }

    /// Follows an embedded metric format buffer file to its destination.
    fn follow_buffer(
        self: &Arc<Self>,
        buffer: crate::sources::emf::Buffer,
        registry: &Arc<Registry>,
        tracker: &TaskTracker,
        shutdown: &Shutdown,
    ) {
        let dest = Arc::new(Destination {
            group: buffer.target.group,
            stream: sanitize_stream(&buffer.target.stream),
            retention_in_days: self.config.logs.retention_in_days,
            log_group_class: None,
            emf: true,
        });
        tracing::debug!(file = %buffer.path.display(), group = %dest.group, stream = %dest.stream,
            "Shipping embedded metric format documents.");
        let remake: Remake = {
            let (registry, path) = (Arc::clone(registry), buffer.path);
            Box::new(move || {
                let tailer = Tailer::new(
                    path.clone(),
                    StartAt::Beginning,
                    Some(Arc::clone(&registry)),
                );
                let lines = FileLines::plain(Some(EmfLines {
                    check: None,
                    said_invalid: false,
                }));
                (tailer, lines)
            })
        };
        let (tailer, lines) = remake();
        self.follow_with(
            tailer, dest, lines, remake, false, registry, tracker, shutdown,
        );
    }

    /// Starts reading `tailer`'s file into `lines`, with a sender of its own to `dest`. When
    /// the destination refuses for good, reader and sender stop (the lines read go back to
    /// the budget, unsent) and, after a while, start again from the saved position with a
    /// reader `remake` gives.
    #[allow(clippy::too_many_arguments)]
    fn follow_with(
        self: &Arc<Self>,
        tailer: Tailer,
        dest: Arc<Destination>,
        lines: FileLines,
        remake: Remake,
        ends_when_missing: bool,
        registry: &Arc<Registry>,
        tracker: &TaskTracker,
        shutdown: &Shutdown,
    ) {
        let (this, registry, tracker2, shutdown) = (
            Arc::clone(self),
            Arc::clone(registry),
            tracker.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move {
            // The receiver's buffers (the documents were checked as they came), not a file
            // of the user's marked `emf`.
            let emf_buffer = lines.emf.as_ref().is_some_and(|e| e.check.is_none());
            let remote = {
                let path = tailer.path().to_owned();
                let beat = this.health.register(format!("reader {}", path.display()));
                let job = move || files::on_network_fs(&path);
                match off_runtime(&beat, &shutdown.stop, job).await {
                    Some(remote) => remote,
                    None => return,
                }
            };
            let mut first = Some((tailer, lines));
            let mut parked = Backoff::new(PARK_FIRST, PARK_MAX);
            loop {
                let (tailer, lines) = first.take().unwrap_or_else(&remake);
                let path = tailer.path().to_owned();
                // How far a file is behind is read for the status, off the reader: not for a
                // file on a network file system, whose mount may hang.
                let (tx, sender) = this.sender(
                    Arc::clone(&dest),
                    &path.display().to_string(),
                    (!remote).then_some(path.as_path()),
                    &tracker2,
                    &shutdown,
                );
                let reader = FileReader {
                    heartbeat: this.health.register(format!("reader {}", path.display())),
                    tailer,
                    sink: lines,
                    checkpoints: Arc::clone(&this.checkpoints),
                    flush: this.flush_interval(),
                    once: this.once,
                    ends_when_missing,
                    budget: if emf_buffer {
                        this.emf_budget.clone()
                    } else {
                        this.budget.clone()
                    },
                    held: Held::none(),
                    rest_until: Instant::now(),
                    remote,
                };
                let path = reader.run(tx, shutdown.stop.clone()).await;
                if !this.parked(sender, &dest, &mut parked, &shutdown).await {
                    registry.release(&path);
                    return;
                }
            }
        });
    }
}

/// Runs `job` (a call on a file of a network file system) on a thread of its own, beating
/// `heartbeat` while it waits: a hung mount holds up this reader and that thread, never the
/// runtime, the blocking pool the other sources share, or the watchdog. `None` if `stop` came
/// first (the thread is left to end when it can; the process does not wait for it).
async fn off_runtime<T: Send + 'static>(
    heartbeat: &Heartbeat,
    stop: &CancellationToken,
    job: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("network file".into())
        .spawn(move || {
            let _ = tx.send(job());
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "Cannot start a thread to read a file on a network file system.");
        return None;
    }
    tokio::select! {
        done = crate::service::beating(heartbeat, rx) => done.ok(),
        _ = stop.cancelled() => None,
    }
}

/// Makes a file's reader again, to read from its saved position after its destination was
/// parked.
type Remake = Box<dyn Fn() -> (Tailer, FileLines) + Send + Sync>;

/// With the embedded metric format received, its buffers have this part of the logs memory
/// budget (a quarter) for their own, and the other sources the rest.
pub const EMF_BUDGET_SHARE: u32 = 4;

/// A parked destination is tried again after this long at first...
const PARK_FIRST: Duration = Duration::from_secs(10);
/// ...and at most this long apart.
const PARK_MAX: Duration = Duration::from_secs(3600);

/// Lines → event times → filters → batches, on the reader's side.
struct FileLines {
    builder: BatchBuilder,
    filters: Filters,
    /// Batches that became full during a step.
    full: Vec<Batch>,
    /// When the lines were read (ms since the epoch).
    ts: i64,
    /// `timestamp_format`: the time is the line's own.
    timestamp: Option<TimestampFormat>,
    trim_timestamp: bool,
    local: LocalOffset,
    /// The last time found in this file: a line without one takes it, as with the agent.
    last_found: Option<i64>,
    /// `multi_line_start_pattern`: lines put together into events.
    multiline: Option<Assembler<FilePosition>>,
    /// Lines are embedded metric format documents.
    emf: Option<EmfLines>,
}

/// What a reader of embedded metric format documents keeps.
struct EmfLines {
    /// Check each document and say the first invalid one (a file's; the receiver checked
    /// what it buffered).
    check: Option<PathBuf>,
    said_invalid: bool,
}

impl FileLines {
    /// Lines as they are, each an event stamped when read (or with its document's time).
    fn plain(emf: Option<EmfLines>) -> FileLines {
        FileLines {
            builder: BatchBuilder::new(),
            filters: Filters::default(),
            full: Vec::new(),
            ts: 0,
            timestamp: None,
            trim_timestamp: false,
            local: LocalOffset::default(),
            last_found: None,
            multiline: None,
            emf,
        }
    }

    /// An embedded metric format document's time: its `_aws.Timestamp`, else when it was read.
    /// A time a little before the document before it is raised to that one's, so that
    /// documents from several writers whose clocks differ by a moment still share a batch
    /// (each request must be in order); a time further back starts a batch of its own. A time
    /// CloudWatch would not store (a sender's clock far ahead, say) is kept as it is and does
    /// not count as the one before: the event is refused alone, and the next keep their own.
    fn emf_event(&mut self, line: &str) -> i64 {
        let Some(emf) = &mut self.emf else {
            return self.ts;
        };
        let doc = crate::sources::emf::document::inspect(line);
        if let Some(path) = &emf.check {
            let invalid = match &doc {
                Ok(d) => d.validity.as_ref().err().cloned(),
                Err(e) => Some(e.clone()),
            };
            if let Some(reason) = invalid {
                if !std::mem::replace(&mut emf.said_invalid, true) {
                    tracing::warn!(file = %path.display(), %reason,
                        "A line that is not valid embedded metric format: shipped as a plain log event, no metrics are extracted (said once per file).");
                }
            }
        }
        let own = doc.ok().and_then(|d| d.timestamp_ms).unwrap_or(self.ts);
        if !in_window(own, self.ts) {
            return own;
        }
        let ts = match self.last_found {
            Some(last) if own < last && last - own <= REORDER_MS => last,
            _ => own,
        };
        self.last_found = Some(ts);
        ts
    }
}

impl FileLines {
    /// Takes the time the lines read next are stamped with, when they carry none of their own.
    /// Times never go back (a batch is in order) but for a step of the clock.
    fn stamp(&mut self, now: &crate::clock::Reading) {
        self.ts = if now.wall_ms + crate::clock::STEP_MS < self.ts {
            now.wall_ms
        } else {
            self.ts.max(now.wall_ms)
        };
        // Times found in the lines are the writer's, and are left as they are.
        let unsynced = (!now.synchronized && self.timestamp.is_none()).then_some(now.offset_ms);
        self.builder.stamped_on(unsynced);
    }

    /// The event's time and text.
    fn event<'t>(&mut self, line: &'t str) -> (i64, Cow<'t, str>) {
        if self.emf.is_some() {
            return (self.emf_event(line), Cow::Borrowed(line));
        }
        let Some(format) = &self.timestamp else {
            return (self.ts, Cow::Borrowed(line));
        };
        match format.find(line, self.ts, &mut self.local) {
            Some((ts, at)) => {
                // A time CloudWatch would not store is the line's alone: the lines without a
                // time of their own that follow keep the last one it would.
                if in_window(ts, self.ts) {
                    self.last_found = Some(ts);
                }
                if self.trim_timestamp {
                    let rest = line[at.end..].trim_start();
                    (ts, Cow::Owned(format!("{}{rest}", &line[..at.start])))
                } else {
                    (ts, Cow::Borrowed(line))
                }
            }
            None => (self.last_found.unwrap_or(self.ts), Cow::Borrowed(line)),
        }
    }
}

impl FileLines {
    /// Hands on a multi-line event that has waited long enough (or any, with `force`).
    fn expire(&mut self, force: bool) {
        let done = self
            .multiline
            .as_mut()
            .and_then(|a| a.expire(std::time::Instant::now(), force));
        if let Some(e) = done {
            self.complete_event(e);
        }
    }

    /// A multi-line event (an empty one only moves the position).
    fn complete_event(&mut self, e: Event<FilePosition>) {
        let text = (!e.text.is_empty()).then_some(e.text.as_str());
        self.complete(text, e.position);
    }

    /// One complete event (`None`: an empty line, which only moves the position).
    fn complete(&mut self, text: Option<&str>, position: FilePosition) {
        // A batch holds one file's lines: when reading moves on to the next file (a rotation),
        // the old file's end is committed by a batch of its own, which shows it delivered to
        // its end (what `auto_removal` waits for).
        if let Some(Position::File(last)) = self.builder.position() {
            if (last.key.dev, last.key.ino) != (position.key.dev, position.key.ino) {
                if let Some(b) = self.builder.take() {
                    self.full.push(b);
                }
            }
        }
        let position = Position::File(position);
        let Some(line) = text else {
            return self.builder.advance(position);
        };
        let (ts, event) = self.event(line);
        if !event.is_empty() && self.filters.keeps(&event) {
            if let Some(b) = self.builder.push(ts, &event, position) {
                self.full.push(b);
            }
        } else {
            self.builder.advance(position);
        }
    }
}

impl LineSink for FileLines {
    fn line(&mut self, text: Option<&str>, position: FilePosition) {
        match &mut self.multiline {
            Some(a) => {
                for e in a.line(text, position, std::time::Instant::now()) {
                    self.complete_event(e);
                }
            }
            None => self.complete(text, position),
        }
    }

    fn wants_more(&self) -> bool {
        self.full.is_empty() && !self.builder.is_full()
    }
}

/// What waiting for room in the memory budget ended with.
enum Reserved {
    Room(Held),
    /// The batch being built is due: send it first.
    Due,
    Stopped,
}

struct FileReader {
    heartbeat: Heartbeat,
    tailer: Tailer,
    sink: FileLines,
    checkpoints: Arc<Checkpoints>,
    flush: Duration,
    once: bool,
    /// A file found by a pattern: stop once it is gone (the pattern finds it again).
    ends_when_missing: bool,
    budget: Budget,
    /// Room for the lines read that are not in a batch handed on yet.
    held: Held,
    /// Until when a file read to its end is not read again for only having grown.
    rest_until: Instant,
    /// The file is on a network file system: every call on it goes to the blocking pool,
    /// where a hung mount holds up only this reader (see [`files::on_network_fs`]).
    remote: bool,
}

impl FileReader {
    /// Waits for room to read in (in turn with every other reader), beating the heartbeat
    /// meanwhile, until the lines already read are due to be sent.
    async fn reserve(&self, out: &mpsc::Sender<Batch>, stop: &CancellationToken) -> Reserved {
        let room = (READ_BUDGET as u32).min(self.budget.total() / 4);
        let reserve = self.budget.reserve(room);
        tokio::pin!(reserve);
        loop {
            tokio::select! {
                held = &mut reserve => return Reserved::Room(held),
                // The sender is gone (its destination parked): what is read stays unread.
                _ = out.closed() => return Reserved::Stopped,
                _ = tokio::time::sleep(POLL_MAX) => {
                    self.heartbeat.beat();
                    if self.due() {
                        return Reserved::Due;
                    }
                }
                _ = stop.cancelled() => return Reserved::Stopped,
            }
        }
    }

    /// Gives back the room of lines that ended in no batch (filtered out, say).
    fn release_unused(&mut self) {
        if !self.sink.builder.is_pending() && self.sink.full.is_empty() {
            self.held = Held::none();
        }
    }

    /// Reads until `stop` (or, for `--once`, the end of the file); returns the path.
    async fn run(mut self, out: mpsc::Sender<Batch>, stop: CancellationToken) -> PathBuf {
        let path = self.tailer.path().to_owned();
        let mut poll = POLL_MIN;
        let mut last = Step::Read;
        loop {
            self.heartbeat.beat();
            if stop.is_cancelled() {
                break;
            }
            // An idle file costs two stats per look, not a trip to the blocking pool; so does
            // one that only grew since it was read to its end less than a second ago (its
            // lines wait for their flush deadline anyway). A truncation or rotation is read
            // at once.
            let look = if self.remote {
                let tailer = self.tailer;
                let job = move || {
                    let look = tailer.look();
                    (tailer, look)
                };
                let Some((tailer, look)) = off_runtime(&self.heartbeat, &stop, job).await else {
                    return path;
                };
                self.tailer = tailer;
                look
            } else {
                self.tailer.look()
            };
            let resting = matches!(look, Look::Grew(_)) && Instant::now() < self.rest_until;
            if last != Step::Read && !self.once && (look == Look::Unchanged || resting) {
                self.sink.expire(false);
                // A completed event may have filled a batch: older batches go first.
                if !self.send_full(&out).await {
                    break;
                }
                if self.due() {
                    if let Some(b) = self.sink.builder.take() {
                        if !self.send(&out, b).await {
                            break;
                        }
                    }
                }
                // A resting file is looked at every second (a rotation is still seen soon),
                // and read when its rest ends.
                let nap = if resting {
                    self.rest_until
                        .saturating_duration_since(Instant::now())
                        .min(POLL_MAX)
                } else {
                    poll
                };
                if !self.sleep(nap, &out, &stop).await {
                    break;
                }
                poll = if resting {
                    POLL_MIN
                } else {
                    (poll * 2).min(POLL_MAX)
                };
                continue;
            }
            let mut room = match self.reserve(&out, &stop).await {
                Reserved::Room(room) => room,
                // The lines read so far are due while the reader waits for room: they go on
                // now, and their room comes back once they are delivered (readers that kept
                // theirs could otherwise wait for room that readers like them keep).
                Reserved::Due => {
                    if let Some(b) = self.sink.builder.take() {
                        if !self.send(&out, b).await {
                            break;
                        }
                    }
                    continue;
                }
                Reserved::Stopped => break,
            };
            // A step reads at most one chunk past what it is given.
            let may_read = (room.bytes() as usize).saturating_sub(files::CHUNK).max(1);
            self.sink.stamp(&crate::clock::get().read());
            // A little growth (a trickle's second) is read here: cheaper than a trip to the
            // blocking pool and back, and a page-cache read of a chunk takes microseconds.
            let step = if !self.remote && matches!(look, Look::Grew(n) if n <= files::CHUNK as u64)
            {
                self.tailer
                    .step(&*self.checkpoints, &mut self.sink, may_read)
            } else {
                let (tailer, sink, step) = {
                    let (mut tailer, mut sink, lookup) =
                        (self.tailer, self.sink, Arc::clone(&self.checkpoints));
                    let job = move || {
                        let step = tailer.step(&*lookup, &mut sink, may_read);
                        (tailer, sink, step)
                    };
                    if self.remote {
                        match off_runtime(&self.heartbeat, &stop, job).await {
                            Some(done) => done,
                            None => return path,
                        }
                    } else {
                        tokio::task::spawn_blocking(job)
                            .await
                            .expect("reading a file does not panic")
                    }
                };
                self.tailer = tailer;
                self.sink = sink;
                step
            };
            // The room of what was read stays with the lines; the rest goes back at once.
            self.held.absorb(room.split(self.tailer.last_read()));
            drop(room);
            self.release_unused();
            // What there was is read: no second look at once, and no read before the rest is
            // over (lines wait for their flush deadline anyway), which keeps a trickle cheap.
            let at_end = step == Step::Read
                && self.tailer.last_read() < may_read
                && self.sink.wants_more()
                && !self.tailer.rotating();
            let step = if at_end {
                self.rest_until = Instant::now() + self.rest();
                Step::Idle
            } else {
                step
            };
            // An event is complete after a quiet second only at the end of what there is to
            // read: not while more may follow at once, nor while a rotated file is finished
            // (the event may go on in the next one). With --once, what was read is all there is.
            if step != Step::Read && !self.tailer.rotating() {
                self.sink.expire(self.once);
            }
            if !self.send_full(&out).await {
                return self.tailer.path().to_owned();
            }
            if self.sink.builder.is_full() || self.due() {
                if let Some(b) = self.sink.builder.take() {
                    if !self.send(&out, b).await {
                        return self.tailer.path().to_owned();
                    }
                }
            }
            last = step;
            match step {
                Step::Read => {
                    poll = POLL_MIN;
                    continue;
                }
                // Gone for good; a file that is there but unreadable is retried here instead,
                // so its warning is given once.
                Step::Missing if self.ends_when_missing && !self.tailer.path().exists() => break,
                Step::Idle | Step::Missing if self.once => break,
                Step::Idle | Step::Missing => {}
            }
            if !self.sleep(poll, &out, &stop).await {
                break;
            }
            // While a rotated file is finished, the path is watched closely: the next file may
            // itself be rotated away soon.
            poll = if self.tailer.rotating() {
                POLL_MIN
            } else {
                (poll * 2).min(POLL_MAX)
            };
        }
        if self.send_full(&out).await {
            if let Some(b) = self.sink.builder.take() {
                let _ = self.send(&out, b).await;
            }
        }
        self.tailer.path().to_owned()
    }

    /// Hands on the batches that became full, oldest first; false if the sender is gone.
    async fn send_full(&mut self, out: &mpsc::Sender<Batch>) -> bool {
        // Each takes its room before any is handed on: the room left over goes back only
        // once none of these holds lines without it.
        let full: Vec<Batch> = std::mem::take(&mut self.sink.full)
            .into_iter()
            .map(|mut b| {
                b.held = Some(Arc::new(self.held.split(b.bytes())));
                b
            })
            .collect();
        for b in full {
            if !self.send(out, b).await {
                return false;
            }
        }
        true
    }

    /// Hands a batch to the sender, waiting as long as the sender is busy (CloudWatch slow,
    /// say). Meanwhile the path is watched, so files rotated in and out of it during the wait
    /// are still read later. False if the sender is gone.
    async fn send(&mut self, out: &mpsc::Sender<Batch>, mut batch: Batch) -> bool {
        if batch.held.is_none() {
            batch.held = Some(Arc::new(self.held.split(batch.bytes())));
        }
        self.release_unused();
        loop {
            self.heartbeat.beat();
            tokio::select! {
                permit = out.reserve() => {
                    return match permit {
                        Ok(permit) => {
                            permit.send(batch);
                            true
                        }
                        Err(_) => false,
                    };
                }
                // On a network file system the path is not looked at here, on the runtime's
                // threads (a hung mount would hold them up).
                _ = tokio::time::sleep(POLL_MIN), if !self.remote => self.tailer.watch(),
                _ = tokio::time::sleep(POLL_MIN), if self.remote => {}
            }
        }
    }

    /// Sleeps `poll`, or less if the batch is due sooner; false if `stop` came first.
    async fn sleep(
        &self,
        poll: Duration,
        out: &mpsc::Sender<Batch>,
        stop: &CancellationToken,
    ) -> bool {
        let now = Instant::now();
        let deadline = self
            .sink
            .builder
            .opened()
            .map(|t| Instant::from_std(t) + self.flush)
            .filter(|&d| d < now + poll);
        let wake = match deadline {
            Some(d) => on_the_tick(d, POLL_MIN),
            // Looks a second or more apart share whole-second ticks, half a second either
            // way: all of them cost the runtime one wake-up a second.
            None if poll >= POLL_MAX => on_the_tick(now + poll - POLL_MAX / 2, POLL_MAX),
            None => on_the_tick(now + poll, POLL_MIN),
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => true,
            _ = stop.cancelled() => false,
            _ = out.closed() => false,
        }
    }

    /// How long a file read to its end is not read again for only having grown: a quarter of
    /// the flush interval (1 to 5 s). Its lines wait for the flush anyway, so a trickle costs
    /// a read every few seconds instead of every second, and a line waits at most this much
    /// longer than the flush interval.
    fn rest(&self) -> Duration {
        (self.flush / 4).clamp(POLL_MAX, REST_MAX)
    }

    fn due(&self) -> bool {
        self.sink
            .builder
            .opened()
            .is_some_and(|t| t.elapsed() >= self.flush)
    }
}

/// `t`, rounded up to the next `tick` (counted from one start shared by every reader): readers that sleep
/// wake together, one wake-up of the runtime for all of them rather than one each.
fn on_the_tick(t: Instant, tick: Duration) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = t.saturating_duration_since(epoch).as_nanos();
    let tick = tick.as_nanos();
    let ticks = since.div_ceil(tick);
    epoch + Duration::from_nanos((ticks * tick) as u64)
}

fn entry_key(index: usize) -> String {
    format!("logs.logs_collected.files.collect_list[{index}]")
}

/// A resolved stream name CloudWatch accepts: `:` and `*` become `_`, at most 512 characters.
fn sanitize_stream(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c == ':' || c == '*' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(config::LOG_STREAM_MAX_CHARS)
        .collect();
    if clean.is_empty() {
        "_".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emf_lines(now: i64) -> FileLines {
        let mut lines = FileLines::plain(Some(EmfLines {
            check: None,
            said_invalid: false,
        }));
        lines.stamp(&crate::clock::Reading {
            wall_ms: now,
            offset_ms: 0,
            synchronized: true,
            hold: false,
        });
        lines
    }

    fn doc(ts: i64) -> String {
        format!(r#"{{"_aws":{{"Timestamp":{ts},"CloudWatchMetrics":[]}}}}"#)
    }

    #[test]
    fn a_document_time_outside_the_window_is_its_own_and_drags_no_other() {
        let now = 1_800_000_000_000;
        let mut lines = emf_lines(now);
        assert_eq!(lines.event(&doc(now - 5_000)).0, now - 5_000);
        let year_ahead = now + 365 * 86_400_000;
        assert_eq!(lines.event(&doc(year_ahead)).0, year_ahead);
        assert_eq!(lines.event(&doc(now - 4_000)).0, now - 4_000);
        let month_ago = now - 30 * 86_400_000;
        assert_eq!(lines.event(&doc(month_ago)).0, month_ago);
        // A moment back from the one before: raised to it, so the two share a batch.
        assert_eq!(lines.event(&doc(now - 4_500)).0, now - 4_000);
        // An hour back: its own time (a batch of its own).
        assert_eq!(lines.event(&doc(now - 3_600_000)).0, now - 3_600_000);
        // An hour ahead is within the window, and a document after it keeps its own time.
        assert_eq!(lines.event(&doc(now + 3_600_000)).0, now + 3_600_000);
        assert_eq!(lines.event(&doc(now - 1_000)).0, now - 1_000);
        // None: when it was read.
        assert_eq!(lines.event(r#"{"a":1}"#).0, now);
    }

    #[tokio::test]
    async fn sleepers_wake_on_a_shared_tick_never_early() {
        let now = Instant::now();
        let a = on_the_tick(now + Duration::from_millis(10), POLL_MIN);
        let b = on_the_tick(now + Duration::from_millis(30), POLL_MIN);
        assert!(
            a >= now + Duration::from_millis(10) && a - now < POLL_MIN + Duration::from_millis(10)
        );
        // Two wake-ups within one tick of each other share it unless a tick lies between.
        assert!(a == b || b - a == POLL_MIN);
        assert_eq!(on_the_tick(a, POLL_MIN), a, "a tick is its own tick");
        // Whole-second ticks are quarter-second ticks too: the two kinds wake together.
        let c = on_the_tick(now + Duration::from_millis(700), POLL_MAX);
        assert_eq!(on_the_tick(c, POLL_MIN), c);
    }
}
