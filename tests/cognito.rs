//! Cognito end to end against moto: a device signs in as its own user, gets credentials from
//! the identity pool, publishes, refreshes them before they expire, and says clearly when its
//! password is wrong — never printing a secret.

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

const PASSWORD: &str = "Dev1ce\"Pass\\word$with-quotes";
/// What moto's GetCredentialsForIdentity hands out.
const MOTO_SECRET_KEY: &str = "ABCSECRETKEY";
const MOTO_SESSION_TOKEN: &str = "ABC12345";

fn device_config(ids: &Value, serial: &str, password: &str, interval: u64) -> Setup {
    let mut auth = ids.clone();
    auth["password"] = json!(password);
    Setup::new(json!({
        "agent": {
            "instance": {"prefix": "rpi", "serial": serial},
            "region": "us-east-1",
            "authentication": auth,
            "metrics_collection_interval": interval,
            "debug": true
        },
        "metrics": {"namespace": "Fleet/Devices"}
    }))
}

/// The publisher with no AWS credentials at all: only Cognito can get it any.
fn device(moto: &Moto) -> std::process::Command {
    let mut cmd = publisher(Some(&moto.url()));
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION");
    cmd
}

fn assert_no_secrets(haystacks: &[&str]) {
    for h in haystacks {
        for secret in [PASSWORD, "Dev1ce", MOTO_SECRET_KEY, MOTO_SESSION_TOKEN] {
            assert!(!h.contains(secret), "a secret ({secret}) was printed:\n{h}");
        }
    }
}

#[test]
fn a_device_signs_in_with_its_password_and_its_metrics_land() {
    let moto = Moto::start();
    let ids = moto.cognito_setup(&["rpi-c0ffee01"], PASSWORD);
    let s = device_config(&ids, "c0ffee01", PASSWORD, 300);
    let mut cmd = device(&moto);
    cmd.arg("--once").arg(s.config());
    let out = run(cmd, Duration::from_secs(60));
    let (stdout, stderr) = text(&out);
    let log = s.log();
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{log}");
    let calls = moto.calls();
    for op in [
        "InitiateAuth",
        "GetId",
        "GetCredentialsForIdentity",
        "PutMetricData",
    ] {
        assert_eq!(calls.get(op), Some(&1), "{op} once: {calls:?}");
    }
    let data = moto.metrics();
    assert_eq!(data.len(), 13);
    assert!(data
        .iter()
        .all(|d| d.namespace == "Fleet/Devices" && d.dimensions["InstanceId"] == "rpi-c0ffee01"));
    assert!(log.contains("Signed in to Cognito"), "{log}");
    assert!(
        log.contains("DEBUG"),
        "debug logging is on, and still nothing secret shows"
    );
    assert_no_secrets(&[&stdout, &stderr, &log]);
}

#[test]
fn a_wrong_password_is_reported_clearly_and_nothing_is_lost() {
    let moto = Moto::start();
    let ids = moto.cognito_setup(&["rpi-bad00001"], PASSWORD);
    let s = device_config(&ids, "bad00001", "Not-The-Password-1", 300);
    std::fs::set_permissions(
        s.config(),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut cmd = device(&moto);
    cmd.arg("--once").arg(s.config());
    let out = run(cmd, Duration::from_secs(60));
    let (stdout, stderr) = text(&out);
    let log = s.log();
    assert_eq!(out.status.code(), Some(75), "{stderr}\n{log}");
    assert!(
        log.contains("Cognito refused the password of user rpi-bad00001")
            && log.contains("NotAuthorizedException"),
        "the log says why: {log}"
    );
    assert!(!log.contains("Not-The-Password-1") && !stderr.contains("Not-The-Password-1"));
    assert_no_secrets(&[&stdout, &stderr, &log]);
    assert_eq!(moto.calls().get("PutMetricData"), None);
    assert_eq!(s.spool_files(), 1, "the round waits in the spool");
    assert!(
        !log.contains("chmod 600"),
        "a config only its owner can read is fine: {log}"
    );
}

#[test]
fn an_unknown_user_is_reported_and_the_daemon_keeps_running() {
    let moto = Moto::start();
    let ids = moto.cognito_setup(&["rpi-known001"], PASSWORD);
    let s = device_config(&ids, "unknown1", PASSWORD, 1);
    let mut cmd = device(&moto);
    cmd.arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the daemon keeps running: {}",
        s.log()
    );
    signal(&child, libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15)).code(),
        Some(0)
    );
    let log = s.log();
    assert!(log.contains("there is no user rpi-unknown1"), "{log}");
    // Failed sign-ins back off instead of hammering Cognito every round.
    let attempts = moto.calls().get("InitiateAuth").copied().unwrap_or(0);
    assert!(
        (1..=4).contains(&attempts),
        "{attempts} sign-in attempts in 5 s of 1 s rounds"
    );
}

#[test]
fn credentials_are_refreshed_before_they_expire() {
    // moto's credentials expire 90 s after issue; run past that with 5 s rounds. The id token
    // is reported to live 125 s, so it is due for renewal (2 min before expiry) by the time
    // new credentials are needed, and the refresh token must be used.
    let moto = Moto::start();
    moto.token_lifetime(125);
    let ids = moto.cognito_setup(&["rpi-f00d0001"], PASSWORD);
    let s = device_config(&ids, "f00d0001", PASSWORD, 5);
    let mut cmd = device(&moto);
    cmd.arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = now_ms();
    let mut child = cmd.spawn().unwrap();
    moto.wait_for_metrics(Duration::from_secs(150), |m| {
        m.iter().any(|d| d.timestamp_ms > start + 100_000)
    });
    signal(&child, libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15)).code(),
        Some(0)
    );
    let calls = moto.calls();
    assert!(
        calls.get("GetCredentialsForIdentity").copied().unwrap_or(0) >= 2,
        "{calls:?}"
    );
    assert_eq!(
        calls.get("GetId"),
        Some(&1),
        "the identity is kept: {calls:?}"
    );
    let log = s.log();
    assert!(
        log.contains("Refreshed AWS credentials from Cognito"),
        "{log}"
    );
    assert!(
        !log.contains("Cannot publish"),
        "no round failed for lack of credentials: {log}"
    );
    // Every round arrived: no gap at the expiry.
    let rounds = moto
        .metrics()
        .iter()
        .filter(|d| d.name == "CPUCount")
        .count();
    assert!(rounds >= 20, "{rounds} rounds in over 100 s of 5 s rounds");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_no_secrets(&[&log, &stderr]);
}
