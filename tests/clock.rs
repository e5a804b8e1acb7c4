//! A device without a battery-backed clock: samples and events wait, marked with the
//! monotonic clock, until the system clock is synchronized, and are then stamped with the
//! right time; a step while running is logged; a clock that is never synchronized is believed
//! after `agent.clock_sync_timeout`. The clock is a debug build's test clock (src/clock.rs): a
//! file holding whether it is synchronized and how far the wall clock is off.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const GROUP: &str = "test-clock";
const NAMESPACE: &str = "Test/Clock";
const HOUR_MS: i64 = 3_600_000;

/// The test clock's file; written whole (rename), as the publisher reads it at every look.
struct TestClock(PathBuf);

impl TestClock {
    fn new(s: &Setup, spec: &str) -> TestClock {
        let c = TestClock(s.dir.path().join("clock"));
        c.set(spec);
        c
    }

    fn set(&self, spec: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, spec).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

/// Milliseconds since the Unix epoch of 1970-01-01 01:00, by a clock `now_ms()` away from it.
fn in_1970() -> String {
    format!("unsynchronized {}", HOUR_MS - now_ms())
}

fn monotonic_us() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}

fn this_boot() -> String {
    read(Path::new("/proc/sys/kernel/random/boot_id"))
        .trim()
        .replace('-', "")
}

/// Metrics every second, and `log` (made empty now; lines go in once it is followed).
fn config(log: &Path, wait: u64, journal: bool) -> Value {
    std::fs::write(log, "").unwrap();
    let mut c = json!({
        "agent": {"instance": {"prefix": "test", "serial": "clock"}, "metrics_collection_interval": 1,
                  "logs_collection_interval": 1, "clock_sync_timeout": wait, "debug": true},
        "metrics": {"namespace": NAMESPACE},
        "logs": {"log_group_name": GROUP,
                 "logs_collected": {"files": {"collect_list": [{"file_path": log, "log_stream_name": "file"}]}}}
    });
    if journal {
        c["logs"]["logs_collected"]["journal"] = json!({"log_stream_name": "journal"});
    }
    c
}

fn spawn(s: &Setup, moto: &Moto, clock: &TestClock, journal: Option<&Path>) -> Child {
    let shipping_before = s.log().matches("Shipping log file").count();
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config())
        .env(
            "CLOUDWATCH_PUBLISHER_TEST_CLOCK",
            format!("@{}", clock.0.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(fixture) = journal {
        cmd.env(
            "CLOUDWATCH_PUBLISHER_JOURNALCTL",
            repo().join("tests/support/journalctl.py"),
        )
        .env("JOURNAL_FIXTURE", fixture);
    }
    let child = cmd.spawn().unwrap();
    // A file is read from where it ends when it is first followed.
    wait_until("the log file is followed", Duration::from_secs(30), || {
        s.log().matches("Shipping log file").count() > shipping_before
    });
    child
}

fn metric_times(moto: &Moto) -> Vec<i64> {
    moto.metrics()
        .into_iter()
        .filter(|d| d.namespace == NAMESPACE)
        .map(|d| d.timestamp_ms)
        .collect()
}

fn events(moto: &Moto, stream: &str) -> Vec<(i64, String)> {
    moto.log_events(GROUP).remove(stream).unwrap_or_default()
}

fn assert_within(what: &str, times: &[i64], from: i64, to: i64, log: &str) {
    assert!(!times.is_empty(), "no {what}");
    for &t in times {
        assert!(
            (from..=to).contains(&t),
            "{what} stamped {t}, not within {from}..={to} (by {} s)\n{log}",
            if t < from { t - from } else { t - to } / 1000
        );
    }
}

#[test]
fn data_from_a_clock_in_1970_waits_and_is_stamped_right_once_ntp_sets_it() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    let log = dir.path().join("app.log");
    let s = Setup::new(config(&log, 3600, true));
    let clock = TestClock::new(&s, &in_1970());
    // Entries journald stamped in 1970 in this boot; the monotonic time is right.
    let (boot, logged_at) = (this_boot(), now_ms());
    let entries: Vec<String> = (0..3)
        .map(|n| {
            json!({"__CURSOR": format!("s=clock;i={n}"), "__REALTIME_TIMESTAMP": ((HOUR_MS + n) * 1000).to_string(),
                   "__MONOTONIC_TIMESTAMP": monotonic_us().to_string(), "_BOOT_ID": boot,
                   "MESSAGE": format!("journal {n}"), "PRIORITY": "6"})
            .to_string()
        })
        .collect();
    std::fs::write(&journal, entries.join("\n") + "\n").unwrap();
    let started = now_ms();
    let mut child = spawn(&s, &moto, &clock, Some(&journal));
    append_lines(&log, &["file 0", "file 1", "file 2"]);
    let written = now_ms();

    // Read and sampled, but held: nothing carries a 1970 time to CloudWatch.
    std::thread::sleep(Duration::from_secs(4));
    assert!(metric_times(&moto).is_empty(), "{}", s.log());
    assert!(moto.log_events(GROUP).is_empty(), "{}", s.log());
    assert!(s.log().contains("not synchronized yet"), "{}", s.log());

    clock.set("synchronized");
    let synced = now_ms();
    moto.wait_for_messages(GROUP, "file", Duration::from_secs(30), |m| m.len() == 3);
    moto.wait_for_messages(GROUP, "journal", Duration::from_secs(30), |m| m.len() == 3);
    wait_until("held metrics are sent", Duration::from_secs(30), || {
        metric_times(&moto).iter().any(|&t| t < synced)
    });
    let log_text = s.log();
    assert!(
        log_text.contains("The system clock is synchronized now")
            && log_text.contains("forward by"),
        "{log_text}"
    );
    // Each at the time it was read, sampled or logged, on today's clock.
    assert_within(
        "held samples",
        &metric_times(&moto),
        started,
        now_ms() + 1000,
        &log_text,
    );
    let file: Vec<i64> = events(&moto, "file").iter().map(|e| e.0).collect();
    assert_within("file lines", &file, started, written + 3000, &log_text);
    let journal_times: Vec<i64> = events(&moto, "journal").iter().map(|e| e.0).collect();
    assert_within(
        "journal entries",
        &journal_times,
        logged_at - 1000,
        logged_at + 1000,
        &log_text,
    );

    // NTP sets it back by an hour: logged, and what comes after is on the new clock.
    clock.set(&format!("synchronized {}", -HOUR_MS));
    let stepped = now_ms();
    append_lines(&log, &["after 0", "after 1"]);
    moto.wait_for_messages(GROUP, "file", Duration::from_secs(30), |m| m.len() == 5);
    wait_until("the step is logged", Duration::from_secs(10), || {
        s.log().contains("back by 1 h")
    });
    let after: Vec<i64> = events(&moto, "file")[3..].iter().map(|e| e.0).collect();
    assert_within(
        "lines after the step",
        &after,
        stepped - HOUR_MS - 1000,
        now_ms() - HOUR_MS + 1000,
        &s.log(),
    );
    wait_until("samples after the step", Duration::from_secs(30), || {
        metric_times(&moto)
            .iter()
            .any(|&t| t < stepped - HOUR_MS / 2)
    });
    stop_gracefully(&mut child, &s);
    assert_eq!(
        moto.messages(GROUP, "file"),
        ["file 0", "file 1", "file 2", "after 0", "after 1"]
    );
}

#[test]
fn samples_spooled_before_the_clock_was_set_are_restamped_after_a_restart() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let s = Setup::new(config(&log, 3600, false));
    let clock = TestClock::new(&s, &in_1970());
    let started = now_ms();
    let mut child = spawn(&s, &moto, &clock, None);
    append_lines(&log, &["line 0", "line 1"]);
    // A few rounds, every second.
    std::thread::sleep(Duration::from_secs(4));
    stop_gracefully(&mut child, &s);
    let stopped = now_ms();
    assert!(
        s.log()
            .contains("Kept metrics in the spool until the system clock is synchronized"),
        "{}",
        s.log()
    );
    assert!(s.spool_files() >= 1);
    assert!(metric_times(&moto).is_empty());
    assert!(moto.log_events(GROUP).is_empty());

    // The same boot, the clock set meanwhile: the spooled samples get their real times.
    clock.set("synchronized");
    let restarted = now_ms();
    let mut child = spawn(&s, &moto, &clock, None);
    wait_until(
        "the spooled samples are sent",
        Duration::from_secs(30),
        || metric_times(&moto).iter().any(|&t| t < restarted),
    );
    moto.wait_for_messages(GROUP, "file", Duration::from_secs(30), |m| m.len() == 2);
    stop_gracefully(&mut child, &s);
    let before_restart: Vec<i64> = metric_times(&moto)
        .into_iter()
        .filter(|&t| t < restarted)
        .collect();
    assert_within(
        "spooled samples",
        &before_restart,
        started,
        stopped,
        &s.log(),
    );
    assert!(
        metric_times(&moto).iter().all(|&t| t > started),
        "none is left in 1970"
    );
    assert_eq!(s.spool_files(), 0);
    // The lines were never delivered, so never committed: read again, once.
    assert_eq!(moto.messages(GROUP, "file"), ["line 0", "line 1"]);
}

#[test]
fn a_clock_never_synchronized_is_believed_after_the_timeout_with_a_warning() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let s = Setup::new(config(&log, 4, false));
    // A day behind (the time saved at the last shutdown, say), and no NTP in reach.
    let clock = TestClock::new(&s, &format!("unsynchronized {}", -24 * HOUR_MS));
    let started = now_ms();
    let mut child = spawn(&s, &moto, &clock, None);
    append_lines(&log, &["line 0"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(metric_times(&moto).is_empty(), "{}", s.log());
    moto.wait_for_messages(GROUP, "file", Duration::from_secs(30), |m| m.len() == 1);
    wait_until("samples", Duration::from_secs(30), || {
        !metric_times(&moto).is_empty()
    });
    assert!(
        now_ms() - started >= 4000,
        "published only after the timeout"
    );
    let log_text = s.log();
    assert!(
        log_text.contains("The system clock is still not synchronized"),
        "{log_text}"
    );
    let day = 24 * HOUR_MS;
    assert_within(
        "samples",
        &metric_times(&moto),
        started - day - 1000,
        now_ms() - day + 1000,
        &log_text,
    );
    let line: Vec<i64> = events(&moto, "file").iter().map(|e| e.0).collect();
    assert_within(
        "the line",
        &line,
        started - day - 1000,
        now_ms() - day + 1000,
        &log_text,
    );
    stop_gracefully(&mut child, &s);
}
