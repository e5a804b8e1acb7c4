//! Log files to moto's CloudWatch Logs, every event read back: restarts, crashes, rotation,
//! bursts, outages and awkward content lose nothing.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use tempfile::TempDir;

const GROUP: &str = "test-logs";

/// A config shipping `entries` to GROUP, flushing every second.
fn logs_config(entries: Value, logs: Value) -> Value {
    let mut logs_section = json!({
        "log_group_name": GROUP,
        "logs_collected": {"files": {"collect_list": entries}}
    });
    for (k, v) in logs.as_object().unwrap() {
        logs_section[k] = v.clone();
    }
    json!({
        "agent": {"instance": {"prefix": "test", "serial": "logs"}, "metrics_collection_interval": 3600,
                  "logs_collection_interval": 1},
        "logs": logs_section
    })
}

fn spawn(s: &Setup, endpoint: &str) -> Child {
    publisher(Some(endpoint))
        .arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(child: &mut Child, s: &Setup) {
    signal(child, libc::SIGTERM);
    let status = wait_exit(child, Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", s.log());
}

fn append(path: &Path, lines: &[String]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    f.write_all(text.as_bytes()).unwrap();
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i:06}")).collect()
}

/// Waits until the publisher's log says it follows `path`, so what is written next is new.
fn wait_following(s: &Setup, path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let needle = format!("Following log file. file={}", path.display());
    while !s.log().contains(&needle) {
        assert!(
            Instant::now() < deadline,
            "not following {}: {}",
            path.display(),
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A publisher (debug log) pointed at `endpoint`, following one file with `initial` content in
/// a temporary directory; returns once it follows the file, so what is written next is new.
fn follow_one(
    name: &str,
    initial: &str,
    logs: Value,
    endpoint: &str,
) -> (TempDir, PathBuf, Setup, Child) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, initial).unwrap();
    let s = Setup::new(debug_config(logs_config(
        json!([{"file_path": file}]),
        logs,
    )));
    let p = spawn(&s, endpoint);
    wait_following(&s, &file);
    (dir, file, s, p)
}

fn debug_config(mut config: Value) -> Value {
    config["agent"]["debug"] = json!(true);
    config
}

#[test]
fn lines_written_while_stopped_arrive_exactly_once_after_a_restart() {
    let moto = Moto::start();
    let (_dir, file, s, mut p) = follow_one(
        "app.log",
        "written before the first start\n",
        json!({}),
        &moto.url(),
    );
    append(&file, &numbered("run1", 0..100));
    moto.wait_for_messages(GROUP, "app.log", Duration::from_secs(30), |m| {
        m.len() >= 100
    });
    stop(&mut p, &s);

    append(&file, &numbered("stopped", 0..100));
    let mut p = spawn(&s, &moto.url());
    append(&file, &numbered("run2", 0..100));
    let got = moto.wait_for_messages(GROUP, "app.log", Duration::from_secs(30), |m| {
        m.len() >= 300
    });
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);

    let mut want = numbered("run1", 0..100);
    want.extend(numbered("stopped", 0..100));
    want.extend(numbered("run2", 0..100));
    assert_eq!(
        moto.messages(GROUP, "app.log"),
        want,
        "the first start reads from the end; then nothing is lost or repeated"
    );
    assert_eq!(got.len(), 300);
    assert!(moto.violations().is_empty());
    let state: Value =
        serde_json::from_str(&read(&s.dir.path().join("state/logs-state.json"))).unwrap();
    assert_eq!(state["version"], 1);
    assert_eq!(
        state["files"][0]["offset"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len(),
        "the saved offset is the end of what was delivered"
    );
}

#[test]
fn sigkill_in_the_middle_of_a_stream_loses_nothing() {
    let moto = Moto::start();
    let (_dir, file, s, mut p) = follow_one("busy.log", "", json!({}), &moto.url());

    let writer = {
        let file = file.clone();
        std::thread::spawn(move || {
            for chunk in 0..50 {
                append(&file, &numbered("kill", chunk * 1000..(chunk + 1) * 1000));
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };
    moto.wait_for_messages(GROUP, "busy.log", Duration::from_secs(60), |m| {
        m.len() >= 5000
    });
    signal(&p, libc::SIGKILL);
    let _ = p.wait();
    writer.join().unwrap();

    let mut p = spawn(&s, &moto.url());
    let got = moto.wait_for_messages(GROUP, "busy.log", Duration::from_secs(120), |m| {
        m.iter().collect::<std::collections::BTreeSet<_>>().len() >= 50_000
    });
    stop(&mut p, &s);
    let unique: std::collections::BTreeSet<&String> = got.iter().collect();
    let want = numbered("kill", 0..50_000);
    assert_eq!(unique.len(), 50_000);
    assert!(
        want.iter().all(|l| unique.contains(l)),
        "every line arrived"
    );
    // Only batches in flight at the kill (and not yet saved as delivered) can come twice.
    assert!(
        got.len() - 50_000 <= 4 * 10_000,
        "{} duplicates",
        got.len() - 50_000
    );
}

/// A writer at about 2,000 lines/s that calls `rotate` every 2,000 lines.
fn busy_writer(
    file: PathBuf,
    prefix: &'static str,
    total: usize,
    rotate: impl Fn(&Path, usize, &mut std::fs::File) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let open = |p: &Path| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        let mut f = open(&file);
        let start = Instant::now();
        for i in 0..total {
            writeln!(f, "{prefix} {i:06}").unwrap();
            if i % 20 == 19 {
                // 20 lines every 10 ms.
                let due = start + Duration::from_millis(10 * (i as u64 + 1) / 20);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            if i % 2000 == 1999 && i + 1 < total {
                rotate(&file, i / 2000, &mut f);
                if !file.exists() {
                    f = open(&file);
                }
            }
        }
    })
}

#[test]
fn rename_rotation_under_a_busy_writer_loses_nothing() {
    let moto = Moto::start();
    let (_dir, file, s, mut p) = follow_one("rot.log", "", json!({}), &moto.url());

    // Like logrotate without copytruncate: rename; the writer keeps writing to the old file
    // for a moment, then reopens the path.
    let writer = busy_writer(file.clone(), "rot", 12_000, |path, n, f| {
        std::fs::rename(path, path.with_extension(format!("log.{n}"))).unwrap();
        for i in 0..50 {
            writeln!(f, "late {n} {i:02}").unwrap();
        }
    });
    writer.join().unwrap();
    let mut want = Vec::new();
    for i in 0..12_000 {
        want.push(format!("rot {i:06}"));
        if i % 2000 == 1999 && i + 1 < 12_000 {
            want.extend((0..50).map(|j| format!("late {} {j:02}", i / 2000)));
        }
    }
    let got = moto.wait_for_messages(GROUP, "rot.log", Duration::from_secs(60), |m| {
        m.len() >= want.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(got.len(), want.len());
    assert_eq!(moto.messages(GROUP, "rot.log"), want, "in order, each once");
}

#[test]
fn copytruncate_under_a_busy_writer_loses_nothing() {
    let moto = Moto::start();
    let (_dir, file, s, mut p) = follow_one("ct.log", "", json!({}), &moto.url());

    // Like logrotate's copytruncate: copy, then truncate the file the writer keeps open.
    let writer = busy_writer(file.clone(), "ct", 12_000, |path, n, f| {
        std::fs::copy(path, path.with_extension(format!("log.{n}"))).unwrap();
        f.set_len(0).unwrap();
    });
    writer.join().unwrap();
    let want = numbered("ct", 0..12_000);
    let got = moto.wait_for_messages(GROUP, "ct.log", Duration::from_secs(60), |m| {
        m.len() >= want.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    assert_eq!(got.len(), want.len(), "{}", s.log());
    assert_eq!(moto.messages(GROUP, "ct.log"), want, "in order, each once");
    assert!(s.log().contains("copytruncate"), "{}", s.log());
}

#[test]
fn a_burst_of_200000_lines_arrives_in_requests_within_every_limit() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("burst.log");
    let pad = "p".repeat(400);
    let want: Vec<String> = (0..200_000)
        .map(|i| format!("burst {i:06} {}", &pad[..i % 400]))
        .collect();
    append(&file, &want);
    let s = Setup::new(logs_config(
        json!([{"file_path": file, "from_beginning": true}]),
        json!({"force_flush_interval": 60}),
    ));
    let mut p = spawn(&s, &moto.url());
    let got = moto.wait_for_messages(GROUP, "burst.log", Duration::from_secs(180), |m| {
        m.len() >= want.len()
    });
    stop(&mut p, &s);
    assert!(got == want, "all 200,000 lines, in order, once");
    assert!(moto.violations().is_empty(), "{:?}", moto.violations());
    let requests = moto.put_log_events();
    let accepted: Vec<&Value> = requests.iter().filter(|r| r["status"] == 200).collect();
    assert!(
        accepted.len() >= 20,
        "a burst is many requests: {}",
        accepted.len()
    );
    for r in &requests {
        assert!(r["events"].as_u64().unwrap() <= 10_000, "{r}");
        assert!(r["bytes"].as_u64().unwrap() <= 1_048_576, "{r}");
    }
    // Full requests went out without waiting for the 60 s flush interval.
    assert!(accepted
        .iter()
        .any(|r| r["bytes"].as_u64().unwrap() > 1_000_000 || r["events"] == 10_000));
}

#[test]
fn a_restarted_service_without_the_group_gets_it_recreated_with_retention() {
    let mut moto = Moto::start();
    let port = moto.port;
    let (_dir, file, s, mut p) =
        follow_one("svc.log", "", json!({"retention_in_days": 7}), &moto.url());
    append(&file, &numbered("before", 0..10));
    moto.wait_for_messages(GROUP, "svc.log", Duration::from_secs(30), |m| m.len() >= 10);
    assert_eq!(moto.log_groups()[GROUP].0, Some(7));

    moto.stop();
    let moto = Moto::start_on(port);
    assert!(moto.log_groups().is_empty(), "a restarted moto has nothing");
    append(&file, &numbered("after", 0..10));
    let got = moto.wait_for_messages(GROUP, "svc.log", Duration::from_secs(60), |m| m.len() >= 10);
    stop(&mut p, &s);
    assert_eq!(got, numbered("after", 0..10));
    let groups = moto.log_groups();
    assert_eq!(
        groups[GROUP].0,
        Some(7),
        "retention set again on the new group"
    );
    assert_eq!(groups[GROUP].1, ["svc.log"]);
}

#[test]
fn retention_is_corrected_on_an_existing_group() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.log");
    std::fs::write(&file, "").unwrap();
    // The group exists already with another retention.
    let s0 = Setup::new(logs_config(
        json!([{"file_path": file}]),
        json!({"retention_in_days": 30}),
    ));
    let mut p = spawn(&s0, &moto.url());
    append(&file, &["x".to_owned()]);
    std::thread::sleep(Duration::from_millis(500));
    append(&file, &["first".to_owned()]);
    moto.wait_for_messages(GROUP, "r.log", Duration::from_secs(30), |m| !m.is_empty());
    stop(&mut p, &s0);
    assert_eq!(moto.log_groups()[GROUP].0, Some(30));

    let s = Setup::new(logs_config(
        json!([{"file_path": file}]),
        json!({"retention_in_days": 14}),
    ));
    let mut p = spawn(&s, &moto.url());
    let deadline = Instant::now() + Duration::from_secs(30);
    while moto.log_groups()[GROUP].0 != Some(14) {
        assert!(
            Instant::now() < deadline,
            "retention not changed: {}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(&mut p, &s);
}

#[test]
fn after_30_seconds_without_an_endpoint_everything_arrives() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (_dir, file, s, mut p) = follow_one("out.log", "", json!({}), &url);
    let mut want = Vec::new();
    for second in 0..30 {
        let lines = numbered(&format!("down {second:02}"), 0..20);
        append(&file, &lines);
        want.extend(lines);
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        s.log().contains("Cannot deliver log events yet"),
        "{}",
        s.log()
    );
    let moto = Moto::start_on(port);
    let got = moto.wait_for_messages(GROUP, "out.log", Duration::from_secs(90), |m| {
        m.len() >= want.len()
    });
    stop(&mut p, &s);
    assert_eq!(got, want);
}

#[test]
fn throttling_and_server_errors_are_retried_and_a_refused_batch_is_split_not_resent() {
    let moto = Moto::start();
    let (_dir, file, s, mut p) = follow_one("t.log", "", json!({}), &moto.url());
    // Create group and stream first, so the failures below hit PutLogEvents itself.
    append(&file, &["warm up".to_owned()]);
    moto.wait_for_messages(GROUP, "t.log", Duration::from_secs(30), |m| !m.is_empty());

    moto.fail_next("PutLogEvents", 4, 400, "ThrottlingException");
    append(&file, &numbered("throttled", 0..10));
    moto.wait_for_messages(GROUP, "t.log", Duration::from_secs(60), |m| m.len() >= 11);
    moto.fail_next("PutLogEvents", 2, 503, "ServiceUnavailableException");
    append(&file, &numbered("unavailable", 0..10));
    moto.wait_for_messages(GROUP, "t.log", Duration::from_secs(60), |m| m.len() >= 21);
    // One refusal of the whole batch: it is split in halves, which are accepted.
    moto.fail_next("PutLogEvents", 1, 400, "InvalidParameterException");
    append(&file, &numbered("refused", 0..10));
    let got = moto.wait_for_messages(GROUP, "t.log", Duration::from_secs(60), |m| m.len() >= 31);
    std::thread::sleep(Duration::from_secs(2));
    stop(&mut p, &s);
    let mut want = vec!["warm up".to_owned()];
    want.extend(numbered("throttled", 0..10));
    want.extend(numbered("unavailable", 0..10));
    want.extend(numbered("refused", 0..10));
    assert_eq!(moto.messages(GROUP, "t.log"), want);
    assert_eq!(got.len(), 31);
    let calls = moto.calls();
    assert!(calls["PutLogEvents.failed"] >= 7);
}

#[test]
fn sigterm_delivers_what_was_read_before_the_flush_interval() {
    let moto = Moto::start();
    let (_dir, file, s, mut p) = follow_one(
        "term.log",
        "",
        json!({"force_flush_interval": 600}),
        &moto.url(),
    );
    append(&file, &numbered("term", 0..25));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        moto.messages(GROUP, "term.log").is_empty(),
        "held until the flush interval"
    );
    stop(&mut p, &s);
    assert_eq!(moto.messages(GROUP, "term.log"), numbered("term", 0..25));
}

#[test]
fn files_matching_a_pattern_later_are_picked_up_and_the_own_log_is_not_shipped() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("var");
    std::fs::create_dir_all(logs.join("nested/deeper")).unwrap();
    std::fs::write(logs.join("existing.log"), "old content\n").unwrap();
    let mut config = debug_config(logs_config(
        json!([{"file_path": format!("{}/**/*.log", logs.display()), "log_stream_name": "{instance_id}-{file_name}"}]),
        json!({}),
    ));
    // The publisher's own log lives where the pattern matches.
    config["agent"]["logfile"] = json!(logs.join("publisher.log"));
    let s = Setup::new(config);
    let own = logs.join("publisher.log");
    let mut p = spawn(&s, &moto.url());
    let log = || read(&own);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log().contains("Following log file") {
        assert!(Instant::now() < deadline, "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    append(&logs.join("existing.log"), &["new in existing".to_owned()]);
    append(
        &logs.join("nested/deeper/later.log"),
        &["first line of a later file".to_owned()],
    );
    moto.wait_for_messages(GROUP, "test-logs-later.log", Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    let got = moto.wait_for_messages(
        GROUP,
        "test-logs-existing.log",
        Duration::from_secs(30),
        |m| !m.is_empty(),
    );
    stop(&mut p, &s);
    assert_eq!(
        got,
        ["new in existing"],
        "a file there at start is read from its end"
    );
    assert_eq!(
        moto.messages(GROUP, "test-logs-later.log"),
        ["first line of a later file"],
        "a later file from its start"
    );
    let streams = &moto.log_groups()[GROUP].1;
    assert!(
        !streams.iter().any(|s| s.contains("publisher")),
        "{streams:?}"
    );
    assert!(
        log().contains("Not shipping the publisher's own log"),
        "{}",
        log()
    );
}

#[test]
fn awkward_content_and_files_that_cannot_be_read() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (bad_utf8, long, empty, binary, locked, folder) = (
        d.join("utf8.log"),
        d.join("long.log"),
        d.join("empty.log"),
        d.join("binary.log"),
        d.join("locked.log"),
        d.join("folder.log"),
    );
    std::fs::write(&bad_utf8, b"caf\xe9 latin-1\n\xff\xfe\n  indented\r\n\n").unwrap();
    let big = "0123456789abcdef".repeat(3 * 1024 * 1024 / 16); // 3 MiB, one line
    std::fs::write(&long, format!("{big}\nafter\n")).unwrap();
    std::fs::write(&empty, "").unwrap();
    let noise: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&binary, &noise).unwrap();
    std::fs::write(&locked, "secret at first\n").unwrap();
    std::fs::create_dir(&folder).unwrap();
    let entries: Vec<Value> = [&bad_utf8, &long, &empty, &binary, &locked, &folder]
        .iter()
        .map(|p| json!({"file_path": p, "from_beginning": true}))
        .collect();
    let s = Setup::new(logs_config(json!(entries), json!({})));

    // The locked file must be unreadable for the publisher: as root, run it as nobody.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if root {
        use std::os::unix::process::CommandExt;
        for p in [d, s.dir.path()] {
            let st = std::process::Command::new("chown")
                .args(["-R", "65534:65534"])
                .arg(p)
                .status()
                .unwrap();
            assert!(st.success());
        }
        cmd.uid(65534).gid(65534);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut p = cmd.spawn().unwrap();

    let got = moto.wait_for_messages(GROUP, "utf8.log", Duration::from_secs(30), |m| m.len() >= 3);
    assert_eq!(
        got,
        ["caf\u{FFFD} latin-1", "\u{FFFD}\u{FFFD}", "  indented"]
    );
    let got = moto.wait_for_messages(GROUP, "long.log", Duration::from_secs(30), |m| {
        m.last().is_some_and(|l| l == "after")
    });
    assert_eq!(got.len(), 5, "3 MiB become four events, then the next line");
    assert_eq!(got[..4].concat(), big, "split in order, nothing dropped");
    assert!(got.iter().all(|e| e.len() <= 1_048_550));
    let got = moto.wait_for_messages(GROUP, "binary.log", Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    assert!(!got.is_empty());

    let deadline = Instant::now() + Duration::from_secs(30);
    while !(s.log().contains("locked.log") && s.log().contains("folder.log")) {
        assert!(Instant::now() < deadline, "{}", s.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = s.log();
    assert!(log.contains("is a directory"), "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();
    let got = moto.wait_for_messages(GROUP, "locked.log", Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    assert_eq!(got, ["secret at first"], "read once it became readable");
    stop(&mut p, &s);
    assert!(
        !moto.log_groups()[GROUP].1.contains(&"empty.log".to_owned()),
        "an empty file sends nothing"
    );
    assert!(moto.violations().is_empty(), "{:?}", moto.violations());
}

#[test]
fn readers_pause_while_cloudwatch_is_slow_so_memory_stays_bounded() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backlog.log");
    {
        // 1 GiB of 100-byte lines.
        let mut f =
            std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file).unwrap());
        let line = format!("{}\n", "b".repeat(99));
        for _ in 0..(1usize << 30) / 100 {
            f.write_all(line.as_bytes()).unwrap();
        }
    }
    // The same binary without logs, for what it needs anyway (a debug build needs far more
    // than the release build BENCHMARKS.md measures).
    let idle = Setup::new(
        json!({"agent": {"instance": {"prefix": "test", "serial": "idle"},
        "metrics_collection_interval": 3600}}),
    );
    let mut p = spawn(&idle, &moto.url());
    std::thread::sleep(Duration::from_secs(5));
    let baseline_kib = peak_rss_kib(&p);
    stop(&mut p, &idle);

    moto.delay("PutLogEvents", 2.0);
    let s = Setup::new(logs_config(
        json!([{"file_path": file, "from_beginning": true}]),
        json!({}),
    ));
    let mut p = spawn(&s, &moto.url());
    std::thread::sleep(Duration::from_secs(15));
    let peak_kib = peak_rss_kib(&p);
    stop(&mut p, &s);
    eprintln!("peak RSS {peak_kib} KiB with a 1 GiB backlog and a slow service; {baseline_kib} KiB without logs");
    // One batch being built, one waiting, one in flight with its request: about 7 MiB.
    assert!(
        peak_kib < baseline_kib + 12 * 1024,
        "the log path took {} KiB with a 1 GiB backlog",
        peak_kib - baseline_kib
    );
    let state: Value =
        serde_json::from_str(&read(&s.dir.path().join("state/logs-state.json"))).unwrap();
    let offset = state["files"][0]["offset"].as_u64().unwrap();
    assert!(
        offset > 0 && offset < 1 << 28,
        "delivered {offset} bytes: the reader waited for CloudWatch"
    );
}

/// Twenty files behind, one small budget for all of them, CloudWatch slow: every line arrives,
/// in order, and every file gets its turn (each file's first lines arrive before any file's
/// last). (With CloudWatch away first, a file whose first request met the outage waits out its
/// retry pause while others go on; the bench measures that case with files long enough.)
#[test]
fn one_memory_budget_for_many_files_behind_loses_nothing_and_starves_no_file() {
    const FILES: usize = 20;
    const LINES: usize = 5_000;
    let moto = Moto::start();
    let dir = TempDir::new().unwrap();
    // Each file (5,000 lines of about 215 bytes) is more than one request can take, so each
    // has a first and a last request, whatever room its reader found.
    let pad = "x".repeat(200);
    let mut want = Vec::new();
    for f in 0..FILES {
        let lines = numbered(&format!("file {f:02} {pad}"), 0..LINES);
        append(&dir.path().join(format!("f{f:02}.log")), &lines);
        want.push(lines);
    }
    // CloudWatch answering each request after a fifth of a second.
    moto.delay("PutLogEvents", 0.2);
    let s = Setup::new(logs_config(
        json!([{"file_path": dir.path().join("*.log"), "from_beginning": true,
                "log_stream_name": "{file_name}"}]),
        json!({"memory_budget_mib": 2}),
    ));
    let mut p = spawn(&s, &moto.url());
    for (f, lines) in want.iter().enumerate() {
        let got = moto.wait_for_messages(
            GROUP,
            &format!("f{f:02}.log"),
            Duration::from_secs(240),
            |m| m.len() >= LINES,
        );
        assert_eq!(&got, lines, "file {f}: every line once, in order");
    }
    stop(&mut p, &s);
    // The order requests arrived in: each stream's first before any stream's last.
    let puts = moto.put_log_events();
    let accepted: Vec<&str> = puts
        .iter()
        .filter(|p| p["status"] == 200)
        .map(|p| p["stream"].as_str().unwrap())
        .collect();
    let first = |s: &str| accepted.iter().position(|x| *x == s).unwrap();
    let last = |s: &str| accepted.iter().rposition(|x| *x == s).unwrap();
    let streams: Vec<String> = (0..FILES).map(|f| format!("f{f:02}.log")).collect();
    let latest_first = streams.iter().map(|s| first(s)).max().unwrap();
    let earliest_last = streams.iter().map(|s| last(s)).min().unwrap();
    assert!(
        latest_first < earliest_last,
        "a file waited until another was done: requests in order {accepted:?}"
    );
    assert!(
        accepted.len() >= 2 * FILES,
        "reads kept to a quarter of the budget: {} requests",
        accepted.len()
    );
}

/// A FUSE mount (tests/support/hangfs.py) of `backing` at `mount` that hangs while `hang`
/// exists, as a network mount does when its server is away; unmounted when dropped.
struct HangingMount {
    process: std::process::Child,
    mount: PathBuf,
    hang: PathBuf,
}

impl HangingMount {
    fn new(dir: &Path) -> HangingMount {
        let (backing, mount, hang) = (dir.join("backing"), dir.join("mount"), dir.join("HANG"));
        std::fs::create_dir_all(&backing).unwrap();
        std::fs::create_dir_all(&mount).unwrap();
        let process = std::process::Command::new(python())
            .arg(repo().join("tests/support/hangfs.py"))
            .args([&backing, &mount, &hang])
            .spawn()
            .expect("the FUSE test file system starts (scripts/test installs fuse and fusepy)");
        let m = HangingMount {
            process,
            mount,
            hang,
        };
        wait_until(
            "the FUSE mount is up (needs /dev/fuse, the fuse package and fusepy)",
            Duration::from_secs(20),
            || {
                std::process::Command::new("mountpoint")
                    .arg("-q")
                    .arg(&m.mount)
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
        m
    }

    fn hang(&self, on: bool) {
        if on {
            std::fs::write(&self.hang, "").unwrap();
        } else {
            let _ = std::fs::remove_file(&self.hang);
        }
    }
}

impl Drop for HangingMount {
    fn drop(&mut self) {
        self.hang(false);
        let _ = std::process::Command::new("fusermount")
            .arg("-u")
            .arg(&self.mount)
            .status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

#[test]
fn a_hung_network_mount_holds_up_only_its_own_reader() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let mount = HangingMount::new(dir.path());
    std::fs::write(dir.path().join("backing/remote.log"), "").unwrap();
    let good = dir.path().join("good.log");
    std::fs::write(&good, "").unwrap();
    let s = Setup::new(debug_config(logs_config(
        json!([
            {"file_path": mount.mount.join("remote.log"), "log_stream_name": "remote"},
            {"file_path": good, "log_stream_name": "good"}
        ]),
        json!({"force_flush_interval": 1}),
    )));
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config()).env("WATCHDOG_USEC", "2000000");
    let (mut p, sock) = start_ready(cmd);
    append(
        &dir.path().join("backing/remote.log"),
        &["before the hang".to_owned()],
    );
    moto.wait_for_messages(GROUP, "remote", Duration::from_secs(30), |m| m.len() == 1);
    // The server goes away: every call on the mount blocks.
    mount.hang(true);
    std::thread::sleep(Duration::from_secs(3));
    let lines = numbered("while the mount hangs", 0..20);
    append(&good, &lines);
    let got = moto.wait_for_messages(GROUP, "good", Duration::from_secs(20), |m| {
        m.len() >= lines.len()
    });
    assert_eq!(got, lines);
    // The watchdog is still fed: nothing the publisher waits on is stuck but that reader.
    let since = std::time::Instant::now();
    let pings = sock.collect(since, Duration::from_secs(4), |m| {
        m.iter().filter(|(_, t)| t.contains("WATCHDOG=1")).count() >= 3
    });
    assert!(
        pings
            .iter()
            .filter(|(_, t)| t.contains("WATCHDOG=1"))
            .count()
            >= 3,
        "{pings:?}\n{}",
        s.log()
    );
    // And a stop ends in time, the hung reader left behind. (The kernel keeps the process
    // until the call on the mount returns, as with a hard NFS mount: it is gone once the
    // mount answers again.)
    signal(&p, libc::SIGTERM);
    wait_until("the publisher stops", Duration::from_secs(10), || {
        s.log().contains("Stopped.")
    });
    mount.hang(false);
    let status = wait_exit(&mut p, Duration::from_secs(10));
    assert!(status.success(), "{status}\n{}", s.log());
    drop(mount);
}
