//! The service manager's notify protocol, against a socket the test listens on as systemd
//! would: READY with a status line, WATCHDOG spacing, STOPPING, and no WATCHDOG once a
//! pipeline is stuck.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;

fn spawn(s: &Setup, sock: &NotifySocket, watchdog_usec: u64, extra: &[(&str, &str)]) -> Child {
    // Nothing listens on this endpoint: readiness must not wait for the network.
    let mut cmd = publisher(Some(&format!("http://127.0.0.1:{}", free_port())));
    cmd.arg(s.config())
        .env("NOTIFY_SOCKET", &sock.path)
        .env("WATCHDOG_USEC", watchdog_usec.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    // WATCHDOG_PID is not set, so the watchdog applies to whoever reads the variable.
    cmd.spawn().unwrap()
}

fn config() -> serde_json::Value {
    json!({"agent": {"instance": {"prefix": "test", "serial": "notify"}, "metrics_collection_interval": 5}})
}

#[test]
fn ready_without_network_then_watchdog_twice_a_period_then_stopping() {
    let sock = NotifySocket::bind();
    let s = Setup::new(config());
    let start = Instant::now();
    let mut p = spawn(&s, &sock, 2_000_000, &[]);
    let got = sock.collect(start, Duration::from_secs(30), |m| {
        m.iter().filter(|(_, t)| t.contains("WATCHDOG=1")).count() >= 6
    });
    let ready = got
        .iter()
        .find(|(_, t)| t.contains("READY=1"))
        .expect("READY=1");
    assert!(
        ready.0 < Duration::from_secs(10),
        "ready promptly: {:?}",
        ready.0
    );
    assert!(
        ready
            .1
            .contains("STATUS=test-notify: metrics to System/Default every 5s"),
        "{ready:?}"
    );
    let dogs: Vec<Duration> = got
        .iter()
        .filter(|(_, t)| t.contains("WATCHDOG=1"))
        .map(|m| m.0)
        .collect();
    assert!(dogs.len() >= 6, "{got:?}");
    for w in dogs.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(500) && gap <= Duration::from_millis(1900),
            "WATCHDOG=1 every half period (1 s): {gap:?} in {got:?}"
        );
    }
    // With nothing listening, the metrics fail and the status says so.
    let mut seen = got.clone();
    if !seen.iter().any(|(_, t)| t.contains("not accepted")) {
        seen.extend(sock.collect(start, Duration::from_secs(40), |m| {
            m.iter().any(|(_, t)| t.contains("not accepted"))
        }));
    }
    assert!(
        seen.iter()
            .any(|(_, t)| t.contains("STATUS=") && t.contains("not accepted")),
        "{seen:?}"
    );

    signal(&p, libc::SIGTERM);
    let end = sock.collect(start, Duration::from_secs(10), |m| {
        m.iter().any(|(_, t)| t.contains("STOPPING=1"))
    });
    assert!(wait_exit(&mut p, Duration::from_secs(30)).success());
    assert!(end.iter().any(|(_, t)| t.contains("STOPPING=1")), "{end:?}");
}

#[test]
fn a_stuck_pipeline_stops_the_watchdog() {
    let sock = NotifySocket::bind();
    let s = Setup::new(config());
    let start = Instant::now();
    let mut p = spawn(
        &s,
        &sock,
        2_000_000,
        &[("CLOUDWATCH_PUBLISHER_TEST_STALL_SAMPLING", "1")],
    );
    // Sampling starts 1 s after start and never returns; a few seconds later (the watchdog
    // period, at least three missed beats) the watchdog is no longer fed.
    let got = sock.collect(start, Duration::from_secs(12), |_| false);
    signal(&p, libc::SIGKILL);
    let _ = p.wait();
    assert!(got.iter().any(|(_, t)| t.contains("READY=1")), "{got:?}");
    let late: Vec<_> = got
        .iter()
        .filter(|(at, t)| t.contains("WATCHDOG=1") && *at > Duration::from_secs(7))
        .collect();
    assert!(late.is_empty(), "watchdog fed while stuck: {late:?}");
    assert!(
        s.log().contains("no progress") && s.log().contains("task=metrics"),
        "{}",
        s.log()
    );
}

fn gone(pid: i32) -> bool {
    // A daemon's parent is init, which may reap it late: a zombie counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn daemon_mode_detaches_writes_its_pid_and_logs_to_the_system_log() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let syslog_path = dir.path().join("log.sock");
    let syslog = UnixDatagram::bind(&syslog_path).unwrap();
    syslog
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let s = Setup::new(config());
    let pid_file = dir.path().join("publisher.pid");

    let mut cmd = publisher(Some(&moto.url()));
    cmd.args(["--daemon", "--pid-file"])
        .arg(&pid_file)
        .arg(s.config())
        .env("CLOUDWATCH_PUBLISHER_SYSLOG_SOCKET", &syslog_path);
    let out = run(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{:?}", text(&out));
    let pid: i32 = read(&pid_file)
        .trim()
        .parse()
        .expect("a pid in the pid file");
    assert!(!gone(pid), "the background process runs");
    moto.wait_for_metrics(Duration::from_secs(30), |m| !m.is_empty());

    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline && !lines.iter().any(|l: &String| l.contains("Starting.")) {
        if let Ok(n) = syslog.recv(&mut buf) {
            lines.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let starting = lines
        .iter()
        .find(|l| l.contains("Starting."))
        .unwrap_or_else(|| panic!("{lines:?}"));
    // Facility daemon (3), severity info (6).
    assert!(starting.starts_with("<30>"), "{starting}");
    assert!(
        starting.contains(&format!("amazon-cloudwatch-publisher[{pid}]")),
        "{starting}"
    );

    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gone(pid) {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!pid_file.exists(), "the pid file is removed on exit");

    // A bad config is reported before detaching, where someone sees it.
    std::fs::write(s.config(), "{\"agent\": {\"debug\": 1}}").unwrap();
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg("--daemon").arg(s.config());
    let out = run(cmd, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(78));
    assert!(text(&out).1.contains("agent.debug"), "{:?}", text(&out));
}
