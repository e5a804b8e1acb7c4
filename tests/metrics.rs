//! Host metrics against moto's CloudWatch: what arrives, how soon, and that an outage or a
//! restart loses nothing.

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use support::*;

const NAMES: [&str; 13] = [
    "CPUUtilization",
    "CPUCount",
    "MemoryUtilization",
    "MemoryUsed",
    "MemoryAvailable",
    "DiskReadBytes",
    "DiskWriteBytes",
    "DiskReadOps",
    "DiskWriteOps",
    "NetworkIn",
    "NetworkOut",
    "NetworkPacketsIn",
    "NetworkPacketsOut",
];

fn unit_of(name: &str) -> &'static str {
    match name {
        "CPUUtilization" | "MemoryUtilization" => "Percent",
        "CPUCount" => "Count",
        "MemoryUsed" | "MemoryAvailable" => "Bytes",
        "DiskReadBytes" | "DiskWriteBytes" | "NetworkIn" | "NetworkOut" => "Bytes/Second",
        _ => "Count/Second",
    }
}

#[test]
fn once_publishes_the_thirteen_metrics_with_units_dimensions_and_plausible_values() {
    let moto = Moto::start();
    let s = Setup::new(
        json!({"agent": {"instance": {"prefix": "test", "serial": "m1"}, "metrics_collection_interval": 300},
        "metrics": {"namespace": "Test/Metrics"}}),
    );
    let before = now_ms();
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg("--once").arg(s.config());
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out).1, s.log());

    let data = moto.metrics();
    let names: BTreeSet<&str> = data.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, NAMES.into_iter().collect(), "exactly the 13 metrics");
    assert_eq!(data.len(), 13, "one round");
    let host = hostname();
    for d in &data {
        assert_eq!(d.namespace, "Test/Metrics");
        assert_eq!(d.unit.as_deref(), Some(unit_of(&d.name)), "{}", d.name);
        assert_eq!(
            d.dimensions.get("InstanceId").map(String::as_str),
            Some("test-m1")
        );
        assert_eq!(d.dimensions.get("Hostname"), Some(&host));
        assert_eq!(d.dimensions.len(), 2);
        assert!(d.value.is_finite() && d.value >= 0.0, "{d:?}");
        assert!(
            d.timestamp_ms >= before - 1000 && d.timestamp_ms <= now_ms(),
            "sample time, not some other time: {d:?}"
        );
    }
    let get = |n: &str| data.iter().find(|d| d.name == n).unwrap().value;
    let cpus = std::thread::available_parallelism().unwrap().get() as f64;
    assert_eq!(get("CPUCount"), cpus);
    assert!(get("CPUUtilization") <= 100.0);
    assert!(get("MemoryUtilization") > 0.0 && get("MemoryUtilization") < 100.0);
    assert!(get("MemoryUsed") > 1e6 && get("MemoryAvailable") > 1e6);
    assert!(
        get("NetworkIn") < 1e10 && get("DiskWriteBytes") < 1e11,
        "rates, not cumulative counters"
    );
    assert!(
        s.log().contains("Stopped."),
        "the publisher's own log is written: {}",
        s.log()
    );
    assert_eq!(
        moto.calls().get("PutMetricData.rejected"),
        None,
        "requests stay within CloudWatch's limits"
    );
}

#[test]
fn daemon_sends_the_first_datapoint_promptly_and_stops_cleanly_on_sigterm() {
    let moto = Moto::start();
    let s = Setup::new(
        json!({"agent": {"instance": {"serial": "d1"}, "metrics_collection_interval": 300}}),
    );
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // A 300 s interval, yet the first round arrives within seconds of start.
    moto.wait_for_metrics(Duration::from_secs(20), |m| m.len() >= 13);
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", s.log());
    let log = s.log();
    assert!(
        log.contains("Shutting down") && log.contains("Stopped."),
        "{log}"
    );
    assert_eq!(s.spool_files(), 0);
}

#[test]
fn sigint_during_an_outage_keeps_the_data_in_the_spool() {
    let port = free_port();
    let s = Setup::new(
        json!({"agent": {"instance": {"serial": "i1"}, "metrics_collection_interval": 1}}),
    );
    let mut cmd = publisher(Some(&format!("http://127.0.0.1:{port}")));
    cmd.arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    s.wait_for_spool_files(1, Duration::from_secs(30));
    signal(&child, libc::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "{}", s.log());
    assert!(s.spool_files() >= 1);
    assert!(s.log().contains("kept them in the spool"), "{}", s.log());
}

#[test]
fn metrics_from_an_outage_arrive_with_their_original_timestamps() {
    let port = free_port();
    let s = Setup::new(
        json!({"agent": {"instance": {"serial": "o1"}, "metrics_collection_interval": 2}}),
    );
    let mut cmd = publisher(Some(&format!("http://127.0.0.1:{port}")));
    cmd.arg(s.config())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let started = now_ms();
    let mut child = cmd.spawn().unwrap();
    // CloudWatch is down: rounds go to the spool.
    s.wait_for_spool_files(3, Duration::from_secs(60));
    let back = now_ms();
    let moto = Moto::start_on(port);
    let data = moto.wait_for_metrics(Duration::from_secs(60), |m| {
        m.iter()
            .filter(|d| d.name == "CPUCount")
            .filter(|d| d.timestamp_ms < back)
            .count()
            >= 3
    });
    signal(&child, libc::SIGTERM);
    assert_eq!(
        wait_exit(&mut child, Duration::from_secs(15)).code(),
        Some(0)
    );
    let during: Vec<i64> = data
        .iter()
        .filter(|d| d.name == "CPUCount" && d.timestamp_ms < back)
        .map(|d| d.timestamp_ms)
        .collect();
    assert!(during.iter().all(|t| *t >= started), "{during:?}");
    let distinct: BTreeSet<i64> = during.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        during.len(),
        "each spooled round is sent once"
    );
    // Every spooled round was sent whole: 13 datums for each timestamp.
    for t in &distinct {
        assert_eq!(data.iter().filter(|d| d.timestamp_ms == *t).count(), 13);
    }
    let log = s.log();
    assert!(
        log.contains("CloudWatch accepts metrics again") && log.contains("Sending spooled metrics"),
        "{log}"
    );
    assert_eq!(moto.calls().get("PutMetricData.rejected"), None);
}

#[test]
fn spooled_metrics_are_sent_after_a_restart() {
    let port = free_port();
    let s = Setup::new(
        json!({"agent": {"instance": {"serial": "r1"}, "metrics_collection_interval": 60}}),
    );
    let url = format!("http://127.0.0.1:{port}");
    // First run: CloudWatch unreachable. --once says so and keeps the round on disk.
    let mut cmd = publisher(Some(&url));
    cmd.arg("--once").arg(s.config());
    let out = run(cmd, Duration::from_secs(90));
    assert_eq!(
        out.status.code(),
        Some(75),
        "EX_TEMPFAIL when not accepted: {}",
        text(&out).1
    );
    assert!(
        text(&out).1.contains("not everything was accepted"),
        "{}",
        text(&out).1
    );
    assert_eq!(s.spool_files(), 1);
    let first_round = now_ms();
    std::thread::sleep(Duration::from_millis(1100));

    // Second run, CloudWatch back: both rounds arrive, the first with its own time.
    let moto = Moto::start_on(port);
    let mut cmd = publisher(Some(&url));
    cmd.arg("--once").arg(s.config());
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}\n{}", text(&out).1, s.log());
    let data = moto.metrics();
    let times: BTreeSet<i64> = data.iter().map(|d| d.timestamp_ms).collect();
    assert_eq!(times.len(), 2, "{times:?}");
    assert!(*times.first().unwrap() < first_round && *times.last().unwrap() > first_round);
    assert_eq!(data.len(), 26);
    assert_eq!(
        s.spool_files(),
        0,
        "the spool is emptied once CloudWatch accepted it"
    );
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let moto = Moto::start();
    let s = Setup::new(
        json!({"agent": {"instance": {"serial": "t1"}, "metrics_collection_interval": 60}}),
    );
    for (status, code) in [(400, "ThrottlingException"), (503, "ServiceUnavailable")] {
        moto.fail_next("PutMetricData", 2, status, code);
        let mut cmd = publisher(Some(&moto.url()));
        cmd.arg("--once").arg(s.config());
        let out = run(cmd, Duration::from_secs(60));
        assert_eq!(
            out.status.code(),
            Some(0),
            "{code}: {}\n{}",
            text(&out).1,
            s.log()
        );
    }
    let calls = moto.calls();
    assert_eq!(calls.get("PutMetricData.failed"), Some(&4), "{calls:?}");
    assert_eq!(
        calls.get("PutMetricData"),
        Some(&6),
        "two failures, then success, twice: {calls:?}"
    );
    assert_eq!(moto.metrics().len(), 26);
    assert_eq!(s.spool_files(), 0);
}

#[test]
fn a_datum_refused_as_invalid_is_dropped_alone_and_not_retried_forever() {
    let moto = Moto::start();
    let s = Setup::new(
        json!({"agent": {"instance": {"serial": "v1"}, "metrics_collection_interval": 60}}),
    );
    moto.refuse_metric("MemoryUtilization");
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg("--once").arg(s.config());
    let out = run(cmd, Duration::from_secs(60));
    assert_eq!(
        out.status.code(),
        Some(75),
        "not all accepted: {}",
        text(&out).1
    );
    let names: Vec<String> = moto.metrics().into_iter().map(|d| d.name).collect();
    assert!(
        !names.is_empty() && !names.iter().any(|n| n == "MemoryUtilization"),
        "the others arrive, the refused one not: {names:?}"
    );
    assert!(names.iter().any(|n| n == "CPUUtilization"), "{names:?}");
    // Halves down to the one datum: a few requests, not one per datum, and none again.
    let calls = moto.calls().get("PutMetricData").copied().unwrap_or(0);
    assert!((2..=12).contains(&calls), "{calls} requests");
    assert_eq!(s.spool_files(), 0, "nor spooling");
    let log = s.log();
    assert!(
        log.contains("refused this metric datum as invalid") && log.contains("MemoryUtilization"),
        "{log}"
    );
}

#[test]
fn a_stop_while_many_requests_wait_on_a_slow_network_ends_in_time_and_spools_them() {
    let moto = Moto::start();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = udp.local_addr().unwrap().port();
    drop(udp);
    let s = Setup::new(json!({
        "agent": {"debug": true, "metrics_collection_interval": 3600},
        "metrics": {"namespace": "Own/Slow", "force_flush_interval": 1, "metrics_collected": {"statsd": {
            "service_address": format!("udp://127.0.0.1:{port}"),
            "metrics_collection_interval": 1, "metrics_aggregation_interval": 1}}}
    }));
    // Every PutMetricData hangs for a minute, as on a link that drops packets.
    moto.delay("PutMetricData", 60.0);
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config());
    let (mut child, _sock) = start_ready(cmd);
    // Five requests' worth of metrics.
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in (0..5000).collect::<Vec<u32>>().chunks(500) {
        let lines: String = chunk.iter().map(|i| format!("m{i:04}:1|c\n")).collect();
        sender
            .send_to(lines.as_bytes(), ("127.0.0.1", port))
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(3));
    let asked = std::time::Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let took = asked.elapsed();
    assert!(status.success(), "{status}\n{}", s.log());
    // One grace for all requests in flight, not one each.
    assert!(took < Duration::from_secs(12), "the stop took {took:?}");
    // Nothing lost: with the network back, a restart sends the spool.
    moto.delay("PutMetricData", 0.0);
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config());
    let (mut child, _sock) = start_ready(cmd);
    let data = moto.wait_for_metrics(Duration::from_secs(90), |d| {
        d.iter()
            .filter(|d| d.namespace == "Own/Slow")
            .map(|d| d.name.as_str())
            .collect::<BTreeSet<_>>()
            .len()
            == 5000
    });
    stop_gracefully(&mut child, &s);
    let sum: f64 = data
        .iter()
        .filter(|d| d.namespace == "Own/Slow")
        .map(|d| d.statistics.as_ref().map_or(d.value, |s| s.sum))
        .sum();
    assert!(sum >= 5000.0, "{sum}");
}
