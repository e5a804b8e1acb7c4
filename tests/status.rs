//! `status` against a live publisher under moto: running and delivering, during an outage, after
//! recovery, and stopped; its status line is the one the service manager was sent.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const GROUP: &str = "test-status";

/// `status --json` for `state_dir`: (exit code, the object).
fn status_json(state_dir: &Path) -> (i32, Value) {
    let out = run(
        {
            let mut c = Command::new(BIN);
            c.args(["status", "--json", "--state-dir"]).arg(state_dir);
            c
        },
        Duration::from_secs(10),
    );
    let (stdout, stderr) = text(&out);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    (out.status.code().unwrap(), v)
}

/// `status` for a person, through the config: (exit code, text).
fn status_text(config: &Path) -> (i32, String) {
    let out = run(
        {
            let mut c = Command::new(BIN);
            c.arg("status").arg(config);
            c
        },
        Duration::from_secs(10),
    );
    let (stdout, stderr) = text(&out);
    (out.status.code().unwrap(), format!("{stdout}{stderr}"))
}

fn wait_status(state_dir: &Path, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = status_json(state_dir);
        if cond(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: status stayed {v:#}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn status_follows_a_live_publisher_through_an_outage_and_its_stop() {
    let mut moto = Moto::start();
    let port = moto.port;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.log");
    std::fs::write(&file, "").unwrap();
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).unwrap();
    let s = Setup::new(json!({
        "agent": {"instance": {"prefix": "test", "serial": "status"}, "region": "us-east-1",
                  "metrics_collection_interval": 5, "logs_collection_interval": 1},
        "logs": {"log_group_name": GROUP, "logs_collected": {"files": {"collect_list": [
            {"file_path": file.to_str().unwrap(), "log_stream_name": "app"}]}}}
    }));
    let state_dir: PathBuf = s.dir.path().join("state");
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config()).env("RUNTIME_DIRECTORY", &runtime);
    let (mut p, sock) = start_ready(cmd);

    // The file is written in the runtime directory, and linked into the state directory.
    wait_until("the status file", Duration::from_secs(15), || {
        runtime.join("status.json").exists()
    });
    assert_eq!(
        std::fs::read_link(state_dir.join("status.json")).unwrap(),
        runtime.join("status.json")
    );

    append_lines(&file, &["one", "two", "three"]);
    moto.wait_for_messages(GROUP, "app", Duration::from_secs(30), |m| m.len() == 3);
    let v = wait_status(&state_dir, "delivered and accepted", |v| {
        v["logs"][0]["events"] == 3
            && v["logs"][0]["behind_bytes"] == 0
            && !v["metrics"]["last_accepted_ms"].is_null()
    });
    assert_eq!(v["running"], true);
    assert_eq!(v["state"], "running");
    assert_eq!(v["pid"], p.id());
    assert_eq!(v["instance_id"], "test-status");
    assert_eq!(v["region"], "us-east-1");
    assert_eq!(v["credentials"], "default AWS credential chain");
    let log = &v["logs"][0];
    assert_eq!(log["source"], file.to_str().unwrap());
    assert_eq!(
        (log["group"].as_str(), log["stream"].as_str()),
        (Some(GROUP), Some("app"))
    );
    let newest = log["newest_event_ms"].as_i64().unwrap();
    assert!((now_ms() - newest).abs() < 60_000, "{log}");
    assert!(log["error"].is_null(), "{log}");
    assert_eq!(v["metrics"]["spooled_requests"], 0);

    let (code, out) = status_text(&s.config());
    assert_eq!(code, 0, "{out}");
    for want in [
        &format!("running (pid {})", p.id()),
        "instance id   test-status",
        "region        us-east-1",
        "credentials   default AWS credential chain",
        &format!("{} -> {GROUP} / app", file.display()),
        "behind by 0 B; 3 events delivered",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }

    // The service manager's status line is the file's, once both have caught up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = sock.collect(Instant::now(), Duration::from_secs(11), |_| false);
        let sent: Vec<&str> = got
            .iter()
            .flat_map(|(_, m)| m.lines())
            .filter_map(|l| l.strip_prefix("STATUS="))
            .collect();
        let (_, v) = status_json(&state_dir);
        if let Some(last) = sent.last() {
            if v["line"] == *last {
                break;
            }
        } else if v["line"].as_str().is_some_and(|l| l.contains("(accepted)")) {
            // Nothing new was sent in that time: the line has not changed since it was.
            break;
        }
        assert!(
            Instant::now() < deadline,
            "STATUS={sent:?} but the file says {}",
            v["line"]
        );
    }

    // An outage: nothing is accepted, lines wait on disk.
    moto.stop();
    append_lines(&file, &["four", "five"]);
    let v = wait_status(&state_dir, "the outage to show", |v| {
        v["logs"][0]["behind_bytes"].as_u64().unwrap_or(0) > 0
            && !v["logs"][0]["error"].is_null()
            && !v["metrics"]["error"].is_null()
    });
    assert_eq!(v["running"], true);
    let (code, out) = status_text(&s.config());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("behind by 10 B") && out.contains("last error"),
        "{out}"
    );
    assert!(out.contains("failing"), "{out}");

    // Recovery: everything delivered, errors gone.
    let moto2 = Moto::start_on(port);
    moto2.wait_for_messages(GROUP, "app", Duration::from_secs(90), |m| m.len() == 2);
    let v = wait_status(&state_dir, "the recovery to show", |v| {
        v["logs"][0]["behind_bytes"] == 0
            && v["logs"][0]["error"].is_null()
            && v["metrics"]["error"].is_null()
            && v["logs"][0]["events"] == 5
    });
    assert_eq!(v["running"], true);

    // Stopped: said so, exit 3.
    stop_gracefully(&mut p, &s);
    let (code, v) = status_json(&state_dir);
    assert_eq!(
        (code, &v["running"], &v["state"]),
        (3, &json!(false), &json!("stopped"))
    );
    let (code, out) = status_text(&s.config());
    assert_eq!(code, 3, "{out}");
    assert!(
        out.starts_with("amazon-cloudwatch-publisher: stopped"),
        "{out}"
    );
    drop(moto2);
    moto.stop();
}

/// `status --json` for `state_dir` as the user `daemon`, a member of `groups` (setpriv's
/// `--groups` list, or `--clear-groups`): its exit code and what it printed.
fn status_as_daemon(state_dir: &Path, groups: &str) -> (i32, String) {
    let out = run(
        {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=daemon", "--regid=daemon", groups, BIN])
                .args(["status", "--json", "--state-dir"])
                .arg(state_dir);
            c
        },
        Duration::from_secs(10),
    );
    let (stdout, stderr) = text(&out);
    (out.status.code().unwrap(), format!("{stdout}{stderr}"))
}

/// The status file is the service's group's to read (the package's unit runs the publisher
/// with the group adm), not every user's: it names hosts, log groups and paths.
#[test]
fn a_member_of_the_services_group_reads_status_and_other_users_cannot() {
    support::deb::need_root();
    let moto = Moto::start();
    let s = Setup::new(json!({
        "agent": {"instance": {"prefix": "test", "serial": "status"}, "region": "us-east-1",
                  "metrics_collection_interval": 60}
    }));
    // Folders any user may pass through, so that only the file's own mode decides.
    let state_dir: PathBuf = s.dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    for d in [s.dir.path(), &state_dir] {
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let adm = 4;
    let mut cmd = publisher(Some(&moto.url()));
    std::os::unix::process::CommandExt::gid(&mut cmd, adm);
    cmd.arg(s.config());
    let (mut p, _sock) = start_ready(cmd);
    wait_until("the status file", Duration::from_secs(15), || {
        state_dir.join("status.json").exists()
    });

    let (code, out) = status_as_daemon(&state_dir, "--groups=adm");
    assert_eq!(code, 0, "a member of adm: {out}");
    assert!(out.contains("\"instance_id\":\"test-status\""), "{out}");
    let (code, out) = status_as_daemon(&state_dir, "--clear-groups");
    assert_eq!(code, 4, "another user read the status file: {out}");
    assert!(out.contains("Permission denied"), "{out}");
    stop_gracefully(&mut p, &s);
}

#[test]
fn without_a_status_file_status_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    // A config that cannot be read (as the package's is, to all but the service user) is no
    // error: the state directory is then the default one, unless given.
    let out = Command::new(BIN)
        .args(["status", "/nonexistent/config.json", "--state-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}: no status file",
            dir.path().join("status.json").display()
        )),
        "{err}"
    );
}
