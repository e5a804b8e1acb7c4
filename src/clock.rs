//! The wall clock, and whether to believe it yet.
//!
//! A Raspberry Pi has no battery-backed clock: it boots with the time saved at its last
//! shutdown (or 1970), and NTP steps it to the right time seconds to days later. Data stamped
//! before that step carries a wrong time. So until the kernel says the clock is synchronized
//! (adjtimex on Linux), what the publisher stamps is marked with the wall clock's offset from
//! the monotonic clock at that moment, and held; once the clock is synchronized it is
//! restamped, `wall = now - monotonic age`, which is a shift by how far the offset moved. A
//! clock that is never synchronized is believed after `agent.clock_sync_timeout`, with a
//! warning. A step while running (the offset moving by more than [`STEP_MS`]) is logged.
//!
//! Rates and deltas are measured on the monotonic clock, which a step does not move, so no
//! rate is ever computed across a step of the wall clock.
//!
//! macOS keeps a battery-backed clock that `timed` sets; it is taken as synchronized.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A change of the wall clock's offset from the monotonic clock larger than this is a step
/// (NTP slews smaller errors away gradually).
pub const STEP_MS: i64 = 1000;

/// What the kernel says of the wall clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Synchronized,
    Unsynchronized,
    /// It cannot be asked (a sandbox forbids adjtimex): the clock is believed.
    Unknown,
}

/// The clock at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Milliseconds since the Unix epoch, by the wall clock.
    pub wall_ms: i64,
    /// Wall clock minus the monotonic clock, in milliseconds.
    pub offset_ms: i64,
    /// The clock is synchronized, or has been since the start (a synchronized clock only
    /// drifts slowly when NTP is away for a while).
    pub synchronized: bool,
    /// Data stamped now waits for the clock (not synchronized, and the wait is not over).
    pub hold: bool,
}

impl Reading {
    /// What to add to a time stamped when the offset was `offset_ms` to put it on the
    /// synchronized clock; `None` while the clock is not synchronized.
    pub fn shift(&self, offset_ms: i64) -> Option<i64> {
        self.synchronized.then(|| self.offset_ms - offset_ms)
    }
}

/// A time stamped while the clock was not synchronized: kept with data that outlives the
/// process (the metrics spool), so it can still be put right after a restart in the same boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsynced {
    /// The wall clock's offset from the monotonic clock when it was stamped.
    pub offset_ms: i64,
    /// The boot it was stamped in: the monotonic clock starts again at each boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
}

impl Unsynced {
    /// The mark for data stamped at `r`, if it needs one.
    pub fn at(r: &Reading) -> Option<Unsynced> {
        (!r.synchronized).then(|| Unsynced {
            offset_ms: r.offset_ms,
            boot: boot_id().map(str::to_owned),
        })
    }

    /// What to add to the time stamped with this mark, once it can be known: `Some(0)` when
    /// it never can (another boot), `None` while the clock is not synchronized.
    pub fn shift(&self, now: &Reading) -> Option<i64> {
        if self.boot.as_deref() != boot_id() {
            return Some(0);
        }
        now.shift(self.offset_ms)
    }
}

/// The wall clock, the monotonic clock and the kernel's word on the first.
pub struct Clock {
    source: Source,
    /// Milliseconds data waits for the clock, from the start.
    wait_ms: AtomicU64,
    started: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    synchronized: bool,
    gave_up: bool,
    /// Whether the wait was announced.
    said_waiting: bool,
    /// The offset and the monotonic time at the last look.
    last: Option<(i64, i64)>,
}

enum Source {
    System,
    /// Debug builds under test: the sync state and a wall clock offset from the real one.
    #[cfg(debug_assertions)]
    Test(String),
}

/// Debug builds read `CLOUDWATCH_PUBLISHER_TEST_CLOCK`: `synchronized` or `unsynchronized`,
/// then optionally how many milliseconds the wall clock is off (`unsynchronized -1700000000000`
/// is 1970); `@FILE` reads that from FILE at every look, so a test can step the clock.
/// Release builds ignore it.
#[cfg(debug_assertions)]
const TEST_CLOCK: &str = "CLOUDWATCH_PUBLISHER_TEST_CLOCK";

static CLOCK: OnceLock<Clock> = OnceLock::new();

/// The process's clock (waiting for nothing until [`Clock::wait`] says otherwise).
pub fn get() -> &'static Clock {
    CLOCK.get_or_init(|| Clock::new(Source::from_env(), Duration::ZERO))
}

/// Milliseconds since the Unix epoch by the wall clock (cheap: no question to the kernel).
pub fn wall_ms() -> i64 {
    get().source.wall_ms()
}

impl Clock {
    fn new(source: Source, wait: Duration) -> Clock {
        Clock {
            source,
            wait_ms: AtomicU64::new(wait.as_millis() as u64),
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// Data stamped on an unsynchronized clock waits up to `wait` from the start for it to
    /// be synchronized (`agent.clock_sync_timeout`; the daemon's, not `--once`'s).
    pub fn wait(&self, wait: Duration) {
        self.wait_ms
            .store(wait.as_millis() as u64, Ordering::Relaxed);
    }

    /// Looks at the clock: logs a step, the clock becoming synchronized, or the wait ending.
    pub fn read(&self) -> Reading {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Once synchronized, the kernel need not be asked again.
        let sync = if st.synchronized {
            Sync::Synchronized
        } else {
            self.source.sync()
        };
        let wall_ms = self.source.wall_ms();
        let mono_ms = monotonic_ms();
        let offset_ms = wall_ms - mono_ms;
        // NTP slews by at most 0.5 ms a second: a change beyond that and STEP_MS is a step.
        let step = st.last.and_then(|(offset, mono)| {
            let moved = offset_ms - offset;
            (moved.abs() > STEP_MS + (mono_ms - mono) / 2000).then_some(moved)
        });
        st.last = Some((offset_ms, mono_ms));
        if !st.synchronized && sync != Sync::Unsynchronized {
            st.synchronized = true;
            match (sync, step) {
                (Sync::Unknown, _) => tracing::info!(
                    "Cannot tell whether the system clock is synchronized (adjtimex is not allowed); believing it."
                ),
                (_, Some(ms)) => tracing::info!(
                    step = %describe_step(ms),
                    "The system clock is synchronized now; what was stamped before is restamped."
                ),
                (_, None) => tracing::info!("The system clock is synchronized."),
            }
        } else if let Some(ms) = step {
            tracing::warn!(
                step = %describe_step(ms),
                "The system clock stepped; times stamped before the step are on the old clock."
            );
        }
        let wait = Duration::from_millis(self.wait_ms.load(Ordering::Relaxed));
        let waiting = !st.synchronized && !st.gave_up && self.started.elapsed() < wait;
        if waiting && !std::mem::replace(&mut st.said_waiting, true) {
            tracing::warn!(
                wait_s = wait.as_secs(),
                "The system clock is not synchronized yet: metrics and log lines wait for it, up to agent.clock_sync_timeout, and are then stamped with the right time."
            );
        }
        if !st.synchronized && !st.gave_up && !waiting {
            st.gave_up = true;
            if wait.is_zero() {
                tracing::warn!(
                    "The system clock is not synchronized; stamping with its time as it is."
                );
            } else {
                tracing::warn!(
                    waited_s = wait.as_secs(),
                    "The system clock is still not synchronized; publishing with its time as it is (agent.clock_sync_timeout). If it is set later, what is still unsent is restamped."
                );
            }
        }
        Reading {
            wall_ms,
            offset_ms,
            synchronized: st.synchronized,
            hold: !st.synchronized && !st.gave_up,
        }
    }
}

/// "forward by 2 h 5 min 3 s", "back by 1.5 s".
fn describe_step(ms: i64) -> String {
    let way = if ms > 0 { "forward" } else { "back" };
    // Rounded: the two clocks are read a moment apart, so a step of exactly an hour
    // measures a millisecond either side of it.
    let tenths = (ms.unsigned_abs() + 50) / 100;
    let amount = if tenths < 600 {
        format!("{}.{} s", tenths / 10, tenths % 10)
    } else {
        let s = (tenths + 5) / 10;
        let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
        let parts = [(d, "d"), (h, "h"), (m, "min"), (s, "s")];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, unit)| format!("{n} {unit}"))
            .collect();
        shown.join(" ")
    };
    format!("{way} by {amount}")
}

impl Source {
    fn from_env() -> Source {
        #[cfg(debug_assertions)]
        if let Ok(spec) = std::env::var(TEST_CLOCK) {
            return Source::Test(spec);
        }
        Source::System
    }

    fn wall_ms(&self) -> i64 {
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or_default();
        match self {
            Source::System => real,
            #[cfg(debug_assertions)]
            Source::Test(spec) => real + test_spec(spec).1,
        }
    }

    fn sync(&self) -> Sync {
        match self {
            Source::System => kernel_sync(),
            #[cfg(debug_assertions)]
            Source::Test(spec) => test_spec(spec).0,
        }
    }
}

#[cfg(debug_assertions)]
fn test_spec(spec: &str) -> (Sync, i64) {
    let text = match spec.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).unwrap_or_default(),
        None => spec.to_owned(),
    };
    let mut words = text.split_whitespace();
    let sync = match words.next() {
        Some("unsynchronized") => Sync::Unsynchronized,
        _ => Sync::Synchronized,
    };
    (sync, words.next().and_then(|w| w.parse().ok()).unwrap_or(0))
}

/// The kernel's word: `adjtimex` (a read, which needs no privilege) answers `TIME_ERROR`, or
/// sets `STA_UNSYNC`, until NTP (timesyncd, chrony, ntpd) has set the clock.
#[cfg(target_os = "linux")]
fn kernel_sync() -> Sync {
    // SAFETY: a zeroed timex with modes 0 only reads; the kernel fills it in.
    let mut t: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut t) };
    if state < 0 {
        Sync::Unknown
    } else if state == libc::TIME_ERROR || t.status & libc::STA_UNSYNC != 0 {
        Sync::Unsynchronized
    } else {
        Sync::Synchronized
    }
}

#[cfg(not(target_os = "linux"))]
fn kernel_sync() -> Sync {
    Sync::Synchronized
}

/// Milliseconds of the monotonic clock (CLOCK_MONOTONIC: since boot, not counting suspend).
pub fn monotonic_ms() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    // The fields are 32 bits wide on some 32-bit targets (armhf).
    #[allow(clippy::unnecessary_cast)]
    let ms = ts.tv_sec as i64 * 1000 + ts.tv_nsec as i64 / 1_000_000;
    ms
}

/// This boot's id (Linux); the monotonic clock is comparable only within one boot.
pub fn boot_id() -> Option<&'static str> {
    static BOOT: OnceLock<Option<String>> = OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock(spec: &str, wait: Duration) -> Clock {
        Clock::new(Source::Test(spec.into()), wait)
    }

    #[test]
    fn an_unsynchronized_clock_holds_until_synchronized_and_then_shifts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock");
        std::fs::write(&file, "unsynchronized -1700000000000").unwrap();
        let c = clock(&format!("@{}", file.display()), Duration::from_secs(3600));
        let before = c.read();
        assert!(before.hold && !before.synchronized);
        assert!(before.wall_ms < 100_000_000_000, "{before:?}");
        let mark = Unsynced::at(&before).unwrap();
        assert_eq!(mark.shift(&before), None);

        std::fs::write(&file, "synchronized").unwrap();
        let after = c.read();
        assert!(after.synchronized && !after.hold);
        let shift = mark.shift(&after).unwrap();
        let restamped = before.wall_ms + shift;
        assert!(
            (restamped - after.wall_ms).abs() < 1000,
            "{restamped} vs {after:?}"
        );
        // Believed from now on, even if NTP goes away.
        std::fs::write(&file, "unsynchronized").unwrap();
        assert!(c.read().synchronized);
    }

    #[test]
    fn a_clock_never_synchronized_is_believed_after_the_wait() {
        let c = clock("unsynchronized", Duration::ZERO);
        let r = c.read();
        assert!(!r.hold && !r.synchronized);
        assert!(Unsynced::at(&r).is_some(), "still marked, to restamp later");
    }

    #[test]
    fn a_mark_from_another_boot_is_left_as_it_is() {
        let c = clock("synchronized", Duration::ZERO);
        let mark = Unsynced {
            offset_ms: -5,
            boot: Some("another boot".into()),
        };
        assert_eq!(mark.shift(&c.read()), Some(0));
    }

    #[test]
    fn steps_are_described_in_words() {
        assert_eq!(describe_step(1500), "forward by 1.5 s");
        assert_eq!(describe_step(-3_600_000), "back by 1 h");
        assert_eq!(describe_step(-3_599_999), "back by 1 h");
        assert_eq!(describe_step(3_600_001), "forward by 1 h");
        assert_eq!(describe_step(1_449), "forward by 1.4 s");
        assert_eq!(
            describe_step(56 * 365 * 86_400_000 + 7_261_000),
            "forward by 20440 d 2 h 1 min 1 s"
        );
    }

    #[test]
    fn the_kernel_is_asked_without_privilege() {
        // Whatever this machine's state, the question itself is allowed.
        #[cfg(target_os = "linux")]
        assert_ne!(kernel_sync(), Sync::Unknown);
        assert!(monotonic_ms() > 0);
    }
}
