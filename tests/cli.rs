//! The command line without AWS: --help, --version, --dry-run, validate and every kind of bad
//! config, with the messages and exit codes users and systemd rely on.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const SECRET: &str = "pa\"ss\\wo$rd-0f-this-device";

fn validate(config: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("publisher.json");
    std::fs::write(&path, config).unwrap();
    let mut cmd = publisher(None);
    cmd.arg("validate").arg(&path);
    let out = run(cmd, Duration::from_secs(30));
    let (stdout, stderr) = text(&out);
    // Messages name the file the user gave.
    let stderr = stderr.replace(path.to_str().unwrap(), "FILE");
    (out.status.code().unwrap(), stdout, stderr)
}

#[test]
fn help_and_version() {
    let out = run(
        {
            let mut c = publisher(None);
            c.arg("--help");
            c
        },
        Duration::from_secs(10),
    );
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0));
    for word in [
        "--once",
        "--dry-run",
        "validate",
        "[CONFIG]",
        "/opt/aws/amazon-cloudwatch-publisher/etc/amazon-cloudwatch-publisher.json",
    ] {
        assert!(stdout.contains(word), "--help lacks {word}:\n{stdout}");
    }
    let out = run(
        {
            let mut c = publisher(None);
            c.arg("--version");
            c
        },
        Duration::from_secs(10),
    );
    assert_eq!(
        text(&out).0.trim(),
        format!("amazon-cloudwatch-publisher {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(
        {
            let mut c = publisher(None);
            c.arg("--bogus");
            c
        },
        Duration::from_secs(10),
    );
    assert_eq!(
        out.status.code(),
        Some(64),
        "usage errors exit 64 (EX_USAGE)"
    );
    assert!(text(&out).1.contains("--bogus"));
}

#[test]
fn missing_config_is_an_error_with_a_hint() {
    let mut cmd = publisher(None);
    cmd.arg("--once").arg("/nonexistent/publisher.json");
    let out = run(cmd, Duration::from_secs(10));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("/nonexistent/publisher.json: config file not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("configs/"),
        "the message says where examples are: {stderr}"
    );
}

#[test]
fn every_bad_config_case_is_reported_with_file_and_path() {
    let cases: &[(&str, &str)] = &[
        ("{\n  \"agent\": {\n    \"debug\": true,,\n  }\n}", "FILE:3:19: invalid JSON: key must be a string"),
        (r#"{"agent": {"metrics_colection_interval": 60}}"#, "FILE: agent.metrics_colection_interval: unknown key; did you mean \"metrics_collection_interval\"?"),
        (r#"{"agent": {"debug": "yes"}}"#, "FILE: agent.debug: must be true or false, not the string \"yes\""),
        (r#"{"agent": {"metrics_collection_interval": 0}}"#, "FILE: agent.metrics_collection_interval: 0 is too small; the least is 1"),
        (r#"{"agent": {"logs_collection_interval": -10}}"#, "FILE: agent.logs_collection_interval: -10 is too small"),
        (r#"{"agent": {"metrics_collection_interval": 9999999}}"#, "FILE: agent.metrics_collection_interval: 9999999 is too large; the most is 86400"),
        (r#"{"logs": {"retention_in_days": 8}}"#, "FILE: logs.retention_in_days: 8 is not one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"),
        (r#"{"metrics": {"namespace": "AWS/EC2"}}"#, "FILE: metrics.namespace: must not start with \"AWS/\""),
        (r#"{"metrics": {"namespace": "bad\u00e9"}}"#, "FILE: metrics.namespace: contains 'é'"),
        (r#"{"logs": {"log_group_name": "/system/has space"}}"#, "FILE: logs.log_group_name: \"/system/has space\" is not a valid log group name"),
        (r#"{"logs": {"log_group_name": "/system/{nope}"}}"#, "FILE: logs.log_group_name: \"/system/{nope}\" is not a valid log group name: has unknown placeholder {nope}"),
        (r#"{"logs": {"logs_collected": {"files": {"collect_list": [{"file_path": "/a", "log_stream_name": "a:b"}]}}}}"#, "FILE: logs.logs_collected.files.collect_list[0].log_stream_name: \"a:b\" is not a valid log stream name"),
        (r#"{"logs": {"logs_collected": {"files": {"collect_list": [{"file_path": "/a", "include_patterns": ["(unclosed"]}]}}}}"#, "FILE: logs.logs_collected.files.collect_list[0].include_patterns[0]: \"(unclosed\" is not a valid regular expression"),
        (r#"{"logs": {"logs_collected": {"journal": {"exclude_patterns": ["[z-a]"]}}}}"#, "FILE: logs.logs_collected.journal.exclude_patterns[0]: \"[z-a]\" is not a valid regular expression"),
        (r#"{"logs": {"logs_collected": {"files": {"collect_list": [{"include_patterns": []}]}}}}"#, "FILE: logs.logs_collected.files.collect_list[0].file_path: is required"),
        (r#"{"agent": {"authentication": {"accountId": "1"}}}"#, "FILE: agent.authentication.password: is required when authentication is given"),
        (r#"{"agent": {"region": "Mars-1"}}"#, "FILE: agent.region: \"Mars-1\" is not an AWS region name"),
        (r#"{"agent": {"instance": {"serial": "has space"}}}"#, "FILE: agent.instance.serial: contains ' '"),
        (r#"{"agent": {"instance": {"command": "exit 4"}}}"#, "FILE: agent.instance.command `exit 4` failed"),
        (r#"{"agent": {"instance": {"prefix": "p", "command": "echo 'two words'"}}}"#, "FILE: instance id \"p-two words\" contains ' '"),
        (r#"{"agent": {"instance": {"command": "sleep 20", "command_timeout": 1}}}"#, "FILE: agent.instance.command `sleep 20` did not finish within 1 s"),
        (r#"{"agent": {"instance": {"command": "echo 'not a serial' >&2"}}}"#, "printed nothing; stderr: not a serial"),
        ("[1, 2]", "FILE: must be an object, not an array"),
    ];
    for (config, expected) in cases {
        let (code, stdout, stderr) = validate(config);
        assert_eq!(
            code, 78,
            "config {config} should exit 78 (EX_CONFIG); stderr: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "config {config}\nexpected: {expected}\n     got: {stderr}"
        );
        assert!(
            stdout.is_empty(),
            "nothing on stdout for a bad config: {stdout}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let (code, _, stderr) = validate(
        r#"{"agent": {"debug": 1, "metrics_collection_interval": 0},
            "metrics": {"namespace": ""},
            "logs": {"retention_in_days": 2, "unknown": true}}"#,
    );
    assert_eq!(code, 78);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("FILE: ")).collect();
    assert_eq!(lines.len(), 5, "{stderr}");
}

#[test]
fn the_daemon_refuses_a_bad_config_with_78_too() {
    let s = Setup::new(json!({"agent": {"metrics_collection_interval": "often"}}));
    let mut cmd = publisher(None);
    cmd.arg(s.config());
    let out = run(cmd, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out)
            .1
            .contains("agent.metrics_collection_interval: must be a whole number"),
        "{}",
        text(&out).1
    );
}

#[test]
fn validate_prints_the_effective_config_without_secrets() {
    let config = json!({
        "agent": {
            "instance": {"prefix": "rpi", "command": "echo C0FFEE"},
            "region": "eu-west-1",
            "authentication": {"accountId": "123456789012", "userPoolId": "eu-west-1_Abc123",
                "identityPoolId": "eu-west-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "appClientId": "abc123def456", "password": SECRET}
        },
        "logs": {"logs_collected": {"journal": true}}
    });
    let (code, stdout, stderr) = validate(&config.to_string());
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    assert!(!stdout.contains("ss\\\\wo"), "not even escaped");
    let eff: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(eff["agent"]["authentication"]["password"], "<redacted>");
    assert_eq!(eff["agent"]["metrics_collection_interval"], 300);
    assert_eq!(eff["agent"]["logs_collection_interval"], 10);
    assert_eq!(
        eff["agent"]["logfile"],
        "/opt/aws/amazon-cloudwatch-publisher/logs/amazon-cloudwatch-publisher.log"
    );
    assert_eq!(
        eff["agent"]["state_dir"],
        "/opt/aws/amazon-cloudwatch-publisher/state"
    );
    assert_eq!(eff["metrics"]["namespace"], "System/Default");
    assert_eq!(
        eff["logs"]["log_group_name"],
        "/system/default/{instance_id}"
    );
    assert_eq!(
        eff["logs"]["logs_collected"]["journal"]["log_stream_name"],
        "journal"
    );
    assert!(
        stderr.contains("FILE: valid; instance id rpi-c0ffee"),
        "{stderr}"
    );
}

#[test]
fn example_configs_parse() {
    for name in ["quickstart", "raspberry-pi", "macos", "linux"] {
        let path = repo().join("configs").join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).unwrap();
        // The instance command of a Pi or Mac config cannot run here; check all else.
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["agent"]["instance"]["serial"] = json!("0123abcd");
        let (code, _, stderr) = validate(&v.to_string());
        assert_eq!(code, 0, "configs/{name}.json: {stderr}");
    }
}

#[test]
fn dry_run_prints_put_metric_data_requests_and_needs_nothing() {
    // No credentials, an endpoint nobody listens on, and a log path nobody may write:
    // a dry run must not need any of them.
    let s = Setup::new(
        json!({"agent": {"instance": {"serial": "dry"}, "logfile": "/proc/forbidden/p.log",
        "state_dir": "/proc/forbidden/state", "metrics_collection_interval": 60}}),
    );
    let mut cmd = publisher(Some("http://127.0.0.1:9"));
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION");
    cmd.args(["--dry-run", "--once"]).arg(s.config());
    let out = run(cmd, Duration::from_secs(30));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one request per line: {stdout}");
    let req: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(req["Namespace"], "System/Default");
    let data = req["MetricData"].as_array().unwrap();
    let names: Vec<&str> = data
        .iter()
        .map(|d| d["MetricName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 13, "{names:?}");
    for d in data {
        assert_eq!(
            d["Dimensions"][0],
            json!({"Name": "InstanceId", "Value": "sys-dry"})
        );
        assert_eq!(d["Dimensions"][1]["Name"], "Hostname");
        assert_eq!(d["StorageResolution"], 60);
        assert!(d["Timestamp"].as_str().unwrap().ends_with('Z'));
        assert!(d["Value"].as_f64().unwrap() >= 0.0);
    }
    assert!(
        stderr.contains("Starting."),
        "logs go to stderr in a dry run: {stderr}"
    );
}

#[test]
fn dry_run_keeps_going_until_sigterm() {
    let s = Setup::new(
        json!({"agent": {"instance": {"serial": "dry"}, "metrics_collection_interval": 1}}),
    );
    let mut cmd = publisher(None);
    cmd.arg("--dry-run")
        .arg(s.config())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(4500));
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let rounds = stdout.lines().count();
    assert!(
        (2..=6).contains(&rounds),
        "1 s interval over 4.5 s gives about 4 requests, got {rounds}"
    );
    // Sub-minute intervals are high resolution.
    assert!(stdout.contains("\"StorageResolution\":1"));
}
