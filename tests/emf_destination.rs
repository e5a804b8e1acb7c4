//! An embedded metric format buffer whose `destination.json` a power cut (or anything else) left
//! unreadable is not given up: its documents are still delivered, to the destination they were
//! buffered for, rebuilt at start from what the documents name and the default destination or,
//! when the defaults changed meanwhile, as soon as the receiver takes a document for it again.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;

fn config(port: u16) -> Value {
    json!({"agent": {"debug": true}, "logs": {
        "log_group_name": "default-group",
        "log_stream_name": "device",
        "force_flush_interval": 1,
        "metrics_collected": {"emf": {"service_address": format!(":{port}")}}
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
