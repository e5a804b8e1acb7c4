//! Multi-line events (`multi_line_start_pattern`) through moto: a Java service's stack traces
//! arrive as one event each, with the time of the line that logged them, and a crash, a rename
//! or a copytruncate in the middle of a trace neither loses nor repeats any of it.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use serde_json::Value;
use support::*;

const GROUP: &str = "test-multiline";

/// A user's Spring Boot config, as published, with its file and group made the test's.
fn java_config(file: &Path) -> Value {
    let text = read(&repo().join("tests/data/agent-configs/user_java_multiline_springboot.json"));
    let mut c: Value = serde_json::from_str(&text).unwrap();
    let e = &mut c["logs"]["logs_collected"]["files"]["collect_list"][0];
    e["file_path"] = serde_json::json!(file);
    e["log_group_name"] = serde_json::json!(GROUP);
    e["log_stream_name"] = serde_json::json!("webapp");
    c["agent"] = serde_json::json!({"instance": {"prefix": "test", "serial": "multi"},
        "metrics_collection_interval": 3600, "logs_collection_interval": 1, "debug": true});
    c
}

fn start(s: &Setup, moto: &Moto) -> Child {
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config());
    start_ready(cmd).0
}

fn write(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A log record at `ms` with a stack trace of `frames` lines.
fn record(ms: i64, what: &str, frames: usize) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = amazon_cloudwatch_publisher::sources::files::timestamp::civil_from_days(
        secs.div_euclid(86_400),
    );
    let rem = secs.rem_euclid(86_400);
    let mut text = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} ERROR 21256 --- [nio-8080-exec-2] {what}\n",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms.rem_euclid(1000)
    );
    if frames > 0 {
        text.push_str(&format!("\njava.io.FileNotFoundException: {what}\n"));
        for i in 0..frames {
            text.push_str(&format!("\tat com.example.demo.DemoApplation$App.step{i}(DemoApplication.java:{i}) ~[main/:na]\n"));
        }
    }
    text
}

fn setup(name: &str) -> (tempfile::TempDir, PathBuf, Setup, Moto) {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, "").unwrap();
    let s = Setup::new(java_config(&file));
    (dir, file, s, moto)
}

#[test]
fn a_java_services_stack_traces_arrive_one_event_each_at_their_lines_time() {
    let (_dir, file, s, moto) = setup("webapp.log");
    let mut p = start(&s, &moto);
    let t = now_ms() - 60_000;
    let records = [
        record(t, "first", 5),
        record(t + 1000, "a plain line", 0),
        record(t + 2000, "second", 3),
    ];
    for r in &records {
        write(&file, r);
    }
    let got = moto.wait_for_messages(GROUP, "webapp", Duration::from_secs(30), |m| m.len() >= 3);
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut p, &s);
    let want: Vec<String> = records
        .iter()
        .map(|r| r.trim_end_matches('\n').to_owned())
        .collect();
    assert_eq!(
        got, want,
        "one event per record, the trace (and its blank line) inside it"
    );
    let times: Vec<i64> = moto.log_events(GROUP)["webapp"]
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(times, [t, t + 1000, t + 2000]);
}

#[test]
fn sigkill_between_the_lines_of_a_trace_loses_and_repeats_nothing() {
    let (_dir, file, s, moto) = setup("webapp.log");
    let mut p = start(&s, &moto);
    let t = now_ms() - 60_000;
    let before = record(t - 1000, "before", 0);
    let trace = record(t, "interrupted", 6);
    let (head, tail) = trace.split_at(trace.len() / 2);
    write(&file, &before);
    write(&file, head);
    // The record before has arrived, so the head was read; the trace waits for more lines
    // (five quiet seconds complete it).
    moto.wait_for_messages(GROUP, "webapp", Duration::from_secs(30), |m| !m.is_empty());
    signal(&p, libc::SIGKILL);
    let _ = p.wait();
    write(&file, tail);
    write(&file, &record(t + 1000, "after", 0));
    let mut p = start(&s, &moto);
    moto.wait_for_messages(GROUP, "webapp", Duration::from_secs(30), |m| {
        m.last().is_some_and(|l| l.contains("after"))
    });
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut p, &s);
    // The record before was delivered; a kill before its position was saved sends it again
    // (positions are saved on a timer, never ahead of delivery). The trace arrives whole, once.
    let got = moto.messages(GROUP, "webapp");
    let resent = usize::from(got.len() == 4 && got[0] == got[1]);
    assert_eq!(
        got[resent..],
        [
            before.trim_end().to_owned(),
            trace.trim_end().to_owned(),
            record(t + 1000, "after", 0).trim_end().to_owned()
        ],
        "{got:?}"
    );
}

#[test]
fn rename_and_copytruncate_between_the_lines_of_a_trace() {
    for copytruncate in [false, true] {
        let (dir, file, s, moto) = setup("webapp.log");
        let mut p = start(&s, &moto);
        let t = now_ms() - 60_000;
        let before = record(t - 1000, "before", 0);
        let trace = record(t, "rotated", 6);
        // A line does not go on in another file: the cut is between lines.
        let cut = trace[..trace.len() / 2].rfind('\n').unwrap() + 1;
        let (head, tail) = trace.split_at(cut);
        write(&file, &before);
        write(&file, head);
        // Read, as the record before has arrived; the trace is still open.
        moto.wait_for_messages(GROUP, "webapp", Duration::from_secs(30), |m| !m.is_empty());
        if copytruncate {
            std::fs::copy(&file, dir.path().join("webapp.log.1")).unwrap();
            OpenOptions::new()
                .write(true)
                .open(&file)
                .unwrap()
                .set_len(0)
                .unwrap();
        } else {
            std::fs::rename(&file, dir.path().join("webapp.log.1")).unwrap();
        }
        write(&file, tail);
        write(&file, &record(t + 1000, "next", 0));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while moto.messages(GROUP, "webapp").len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
        }
        std::thread::sleep(Duration::from_secs(2));
        stop_gracefully(&mut p, &s);
        let got = moto.messages(GROUP, "webapp");
        assert_eq!(
            got,
            [
                before.trim_end().to_owned(),
                trace.trim_end().to_owned(),
                record(t + 1000, "next", 0).trim_end().to_owned()
            ],
            "copytruncate: {copytruncate}\n{}",
            s.log()
        );
    }
}
