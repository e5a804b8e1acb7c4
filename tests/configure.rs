//! `configure` through a real terminal (expect gives it a pty): the questions appear, the
//! password is not echoed, the config is written 0600 with the answers and the instance id is
//! shown; answers from a file (as `provision` writes them) with no terminal; other settings
//! kept; answers that do not validate leave the old config alone (exit 78).

#![cfg(feature = "configure")]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::*;

const PASSWORD: &str = "Typed\"Pa$$w0rd\\not-echoed";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn configure_asks_on_a_terminal_hides_the_password_and_writes_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("etc/publisher.json");
    let (ok, out, seen) = answer_on_a_terminal(
        "$env(BIN) configure $env(CONFIG)",
        &[("BIN", BIN.as_ref()), ("CONFIG", config.as_os_str())],
        "00000000FEEDBEEF",
        PASSWORD,
    );
    assert!(ok, "configure failed: {out}\n{seen}");
    for shown in [
        "AWS region to publish to",
        "Cognito user pool id:",
        "Password of this device's Cognito user:",
        "Instance id prefix [rpi]:",
        "HTTP(S) proxy for AWS calls",
        "instance id is rpi-00000000feedbeef",
    ] {
        assert!(seen.contains(shown), "{shown:?} not shown: {seen}");
    }
    assert!(!seen.contains("Typed"), "the password was echoed: {seen}");
    assert_eq!(mode(&config), 0o600);
    let written: Value = serde_json::from_str(&read(&config)).unwrap();
    assert_eq!(written["agent"]["region"], "eu-west-1");
    assert_eq!(written["agent"]["instance"]["prefix"], "rpi");
    assert_eq!(written["agent"]["authentication"]["password"], PASSWORD);
    assert_eq!(
        written["agent"]["authentication"]["appClientId"],
        "1example23456789"
    );
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// configure run as root must not run, as root, a command the config's owner (the service
/// user, who may edit it) put in it: it runs as that owner, as the publisher itself does.
#[test]
fn the_serial_command_of_a_config_root_does_not_own_runs_as_its_owner() {
    support::deb::need_root();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("publisher.json");
    let planted = json!({"agent": {"region": "us-east-1",
        "instance": {"prefix": "rpi", "command": "id -u"}}});
    std::fs::write(&config, planted.to_string()).unwrap();
    std::os::unix::fs::chown(&config, Some(65534), Some(65534)).unwrap();
    let answers = dir.path().join("device.preseed");
    let p = "amazon-cloudwatch-publisher";
    std::fs::write(&answers, format!("{p} {p}/region string eu-central-1\n")).unwrap();
    let out = Command::new(BIN)
        .arg("configure")
        .arg(&config)
        .arg("--answers")
        .arg(&answers)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("instance id is rpi-65534"), "{stderr}");
}

#[test]
fn answers_from_a_file_keep_other_settings_and_bad_answers_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("publisher.json");
    // An existing config with settings the questions do not cover.
    let before = json!({
        "agent": {"region": "us-east-1", "instance": {"prefix": "old", "serial": "0001"},
                  "metrics_collection_interval": 120},
        "logs": {"log_group_name": "/system/test", "logs_collected": {"journal": true}}
    });
    std::fs::write(&config, before.to_string()).unwrap();
    // Owned by the service user (nobody here): run as root, configure keeps that owner.
    support::deb::need_root();
    std::os::unix::fs::chown(&config, Some(65534), Some(65534)).unwrap();
    let answers = dir.path().join("device.preseed");
    let p = "amazon-cloudwatch-publisher";
    std::fs::write(
        &answers,
        format!(
            "{p} {p}/region string eu-central-1\n{p} {p}/account_id string 123456789012\n\
             {p} {p}/user_pool_id string eu-central-1_AbC\n\
             {p} {p}/identity_pool_id string eu-central-1:0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b\n\
             {p} {p}/app_client_id string client\n{p} {p}/password password {PASSWORD}\n\
             {p} {p}/instance_prefix string mac\n{p} {p}/serial_command string echo 'C02XYZ'\n\
             {p} {p}/proxy string http://proxyuser:Pr0xyPw@proxy.example:3128\n"
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("configure")
        .arg(&config)
        .arg("--answers")
        .arg(&answers)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("instance id is mac-c02xyz"), "{stderr}");
    assert!(!stderr.contains("Pa$$"), "{stderr}");
    assert!(!stderr.contains("Pr0xyPw"), "{stderr}");
    let after: Value = serde_json::from_str(&read(&config)).unwrap();
    assert_eq!(
        after["agent"]["proxy"],
        "http://proxyuser:Pr0xyPw@proxy.example:3128"
    );
    assert_eq!(after["agent"]["region"], "eu-central-1");
    assert_eq!(after["agent"]["authentication"]["password"], PASSWORD);
    assert_eq!(after["agent"]["metrics_collection_interval"], 120);
    assert_eq!(after["logs"], before["logs"]);
    assert_eq!(after["agent"]["instance"].get("serial"), None);
    assert_eq!(mode(&config), 0o600);
    let meta = std::fs::metadata(&config).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "the owner is kept"
    );

    // A region that is not one: the config is not replaced.
    let kept = read(&config);
    std::fs::write(&answers, format!("{p} {p}/region string mars-1\n")).unwrap();
    let out = Command::new(BIN)
        .arg("configure")
        .arg(&config)
        .arg("--answers")
        .arg(&answers)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("agent.region") && stderr.contains("not written"),
        "{stderr}"
    );
    assert_eq!(read(&config), kept);
}
