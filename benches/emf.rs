//! Embedded metric format documents shipped per second by the release binary on one core.
//!
//! For each step the publisher starts with `--dry-run` (each PutLogEvents request printed as a
//! JSON line) and an EMF receiver on a loopback port, pinned to CPU 0; this process, on the
//! other cores, sends it documents over TCP (`connections` at once) as fast as they are taken,
//! and reads what it prints until every document is there. Each document goes through the
//! whole durable path: checked, appended to its destination's buffer file, read back by the
//! file reader, batched and printed. Reported: documents/s from the first sent to the last
//! printed, the publisher's CPU seconds per 10,000 documents and its peak RSS.
//!
//! `cargo bench --bench emf`; `BENCH_EMF_DOCUMENTS` sets the count per step (200,000).
//! Under `cargo test` it sends 2,000 a step.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::{calibrate, cpu_seconds, dry_run, pin};

/// A document as aws-embedded-metrics writes one (about 330 bytes).
fn document(n: u64, streams: u64) -> String {
    serde_json::json!({
        "_aws": {"Timestamp": 1_700_000_000_000u64 + n, "LogGroupName": "bench",
                 "LogStreamName": format!("s{}", n % streams),
                 "CloudWatchMetrics": [{"Namespace": "Bench", "Dimensions": [["Service", "Operation"]],
                                        "Metrics": [{"Name": "Latency", "Unit": "Milliseconds"},
                                                    {"Name": "Size", "Unit": "Bytes"}]}]},
        "Service": "shop", "Operation": "checkout", "Latency": (n % 250) as f64 / 2.0,
        "Size": n % 4096, "RequestId": format!("{n:016x}")
    })
    .to_string()
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Starts the publisher on CPU 0 with the EMF receiver on `port`; returns once it listens.
fn start(dir: &std::path::Path, port: u16) -> Child {
    let config = serde_json::json!({
        "agent": {"instance": {"prefix": "bench", "serial": "emf"}, "metrics_collection_interval": 3600,
                  "clock_sync_timeout": 0,
                  "logfile": dir.join("publisher.log"), "state_dir": dir.join("state")},
        "logs": {"force_flush_interval": 1,
                 "metrics_collected": {"emf": {"service_address": format!("tcp://127.0.0.1:{port}"),
                                               "log_group_names": ["bench"]}}}
    });
    let mut child = dry_run(&config, dir);
    // --dry-run logs to standard error.
    let (ready_tx, ready_rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("Receiving embedded metric format documents.") {
                let _ = ready_tx.send(());
            } else if line.contains("ERROR") || line.contains("WARN") && !line.contains("clock") {
                eprintln!("publisher: {line}");
            }
        }
    });
    if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!("the publisher did not start receiving documents");
    }
    child
}

struct Outcome {
    per_second: f64,
    cpu_per_10k: f64,
    rss_kib: u64,
}

fn run(count: u64, connections: u64, streams: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = start(dir.path(), port);
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = 0u64;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                seen += v["logEvents"].as_array().map_or(0, |e| e.len() as u64);
                if seen >= count {
                    let _ = done_tx.send(Instant::now());
                }
            }
        }
    });
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let senders: Vec<_> = (0..connections)
        .map(|c| {
            std::thread::spawn(move || {
                let mut tcp =
                    std::io::BufWriter::new(TcpStream::connect(("127.0.0.1", port)).unwrap());
                for n in (c..count).step_by(connections as usize) {
                    writeln!(tcp, "{}", document(n, streams)).unwrap();
                }
                tcp.flush().unwrap();
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let finished = done_rx
        .recv_timeout(Duration::from_secs(600))
        .expect("every document is printed");
    let cpu = cpu_seconds(pid) - cpu_before;
    let rss_kib = peak_rss_kib(pid).unwrap_or(0);
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    Outcome {
        per_second: count as f64 / (finished - started).as_secs_f64(),
        cpu_per_10k: cpu * 10_000.0 / count as f64,
        rss_kib,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let count: u64 = if bench {
        std::env::var("BENCH_EMF_DOCUMENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200_000)
    } else {
        2_000
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        pin(&(1..cores).collect::<Vec<_>>()).unwrap();
    }
    if bench {
        println!("calibration: {:.0} MB/s", calibrate());
    }
    println!(
        "{count} documents a step, about {} bytes each",
        document(0, 1).len()
    );
    for (connections, streams) in [(1, 1), (4, 1), (4, 8)] {
        let o = run(count, connections, streams);
        println!(
            "{connections} connection(s), {streams} stream(s): {:.0} documents/s, {:.2} CPU-s per 10,000, peak RSS {} KiB",
            o.per_second, o.cpu_per_10k, o.rss_kib
        );
    }
}
