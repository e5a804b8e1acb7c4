//! A full disk. The publisher runs in a mount namespace of its own (`unshare`, as root) with its
//! state directory and its own log each on a small tmpfs; the test fills them through
//! `/proc/PID/root` while CloudWatch refuses metrics (so they are spooled) and log lines keep
//! coming. Publishing goes on, each failure is logged once, the oldest spooled metrics make room
//! for new ones, the state file is never left truncated, and all of it recovers by itself when
//! there is room again.

mod support;

use std::fs::File;
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

/// Fills the file system `dir` is on, with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut f = File::create(&filler).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
    filler
}

fn segments(spool: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(spool)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".jsonl"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_full_disk_stops_nothing_and_everything_recovers_when_there_is_room() {
    deb::need_root();
    deb::need("unshare");
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let (state, logs) = (dir.path().join("state"), dir.path().join("own-log"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    let app_log = dir.path().join("app.log");
    append_lines(&app_log, &["before"]);
    let s = Setup::new(json!({
        "agent": {"instance": {"prefix": "test", "serial": "fulldisk"},
                  "metrics_collection_interval": 1, "logs_collection_interval": 1,
                  "state_dir": state, "logfile": logs.join("publisher.log"),
                  "metrics_spool_max_mib": 1},
        "logs": {"logs_collected": {"files": {"collect_list": [
            {"file_path": app_log, "from_beginning": true, "log_group_name": "app"}]}}}
    }));
    // CloudWatch refuses metrics for now: each round goes to the spool.
    moto.fail_next("PutMetricData", 100_000, 503, "ServiceUnavailable");

    // The publisher's environment, on `unshare`, which mounts the two tmpfs and execs it.
    let env = publisher(Some(&moto.url()));
    let mut cmd = Command::new("unshare");
    cmd.env_clear();
    for (k, v) in env.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs -o size=256k tmpfs \"$1\" && mount -t tmpfs -o size=64k tmpfs \"$2\" \
             && exec \"$3\" \"$4\"",
        )
        .arg("sh")
        .arg(&state)
        .arg(&logs)
        .arg(BIN)
        .arg(s.config())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child: Child = cmd.spawn().unwrap();
    // The tmpfs as the publisher sees them.
    let root = PathBuf::from(format!("/proc/{}/root", child.id()));
    let (state_in, logs_in) = (
        root.join(state.strip_prefix("/").unwrap()),
        root.join(logs.strip_prefix("/").unwrap()),
    );
    let spool = state_in.join("metrics-spool");
    moto.wait_for_messages("app", "app.log", Duration::from_secs(30), |m| m.len() == 1);
    wait_until("three rounds spooled", Duration::from_secs(30), || {
        segments(&spool).len() >= 3
    });
    // Held open, the state directory stays readable after the publisher (and its mount
    // namespace) is gone.
    let state_dir = File::open(&state_in).unwrap();
    let state_file = PathBuf::from(format!(
        "/proc/self/fd/{}/logs-state.json",
        state_dir.as_raw_fd()
    ));
    let saved_before: Value = serde_json::from_str(&read(&state_file)).unwrap();

    // The state disk fills up.
    let oldest_before = segments(&spool)[0].clone();
    let filler = fill(&state_in);
    append_lines(&app_log, &["while the state disk is full"]);
    moto.wait_for_messages("app", "app.log", Duration::from_secs(30), |m| m.len() == 2);
    // New rounds are spooled in place of the oldest.
    wait_until(
        "the oldest spooled round dropped",
        Duration::from_secs(30),
        || segments(&spool).first() != Some(&oldest_before),
    );
    let log_path = logs_in.join("publisher.log");
    std::thread::sleep(Duration::from_secs(3));
    let log = read(&log_path);
    assert_eq!(
        log.matches("The disk is full: dropping the oldest spooled metrics")
            .count(),
        1,
        "said once: {log}"
    );
    assert!(
        log.matches("Dropped the spool's oldest metrics").count() <= 1,
        "{log}"
    );

    // Room again: the spool says so, and once CloudWatch takes metrics the spool empties.
    std::fs::remove_file(&filler).unwrap();
    wait_until("the spool has room again", Duration::from_secs(30), || {
        read(&log_path).contains("The metrics spool has room on disk again")
    });
    moto.fail_next("PutMetricData", 0, 503, "ServiceUnavailable");
    moto.wait_for_metrics(Duration::from_secs(60), |m| m.len() > 13 * 3);
    wait_until("the spool sent", Duration::from_secs(60), || {
        segments(&spool).is_empty()
    });

    // The publisher's own log fills its disk: publishing goes on, and stderr says so once.
    let log_filler = fill(&logs_in);
    // The log's own last page may still have room: fill that too.
    {
        let mut log = std::fs::OpenOptions::new()
            .append(true)
            .open(logs_in.join("publisher.log"))
            .unwrap();
        while log.write_all(b"(filled by the test)\n").is_ok() {}
    }
    for n in 0..3 {
        append_lines(&app_log, &[format!("own log full {n}")]);
        std::thread::sleep(Duration::from_millis(1500));
    }
    moto.wait_for_messages("app", "app.log", Duration::from_secs(30), |m| m.len() == 5);
    let _ = log_filler;

    // The state disk full again at shutdown: the last save fails, the file before stays whole.
    let filler = fill(&state_in);
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{status}: {stderr}");
    assert_eq!(
        stderr.matches("cannot write its log file").count(),
        1,
        "{stderr}"
    );
    let saved_after: Value = serde_json::from_str(&read(&state_file))
        .expect("the state file is whole after a failed save");
    assert_eq!(saved_after, saved_before, "the failed save changed nothing");
    let leftovers: Vec<_> = std::fs::read_dir(format!("/proc/self/fd/{}", state_dir.as_raw_fd()))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    drop(filler);
    assert_eq!(
        moto.messages("app", "app.log"),
        [
            "before",
            "while the state disk is full",
            "own log full 0",
            "own log full 1",
            "own log full 2"
        ]
    );
}
