//! The metrics pipeline: sample the host when due → label → PutMetricData, at once or, with a
//! `force_flush_interval`, several samples in one request. What CloudWatch does not accept goes
//! to the spool and is sent, oldest first and with its original timestamps, as soon as a
//! request succeeds again.
//!
//! Until the system clock is synchronized, samples wait here (or in the spool, when many have
//! waited) marked with the clock they were stamped on, and are restamped before they go (see
//! [`crate::clock`]).

mod labels;
mod sampler;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Unsynced};
use crate::metric::{now_ms, MetricRecord};
use crate::sinks::cloudwatch_metrics::{
    batches, Batch, Disposition, MetricsSink, Spool, MAX_DATUMS_PER_REQUEST,
};

pub use labels::{storage_resolution, AgentLabels, Labels};
pub use sampler::{preview, Preview, Sampler, HOURS_PER_MONTH};

/// The first sample's rates and CPU figure cover this much time after start, so the first
/// datapoint arrives promptly instead of one whole interval later.
pub const WARMUP: Duration = Duration::from_secs(1);
/// How often samples waiting for the clock look at it again.
const CLOCK_LOOK: Duration = Duration::from_secs(1);

pub struct MetricsPipeline {
    pub sampler: Arc<Mutex<Sampler>>,
    pub sink: MetricsSink,
    /// None for `--dry-run`, which keeps nothing.
    pub spool: Option<Spool>,
    /// How long samples may wait to be sent together; `None`: each at once.
    pub force_flush_interval: Option<Duration>,
    /// Collect and publish one round, then stop.
    pub once: bool,
    /// Ends requests in flight, a while after shutdown was asked for: whatever is not
    /// accepted by then goes to the spool. One moment for all of them, however many there are.
    pub abort: CancellationToken,
    pub heartbeat: crate::service::Heartbeat,
    pub status: Arc<crate::service::Status>,
    /// The spool could not be written at the last try (said once until it can).
    pub spool_failing: bool,
    /// The spool dropped old records at the last append (said once until it stops).
    pub spool_dropping: bool,
    /// Records from receivers (StatsD), published as samples are; at a stop they are read
    /// until the channel closes.
    pub inbound: Option<mpsc::Receiver<Vec<MetricRecord>>>,
}

/// How often the spool is tried when no new records come to publish (StatsD alone, quiet):
/// what a restart found there goes out without waiting for new data.
const SPOOL_RETRY: Duration = Duration::from_secs(30);

/// How long a stop waits for receivers to hand over what they hold.
const INBOUND_GRACE: Duration = Duration::from_secs(2);

/// The next records from `inbound`; never, without one or once it is closed.
async fn next_inbound(
    inbound: &mut Option<mpsc::Receiver<Vec<MetricRecord>>>,
) -> Vec<MetricRecord> {
    if let Some(rx) = inbound {
        if let Some(records) = rx.recv().await {
            return records;
        }
        *inbound = None;
    }
    std::future::pending().await
}

/// Marks records stamped while the clock is not synchronized.
fn mark_unsynced(records: &mut [MetricRecord]) {
    if let Some(mark) = Unsynced::at(&clock::get().read()) {
        for r in records {
            r.unsynced = Some(mark.clone());
        }
    }
}

/// Leaves out the values CloudWatch would refuse (NaN, infinity, beyond its range), each
/// said: one would make CloudWatch refuse its whole request, and the spool cannot keep a
/// number that is not finite.
fn drop_refused_values(records: &mut Vec<MetricRecord>, report: &mut Report) {
    for r in records.iter_mut() {
        r.values.retain(|m| match m.refused_value() {
            None => true,
            Some(reason) => {
                tracing::error!(namespace = %r.namespace, metric = %m.name, %reason,
                    "Dropped a metric value CloudWatch would refuse.");
                report.datums_dropped += 1;
                false
            }
        });
    }
    records.retain(|r| !r.values.is_empty());
}

/// How a run ended, for `--once`'s exit code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub rounds: u64,
    pub datums_accepted: usize,
    /// Requests' worth of records still waiting in the spool.
    pub segments_spooled: usize,
    pub datums_dropped: usize,
    /// Whether the last round's data was accepted.
    pub last_round_accepted: bool,
}

impl MetricsPipeline {
    pub async fn run(mut self, cancel: CancellationToken) -> Report {
        let mut report = Report::default();
        let mut failing = false;
        let mut pending: Vec<MetricRecord> = Vec::new();
        let mut pending_since: Option<Instant> = None;
        // The first round goes at once, whatever the flush interval: a new device shows data
        // within seconds of its start.
        let mut first = true;
        let mut spool_retry = Instant::now() + WARMUP;
        loop {
            self.heartbeat.beat();
            let due = Instant::from_std(
                self.sampler
                    .lock()
                    .expect("sampler not poisoned")
                    .next_due(),
            );
            let holding = clock::get().read().hold;
            let flush_at = match (pending_since, self.force_flush_interval) {
                _ if holding && pending_since.is_some() => Instant::now() + CLOCK_LOOK,
                (Some(t), Some(f)) => t + f,
                (Some(t), None) => t,
                (None, _) => due,
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                mut records = next_inbound(&mut self.inbound) => {
                    drop_refused_values(&mut records, &mut report);
                    mark_unsynced(&mut records);
                    pending.extend(records);
                    pending_since.get_or_insert(Instant::now());
                }
                _ = tokio::time::sleep_until(due.min(flush_at)) => {}
                _ = tokio::time::sleep_until(spool_retry),
                    if pending.is_empty() && !holding && self.spool.as_ref().is_some_and(|s| !s.is_empty()) =>
                {
                    spool_retry = Instant::now() + SPOOL_RETRY;
                    let hb = self.heartbeat.clone();
                    crate::service::beating(&hb, self.drain(&cancel, &mut report)).await;
                    continue;
                }
                _ = tokio::time::sleep(crate::service::BEAT) => continue,
            }
            let now = Instant::now();
            if now >= due {
                let sampler = Arc::clone(&self.sampler);
                let records = match tokio::task::spawn_blocking(move || {
                    stall_for_tests();
                    let records = sampler
                        .lock()
                        .expect("sampler not poisoned")
                        .sample_due(now.into_std());
                    crate::memory::release_free_heap();
                    records
                })
                .await
                {
                    Ok(records) => records,
                    Err(e) => {
                        tracing::error!(error = %e, "Sampling the host failed; skipping this round.");
                        continue;
                    }
                };
                report.rounds += 1;
                let mut records = records;
                drop_refused_values(&mut records, &mut report);
                mark_unsynced(&mut records);
                if !records.is_empty() {
                    pending.extend(records);
                    pending_since.get_or_insert(now);
                }
            }
            let datums: usize = pending.iter().map(MetricRecord::datum_count).sum();
            if clock::get().read().hold {
                // A request's worth waits in memory; more goes to the spool, which keeps the
                // marks and so can be restamped after a restart too.
                if datums >= MAX_DATUMS_PER_REQUEST {
                    let records = std::mem::take(&mut pending);
                    pending_since = None;
                    self.spool_held(records, &mut report).await;
                }
                if cancel.is_cancelled() {
                    break;
                }
                continue;
            }
            let flush = self.once
                || first
                || datums >= MAX_DATUMS_PER_REQUEST
                || match (pending_since, self.force_flush_interval) {
                    (Some(t), Some(f)) => now >= t + f,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
            if self.once && pending.is_empty() {
                // Nothing to publish (no process matched, say) is nothing refused.
                report.last_round_accepted = true;
            }
            if flush && !pending.is_empty() {
                first = false;
                pending_since = None;
                let records = std::mem::take(&mut pending);
                failing = self.publish(records, &cancel, &mut report, failing).await;
            }
            if self.once || cancel.is_cancelled() {
                break;
            }
        }
        // Receivers hand over what they hold at a stop.
        if let Some(mut rx) = self.inbound.take() {
            while let Ok(Some(mut records)) = tokio::time::timeout(INBOUND_GRACE, rx.recv()).await {
                drop_refused_values(&mut records, &mut report);
                mark_unsynced(&mut records);
                pending.extend(records);
            }
        }
        // What waited for the flush is sent now, or spooled; what waits for the clock is
        // spooled.
        if !pending.is_empty() {
            if clock::get().read().hold {
                self.spool_held(pending, &mut report).await;
            } else {
                self.publish(pending, &cancel, &mut report, failing).await;
            }
        }
        report.segments_spooled = self.spool.as_ref().map_or(0, Spool::len);
        report
    }

    /// Delivers `records`, then what the spool holds if that worked; returns whether
    /// CloudWatch is failing.
    async fn publish(
        &mut self,
        records: Vec<MetricRecord>,
        cancel: &CancellationToken,
        report: &mut Report,
        failing: bool,
    ) -> bool {
        let hb = self.heartbeat.clone();
        let accepted = crate::service::beating(&hb, self.deliver(records, report)).await;
        report.last_round_accepted = accepted;
        if !accepted {
            return true;
        }
        self.status
            .metrics_ok_ms
            .store(now_ms() as u64, std::sync::atomic::Ordering::Relaxed);
        crate::service::Status::set(&self.status.metrics_error, None);
        if failing {
            tracing::info!("CloudWatch accepts metrics again.");
        }
        if self.spool.as_ref().is_some_and(|s| !s.is_empty()) {
            crate::service::beating(&hb, self.drain(cancel, report)).await;
        }
        false
    }

    /// Keeps records that wait for the clock in the spool.
    async fn spool_held(&mut self, records: Vec<MetricRecord>, report: &mut Report) {
        let n: usize = records.iter().map(MetricRecord::datum_count).sum();
        match self.with_spool(move |s| s.append(&records)).await {
            Some(Ok(dropped)) => {
                tracing::info!(
                    datums = n,
                    "Kept metrics in the spool until the system clock is synchronized."
                );
                report.datums_dropped += dropped;
            }
            Some(Err(e)) => {
                tracing::error!(datums = n, error = %e, "Cannot spool metrics that wait for the system clock; they are lost.");
                report.datums_dropped += n;
            }
            None => report.datums_dropped += n,
        }
    }

    /// Sends records; on a retryable failure they go to the spool. True if all were accepted.
    async fn deliver(&mut self, mut records: Vec<MetricRecord>, report: &mut Report) -> bool {
        let now = clock::get().read();
        for r in &mut records {
            r.restamp(&now);
        }
        let mut all = true;
        for batch in batches(records) {
            let (message, unsent) = match self.put(batch, report).await {
                Ok(dropped) => {
                    all &= dropped == 0;
                    continue;
                }
                Err(e) => e,
            };
            all = false;
            crate::service::Status::set(&self.status.metrics_error, Some(message.clone()));
            let records: Vec<MetricRecord> = unsent.into_iter().flat_map(|b| b.records).collect();
            let n: usize = records.iter().map(MetricRecord::datum_count).sum();
            match self.with_spool(move |s| s.append(&records)).await {
                Some(Ok(dropped)) => {
                    if std::mem::take(&mut self.spool_failing) {
                        tracing::info!("Metrics can be spooled again.");
                    }
                    tracing::warn!(datums = n, %message, "Cannot publish metrics now; kept them in the spool to send later.");
                    if dropped == 0 {
                        self.spool_dropping = false;
                    } else if !std::mem::replace(&mut self.spool_dropping, true) {
                        tracing::warn!(
                            datums = dropped,
                            "Dropped the spool's oldest metrics to make room (its size cap, or a full disk); the count of all dropped is in the report at exit."
                        );
                    }
                    if dropped > 0 {
                        report.datums_dropped += dropped;
                    }
                }
                Some(Err(e)) => {
                    // Said once until the spool works again (a full disk fails every
                    // round); the count is in the report.
                    if !self.spool_failing {
                        self.spool_failing = true;
                        tracing::error!(datums = n, %message, error = %e, "Cannot publish metrics and cannot spool them; they are lost.");
                    } else {
                        tracing::debug!(datums = n, error = %e, "Cannot spool metrics either.");
                    }
                    report.datums_dropped += n;
                }
                None => {
                    tracing::error!(datums = n, %message, "Cannot publish metrics.");
                    report.datums_dropped += n;
                }
            }
        }
        all
    }

    /// Sends one request's worth. A request CloudWatch refuses as invalid is split in halves
    /// until the datums it objects to are found: only those are dropped, each said. Returns
    /// how many were dropped; on a failure worth trying again, the message and what is not
    /// delivered yet, in order.
    async fn put(
        &mut self,
        batch: Batch,
        report: &mut Report,
    ) -> Result<usize, (String, Vec<Batch>)> {
        let mut dropped = 0;
        // Halves wait here, the first on top.
        let mut todo = vec![batch];
        while let Some(batch) = todo.pop() {
            let n = batch.datum_count();
            if n == 0 {
                continue;
            }
            match self.send(&batch).await {
                Ok(()) => {
                    tracing::debug!(datums = n, "PutMetricData accepted.");
                    report.datums_accepted += n;
                }
                Err((Disposition::Drop, message)) if n > 1 => {
                    tracing::debug!(datums = n, %message,
                        "CloudWatch refused a request as invalid; splitting it to find the datum it objects to.");
                    let (first, second) = batch.split();
                    todo.push(second);
                    todo.push(first);
                }
                Err((Disposition::Drop, message)) => {
                    let metric = batch.metric_names().next().unwrap_or_default();
                    tracing::error!(namespace = %batch.namespace, metric, %message,
                        "CloudWatch refused this metric datum as invalid; it is dropped.");
                    report.datums_dropped += 1;
                    dropped += 1;
                }
                Err((Disposition::Retry, message)) => {
                    todo.push(batch);
                    todo.reverse();
                    return Err((message, todo));
                }
            }
        }
        Ok(dropped)
    }

    /// Sends spooled records, oldest first, until the spool is empty or a request fails.
    async fn drain(&mut self, cancel: &CancellationToken, report: &mut Report) {
        loop {
            let unsent = match self
                .with_spool(|s| {
                    let now = clock::get().read();
                    (!s.is_empty()).then(|| {
                        s.read_oldest(MAX_DATUMS_PER_REQUEST, now.wall_ms, |r| r.restamp(&now))
                    })
                })
                .await
            {
                Some(Some(unsent)) => unsent,
                _ => return,
            };
            if unsent.expired > 0 {
                tracing::warn!(
                    records = unsent.expired,
                    "Dropped spooled metrics older than CloudWatch accepts (14 days)."
                );
            }
            tracing::info!(records = unsent.records.len(), "Sending spooled metrics.");
            for batch in batches(unsent.records) {
                if let Err((message, _)) = self.put(batch, report).await {
                    tracing::warn!(%message, "Sending spooled metrics failed; will try again next round.");
                    return;
                }
            }
            let segments = unsent.segments;
            if let Some(Err(e)) = self.with_spool(move |s| s.remove(&segments)).await {
                tracing::error!(error = %e, "Cannot delete sent metrics from the spool; they may be sent twice.");
                return;
            }
            if cancel.is_cancelled() {
                return;
            }
        }
    }

    /// One request, unless `abort` came first.
    async fn send(&self, batch: &Batch) -> Result<(), (Disposition, String)> {
        tokio::select! {
            r = self.sink.send(batch) => r.map_err(|e| (e.disposition, e.message)),
            _ = self.abort.cancelled() => Err((Disposition::Retry, "shutting down before CloudWatch answered".into())),
        }
    }

    /// Runs spool file work on a blocking thread.
    async fn with_spool<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Spool) -> R + Send + 'static,
    ) -> Option<R> {
        let mut spool = self.spool.take()?;
        let (spool, r) = tokio::task::spawn_blocking(move || {
            let r = f(&mut spool);
            (spool, r)
        })
        .await
        .expect("spool work does not panic");
        self.spool = Some(spool);
        Some(r)
    }
}

/// With `CLOUDWATCH_PUBLISHER_TEST_STALL_SAMPLING` set, a debug build's sampling never returns:
/// the tests use it to show that a stuck pipeline stops the watchdog. Release builds ignore it.
fn stall_for_tests() {
    #[cfg(debug_assertions)]
    if std::env::var_os("CLOUDWATCH_PUBLISHER_TEST_STALL_SAMPLING").is_some() {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Measurement, Unit};

    #[test]
    fn values_cloudwatch_refuses_never_reach_a_request_or_the_spool() {
        let record = |values: Vec<f64>| MetricRecord {
            namespace: "N".into(),
            dimensions: Vec::new(),
            timestamp_ms: 0,
            storage_resolution: 60,
            values: values
                .into_iter()
                .enumerate()
                .map(|(i, v)| Measurement::single(format!("m{i}"), Unit::Count, v))
                .collect(),
            unsynced: None,
        };
        let mut records = vec![
            record(vec![1.0, f64::NAN, 2.0]),
            record(vec![f64::INFINITY, 1e300]),
            record(vec![0.0]),
        ];
        let mut report = Report::default();
        drop_refused_values(&mut records, &mut report);
        assert_eq!(report.datums_dropped, 3);
        let kept: Vec<(String, f64)> = records
            .iter()
            .flat_map(|r| r.values.iter().map(|m| (m.name.clone(), m.value)))
            .collect();
        assert_eq!(
            kept,
            [("m0".into(), 1.0), ("m2".into(), 2.0), ("m0".into(), 0.0)]
        );
        // What is kept can be spooled and read back.
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&records).unwrap();
        let back = spool.read_oldest(100, 0, |_| {});
        assert_eq!(back.records, records);
    }
}
