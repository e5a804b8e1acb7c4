//! macOS's unified log to moto's CloudWatch Logs through a stand-in `log`
//! (tests/support/log.py) that streams and shows entries from a fixture file, in the ndjson
//! form `log --style ndjson` prints.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const GROUP: &str = "test-unified-log";
const STREAM: &str = "unified";
const PREDICATE: &str = "subsystem == 'com.example.app'";

struct UnifiedLog {
    dir: tempfile::TempDir,
}

impl UnifiedLog {
    fn new() -> UnifiedLog {
        let u = UnifiedLog {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(u.fixture(), "").unwrap();
        u
    }

    fn fixture(&self) -> PathBuf {
        self.dir.path().join("log.ndjson")
    }

    fn args_log(&self) -> PathBuf {
        self.dir.path().join("args.jsonl")
    }

    fn append(&self, entries: &[Value]) {
        let mut f = OpenOptions::new()
            .append(true)
            .open(self.fixture())
            .unwrap();
        for e in entries {
            writeln!(f, "{e}").unwrap();
        }
    }

    fn invocations(&self) -> Vec<Vec<String>> {
        read(&self.args_log())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until `log stream` has been started `n` times (so that what is appended next
    /// is streamed).
    fn wait_streams(&self, n: usize) {
        wait_until("log stream to run", Duration::from_secs(30), || {
            self.invocations()
                .iter()
                .filter(|a| a[0] == "stream")
                .count()
                >= n
        });
        // Its first read of the file's end.
        std::thread::sleep(Duration::from_millis(300));
    }

    fn spawn(&self, s: &Setup, moto: &Moto, extra_env: &[(&str, &str)]) -> Child {
        let mut cmd = publisher(Some(&moto.url()));
        cmd.arg(s.config())
            .env(
                "CLOUDWATCH_PUBLISHER_LOG",
                repo().join("tests/support/log.py"),
            )
            .env("LOG_FIXTURE", self.fixture())
            .env("LOG_FIXTURE_ARGS_LOG", self.args_log())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd.spawn().unwrap()
    }
}

/// `log`'s form of a time, in a zone an hour east of UTC: "2026-11-30 13:00:00.123456+0100".
fn log_time(at_us: i64) -> String {
    let local = at_us + 3_600_000_000;
    let secs = local.div_euclid(1_000_000);
    let micros = local.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let (y, m, d) = civil(days);
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}+0100",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Days since 1970-01-01 → (year, month, day).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// One entry as `log --style ndjson` prints it; `n` makes its identifiers.
fn entry(n: u64, at_us: i64, message: &str, message_type: &str) -> Value {
    json!({
        "timestamp": log_time(at_us),
        "machTimestamp": 4_000_000_000_000u64 + n * 1_000,
        "threadID": 700_000 + n % 3,
        "traceID": 45_473_881_108_119_556u64 + n,
        "bootUUID": "8A1B4C2D-0000-4000-8000-00000000B001",
        "eventType": "logEvent",
        "messageType": message_type,
        "eventMessage": message,
        "formatString": "%{public}s",
        "subsystem": "com.example.app",
        "category": "main",
        "processID": 4242,
        "userID": 501,
        "processImagePath": "/Applications/Example.app/Contents/MacOS/Example",
        "processImageUUID": "0B5F3C1E-1111-4222-8333-444455556666",
        "senderImagePath": "/Applications/Example.app/Contents/MacOS/Example",
        "senderImageUUID": "0B5F3C1E-1111-4222-8333-444455556666",
        "senderProgramCounter": 7787736,
        "activityIdentifier": 0,
        "parentActivityIdentifier": 0,
        "source": null,
        "backtrace": {"frames": [{"imageOffset": 7787736, "imageUUID": "0B5F3C1E-1111-4222-8333-444455556666"}]},
        "timezoneName": ""
    })
}

fn config() -> Value {
    json!({
        "agent": {"instance": {"prefix": "test", "serial": "unified"}, "metrics_collection_interval": 3600,
                  "logs_collection_interval": 1, "debug": true},
        "logs": {"log_group_name": "unused", "logs_collected": {"unified_log": {"collect_list": [{
            "log_group_name": GROUP,
            "log_stream_name": STREAM,
            "predicate": PREDICATE,
            "level": "info",
            "filters": [{"type": "exclude", "expression": "noise"}]
        }]}}}
    })
}

fn stop(child: &mut Child, s: &Setup) {
    signal(child, libc::SIGTERM);
    let status = wait_exit(child, Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", s.log());
}

#[test]
fn entries_stream_with_their_time_and_the_gap_after_a_restart_is_read_once() {
    let moto = Moto::start();
    let u = UnifiedLog::new();
    let s = Setup::new(config());
    let mut p = u.spawn(&s, &moto, &[]);
    u.wait_streams(1);

    let base = now_ms() * 1000;
    let long = "x".repeat(1_500_000);
    let same = base + 5_000;
    u.append(&[
        entry(1, base, "first", "Default"),
        entry(2, base + 1_000, "an info message", "Info"),
        // Below the level asked for (info): `log` does not show it.
        entry(3, base + 2_000, "a debug message", "Debug"),
        // Filtered out by the config.
        entry(4, base + 3_000, "some noise", "Error"),
        // Too long for one event: split, as lines of files are.
        entry(5, base + 4_000, &long, "Fault"),
        // Two entries of one microsecond, told apart by their identifiers.
        entry(6, same, "same time A", "Default"),
        entry(7, same, "same time B", "Default"),
    ]);
    // An activity, which is not a log message.
    let mut activity = entry(8, base + 6_000, "an activity", "Default");
    activity["eventType"] = json!("activityCreateEvent");
    u.append(&[activity]);

    let got = moto.wait_for_messages(GROUP, STREAM, Duration::from_secs(30), |m| m.len() >= 6);
    let pieces = long.len().div_ceil(1_048_550);
    let mut want: Vec<String> = vec!["first".into(), "an info message".into()];
    let mut rest = long.as_str();
    for _ in 0..pieces {
        let n = rest.len().min(1_048_550);
        want.push(rest[..n].to_owned());
        rest = &rest[n..];
    }
    want.extend(["same time A".to_owned(), "same time B".to_owned()]);
    let got = if got.len() < want.len() {
        moto.wait_for_messages(GROUP, STREAM, Duration::from_secs(30), |m| {
            m.len() >= want.len()
        })
    } else {
        got
    };
    assert_eq!(got.len(), want.len(), "{}", s.log());
    assert!(got == want, "the entries as streamed\n{}", s.log());
    let events = &moto.log_events(GROUP)[STREAM];
    assert_eq!(events[0].0, base / 1000, "an event's time is its entry's");
    assert_eq!(events[1].0, (base + 1_000) / 1000);

    // Stopped: what is logged meanwhile is read from where delivery stopped, by `log show`;
    // the place is saved at the latest when the publisher stops.
    stop(&mut p, &s);
    let state: Value =
        serde_json::from_str(&read(&s.dir.path().join("state/logs-state.json"))).unwrap();
    let mark = state["unified_log"][format!("{GROUP}/{STREAM}")]
        .as_str()
        .unwrap_or_else(|| panic!("no place saved: {state}"))
        .to_owned();
    let ids: Vec<&str> = mark.split(' ').collect();
    assert_eq!(ids[0], same.to_string(), "{mark}");
    assert_eq!(ids.len(), 3, "both entries of that microsecond: {mark}");

    u.append(&[
        // Of the saved microsecond, but not delivered.
        entry(9, same, "same time C, while stopped", "Default"),
        entry(10, base + 7_000, "while stopped", "Error"),
    ]);
    let mut p = u.spawn(&s, &moto, &[]);
    moto.wait_for_messages(GROUP, STREAM, Duration::from_secs(30), |m| {
        m.len() >= want.len() + 2
    });
    u.wait_streams(2);
    u.append(&[entry(11, now_ms() * 1000, "after the restart", "Default")]);
    moto.wait_for_messages(GROUP, STREAM, Duration::from_secs(30), |m| {
        m.len() >= want.len() + 3
    });
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    want.extend([
        "same time C, while stopped".to_owned(),
        "while stopped".to_owned(),
        "after the restart".to_owned(),
    ]);
    let got = moto.messages(GROUP, STREAM);
    assert_eq!(
        got.len(),
        want.len(),
        "each entry once: {:?}",
        &got[got.len().saturating_sub(5)..]
    );
    assert!(got == want);

    // What `log` was asked: the stream with the level and predicate, then the gap from the
    // saved second (in UTC), at the same level.
    let calls = u.invocations();
    let stream = calls.iter().find(|c| c[0] == "stream").unwrap();
    assert_eq!(
        stream,
        &[
            "stream",
            "--style",
            "ndjson",
            "--type",
            "log",
            "--level",
            "info",
            "--predicate",
            PREDICATE
        ],
        "{calls:?}"
    );
    let secs = same / 1_000_000;
    let (y, m, d) = civil(secs / 86_400);
    let t = secs % 86_400;
    let start = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}+0000",
        t / 3600,
        t / 60 % 60,
        t % 60
    );
    assert!(
        calls.iter().any(|c| c
            == &[
                "show",
                "--style",
                "ndjson",
                "--start",
                &start,
                "--info",
                "--predicate",
                PREDICATE
            ]),
        "the gap from {start}: {calls:?}"
    );
}

#[test]
fn when_log_stream_dies_the_entries_since_the_last_are_read_again_none_twice() {
    log_stream_dies(&[]);
}

/// Killed in the middle of writing an entry: the half line is no entry, and the whole one
/// comes from `log show` after the mark.
#[test]
fn when_log_stream_dies_mid_entry_the_cut_entry_is_read_again_whole_once() {
    log_stream_dies(&[("LOG_FIXTURE_DIE_CUT", "1")]);
}

fn log_stream_dies(extra_env: &[(&str, &str)]) {
    let moto = Moto::start();
    let u = UnifiedLog::new();
    let s = Setup::new(config());
    // `log show` reads the store a second late, so the entries logged meanwhile come from
    // the stream and from the gap both.
    let mut env = vec![
        ("LOG_FIXTURE_DIE_AFTER", "3"),
        ("LOG_FIXTURE_SHOW_DELAY", "1"),
    ];
    env.extend_from_slice(extra_env);
    let mut p = u.spawn(&s, &moto, &env);
    u.wait_streams(1);
    let base = now_ms() * 1000;
    let want: Vec<String> = (0..10).map(|n| format!("entry {n}")).collect();
    for (n, text) in want.iter().enumerate() {
        u.append(&[entry(n as u64, base + n as i64 * 1_000, text, "Default")]);
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = moto.wait_for_messages(GROUP, STREAM, Duration::from_secs(30), |m| {
        m.len() >= want.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(got, want, "{}", s.log());
    assert_eq!(moto.messages(GROUP, STREAM), want, "none twice");
    let calls = u.invocations();
    assert!(
        calls.iter().filter(|c| c[0] == "stream").count() >= 2,
        "log stream started again: {calls:?}"
    );
    assert!(
        s.log().contains("log stream ended; starting it again"),
        "{}",
        s.log()
    );
}

/// Without `log`, or with one that refuses (macOS does, to a user who is not an
/// administrator), the other logs ship and the reason is said once.
#[test]
fn without_a_log_command_or_when_it_refuses_the_other_logs_still_ship() {
    let moto = Moto::start();
    let u = UnifiedLog::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.log");
    std::fs::write(&file, "").unwrap();
    let mut c = config();
    c["logs"]["logs_collected"]["files"] = json!({"collect_list": [{
        "file_path": file.to_str().unwrap(), "log_group_name": GROUP, "log_stream_name": "file"
    }]});
    let s = Setup::new(c);
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config())
        .env("CLOUDWATCH_PUBLISHER_LOG", dir.path().join("no-such-log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut p = cmd.spawn().unwrap();
    wait_until(
        "the missing log command to be named",
        Duration::from_secs(30),
        || s.log().contains("There is no log command on this machine"),
    );
    append_lines(&file, &["a line"]);
    moto.wait_for_messages(GROUP, "file", Duration::from_secs(30), |m| m.len() == 1);
    stop(&mut p, &s);

    // Again, with the file's place saved.
    let mut p = u.spawn(&s, &moto, &[("LOG_FIXTURE_REFUSE", "1")]);
    append_lines(&file, &["another line"]);
    moto.wait_for_messages(GROUP, "file", Duration::from_secs(30), |m| m.len() == 2);
    // Tried at 0, 1 and 3 seconds at least: said once.
    std::thread::sleep(Duration::from_secs(4));
    stop(&mut p, &s);
    let log = s.log();
    assert!(
        u.invocations().iter().filter(|c| c[0] == "show").count() >= 3,
        "{:?}",
        u.invocations()
    );
    assert_eq!(
        log.matches("Must be admin to run 'show' command").count(),
        1,
        "{log}"
    );
    assert!(log.contains("log show failed"), "{log}");
}
