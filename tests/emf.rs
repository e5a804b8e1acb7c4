//! Embedded metric format documents from a real client (`aws-embedded-metrics` from PyPI, over
//! TCP) and from `nc -u`, through the publisher to moto: each lands in its log group and
//! stream, sent with the `x-amzn-logs-format: json/emf` header; an invalid document still
//! arrives, as a plain event, and is said once; documents in a file whose entry says `emf`;
//! and an outage with a restart in the middle, after which every document arrives once.

mod support;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn config(port: u16, extra_logs: Value) -> Value {
    let mut logs = json!({
        "log_group_name": "default-group",
        "force_flush_interval": 1,
        // The groups these tests' documents name; any other goes to the default group.
        "metrics_collected": {"emf": {"service_address": format!(":{port}"),
            "log_group_names": ["shop-*", "legacy-group", "outage", "big", "rotated", "times"]}}
    });
    if let (Some(l), Some(extra)) = (logs.as_object_mut(), extra_logs.as_object()) {
        l.extend(extra.clone());
    }
    json!({"agent": {"debug": true}, "logs": logs})
}

fn start(s: &Setup, moto: &Moto) -> std::process::Child {
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config());
    start_ready(cmd).0
}

/// A document as the embedded metric format specification shows one.
fn document(group: &str, n: u32) -> String {
    json!({
        "_aws": {"Timestamp": now_ms(), "LogGroupName": group,
                 "CloudWatchMetrics": [{"Namespace": "Own", "Dimensions": [["Service"]],
                                        "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"}]}]},
        "Service": "shop", "Latency": n, "n": n
    })
    .to_string()
}

/// The streams PutLogEvents reached with the EMF header, and without.
fn header_by_stream(moto: &Moto) -> Vec<(String, String, Option<String>)> {
    let mut out: Vec<(String, String, Option<String>)> = moto
        .put_log_events()
        .iter()
        .map(|p| {
            (
                p["group"].as_str().unwrap_or_default().to_owned(),
                p["stream"].as_str().unwrap_or_default().to_owned(),
                p["logs_format"].as_str().map(str::to_owned),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn documents_from_the_client_library_and_nc_reach_their_group_with_the_emf_header() {
    let moto = Moto::start();
    let port = free_port();
    let s = Setup::new(config(port, json!({})));
    let mut child = start(&s, &moto);

    let script = r#"
from aws_embedded_metrics import metric_scope

@metric_scope
def handler(metrics):
    metrics.set_namespace("Own/Shop")
    metrics.put_dimensions({"Operation": "checkout"})
    metrics.put_metric("Latency", 42, "Milliseconds")
    metrics.set_property("order", "o-1")

for _ in range(3):
    handler()
"#;
    let out = Command::new(python())
        .args(["-c", script])
        .env("AWS_EMF_ENVIRONMENT", "default")
        .env("AWS_EMF_AGENT_ENDPOINT", format!("tcp://127.0.0.1:{port}"))
        .env("AWS_EMF_LOG_GROUP_NAME", "shop-metrics")
        .env("AWS_EMF_LOG_STREAM_NAME", "checkout")
        .env("AWS_EMF_SERVICE_NAME", "shop")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // UDP: the older top-level group, a document naming no group, and one that is not EMF.
    let legacy = json!({"log_group_name": "legacy-group", "log_stream_name": "udp",
        "_aws": {"Timestamp": now_ms(), "CloudWatchMetrics": [{"Namespace": "Own",
        "Dimensions": [[]], "Metrics": [{"Name": "Hits"}]}]}, "Hits": 1})
    .to_string();
    let bad_unit = json!({"_aws": {"Timestamp": now_ms(), "LogGroupName": "legacy-group",
        "LogStreamName": "udp", "CloudWatchMetrics": [{"Namespace": "Own", "Dimensions": [[]],
        "Metrics": [{"Name": "Hits", "Unit": "Hitz"}]}]}, "Hits": 2})
    .to_string();
    nc_udp(
        port,
        &format!(
            "{legacy}\n{bad_unit}\n{}\n{}\n",
            document("", 7),
            document("not-allowed", 8)
        ),
    );

    let shop = moto.wait_for_messages("shop-metrics", "checkout", Duration::from_secs(30), |m| {
        m.len() == 3
    });
    for doc in &shop {
        let v: Value = serde_json::from_str(doc).unwrap();
        assert_eq!(v["Latency"], 42);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Own/Shop");
    }
    let udp = moto.wait_for_messages("legacy-group", "udp", Duration::from_secs(30), |m| {
        m.len() == 2
    });
    assert_eq!(udp, [legacy, bad_unit]);
    // A document naming no group goes to logs.log_group_name, in the instance's stream (a
    // destination of its own, read by a reader of its own: it may come a moment later).
    wait_until(
        "the default group's document",
        Duration::from_secs(30),
        || {
            moto.log_events("default-group")
                .values()
                .any(|events| !events.is_empty())
        },
    );
    // So does one naming a group the config does not allow, counted and said.
    wait_until(
        "the default group's documents",
        Duration::from_secs(30),
        || {
            moto.log_events("default-group")
                .values()
                .any(|e| e.len() == 2)
        },
    );
    let default = moto.log_events("default-group");
    assert_eq!(default.len(), 1, "{default:?}");
    let events = default.values().next().unwrap();
    assert!(events[0].1.contains("\"n\":7") && events[1].1.contains("\"n\":8"));
    assert!(!moto.log_groups().contains_key("not-allowed"));

    let headers = header_by_stream(&moto);
    assert!(
        headers.iter().all(|h| h.2.as_deref() == Some("json/emf")),
        "every request carries the EMF header: {headers:?}"
    );
    assert!(headers
        .iter()
        .any(|h| h.0 == "shop-metrics" && h.1 == "checkout"));
    // The invalid one is said, with the reason.
    let log = s.log();
    assert!(
        log.contains("not valid embedded metric format") && log.contains("Hitz"),
        "{log}"
    );
    // The events carry the documents' own times.
    let (ts, _) = &moto.log_events("shop-metrics")["checkout"][0];
    let v: Value = serde_json::from_str(&shop[0]).unwrap();
    assert_eq!(Some(*ts), v["_aws"]["Timestamp"].as_i64());
    stop_gracefully(&mut child, &s);
    let log = s.log();
    assert!(
        log.contains("naming a log group the config does not allow") && log.contains("documents=1"),
        "{log}"
    );
}

/// Buffer files (current and rotated) under the state directory.
fn buffer_files(s: &Setup) -> usize {
    let Ok(dirs) = std::fs::read_dir(s.dir.path().join("state/emf")) else {
        return 0;
    };
    dirs.flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|f| f.file_name().to_string_lossy().starts_with("events.jsonl"))
        .count()
}

/// Documents in the current buffer files under the state directory.
fn buffered(s: &Setup) -> usize {
    let Ok(dirs) = std::fs::read_dir(s.dir.path().join("state/emf")) else {
        return 0;
    };
    dirs.flatten()
        .map(|d| read(&d.path().join("events.jsonl")).lines().count())
        .sum()
}

#[test]
fn documents_received_survive_an_outage_and_a_restart_and_arrive_once() {
    let moto = Moto::start();
    let port = free_port();
    let s = Setup::new(config(port, json!({"log_stream_name": "device"})));
    moto.fail_next("PutLogEvents", 100_000, 500, "ServiceUnavailableException");
    let mut child = start(&s, &moto);
    let sent: Vec<String> = (0..50).map(|n| document("outage", n)).collect();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for d in &sent[..30] {
        writeln!(tcp, "{d}").unwrap();
    }
    drop(tcp);
    nc_udp(port, &(sent[30..].join("\n") + "\n"));
    // Every document is on disk, in its destination's buffer, before it is sent.
    wait_until(
        "the documents are buffered",
        Duration::from_secs(30),
        || buffered(&s) == 50,
    );
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut child, &s);
    assert!(moto.messages("outage", "device").is_empty());

    moto.fail_next("PutLogEvents", 0, 500, "ServiceUnavailableException");
    let mut child = start(&s, &moto);
    let got = moto.wait_for_messages("outage", "device", Duration::from_secs(30), |m| {
        m.len() >= 50
    });
    std::thread::sleep(Duration::from_secs(2));
    // Each once (TCP's and UDP's documents may interleave).
    let mut got_sorted = moto.messages("outage", "device");
    got_sorted.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got_sorted, want);
    assert_eq!(got.len(), 50);
    stop_gracefully(&mut child, &s);
}

#[test]
fn a_file_entry_marked_emf_is_sent_with_the_header_and_its_documents_checked() {
    let moto = Moto::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.log");
    std::fs::write(&file, "").unwrap();
    let s = Setup::new(json!({
        "agent": {"debug": true},
        "logs": {"log_group_name": "files", "force_flush_interval": 1, "logs_collected": {"files": {
            "collect_list": [{"file_path": file, "log_stream_name": "emf", "emf": true}]}}}
    }));
    let mut child = start(&s, &moto);
    wait_until("the file is followed", Duration::from_secs(30), || {
        s.log().contains("Shipping log file")
    });
    append_lines(
        &file,
        &[
            document("ignored", 1),
            "not json".into(),
            document("ignored", 2),
        ],
    );
    moto.wait_for_messages("files", "emf", Duration::from_secs(30), |m| m.len() == 3);
    assert_eq!(
        header_by_stream(&moto),
        [("files".into(), "emf".into(), Some("json/emf".into()))]
    );
    let log = s.log();
    assert_eq!(
        log.matches("A line that is not valid embedded metric format")
            .count(),
        1,
        "{log}"
    );
    stop_gracefully(&mut child, &s);
}

#[test]
fn a_buffer_is_rotated_and_removed_once_delivered_and_nothing_is_lost() {
    let moto = Moto::start();
    let port = free_port();
    let s = Setup::new(config(port, json!({"log_stream_name": "device"})));
    let mut child = start(&s, &moto);
    // Past the size at which a buffer is rotated (1 MiB).
    let first: Vec<String> = (0..5000).map(|n| document("big", n)).collect();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for d in &first {
        writeln!(tcp, "{d}").unwrap();
    }
    tcp.flush().unwrap();
    moto.wait_for_messages("big", "device", Duration::from_secs(60), |m| {
        m.len() == 5000
    });
    // Rotated, and the rotated file removed once delivered; the new file is followed too.
    wait_until(
        "the delivered buffer is rotated away",
        Duration::from_secs(10),
        || buffered(&s) == 0 && buffer_files(&s) == 1,
    );
    let later: Vec<String> = (5000..5010).map(|n| document("big", n)).collect();
    for d in &later {
        writeln!(tcp, "{d}").unwrap();
    }
    drop(tcp);
    let got = moto.wait_for_messages("big", "device", Duration::from_secs(30), |m| {
        m.len() >= 5010
    });
    assert_eq!(got, [first, later].concat());
    assert_eq!(buffered(&s), 10, "the buffer holds only what came after");
    stop_gracefully(&mut child, &s);
}

#[test]
fn a_document_stamped_far_ahead_is_refused_alone_and_the_next_keep_their_own_times() {
    let moto = Moto::start();
    let port = free_port();
    let s = Setup::new(config(port, json!({})));
    let mut child = start(&s, &moto);
    let stamped = |ts: i64, n: u32| {
        json!({"_aws": {"Timestamp": ts, "LogGroupName": "times", "LogStreamName": "s",
            "CloudWatchMetrics": [{"Namespace": "Own", "Dimensions": [[]],
            "Metrics": [{"Name": "Hits"}]}]}, "Hits": n})
        .to_string()
    };
    let now = now_ms();
    let year_ahead = now + 365 * 86_400_000;
    let docs = [
        stamped(now - 3_000, 0),
        // A clock far ahead on the sender's side: CloudWatch takes nothing over 2 hours ahead.
        stamped(year_ahead, 1),
        stamped(now - 2_000, 2),
        stamped(now - 1_000, 3),
    ];
    nc_udp(port, &(docs.join("\n") + "\n"));
    let events = |m: &Moto| m.log_events("times").remove("s").unwrap_or_default();
    wait_until("three documents arrive", Duration::from_secs(30), || {
        events(&moto).len() >= 3
    });
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut child, &s);
    let want = vec![
        (now - 3_000, docs[0].clone()),
        (now - 2_000, docs[2].clone()),
        (now - 1_000, docs[3].clone()),
    ];
    assert_eq!(events(&moto), want, "each at its own time");
    let log = s.log();
    assert!(log.contains("too_new=1"), "{log}");
}

#[test]
fn a_restart_soon_after_a_buffer_was_rotated_sends_the_rotated_buffers_rest_first() {
    let moto = Moto::start();
    let port = free_port();
    let s = Setup::new(config(port, json!({"log_stream_name": "device"})));
    moto.fail_next(
        "PutLogEvents",
        1_000_000,
        500,
        "ServiceUnavailableException",
    );
    let mut child = start(&s, &moto);
    // Past the size at which a buffer is rotated (1 MiB), then a few more into the new one.
    let sent: Vec<String> = (0..5010).map(|n| document("rotated", n)).collect();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for d in &sent[..5000] {
        writeln!(tcp, "{d}").unwrap();
    }
    tcp.flush().unwrap();
    wait_until("the buffer is rotated", Duration::from_secs(30), || {
        buffer_files(&s) == 2
    });
    for d in &sent[5000..] {
        writeln!(tcp, "{d}").unwrap();
    }
    drop(tcp);
    // The reader finishes the rotated buffer (nothing of it delivered) and opens the new one.
    wait_until(
        "the rotated buffer is finished",
        Duration::from_secs(30),
        || s.log().contains("Finished the old log file"),
    );
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut child, &s);
    assert!(moto.messages("rotated", "device").is_empty());

    moto.fail_next("PutLogEvents", 0, 500, "ServiceUnavailableException");
    let mut child = start(&s, &moto);
    moto.wait_for_messages("rotated", "device", Duration::from_secs(60), |m| {
        m.len() >= sent.len()
    });
    std::thread::sleep(Duration::from_secs(2));
    stop_gracefully(&mut child, &s);
    assert_eq!(moto.messages("rotated", "device"), sent);
}

/// An embedded metric format buffer whose `destination.json` a power cut (or anything else) left
/// unreadable is not given up: its documents are still delivered, to the destination they were
/// buffered for, rebuilt at start from what the documents name and the default destination or,
/// when the defaults changed meanwhile, as soon as the receiver takes a document for it again.
mod damaged_destination {
    use std::io::Write;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::support::*;
    use serde_json::{json, Value};

    fn config(port: u16) -> Value {
        json!({"agent": {"debug": true}, "logs": {
            "log_group_name": "default-group",
            "log_stream_name": "device",
            "force_flush_interval": 1,
            "metrics_collected": {"emf": {"service_address": format!(":{port}"),
                "log_group_names": ["kept"]}}
        }})
    }

    fn start(s: &Setup, moto: &Moto) -> std::process::Child {
        let mut cmd = publisher(Some(&moto.url()));
        cmd.arg(s.config());
        start_ready(cmd).0
    }

    /// A document naming `group` (none when empty), numbered `n`.
    fn document(group: &str, n: u32) -> String {
        let mut aws = json!({"Timestamp": now_ms(), "CloudWatchMetrics": [{"Namespace": "Own",
            "Dimensions": [[]], "Metrics": [{"Name": "Hits"}]}]});
        if !group.is_empty() {
            aws["LogGroupName"] = json!(group);
        }
        json!({"_aws": aws, "Hits": n}).to_string()
    }

    /// The buffer folders under the state directory.
    fn buffers(s: &Setup) -> Vec<PathBuf> {
        std::fs::read_dir(s.dir.path().join("state/emf"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Sends `docs` over TCP while CloudWatch Logs refuses everything, waits until they are
    /// buffered, stops, and leaves each buffer's destination.json as `damage` makes it.
    fn buffer_during_an_outage(s: &Setup, moto: &Moto, port: u16, docs: &[String], damage: &str) {
        moto.fail_next("PutLogEvents", 100_000, 500, "ServiceUnavailableException");
        let mut child = start(s, moto);
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        for d in docs {
            writeln!(tcp, "{d}").unwrap();
        }
        drop(tcp);
        wait_until(
            "the documents are buffered",
            Duration::from_secs(30),
            || {
                buffers(s)
                    .iter()
                    .map(|b| read(&b.join("events.jsonl")).lines().count())
                    .sum::<usize>()
                    == docs.len()
            },
        );
        stop_gracefully(&mut child, s);
        for b in buffers(s) {
            let destination = b.join("destination.json");
            let whole = read(&destination);
            let damaged = match damage {
                "truncated" => whole[..whole.len() / 2].to_owned(),
                "empty" => String::new(),
                _ => "\0\0\0\0garbage".to_owned(),
            };
            std::fs::write(&destination, damaged).unwrap();
        }
        moto.fail_next("PutLogEvents", 0, 500, "ServiceUnavailableException");
    }

    #[test]
    fn a_buffer_whose_destination_file_is_damaged_is_still_delivered_to_its_destination() {
        for damage in ["truncated", "empty", "garbage"] {
            let moto = Moto::start();
            let port = free_port();
            let s = Setup::new(config(port));
            // Named by their documents (the stream is the default one), and the default destination.
            let kept: Vec<String> = (0..20).map(|n| document("kept", n)).collect();
            let default: Vec<String> = (0..5).map(|n| document("", n)).collect();
            let sent = [kept.clone(), default.clone()].concat();
            buffer_during_an_outage(&s, &moto, port, &sent, damage);

            let mut child = start(&s, &moto);
            moto.wait_for_messages("kept", "device", Duration::from_secs(30), |m| m.len() >= 20);
            moto.wait_for_messages("default-group", "device", Duration::from_secs(30), |m| {
                m.len() >= 5
            });
            std::thread::sleep(Duration::from_secs(2));
            assert_eq!(moto.messages("kept", "device"), kept, "{damage}");
            assert_eq!(
                moto.messages("default-group", "device"),
                default,
                "{damage}"
            );
            // Rebuilt, so the next start finds them as well.
            let mut targets: Vec<Value> = buffers(&s)
                .iter()
                .map(|b| {
                    serde_json::from_str(&read(&b.join("destination.json")))
                        .unwrap_or_else(|e| panic!("{damage}: {e}"))
                })
                .collect();
            targets.sort_by_key(|t| t["group"].as_str().map(str::to_owned));
            assert_eq!(
                targets,
                [
                    json!({"group": "default-group", "stream": "device"}),
                    json!({"group": "kept", "stream": "device"})
                ]
            );
            stop_gracefully(&mut child, &s);
        }
    }

    #[test]
    fn a_damaged_buffer_of_a_former_default_destination_is_delivered_with_its_next_document() {
        let moto = Moto::start();
        let port = free_port();
        let s = Setup::new(config(port));
        let sent: Vec<String> = (0..20).map(|n| document("", n)).collect();
        buffer_during_an_outage(&s, &moto, port, &sent, "truncated");

        // The default stream changed: nothing at start tells the buffer's destination, which is
        // said, and the buffer waits on disk.
        let mut changed: Value = serde_json::from_str(&read(&s.config())).unwrap();
        changed["logs"]["log_stream_name"] = json!("elsewhere");
        std::fs::write(s.config(), changed.to_string()).unwrap();
        let mut child = start(&s, &moto);
        wait_until(
            "the damaged buffer is said",
            Duration::from_secs(30),
            || s.log().contains("ERROR") && s.log().contains("destination cannot be read"),
        );
        let mut last: Value = serde_json::from_str(&document("default-group", 20)).unwrap();
        last["_aws"]["LogStreamName"] = json!("device");
        let last = last.to_string();
        nc_udp(port, &format!("{last}\n"));
        moto.wait_for_messages("default-group", "device", Duration::from_secs(30), |m| {
            m.len() >= 21
        });
        std::thread::sleep(Duration::from_secs(2));
        let mut want = sent.clone();
        want.push(last);
        assert_eq!(moto.messages("default-group", "device"), want);
        stop_gracefully(&mut child, &s);
    }
}

#[test]
fn destinations_refused_for_good_are_parked_starve_no_other_and_arrive_once_allowed() {
    let moto = Moto::start();
    // The device's role may not write these groups.
    moto.deny_log_groups("denied-*");
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let (good, denied) = (dir.path().join("good.log"), dir.path().join("denied.log"));
    std::fs::write(&good, "").unwrap();
    std::fs::write(&denied, "").unwrap();
    let s = Setup::new(json!({
        "agent": {"debug": true},
        "logs": {"log_group_name": "default-group", "log_stream_name": "device",
            "force_flush_interval": 1, "memory_budget_mib": 2,
            "logs_collected": {"files": {"collect_list": [
                {"file_path": good, "log_group_name": "good", "log_stream_name": "good"},
                {"file_path": denied, "log_group_name": "denied-file", "log_stream_name": "denied"}
            ]}},
            "metrics_collected": {"emf": {"service_address": format!(":{port}"),
                "log_group_names": ["denied-*"]}}}
    }));
    // A runtime directory, as under systemd: the status file is written every few seconds.
    let runtime = tempfile::tempdir().unwrap();
    let mut cmd = publisher(Some(&moto.url()));
    cmd.arg(s.config()).env("RUNTIME_DIRECTORY", runtime.path());
    let mut child = start_ready(cmd).0;
    wait_until("both files are followed", Duration::from_secs(30), || {
        s.log().matches("Shipping log file").count() == 2
    });
    // More than the whole memory budget (2 MiB) for the refused file...
    let pad = "x".repeat(200);
    let denied_lines: Vec<String> = (0..15_000)
        .map(|n| format!("denied {n:05} {pad}"))
        .collect();
    append_lines(&denied, &denied_lines);
    // ...and 64 embedded metric format destinations refused too.
    let docs: Vec<String> = (0..64 * 20)
        .map(|n| document(&format!("denied-emf-{:02}", n % 64), n))
        .collect();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for d in &docs {
        writeln!(tcp, "{d}").unwrap();
    }
    drop(tcp);
    // The other file keeps flowing meanwhile.
    let good_lines: Vec<String> = (0..200).map(|n| format!("good {n:03}")).collect();
    for chunk in good_lines.chunks(10) {
        append_lines(&good, chunk);
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = moto.wait_for_messages("good", "good", Duration::from_secs(20), |m| {
        m.len() >= good_lines.len()
    });
    assert_eq!(got, good_lines);
    // Each refused destination is said once and shown by status.
    wait_until(
        "the refused destinations are parked",
        Duration::from_secs(30),
        || s.log().matches("it is parked").count() == 65,
    );
    wait_until("status shows them parked", Duration::from_secs(30), || {
        read(&runtime.path().join("status.json"))
            .matches("parked_until_ms")
            .count()
            == 65
    });

    // Once the role may write them, everything parked arrives, once and in order.
    moto.deny_log_groups("");
    let got = moto.wait_for_messages("denied-file", "denied", Duration::from_secs(150), |m| {
        m.len() >= denied_lines.len()
    });
    assert_eq!(got, denied_lines);
    for g in 0..64 {
        let group = format!("denied-emf-{g:02}");
        let got =
            moto.wait_for_messages(&group, "device", Duration::from_secs(60), |m| m.len() >= 20);
        let want: Vec<&String> = docs.iter().skip(g).step_by(64).collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), want, "{group}");
    }
    stop_gracefully(&mut child, &s);
    assert_eq!(s.log().matches("it is parked").count(), 65);
}

/// Sends numbered documents to `port` over TCP until `stop` is set; returns how many were
/// written.
fn stream_documents(
    port: u16,
    group: &'static str,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if writeln!(tcp, "{}", document(group, n)).is_err() {
                break;
            }
            n += 1;
        }
        n
    })
}

#[test]
fn a_stop_ends_in_time_while_a_client_keeps_streaming_and_what_was_taken_arrives() {
    let moto = Moto::start();
    let port = free_port();
    let s = Setup::new(config(port, json!({"log_stream_name": "device"})));
    let mut child = start(&s, &moto);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = stream_documents(port, "rotated", stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let asked = std::time::Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let took = asked.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = client.join().unwrap();
    assert!(status.success(), "{status}\n{}", s.log());
    // The grace for requests in flight, the drain, and a moment.
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    // What was taken is delivered or on disk: after a restart, documents 0..k arrive, once,
    // in order, with no gap.
    let on_disk = newest_buffered(&s);
    let mut child = start(&s, &moto);
    let got = moto.wait_for_messages("rotated", "device", Duration::from_secs(60), |m| {
        m.last() == on_disk.as_ref()
    });
    stop_gracefully(&mut child, &s);
    assert!(!got.is_empty() && got.len() <= written as usize);
    let want: Vec<String> = (0..got.len() as u32)
        .map(|n| document("rotated", n))
        .collect();
    let numbers = |docs: &[String]| -> Vec<u64> {
        docs.iter()
            .map(|d| {
                serde_json::from_str::<Value>(d).unwrap()["n"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(numbers(&got), numbers(&want));
}

/// The last document taken: the last line of the current buffer file.
fn newest_buffered(s: &Setup) -> Option<String> {
    let dirs = std::fs::read_dir(s.dir.path().join("state/emf")).ok()?;
    dirs.flatten()
        .filter_map(|d| {
            read(&d.path().join("events.jsonl"))
                .lines()
                .last()
                .map(str::to_owned)
        })
        .next()
}

#[test]
fn a_stop_ends_in_time_while_datagrams_flood_in() {
    let moto = Moto::start();
    let port = free_port();
    let s = Setup::new(config(port, json!({"log_stream_name": "device"})));
    let mut child = start(&s, &moto);
    // Several senders flooding the port as fast as they can.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let floods: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let doc = document("rotated", 1);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = socket.send_to(doc.as_bytes(), ("127.0.0.1", port));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let asked = std::time::Instant::now();
    signal(&child, libc::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let took = asked.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in floods {
        f.join().unwrap();
    }
    assert!(status.success(), "{status}\n{}", s.log());
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
}
