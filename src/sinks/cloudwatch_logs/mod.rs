//! Delivers log batches with PutLogEvents (or prints them for `--dry-run`): creates the group
//! and stream when CloudWatch says they are missing, retries what can succeed later for as
//! long as it takes, and moves a source's position only once its events are accepted.

mod batch;
pub mod budget;
mod retry;

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::checkpoint::Checkpoints;
use crate::sources::Position;

pub use batch::{
    in_window, split_message, Batch, BatchBuilder, EVENT_OVERHEAD, MAX_AGE_MS, MAX_AHEAD_MS,
    MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_SPAN_MS,
};
pub use retry::{classify, Outcome};

/// Requests one source may have in flight. One keeps a stream's events in the order they were
/// written even where timestamps tie; the reader builds the next batch meanwhile.
pub const REQUESTS_PER_SOURCE: usize = 1;
/// Requests in flight over all sources, which bounds the memory they hold.
pub const REQUESTS_IN_FLIGHT: usize = 6;
/// How often a batch waiting for the clock looks at it again.
const CLOCK_LOOK: Duration = Duration::from_secs(1);
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// After this many single events refused in a row, the rest is kept and retried with backoff.
const MAX_REFUSED_IN_A_ROW: u32 = 8;
/// Single events refused as invalid are each logged up to this many times per run.
const REFUSALS_LOGGED: u64 = 20;

/// Where a source's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub group: String,
    pub stream: String,
    pub retention_in_days: Option<u32>,
    /// The class a group is created with (`INFREQUENT_ACCESS`); `None`: standard.
    pub log_group_class: Option<String>,
    /// The events are embedded metric format documents: sent with the `x-amzn-logs-format:
    /// json/emf` header, so CloudWatch extracts their metrics.
    pub emf: bool,
}

/// How delivering a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Stopped first: the lines stay on disk after the saved position.
    Aborted,
    /// The destination refuses for good (the role may not write or create it): the lines stay
    /// on disk after the saved position, and the destination is parked.
    Refused(String),
}

/// Why a group or stream could not be created.
#[derive(Debug)]
struct CreateFailure {
    message: String,
    /// The role may not create it.
    denied: bool,
}

impl CreateFailure {
    fn new<E, R>(operation: &str, e: &aws_sdk_cloudwatchlogs::error::SdkError<E, R>) -> Self
    where
        E: aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    {
        CreateFailure {
            message: format!("{operation}: {}", crate::aws::describe(e)),
            denied: retry::is_access_denied(e.as_service_error().and_then(|s| s.code())),
        }
    }
}

/// The header that makes CloudWatch Logs extract embedded metric format documents' metrics.
pub const EMF_HEADER: (&str, &str) = ("x-amzn-logs-format", "json/emf");

/// Counts over the run, for the log and the exit code of `--once`.
#[derive(Debug, Default)]
pub struct Stats {
    pub delivered: AtomicU64,
    pub refused: AtomicU64,
    pub too_old: AtomicU64,
    pub too_new: AtomicU64,
    pub expired: AtomicU64,
    /// Batches not delivered when the publisher stopped (their lines stay on disk).
    pub undelivered: AtomicU64,
    /// Why delivery is failing right now, for the status line.
    pub failing: std::sync::Mutex<Option<String>>,
    /// Each stream's delivery so far, by "group/stream" (for `status`).
    pub streams: std::sync::Mutex<std::collections::BTreeMap<String, StreamStats>>,
}

/// One stream's delivery, for `status`.
#[derive(Debug, Clone, Default)]
pub struct StreamStats {
    pub group: String,
    pub stream: String,
    /// What feeds it: a file's path, `journal`, a reader's name.
    pub source: String,
    /// The file it reads, for how far delivery is behind its end.
    pub file: Option<std::path::PathBuf>,
    pub events: u64,
    /// The newest event time delivered, and when that was.
    pub newest_event_ms: Option<i64>,
    pub delivered_ms: Option<i64>,
    /// The last delivery error, and when it was; cleared by a delivery.
    pub error: Option<String>,
    pub error_ms: Option<i64>,
    /// Parked (refused for good) until this time, when it is tried again; cleared by a
    /// delivery.
    pub parked_until_ms: Option<i64>,
}

impl Stats {
    pub fn get(n: &AtomicU64) -> u64 {
        n.load(Ordering::Relaxed)
    }

    fn stream(&self, dest: &Destination, f: impl FnOnce(&mut StreamStats)) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let s = streams
            .entry(format!("{}/{}", dest.group, dest.stream))
            .or_insert_with(|| StreamStats {
                group: dest.group.clone(),
                stream: dest.stream.clone(),
                ..StreamStats::default()
            });
        f(s);
    }

    /// A stream fed by `source` (reading `file`, if a file).
    pub fn register(&self, dest: &Destination, source: &str, file: Option<&std::path::Path>) {
        self.stream(dest, |s| {
            s.source = source.to_owned();
            s.file = file.map(std::path::Path::to_owned);
        });
    }

    fn note_delivery(&self, dest: &Destination, batch: &Batch, events: u64) {
        let now = crate::clock::wall_ms();
        let newest = batch.events().map(|(ts, _)| ts).max();
        self.stream(dest, |s| {
            s.events += events;
            s.newest_event_ms = s.newest_event_ms.max(newest);
            s.delivered_ms = Some(now);
            s.error = None;
            s.parked_until_ms = None;
        });
    }

    /// The destination refused for good (`error`) and is parked until `until_ms`.
    pub fn park(&self, dest: &Destination, error: &str, until_ms: i64) {
        let now = crate::clock::wall_ms();
        self.stream(dest, |s| {
            s.error = Some(error.to_owned());
            s.error_ms = Some(now);
            s.parked_until_ms = Some(until_ms);
        });
    }

    fn note_failure(&self, dest: &Destination, error: &str) {
        let now = crate::clock::wall_ms();
        self.stream(dest, |s| {
            s.error = Some(error.to_owned());
            s.error_ms = Some(now);
        });
    }
}

/// Where log batches go.
#[derive(Clone)]
pub enum LogsSink {
    CloudWatch(Arc<CloudWatchLogs>),
    /// `--dry-run`: one PutLogEvents-shaped JSON object per batch on standard output.
    Stdout(Arc<Stats>),
}

impl LogsSink {
    pub fn stats(&self) -> &Stats {
        match self {
            LogsSink::CloudWatch(c) => &c.stats,
            LogsSink::Stdout(s) => s,
        }
    }

    /// Delivers one batch.
    async fn deliver(
        &self,
        dest: &Destination,
        batch: Batch,
        abort: &CancellationToken,
    ) -> Delivery {
        match self {
            LogsSink::CloudWatch(c) => c.deliver(dest, batch, abort).await,
            LogsSink::Stdout(stats) => {
                if !batch.is_empty() {
                    let events: Vec<_> = batch
                        .events()
                        .map(|(ts, m)| serde_json::json!({"timestamp": ts, "message": m}))
                        .collect();
                    let line = serde_json::json!({
                        "logGroupName": dest.group,
                        "logStreamName": dest.stream,
                        "logEvents": events,
                    });
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
                    stats
                        .delivered
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Delivery::Delivered
            }
        }
    }
}

pub struct CloudWatchLogs {
    client: aws_sdk_cloudwatchlogs::Client,
    pub stats: Stats,
    in_flight: Semaphore,
}

impl CloudWatchLogs {
    pub fn new(client: aws_sdk_cloudwatchlogs::Client) -> Self {
        Self::with_concurrency(client, REQUESTS_IN_FLIGHT)
    }

    /// At most `requests` PutLogEvents in flight over all sources (`logs.concurrency`).
    pub fn with_concurrency(client: aws_sdk_cloudwatchlogs::Client, requests: usize) -> Self {
        CloudWatchLogs {
            client,
            stats: Stats::default(),
            in_flight: Semaphore::new(requests.max(1)),
        }
    }

    async fn deliver(
        &self,
        dest: &Destination,
        batch: Batch,
        abort: &CancellationToken,
    ) -> Delivery {
        let mut backoff = Backoff::new(RETRY_BASE, RETRY_MAX);
        // Single events refused one after another with none accepted in between: past a few,
        // CloudWatch objects to the stream or the request, not to the events, and skipping them
        // would throw the batch away.
        let mut refused_in_a_row = 0u32;
        let mut creates = 0u32;
        // Halves of a refused batch wait here, first half on top.
        let mut todo = vec![batch];
        while let Some(batch) = todo.pop() {
            if batch.is_empty() {
                continue;
            }
            loop {
                let result = {
                    let _permit = tokio::select! {
                        p = self.in_flight.acquire() => p.expect("semaphore is never closed"),
                        _ = abort.cancelled() => return Delivery::Aborted,
                    };
                    let events = batch
                        .events()
                        .map(|(ts, m)| {
                            InputLogEvent::builder()
                                .timestamp(ts)
                                .message(m)
                                .build()
                                .expect("timestamp and message are set")
                        })
                        .collect();
                    let put = self
                        .client
                        .put_log_events()
                        .log_group_name(&dest.group)
                        .log_stream_name(&dest.stream)
                        .set_log_events(Some(events));
                    let put = async {
                        if dest.emf {
                            put.customize()
                                .mutate_request(|req| {
                                    req.headers_mut().insert(EMF_HEADER.0, EMF_HEADER.1);
                                })
                                .send()
                                .await
                        } else {
                            put.send().await
                        }
                    };
                    tokio::select! {
                        r = put => r,
                        _ = abort.cancelled() => return Delivery::Aborted,
                    }
                };
                let err = match result {
                    Ok(out) => {
                        refused_in_a_row = 0;
                        self.accepted(dest, &batch, out.rejected_log_events_info());
                        if backoff.failures() > 0 {
                            tracing::info!(group = %dest.group, stream = %dest.stream, "CloudWatch Logs accepts events again.");
                        }
                        break;
                    }
                    Err(e) => e,
                };
                let message = crate::aws::describe(&err);
                match classify(&err) {
                    Outcome::Accepted => {
                        self.accepted(dest, &batch, None);
                        break;
                    }
                    Outcome::Create => {
                        creates += 1;
                        let created = tokio::select! {
                            r = self.create(dest) => r,
                            _ = abort.cancelled() => return Delivery::Aborted,
                        };
                        // Created, yet still missing (deleted again, or an eventually
                        // consistent answer): wait before the next round.
                        let trouble = match created {
                            Err(e) if e.denied => return Delivery::Refused(e.message),
                            Err(e) => Some(e.message),
                            Ok(()) if creates > 2 => Some(message),
                            Ok(()) => None,
                        };
                        if let Some(e) = trouble {
                            if !self.wait(dest, &mut backoff, &e, abort).await {
                                return Delivery::Aborted;
                            }
                        }
                    }
                    Outcome::Invalid if batch.len() > 1 => {
                        tracing::debug!(group = %dest.group, stream = %dest.stream, events = batch.len(), error = %message,
                            "CloudWatch refused a batch; splitting it to find the event it objects to.");
                        let (first, second) = batch.split();
                        todo.push(second);
                        todo.push(first);
                        break;
                    }
                    Outcome::Invalid if refused_in_a_row >= MAX_REFUSED_IN_A_ROW => {
                        if !self.wait(dest, &mut backoff, &message, abort).await {
                            return Delivery::Aborted;
                        }
                    }
                    Outcome::Invalid => {
                        refused_in_a_row += 1;
                        let n = self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        if n < REFUSALS_LOGGED {
                            let (ts, m) = batch.events().next().expect("one event");
                            tracing::error!(group = %dest.group, stream = %dest.stream, timestamp = ts,
                                event = %Batch::preview(m), error = %message,
                                "CloudWatch refused this log event; it is skipped.");
                        }
                        break;
                    }
                    Outcome::Refused => return Delivery::Refused(message),
                    Outcome::Retry => {
                        if !self.wait(dest, &mut backoff, &message, abort).await {
                            return Delivery::Aborted;
                        }
                    }
                }
            }
        }
        Delivery::Delivered
    }

    /// Waits before the next attempt; false if `abort` came first.
    async fn wait(
        &self,
        dest: &Destination,
        backoff: &mut Backoff,
        error: &str,
        abort: &CancellationToken,
    ) -> bool {
        let delay = backoff.next_delay();
        let n = backoff.failures();
        *self.stats.failing.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
        self.stats.note_failure(dest, error);
        if n == 1 || n.is_multiple_of(10) {
            tracing::warn!(group = %dest.group, stream = %dest.stream, attempts = n, error,
                retry_in_ms = delay.as_millis() as u64,
                "Cannot deliver log events yet; they stay on disk and will be sent again.");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = abort.cancelled() => false,
        }
    }

    fn accepted(
        &self,
        dest: &Destination,
        batch: &Batch,
        rejected: Option<&aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo>,
    ) {
        let n = batch.len() as u64;
        let (mut old, mut new, mut expired) = (0, 0, 0);
        *self.stats.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(r) = rejected {
            // The old and expired indexes are exclusive ends and the new one is the first too
            // new, as documented; emulators count them inclusively. Counting the events outside
            // the window by their timestamps as well gives the right number either way.
            let now = crate::metric::now_ms();
            let index = |i: i32| i.clamp(0, n as i32) as u64;
            let outside =
                |f: &dyn Fn(i64) -> bool| batch.events().filter(|(ts, _)| f(*ts)).count() as u64;
            old = r
                .too_old_log_event_end_index()
                .map_or(0, |i| index(i).max(outside(&|ts| ts < now - MAX_AGE_MS)));
            expired = r.expired_log_event_end_index().map_or(0, index);
            new = r.too_new_log_event_start_index().map_or(0, |i| {
                (n - index(i)).max(outside(&|ts| ts > now + MAX_AHEAD_MS))
            });
            let dropped = old.max(expired) + new;
            if dropped > 0 {
                tracing::warn!(group = %dest.group, stream = %dest.stream, too_old = old, too_new = new, expired,
                    "CloudWatch rejected events outside its time window (older than 14 days or the retention, or over 2 hours ahead); the rest were stored.");
            }
        }
        self.stats.too_old.fetch_add(old, Ordering::Relaxed);
        self.stats.too_new.fetch_add(new, Ordering::Relaxed);
        self.stats.expired.fetch_add(expired, Ordering::Relaxed);
        let stored = n.saturating_sub(old.max(expired) + new);
        self.stats.delivered.fetch_add(stored, Ordering::Relaxed);
        self.stats.note_delivery(dest, batch, stored);
    }

    /// Creates the stream, and the group (with its retention) if that is missing too.
    async fn create(&self, dest: &Destination) -> Result<(), CreateFailure> {
        let stream = self
            .client
            .create_log_stream()
            .log_group_name(&dest.group)
            .log_stream_name(&dest.stream)
            .send()
            .await;
        match stream {
            Ok(_) => {
                tracing::info!(group = %dest.group, stream = %dest.stream, "Created log stream.");
                return Ok(());
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                return Ok(())
            }
            Err(e)
                if !e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                return Err(CreateFailure::new("CreateLogStream", &e));
            }
            Err(_) => {}
        }
        let class = dest
            .log_group_class
            .as_deref()
            .map(aws_sdk_cloudwatchlogs::types::LogGroupClass::from);
        match self
            .client
            .create_log_group()
            .log_group_name(&dest.group)
            .set_log_group_class(class)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(group = %dest.group, "Created log group.");
                if let Some(days) = dest.retention_in_days {
                    self.put_retention(&dest.group, days)
                        .await
                        .map_err(|message| CreateFailure {
                            message,
                            denied: false,
                        })?;
                }
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) => {}
            Err(e) => return Err(CreateFailure::new("CreateLogGroup", &e)),
        }
        match self
            .client
            .create_log_stream()
            .log_group_name(&dest.group)
            .log_stream_name(&dest.stream)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(group = %dest.group, stream = %dest.stream, "Created log stream.");
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_already_exists_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(CreateFailure::new("CreateLogStream", &e)),
        }
    }

    async fn put_retention(&self, group: &str, days: u32) -> Result<(), String> {
        self.client
            .put_retention_policy()
            .log_group_name(group)
            .retention_in_days(days as i32)
            .send()
            .await
            .map(|_| tracing::info!(group, days, "Set log group retention."))
            .map_err(|e| format!("PutRetentionPolicy: {}", crate::aws::describe(&e)))
    }

    /// Sets the retention of an existing group when it differs from the config. A group that
    /// does not exist yet gets it when it is created.
    pub async fn sync_retention(&self, group: &str, days: u32) {
        let found = self
            .client
            .describe_log_groups()
            .log_group_name_prefix(group)
            .send()
            .await;
        let current = match found {
            Ok(out) => match out
                .log_groups()
                .iter()
                .find(|g| g.log_group_name() == Some(group))
            {
                Some(g) => g.retention_in_days(),
                None => return,
            },
            Err(e) => {
                tracing::warn!(group, error = %crate::aws::describe(&e), "Cannot check the log group's retention.");
                return;
            }
        };
        if current != Some(days as i32) {
            if let Err(e) = self.put_retention(group, days).await {
                tracing::warn!(group, error = %e, "Cannot set the log group's retention.");
            }
        }
    }
}

/// Sends one source's batches in order, a few at a time, and commits each batch's position
/// once it and every batch before it are delivered. Ends when the source closes the channel
/// and everything is delivered, or when `abort` stops delivery.
/// A batch stamped while the system clock was not synchronized waits for it (or for the end
/// of `agent.clock_sync_timeout`), then is shifted onto it; `None` if `abort` came first (its
/// lines are still on disk, after the saved position).
async fn on_the_clock(mut batch: Batch, abort: &CancellationToken) -> Option<Batch> {
    while let Some(offset) = batch.unsynced {
        let now = crate::clock::get().read();
        match now.shift(offset) {
            Some(ms) => batch.shift(ms),
            None if !now.hold => break,
            None => tokio::select! {
                _ = abort.cancelled() => return None,
                _ = tokio::time::sleep(CLOCK_LOOK) => {}
            },
        }
    }
    Some(batch)
}

pub async fn run_sender(
    mut batches: mpsc::Receiver<Batch>,
    dest: Arc<Destination>,
    sink: LogsSink,
    checkpoints: Arc<Checkpoints>,
    abort: CancellationToken,
    heartbeat: crate::service::Heartbeat,
) -> SenderEnd {
    let mut in_flight: VecDeque<tokio::task::JoinHandle<Result<Option<Position>, Delivery>>> =
        VecDeque::new();
    let mut open = true;
    let mut left = 0u64;
    let mut end = SenderEnd::Done;
    while open || !in_flight.is_empty() {
        let room = in_flight.len() < REQUESTS_PER_SOURCE;
        // Waiting for the reader with nothing in flight cannot hang (the reader has a
        // heartbeat of its own): no beats, and no wake-up a second, while idle.
        let idle = in_flight.is_empty();
        if idle {
            heartbeat.park();
        } else {
            heartbeat.beat();
        }
        tokio::select! {
            biased;
            _ = tokio::time::sleep(crate::service::BEAT), if !idle => {}
            done = async { in_flight.front_mut().expect("not empty").await }, if !in_flight.is_empty() => {
                in_flight.pop_front();
                match done {
                    Ok(Ok(Some(position))) => checkpoints.commit(&position),
                    Ok(Ok(None)) => {}
                    // Refused for good: this batch and those after it are dropped (their room
                    // goes back to the budget) and nothing after it is committed; the lines
                    // stay on disk for when the destination is tried again.
                    Ok(Err(Delivery::Refused(reason))) => {
                        end = SenderEnd::Refused(reason);
                        break;
                    }
                    // Stopped before this batch was accepted: nothing after it may be committed.
                    _ => {
                        left += 1;
                        end = SenderEnd::Stopped;
                        break;
                    }
                }
            }
            batch = batches.recv(), if open && room => match batch {
                Some(batch) => {
                    let (sink, dest, abort) = (sink.clone(), Arc::clone(&dest), abort.clone());
                    in_flight.push_back(tokio::spawn(async move {
                        let Some(batch) = on_the_clock(batch, &abort).await else {
                            return Err(Delivery::Aborted);
                        };
                        let position = batch.position.clone();
                        match sink.deliver(&dest, batch, &abort).await {
                            Delivery::Delivered => Ok(position),
                            other => Err(other),
                        }
                    }));
                }
                None => open = false,
            },
        }
    }
    let parked = matches!(end, SenderEnd::Refused(_));
    if !parked {
        left += in_flight.len() as u64;
    }
    for task in in_flight {
        task.abort();
    }
    batches.close();
    while batches.recv().await.is_some() {
        left += u64::from(!parked);
    }
    sink.stats().undelivered.fetch_add(left, Ordering::Relaxed);
    end
}

/// How a sender ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderEnd {
    /// Its source ended and everything was delivered.
    Done,
    /// Stopped before everything was delivered (the lines stay on disk).
    Stopped,
    /// The destination refuses for good: parked, its lines on disk after the saved position.
    Refused(String),
}
