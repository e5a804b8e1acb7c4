//! Talking to a service manager: readiness, a one-line status, the watchdog and stopping, in
//! systemd's notify protocol (`NOTIFY_SOCKET`). Without a service manager all of it is a no-op.
//!
//! The watchdog is fed only while every pipeline task shows it is alive: each task beats a
//! [`Heartbeat`] at least every [`BEAT`], also while it waits, so a task stuck in a call that
//! never returns stops the beats and the service manager restarts the publisher.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// How often a waiting task beats its heartbeat.
pub const BEAT: Duration = Duration::from_secs(1);

/// Awaits `fut`, a wait that is bounded (a request with timeouts, a sleep, a channel the other
/// side drains), beating `hb` meanwhile. Calls that could hang for good are not wrapped, so
/// a hang stops the beats.
pub async fn beating<F: std::future::Future>(hb: &Heartbeat, fut: F) -> F::Output {
    tokio::pin!(fut);
    loop {
        hb.beat();
        tokio::select! {
            out = &mut fut => return out,
            _ = tokio::time::sleep(BEAT) => {}
        }
    }
}

/// What the status line says; pipelines update it.
#[derive(Debug, Default)]
pub struct Status {
    pub metrics_ok_ms: AtomicU64,
    pub metrics_error: Mutex<Option<String>>,
}

impl Status {
    pub fn set(slot: &Mutex<Option<String>>, value: Option<String>) {
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = value;
    }

    pub fn get(slot: &Mutex<Option<String>>) -> Option<String> {
        slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Liveness of the pipeline tasks.
#[derive(Debug)]
pub struct Health {
    start: Instant,
    beats: Mutex<Vec<(String, Weak<AtomicU64>)>>,
}

/// One task's heartbeat; dropping it ends the task's registration.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    start: Instant,
    last: Arc<AtomicU64>,
}

/// A heartbeat's value while its task waits for work that others must bring.
const PARKED: u64 = u64::MAX;

impl Heartbeat {
    pub fn beat(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// The task waits for work from another task, which has a heartbeat of its own: not
    /// stalled however long that takes, until it beats again.
    pub fn park(&self) {
        self.last.store(PARKED, Ordering::Relaxed);
    }
}

impl Default for Health {
    fn default() -> Self {
        Health {
            start: Instant::now(),
            beats: Mutex::new(Vec::new()),
        }
    }
}

impl Health {
    /// Registers a task by name; it must beat at least every [`BEAT`].
    pub fn register(&self, name: impl Into<String>) -> Heartbeat {
        let hb = Heartbeat {
            start: self.start,
            last: Arc::new(AtomicU64::new(self.start.elapsed().as_millis() as u64)),
        };
        let mut beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.retain(|(_, w)| w.strong_count() > 0);
        beats.push((name.into(), Arc::downgrade(&hb.last)));
        hb
    }

    /// The name of a live task that has not beaten for `max`, if any.
    pub fn stalled(&self, max: Duration) -> Option<String> {
        let now = self.start.elapsed().as_millis() as u64;
        let beats = self.beats.lock().unwrap_or_else(|e| e.into_inner());
        beats.iter().find_map(|(name, w)| {
            let last = w.upgrade()?.load(Ordering::Relaxed);
            (last != PARKED && now.saturating_sub(last) > max.as_millis() as u64)
                .then(|| name.clone())
        })
    }
}

/// What the publisher reports to the service manager.
#[derive(Debug, Clone, Copy)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Self {
        Notifier {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled(),
        }
    }

    fn send(&self, state: &[NotifyState]) {
        if self.enabled {
            if let Err(e) = sd_notify::notify(state) {
                tracing::debug!(error = %e, "Cannot notify the service manager.");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("Stopping.")]);
    }

    /// Feeds the watchdog while every pipeline is alive, and refreshes the status line from
    /// `status`, until `cancel`.
    pub async fn supervise(
        self,
        health: Arc<Health>,
        status: impl Fn() -> String,
        cancel: CancellationToken,
    ) {
        // Twice per watchdog period, as systemd advises; the status at least every 10 s.
        let period = self.watchdog.map_or(Duration::from_secs(10), |w| {
            (w / 2).min(Duration::from_secs(10))
        });
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = String::new();
        let mut reported: Option<String> = None;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = cancel.cancelled() => return,
            }
            let line = status();
            if line != last_status {
                self.status(&line);
                last_status = line;
            }
            let Some(watchdog) = self.watchdog else {
                continue;
            };
            // A task is stuck when it has not beaten for a whole watchdog period (and at least
            // a few beats): then the service manager hears nothing for one more and restarts us.
            match health.stalled(watchdog.max(3 * BEAT)) {
                None => {
                    reported = None;
                    self.send(&[NotifyState::Watchdog]);
                }
                Some(task) => {
                    if reported.as_deref() != Some(task.as_str()) {
                        tracing::error!(task = %task, "A pipeline task has made no progress for a watchdog period; no longer telling the service manager all is well, so it can restart the publisher.");
                        reported = Some(task);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_that_stops_beating_is_named_and_a_dropped_one_forgotten() {
        let health = Health::default();
        let a = health.register("metrics");
        let b = health.register("logs /var/log/syslog");
        std::thread::sleep(Duration::from_millis(30));
        a.beat();
        assert_eq!(
            health.stalled(Duration::from_millis(20)).as_deref(),
            Some("logs /var/log/syslog")
        );
        drop(b);
        assert_eq!(health.stalled(Duration::from_millis(20)), None);
    }

    #[test]
    fn a_parked_task_is_not_stalled_until_it_beats_again() {
        let health = Health::default();
        let a = health.register("sender");
        a.park();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(health.stalled(Duration::from_millis(20)), None);
        a.beat();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            health.stalled(Duration::from_millis(20)).as_deref(),
            Some("sender")
        );
    }
}
