//! The CloudWatch Agent's `logs` keys through moto: its own config with `filters`,
//! `concurrency` and a top-level `log_stream_name`, and `log_group_class`, `blacklist`,
//! `retention_in_days: -1` and `credentials.role_arn`.

mod support;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn start(s: &Setup, moto: &Moto) -> Child {
    publisher(Some(&moto.url()))
        .arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The agent's config with its files moved into `dir` and the publisher's own instance.
fn agent_config(dir: &Path) -> Value {
    let text =
        read(&repo().join("tests/data/agent-configs/agentrepo_files_log_filter_concurrency.json"));
    let text = text.replace(
        "/opt/aws/amazon-cloudwatch-agent/logs",
        dir.to_str().unwrap(),
    );
    let mut c: Value = serde_json::from_str(&text).unwrap();
    c["agent"]["instance"] = json!({"prefix": "test", "serial": "agentlogs"});
    c["agent"]["logs_collection_interval"] = json!(1);
    c
}

#[test]
fn the_agents_filter_config_ships_what_it_says() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let test_log = dir.path().join("test.log");
    std::fs::write(&test_log, "").unwrap();
    let s = Setup::new(agent_config(dir.path()));
    let mut p = start(&s, &moto);
    std::thread::sleep(Duration::from_secs(2));
    append_lines(
        &test_log,
        &[
            "INFO fine",
            "ERROR disk full",
            "ERROR StatusCode 404 not found",
            "ERROR StatusCode 500",
        ],
    );
    let got = moto.wait_for_messages("test.log", "test.log", Duration::from_secs(30), |m| {
        m.len() >= 2
    });
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut p, &s);
    assert_eq!(got, ["ERROR disk full", "ERROR StatusCode 500"]);
    let log = s.log();
    assert!(
        log.contains("timezone") && log.contains("has no effect without timestamp_format"),
        "{log}"
    );
}

#[test]
fn group_class_blacklist_and_retention_minus_one() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::new(json!({
        "agent": {"instance": {"prefix": "test", "serial": "class"}, "logs_collection_interval": 1},
        "logs": {"logs_collected": {"files": {"collect_list": [{
            "file_path": dir.path().join("*.log"),
            "from_beginning": true,
            "log_group_name": "cold", "log_group_class": "infrequent_access",
            "retention_in_days": -1,
            "blacklist": "^debug",
            "publish_multi_logs": true
        }]}}}
    }));
    append_lines(&dir.path().join("app.log"), &["kept"]);
    append_lines(
        &dir.path().join("debug.log"),
        &["left out by the blacklist"],
    );
    let mut p = start(&s, &moto);
    moto.wait_for_messages("cold", "app.log", Duration::from_secs(30), |m| {
        !m.is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    stop_gracefully(&mut p, &s);
    let groups = moto.log_groups();
    assert_eq!(groups["cold"].0, None, "-1: kept forever, no retention set");
    assert_eq!(
        groups["cold"].1,
        ["app.log"],
        "the blacklisted file is not shipped"
    );
    assert_eq!(
        moto.log_group_classes()["cold"].as_deref(),
        Some("INFREQUENT_ACCESS")
    );
}

#[test]
fn each_section_acts_as_its_role() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let app_log = dir.path().join("app.log");
    append_lines(&app_log, &["sent as the logs role"]);
    // The agent's role for metrics; logs name a role of their own in another account.
    let s = Setup::new(json!({
        "agent": {"instance": {"prefix": "test", "serial": "roles"}, "logs_collection_interval": 1,
                  "metrics_collection_interval": 1,
                  "credentials": {"role_arn": "arn:aws:iam::111122223333:role/MetricsPublisher"}},
        "metrics": {"metrics_collected": {"mem": {"measurement": ["mem_used_percent"]}}},
        "logs": {"credentials": {"role_arn": "arn:aws:iam::444455556666:role/LogsPublisher"},
                 "logs_collected": {"files": {"collect_list": [{
                     "file_path": app_log, "from_beginning": true, "log_group_name": "app"}]}}}
    }));
    let mut p = start(&s, &moto);
    moto.wait_for_messages("app", "app.log", Duration::from_secs(30), |m| !m.is_empty());
    let metrics = moto.wait_for_metrics(Duration::from_secs(30), |m| {
        m.iter().any(|d| d.name == "mem_used_percent")
    });
    stop_gracefully(&mut p, &s);
    assert_eq!(moto.log_group_accounts()["app"], "444455556666");
    for d in metrics.iter().filter(|d| d.name == "mem_used_percent") {
        assert_eq!(d.account, "111122223333", "{d:?}");
    }
    // One AssumeRole per role, not one per request.
    assert_eq!(
        moto.calls().get("AssumeRole"),
        Some(&2),
        "{:?}",
        moto.calls()
    );
    assert!(
        s.log()
            .contains("arn:aws:iam::444455556666:role/LogsPublisher"),
        "the log names the role: {}",
        s.log()
    );
}

#[test]
fn a_role_arn_that_is_not_one_is_a_config_error() {
    let s = Setup::new(json!({
        "logs": {"credentials": {"role_arn": "MetricsPublisher", "external_id": "x"},
                 "logs_collected": {"journal": true}}
    }));
    let mut cmd = publisher(None);
    cmd.arg("validate").arg(s.config());
    let out = run(cmd, Duration::from_secs(30));
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("logs.credentials.role_arn"), "{err}");
    assert!(err.contains("is not an IAM role ARN"), "{err}");
    assert!(err.contains("logs.credentials.external_id"), "{err}");
}

/// Sets a file's modification time `ago` into the past, as if it had not been written since.
fn age(path: &Path, ago: Duration) {
    std::fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - ago)
        .unwrap();
}

#[test]
fn auto_removal_removes_rotated_files_only_once_delivered() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let (app, kept) = (dir.path().join("app.log"), dir.path().join("kept.log"));
    let (app1, kept1) = (dir.path().join("app.log.1"), dir.path().join("kept.log.1"));
    let old = dir.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let (older, newer) = (old.join("day-1.log"), old.join("day-2.log"));
    append_lines(&app, &["app 1"]);
    append_lines(&kept, &["kept 1"]);
    append_lines(&older, &["day 1"]);
    append_lines(&newer, &["day 2"]);
    age(&older, Duration::from_secs(60));
    let s = Setup::new(json!({
        "agent": {"instance": {"prefix": "test", "serial": "removal"}, "logs_collection_interval": 1},
        "logs": {"logs_collected": {"files": {"collect_list": [
            {"file_path": app, "from_beginning": true, "log_group_name": "app", "auto_removal": true},
            {"file_path": kept, "from_beginning": true, "log_group_name": "kept"},
            {"file_path": old.join("day-*.log"), "from_beginning": true, "log_group_name": "days",
             "auto_removal": true}
        ]}}}
    }));
    let mut p = start(&s, &moto);
    moto.wait_for_messages("app", "app.log", Duration::from_secs(30), |m| m.len() == 1);
    // Of the pattern's files the older one goes once delivered; the newest is the active one.
    moto.wait_for_messages("days", "day-1.log", Duration::from_secs(30), |m| {
        m.len() == 1
    });
    wait_until(
        "the superseded day-1.log is removed",
        Duration::from_secs(30),
        || !older.exists(),
    );
    assert!(newer.exists(), "the newest file of a pattern stays");

    // CloudWatch is down while both files are rotated (renamed, a new file at the path).
    moto.fail_next("PutLogEvents", 100_000, 503, "ServiceUnavailableException");
    append_lines(&app, &["app 2"]);
    append_lines(&kept, &["kept 2"]);
    std::fs::rename(&app, &app1).unwrap();
    std::fs::rename(&kept, &kept1).unwrap();
    append_lines(&app, &["app 3"]);
    append_lines(&kept, &["kept 3"]);
    age(&app1, Duration::from_secs(60));
    age(&kept1, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        app1.exists(),
        "a rotated file is not removed before its lines are delivered"
    );
    moto.fail_next("PutLogEvents", 0, 503, "ServiceUnavailableException");
    let got = moto.wait_for_messages("app", "app.log", Duration::from_secs(60), |m| m.len() == 3);
    assert_eq!(got, ["app 1", "app 2", "app 3"]);
    moto.wait_for_messages("kept", "kept.log", Duration::from_secs(30), |m| {
        m.len() == 3
    });
    wait_until(
        "the delivered app.log.1 is removed",
        Duration::from_secs(30),
        || !app1.exists(),
    );
    stop_gracefully(&mut p, &s);
    assert!(app.exists(), "the active file stays");
    assert!(kept1.exists(), "without auto_removal rotated files stay");
    let log = s.log();
    assert!(
        log.contains("Removed a log file") && log.contains("app.log.1"),
        "{log}"
    );
}
