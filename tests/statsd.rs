//! StatsD from real clients (the `statsd` package from PyPI, and `nc -u`) through the publisher
//! to moto: counters, gauges, timings and sets, their statistic sets and values with counts,
//! tags as dimensions; malformed lines; and an outage with a restart in the middle, after
//! which everything received arrives once.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;

const NAMESPACE: &str = "Own/App";

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Collections every second, a data point every `aggregation` seconds.
fn config(port: u16, aggregation: u64) -> serde_json::Value {
    json!({
        "agent": {"debug": true},
        // Sent as soon as each interval ends (the agent's default waits up to a minute).
        "metrics": {"namespace": NAMESPACE, "force_flush_interval": 1, "metrics_collected": {"statsd": {
            "service_address": format!(":{port}"),
            "metrics_collection_interval": 1,
            "metrics_aggregation_interval": aggregation
        }}}
    })
}

fn start(s: &Setup, moto: &Moto) -> std::process::Child {
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config());
    start_ready(cmd).0
}

/// Runs a Python script with the test environment's Python (which has the statsd client).
fn python(script: &str) {
    let out = Command::new(support::python())
        .args(["-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ours(datums: &[Datum], name: &str) -> Vec<Datum> {
    datums
        .iter()
        .filter(|d| d.namespace == NAMESPACE && d.name == name)
        .cloned()
        .collect()
}

/// The sum over a metric's statistic sets (counters, gauges and sets arrive as those).
fn stat_sum(datums: &[Datum], name: &str) -> f64 {
    ours(datums, name)
        .iter()
        .map(|d| d.statistics.as_ref().map_or(d.value, |s| s.sum))
        .sum()
}

/// A timing's values with how often each came (moto stores values and counts as that many
/// single values).
fn values(datums: &[Datum], name: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for d in ours(datums, name) {
        assert!(
            d.statistics.is_none(),
            "{name} went as a statistic set: {d:?}"
        );
        *out.entry(d.value.to_string()).or_default() += 1;
    }
    out
}

#[test]
fn a_client_library_and_nc_arrive_as_statistic_sets_and_values_with_counts() {
    let moto = Moto::start();
    let port = free_udp_port();
    let s = Setup::new(config(port, 2));
    let mut child = start(&s, &moto);

    python(&format!(
        r#"
import statsd
c = statsd.StatsClient("127.0.0.1", {port}, prefix="app")
for _ in range(10):
    c.incr("requests")
c.incr("requests", 5)
c.gauge("queue", 7)
c.gauge("queue", 3, delta=True)
for v in (10, 10, 20, 30):
    c.timing("db.query", v)
c.set("users", "alice")
c.set("users", "bob")
c.set("users", "alice")
with c.pipeline() as p:
    p.incr("batched")
    p.incr("batched")
    p.timing("db.query", 30)
"#
    ));
    nc_udp(
        port,
        "sensor.temp:21.5|g|#room:attic\nsensor.reads:2|c|@0.5|#room:attic,primary\nthis is not statsd\n",
    );

    let want = [
        "app_requests",
        "app_queue",
        "app_db_query",
        "app_users",
        "app_batched",
        "sensor_temp",
        "sensor_reads",
    ];
    moto.wait_for_metrics(Duration::from_secs(30), |d| {
        want.iter().all(|n| !ours(d, n).is_empty())
    });
    // What came after may still be in a later interval: wait for the totals.
    let datums = moto.wait_for_metrics(Duration::from_secs(15), |d| {
        stat_sum(d, "app_requests") >= 15.0 && values(d, "app_db_query").len() == 3
    });
    let log = s.log();
    assert_eq!(stat_sum(&datums, "app_requests"), 15.0, "{log}");
    assert_eq!(stat_sum(&datums, "app_batched"), 2.0);
    // Sample rate 0.5: each increment stands for two.
    assert_eq!(stat_sum(&datums, "sensor_reads"), 4.0);
    let requests = &ours(&datums, "app_requests")[0];
    assert!(requests.statistics.is_some(), "{requests:?}");
    assert_eq!(requests.unit.as_deref(), Some("Count"));
    assert_eq!(
        requests.dimensions,
        [
            ("host".to_owned(), hostname()),
            ("metric_type".to_owned(), "counter".to_owned())
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(requests.timestamp_ms % 2000, 0, "aligned to the interval");
    // The gauge: 7, then 3 more.
    let queue = ours(&datums, "app_queue");
    assert_eq!(queue.last().unwrap().statistics.as_ref().unwrap().max, 10.0);
    // Timings: every value with its count, in milliseconds.
    assert_eq!(
        values(&datums, "app_db_query"),
        [("10", 2), ("20", 1), ("30", 2)]
            .into_iter()
            .map(|(v, n)| (v.to_owned(), n))
            .collect()
    );
    let query = &ours(&datums, "app_db_query")[0];
    assert_eq!(query.unit.as_deref(), Some("Milliseconds"));
    assert_eq!(query.dimensions["metric_type"], "timing");
    // A set counts distinct members in each collection interval.
    let most = ours(&datums, "app_users")
        .iter()
        .map(|d| d.statistics.as_ref().unwrap().max)
        .fold(0.0, f64::max);
    assert_eq!(most, 2.0, "{:?}", ours(&datums, "app_users"));
    // DogStatsD tags are dimensions; a tag without a value gets the agent's "<empty>".
    let reads = &ours(&datums, "sensor_reads")[0];
    assert_eq!(reads.dimensions["room"], "attic");
    assert_eq!(reads.dimensions["primary"], "<empty>");
    let temp = &ours(&datums, "sensor_temp")[0];
    assert_eq!(temp.statistics.as_ref().unwrap().max, 21.5);
    assert_eq!(temp.dimensions["metric_type"], "gauge");

    // The line that is not StatsD is told of with an example, and the listener goes on.
    wait_until(
        "the malformed line is logged",
        Duration::from_secs(10),
        || s.log().contains("Ignored StatsD lines"),
    );
    assert!(s.log().contains("this is not statsd"), "{}", s.log());
    nc_udp(port, "after.garbage:1|c\n");
    wait_until(
        "a line after the garbage arrives",
        Duration::from_secs(15),
        || !ours(&moto.metrics(), "after_garbage").is_empty(),
    );
    stop_gracefully(&mut child, &s);
}

#[test]
fn what_was_received_survives_an_outage_and_a_restart_and_arrives_once() {
    let moto = Moto::start();
    let port = free_udp_port();
    // Ten seconds an interval: the stop comes in the middle of one.
    let s = Setup::new(config(port, 10));
    moto.fail_next("PutMetricData", 100_000, 500, "InternalFailure");
    let mut child = start(&s, &moto);

    nc_udp(port, &"outage.hits:1|c\n".repeat(60));
    // At least one interval is spooled while CloudWatch fails...
    s.wait_for_spool_files(1, Duration::from_secs(30));
    // ...and the interval in progress is handed over at the stop, and spooled too.
    nc_udp(port, &"outage.hits:1|c\n".repeat(40));
    stop_gracefully(&mut child, &s);
    assert!(
        s.log()
            .contains("Handing over the StatsD metrics of the interval so far"),
        "{}",
        s.log()
    );
    assert!(ours(&moto.metrics(), "outage_hits").is_empty());

    moto.fail_next("PutMetricData", 0, 500, "InternalFailure");
    let mut child = start(&s, &moto);
    let datums = moto.wait_for_metrics(Duration::from_secs(30), |d| {
        stat_sum(d, "outage_hits") >= 100.0
    });
    assert_eq!(stat_sum(&datums, "outage_hits"), 100.0, "{}", s.log());
    // Give a second delivery, if any, the time to arrive; there must be none.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stat_sum(&moto.metrics(), "outage_hits"), 100.0);
    assert_eq!(s.spool_files(), 0);
    stop_gracefully(&mut child, &s);
}

#[test]
fn a_port_in_use_is_an_error_at_start() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let moto = Moto::start();
    let s = Setup::new(config(port, 2));
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config());
    let out = run(cmd, Duration::from_secs(30));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot receive StatsD on udp://127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_receive_buffer_the_kernel_caps_is_said() {
    let moto = Moto::start();
    let port = free_udp_port();
    let mut config = config(port, 2);
    // 5 GB asked: more than any net.core.rmem_max gives.
    config["metrics"]["metrics_collected"]["statsd"]["allowed_pending_messages"] =
        json!(10_000_000);
    let s = Setup::new(config);
    let mut child = start(&s, &moto);
    assert!(
        s.log()
            .contains("smaller receive buffer than allowed_pending_messages asks for"),
        "{}",
        s.log()
    );
    stop_gracefully(&mut child, &s);
}

#[test]
fn one_value_cloudwatch_refuses_never_drops_the_others() {
    let moto = Moto::start();
    // One name CloudWatch refuses for a reason the publisher cannot know beforehand.
    moto.refuse_metric("refused_there");
    let port = free_udp_port();
    let s = Setup::new(config(port, 1));
    let mut child = start(&s, &moto);
    // Outside what CloudWatch takes (|v| over 2^360, or under 2^-260 but 0): a value too
    // large, one too small, a counter whose sum grows too large, and one whose sample rate
    // scales it too large.
    nc_udp(
        port,
        "good.count:1|c\ngood.gauge:2|g\ngood.zero:0|g\ngood.small:1e-70|g\n\
         huge:1e200|g\ntiny:1e-200|g\n\
         summed:1e108|c\nsummed:1e108|c\nsummed:1e108|c\n\
         scaled:1e100|c|@0.000000001\n\
         refused_there:1|c\ngood.timing:3|ms\n",
    );
    let good = [
        "good_count",
        "good_gauge",
        "good_zero",
        "good_small",
        "good_timing",
    ];
    moto.wait_for_metrics(Duration::from_secs(30), |d| {
        good.iter().all(|name| !ours(d, name).is_empty())
    });
    std::thread::sleep(Duration::from_secs(3));
    stop_gracefully(&mut child, &s);
    let datums = moto.metrics();
    for name in ["huge", "tiny", "scaled", "refused_there"] {
        assert!(ours(&datums, name).is_empty(), "{name} reached CloudWatch");
    }
    assert_eq!(stat_sum(&datums, "good_count"), 1.0);
    // The third value would have made the sum too large: the first two are kept.
    assert_eq!(stat_sum(&datums, "summed"), 2e108);
    let log = s.log();
    assert!(
        log.contains("refused_there") && log.contains("dropped"),
        "the datum CloudWatch refused is named: {log}"
    );
    assert!(log.contains("Ignored StatsD lines"), "{log}");
}

#[test]
fn a_stop_ends_in_time_while_datagrams_flood_in_and_the_last_interval_is_kept() {
    let moto = Moto::start();
    let port = free_udp_port();
    // A long aggregation interval: what was received is handed over at the stop.
    let s = Setup::new(config(port, 60));
    let mut child = start(&s, &moto);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let floods: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if socket.send_to(b"flood:1|c", ("127.0.0.1", port)).is_ok() {
                        sent += 1;
                    }
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let asked = std::time::Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let took = asked.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent: u64 = floods.into_iter().map(|f| f.join().unwrap()).sum();
    assert!(status.success(), "{status}\n{}", s.log());
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    // The interval so far was handed over and published.
    let counted = stat_sum(&moto.metrics(), "flood");
    assert!(
        counted > 0.0 && counted <= sent as f64,
        "{counted} of {sent} datagrams counted"
    );
}
