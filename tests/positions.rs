//! Where reading starts after the publisher stops, however it stops (SIGTERM, SIGKILL, right
//! after it reported ready): every position that decides it is saved before it matters, so
//! lines written while it was down, or written just before and not read yet, arrive, once.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const GROUP: &str = "test-positions";

fn config(file_path: &Path) -> Value {
    json!({
        "agent": {"instance": {"prefix": "test", "serial": "positions"}, "metrics_collection_interval": 3600,
                  "logs_collection_interval": 1, "debug": true},
        "logs": {"log_group_name": GROUP,
                 "logs_collected": {"files": {"collect_list": [{"file_path": file_path}]}}}
    })
}

/// A publisher that has reported READY to a notify socket, as systemd would see it.
fn start(s: &Setup, moto: &Moto) -> (Child, NotifySocket) {
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config());
    start_ready(cmd)
}

fn kill(child: &mut Child) {
    signal(child, libc::SIGKILL);
    let _ = child.wait();
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i:04}")).collect()
}

/// The saved offsets of the state file, by path.
fn saved_offsets(s: &Setup) -> BTreeMap<String, u64> {
    let text = read(&s.dir.path().join("state/logs-state.json"));
    let state: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    state["files"]
        .as_array()
        .map(|files| {
            files
                .iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap().to_owned(),
                        f["offset"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a publisher until `want.len()` events are in `stream`, waits a little for strays, stops
/// it and returns every event that arrived.
fn collect_after_restart(s: &Setup, moto: &Moto, stream: &str, want: usize) -> Vec<String> {
    let (mut p, _sock) = start(s, moto);
    moto.wait_for_messages(GROUP, stream, Duration::from_secs(60), |m| m.len() >= want);
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut p, s);
    moto.messages(GROUP, stream)
}

#[test]
fn a_quiet_file_keeps_its_place_while_the_publisher_is_stopped() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quiet.log");
    append_lines(&file, &numbered("before the first start", 0..3));
    let s = Setup::new(config(&file));

    // Nothing is written while it runs, so nothing is ever acknowledged.
    let (mut p, _sock) = start(&s, &moto);
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut p, &s);
    let len = std::fs::metadata(&file).unwrap().len();
    assert_eq!(
        saved_offsets(&s).get(file.to_str().unwrap()),
        Some(&len),
        "the position it started from is saved though nothing was delivered\n{}",
        s.log()
    );

    let want = numbered("while stopped", 0..100);
    append_lines(&file, &want);
    let got = collect_after_restart(&s, &moto, "quiet.log", want.len());
    assert_eq!(
        got, want,
        "every line written while stopped, once, in order"
    );
}

#[test]
fn the_start_position_is_saved_before_ready() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ready.log");
    append_lines(&file, &numbered("old", 0..5));
    let s = Setup::new(config(&file));

    // Killed the moment it reports ready: what it decided by then is on disk.
    let (mut p, _sock) = start(&s, &moto);
    kill(&mut p);
    let want = numbered("after the kill", 0..50);
    append_lines(&file, &want);
    let got = collect_after_restart(&s, &moto, "ready.log", want.len());
    assert_eq!(got, want);
}

#[test]
fn lines_not_read_yet_at_sigterm_arrive_after_a_restart_once() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("term.log");
    append_lines(&file, &numbered("old", 0..5));
    let s = Setup::new(config(&file));

    let (mut p, _sock) = start(&s, &moto);
    // An idle file is looked at about once a second: the stop comes before the next look.
    std::thread::sleep(Duration::from_secs(2));
    let want = numbered("just before the stop", 0..1000);
    append_lines(&file, &want);
    stop_gracefully(&mut p, &s);
    let got = collect_after_restart(&s, &moto, "term.log", want.len());
    assert_eq!(
        got, want,
        "what the first run delivered is not sent again, and the rest comes after the restart"
    );
}

#[test]
fn lines_not_read_yet_at_sigkill_arrive_after_a_restart() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kill.log");
    append_lines(&file, &numbered("old", 0..5));
    let s = Setup::new(config(&file));

    let (mut p, _sock) = start(&s, &moto);
    let want = numbered("just before the kill", 0..1000);
    append_lines(&file, &want);
    kill(&mut p);
    let got = collect_after_restart(&s, &moto, "kill.log", want.len());
    assert_unique_lines_arrived(&got, &want);
}

#[test]
fn a_file_that_appeared_while_running_is_read_whole_after_a_sigkill() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("later.log");
    let s = Setup::new(config(&file));

    // No file at the path at start; one appears and the publisher is killed at once, before
    // it could have delivered (or saved) anything of it.
    let (mut p, _sock) = start(&s, &moto);
    let want = numbered("appeared", 0..500);
    append_lines(&file, &want);
    kill(&mut p);
    let got = collect_after_restart(&s, &moto, "later.log", want.len());
    assert_unique_lines_arrived(&got, &want);
}

#[test]
fn a_file_rotated_just_before_a_sigkill_is_finished_and_the_new_one_read_whole() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rot.log");
    append_lines(&file, &numbered("old", 0..5));
    let s = Setup::new(config(&file));

    let (mut p, _sock) = start(&s, &moto);
    let mut want = numbered("first file", 0..300);
    append_lines(&file, &want);
    std::fs::rename(&file, dir.path().join("rot.log.1")).unwrap();
    let second = numbered("second file", 0..300);
    append_lines(&file, &second);
    want.extend(second);
    kill(&mut p);
    let got = collect_after_restart(&s, &moto, "rot.log", want.len());
    assert_unique_lines_arrived(&got, &want);
}

/// `got` is what a first run delivered before it was killed (a part of `want` from its start)
/// followed by what the restart sent, from the saved position to the end: every line arrives,
/// in order, and a line comes twice only if it was delivered but not yet saved as delivered at
/// the kill (with these small files: at most one batch).
fn assert_unique_lines_arrived(got: &[String], want: &[String]) {
    let delivered_first = got.iter().zip(want).take_while(|(g, w)| g == w).count();
    let resent = got.len().saturating_sub(want.len());
    assert!(
        resent <= delivered_first && got[delivered_first..] == want[delivered_first - resent..],
        "the first run delivered {delivered_first} lines; then the rest must follow from a saved \
         position at or before that. Got {} events for {} lines: {:?} ...",
        got.len(),
        want.len(),
        &got[delivered_first.min(got.len())..got.len().min(delivered_first + 5)]
    );
    assert!(
        resent <= 10_000,
        "{resent} lines sent twice: more than one batch"
    );
}

/// Lines go to `file` while CloudWatch is away; then the file is rotated (renamed, or copied
/// and truncated) and more lines go to the new one; the publisher finishes the old file,
/// opens the new one and is stopped (within its grace period, nothing delivered). After a
/// restart with CloudWatch back, the old file's tail arrives first, then the new file, each
/// line once and in order.
fn rotated_in_an_outage_then_restarted(rotate: impl FnOnce(&Path, &Path)) {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rot.log");
    append_lines(&file, &numbered("before the start", 0..3));
    let s = Setup::new(config(&file));
    let (mut p, _sock) = start(&s, &moto);
    moto.fail_next(
        "PutLogEvents",
        1_000_000,
        500,
        "ServiceUnavailableException",
    );
    let mut want = numbered("first file", 0..50);
    append_lines(&file, &want);
    std::thread::sleep(Duration::from_secs(2));
    rotate(&file, &dir.path().join("rot.log.1"));
    let second = numbered("second file", 0..50);
    append_lines(&file, &second);
    want.extend(second);
    wait_until(
        "the publisher reads the new file",
        Duration::from_secs(30),
        || {
            let log = s.log();
            log.contains("Finished the old log file") || log.contains("Log file was truncated")
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    stop_gracefully(&mut p, &s);
    assert!(moto.messages(GROUP, "rot.log").is_empty());
    moto.fail_next("PutLogEvents", 0, 500, "ServiceUnavailableException");
    let got = collect_after_restart(&s, &moto, "rot.log", want.len());
    assert_eq!(got, want, "{}", s.log());
}

#[test]
fn a_restart_soon_after_a_rename_rotation_sends_the_old_files_tail_first() {
    rotated_in_an_outage_then_restarted(|file, rotated| std::fs::rename(file, rotated).unwrap());
}

#[test]
fn a_restart_soon_after_a_copytruncate_rotation_sends_the_copys_tail_first() {
    rotated_in_an_outage_then_restarted(|file, rotated| {
        std::fs::copy(file, rotated).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(file)
            .unwrap();
    });
}
