//! Log shipping throughput: a pre-written file of 100-byte lines, shipped by the real binary to
//! a fast local endpoint that speaks just enough of PutLogEvents to acknowledge and count
//! events (moto tops out near 100k events/s, far below what is measured here).
//!
//! `cargo bench --bench logs` measures (BENCH_LOG_LINES lines, default 10,736,640, 1 GiB: 1,280 full
//! requests) and prints lines per second acknowledged, CPU-seconds per million lines and peak
//! RSS, with the publisher pinned to one core (CPU 0) and the endpoint kept off it, beside a
//! calibration of that core measured in the same run (SHA-256 throughput from `openssl speed`),
//! so figures from slower days or machines can be told from a slower build. Under
//! `cargo test` it ships 20,000 lines and checks that every one is acknowledged.
//!
//! With BENCH_MULTILINE set, the file is 10-line stack traces and the entry has a
//! `multi_line_start_pattern`: throughput counts lines, joined into a tenth as many events.
//!
//! With BENCH_TIMESTAMP_FORMAT set, every line starts with a time and the entry has a
//! `timestamp_format`, so each event's time is read from its line.
//!
//! With BENCH_SLOW_MS set, the endpoint holds each PutLogEvents answer that long (a slow
//! CloudWatch with the whole file as backlog); the run then lasts BENCH_SLOW_SECONDS (default 30)
//! and reports peak RSS and what was acknowledged by then.
//!
//! With BENCH_FILES=N, the lines are split over N files followed through one pattern, and the
//! endpoint checks every stream's lines arrive in order, each once; with BENCH_DOWN_SECONDS it
//! answers 503 for that long first. The run goes on until every line is acknowledged (also
//! with BENCH_SLOW_MS) and reports peak RSS and whether any file waited for another to finish
//! (the last request of the first file to finish must come after every file's first).

mod support;

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{calibrate, cpu_seconds, pin, pinned};

#[derive(Default)]
struct Counts {
    events: AtomicU64,
    requests: AtomicU64,
    /// Largest PutLogEvents body seen.
    max_body: AtomicU64,
    /// With several files: what each stream's accepted requests held.
    streams: std::sync::Mutex<std::collections::HashMap<String, Stream>>,
    /// Events that came out of order or twice, over all streams.
    disorder: AtomicU64,
    /// PutLogEvents answered 503 while the endpoint is down.
    refused: AtomicU64,
}

#[derive(Default)]
struct Stream {
    /// The number the next line of this stream must carry.
    next: u64,
    /// Indexes (over all accepted requests) of this stream's first and last request.
    first: u64,
    last: u64,
}

/// How the endpoint behaves.
#[derive(Clone, Copy)]
struct Endpoint {
    /// How long each PutLogEvents answer is held.
    delay: Duration,
    /// Until then, PutLogEvents is answered 503.
    down_until: Instant,
    /// Check each stream's lines (several files).
    check: bool,
}

/// Serves one keep-alive connection: every request gets an empty success answer; events in
/// PutLogEvents bodies are counted once answered.
fn serve(stream: TcpStream, counts: Arc<Counts>, endpoint: Endpoint) -> std::io::Result<()> {
    let delay = endpoint.delay;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(1 << 20, stream.try_clone()?);
    let mut writer = stream;
    let mut body = Vec::new();
    let finder = memchr::memmem::Finder::new(b"\"timestamp\"");
    loop {
        let mut length = 0usize;
        let mut target = String::new();
        let mut cbor = false;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            } else if let Some(v) = lower.strip_prefix("x-amz-target:") {
                target = v.trim().to_owned();
            } else if lower.starts_with("smithy-protocol:") {
                cbor = true;
            }
        }
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
        let answer: &[u8] = if cbor {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/cbor\r\nsmithy-protocol: rpc-v2-cbor\r\nContent-Length: 1\r\n\r\n\xa0"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 2\r\n\r\n{}"
        };
        if !target.is_empty() && target.ends_with(".putlogevents") {
            std::thread::sleep(delay);
            if Instant::now() < endpoint.down_until {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                writer.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 63\r\n\r\n{\"__type\":\"ServiceUnavailableException\",\"message\":\"bench down\"}")?;
                continue;
            }
            if endpoint.check {
                check_stream(&body, &counts);
            }
        }
        writer.write_all(answer)?;
        if target.ends_with(".putlogevents") {
            let n = finder.find_iter(&body).count() as u64;
            counts.max_body.fetch_max(length as u64, Ordering::Relaxed);
            counts.requests.fetch_add(1, Ordering::Relaxed);
            counts.events.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Notes an accepted request's stream and checks its lines follow the last ones, each once.
fn check_stream(body: &[u8], counts: &Counts) {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let name = request["logStreamName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let index = counts.requests.load(Ordering::Relaxed);
    let mut streams = counts.streams.lock().unwrap();
    let seen = streams.entry(name).or_insert_with(|| Stream {
        first: index,
        ..Stream::default()
    });
    seen.last = index;
    for e in request["logEvents"].as_array().into_iter().flatten() {
        let n = e["message"]
            .as_str()
            .and_then(|m| m.get(..12))
            .and_then(|d| d.parse::<u64>().ok());
        if n == Some(seen.next) {
            seen.next += 1;
        } else {
            counts.disorder.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// 100-byte lines; with `timestamps`, each starts with a time ("2026-11-30 12:00:00.000 ",
/// a millisecond apart); with `traces`, every tenth does and the nine after it are a stack
/// trace's frames ("\tat ...").
fn write_lines(path: &Path, n: u64, timestamps: bool, traces: bool) {
    let mut f = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut line = [b'x'; 100];
    line[99] = b'\n';
    for i in 0..n {
        let mut at = 0;
        if traces && i % 10 != 0 {
            line[..4].copy_from_slice(b"\tat ");
            at = 4;
        } else if timestamps || traces {
            let ms = i % 86_400_000;
            let stamp = format!(
                "2026-11-30 {:02}:{:02}:{:02}.{:03} ",
                ms / 3_600_000,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            );
            line[..24].copy_from_slice(stamp.as_bytes());
            at = 24;
        }
        let digits = format!("{i:012}");
        line[at..at + 12].copy_from_slice(digits.as_bytes());
        f.write_all(&line).unwrap();
    }
    f.flush().unwrap();
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let lines: u64 = if bench {
        std::env::var("BENCH_LOG_LINES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_736_640)
    } else {
        20_000
    };
    let dir = tempfile::tempdir().unwrap();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    // BENCH_TIMESTAMP_FORMAT: every line starts with its time and the entry reads it.
    let timestamps = std::env::var_os("BENCH_TIMESTAMP_FORMAT").is_some();
    // BENCH_MULTILINE: 10-line stack traces, put together by a multi_line_start_pattern.
    let traces = std::env::var_os("BENCH_MULTILINE").is_some();
    // BENCH_FILES: the lines split over that many files, one pattern for them all.
    let files = env("BENCH_FILES").unwrap_or(1).max(1);
    let file = if files > 1 {
        std::fs::create_dir(dir.path().join("many")).unwrap();
        for f in 0..files {
            let path = dir.path().join(format!("many/f{f:03}.log"));
            write_lines(&path, lines / files, timestamps, traces);
        }
        dir.path().join("many/*.log")
    } else {
        let file = dir.path().join("bench.log");
        write_lines(&file, lines, timestamps, traces);
        file
    };
    let lines = lines / files * files;
    // The last event waits for the quiet that completes it; the run ends before it.
    let events_wanted = if traces { lines / 10 - 1 } else { lines };

    // The endpoint and this process on every core but the first, the publisher on the first.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        pin(&(1..cores).collect::<Vec<_>>()).unwrap();
    }
    // Before anything else runs, so the core is as idle as it will be for the publisher.
    let calibration = bench.then(calibrate);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let counts = Arc::new(Counts::default());
    let slow = Duration::from_millis(env("BENCH_SLOW_MS").unwrap_or(0));
    let slow_for = Duration::from_secs(env("BENCH_SLOW_SECONDS").unwrap_or(30));
    let endpoint = Endpoint {
        delay: slow,
        down_until: Instant::now() + Duration::from_secs(env("BENCH_DOWN_SECONDS").unwrap_or(0)),
        check: files > 1,
    };
    {
        let counts = Arc::clone(&counts);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counts = Arc::clone(&counts);
                std::thread::spawn(move || serve(stream, counts, endpoint));
            }
        });
    }
    let config = serde_json::json!({
        "agent": {"instance": {"prefix": "bench", "serial": "logs"}, "metrics_collection_interval": 3600,
                  "logs_collection_interval": 1, "clock_sync_timeout": 0,
                  "logfile": dir.path().join("publisher.log"), "state_dir": dir.path().join("state")},
        "logs": {"log_group_name": "bench", "logs_collected": {"files": {"collect_list": [
            {"file_path": file, "from_beginning": true}]}}}
    });
    let mut config = config;
    if traces {
        config["logs"]["logs_collected"]["files"]["collect_list"][0]["multi_line_start_pattern"] =
            serde_json::json!("^\\d{4}-\\d{2}-\\d{2} ");
    }
    if timestamps {
        config["logs"]["logs_collected"]["files"]["collect_list"][0]["timestamp_format"] =
            serde_json::json!("%Y-%m-%d %H:%M:%S.%f");
        config["logs"]["logs_collected"]["files"]["collect_list"][0]["timezone"] =
            serde_json::json!("UTC");
    }
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();

    let start = Instant::now();
    let mut child = pinned()
        .arg(&config_path)
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ACCESS_KEY_ID", "bench")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = start + Duration::from_secs(if bench { 600 * files.min(3) } else { 120 });
    let mut first_event = None;
    let mut cpu = 0.0;
    let mut peak_kib = 0;
    while counts.events.load(Ordering::Relaxed) < events_wanted {
        if !slow.is_zero() && files == 1 && start.elapsed() >= slow_for {
            break;
        }
        if first_event.is_none() && counts.events.load(Ordering::Relaxed) > 0 {
            first_event = Some(start.elapsed());
        }
        cpu = cpu_seconds(pid);
        peak_kib = proc_field(pid, "status", "VmHWM:").unwrap_or(peak_kib);
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "only {} of {lines} lines were acknowledged; the publisher's log: {}",
                counts.events.load(Ordering::Relaxed),
                std::fs::read_to_string(dir.path().join("publisher.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    cpu = cpu_seconds(pid).max(cpu);
    peak_kib = proc_field(pid, "status", "VmHWM:").unwrap_or(peak_kib);
    let _ = child.kill();
    let _ = child.wait();

    let events = counts.events.load(Ordering::Relaxed);
    if files > 1 {
        let streams = counts.streams.lock().unwrap();
        let latest_first = streams.values().map(|s| s.first).max().unwrap_or(0);
        let earliest_last = streams.values().map(|s| s.last).min().unwrap_or(0);
        println!(
            "{files} files of {} lines, endpoint down {} s ({} requests refused) then {} ms per PutLogEvents: {events} of {lines} lines acknowledged in {:.0} s",
            lines / files,
            env("BENCH_DOWN_SECONDS").unwrap_or(0),
            counts.refused.load(Ordering::Relaxed),
            slow.as_millis(),
            elapsed.as_secs_f64()
        );
        println!(
            "streams: {}; lines out of order or twice: {}",
            streams.len(),
            counts.disorder.load(Ordering::Relaxed)
        );
        println!(
            "every file's first request (latest: #{latest_first}) before any file's last (earliest: #{earliest_last}): {}",
            latest_first < earliest_last
        );
        println!(
            "peak RSS: {peak_kib} KiB ({:.1} MiB)",
            peak_kib as f64 / 1024.0
        );
        assert_eq!(counts.disorder.load(Ordering::Relaxed), 0);
        assert_eq!(streams.len() as u64, files);
        print_calibration(calibration, None);
        return;
    }
    if !slow.is_zero() {
        let offset =
            std::fs::read_to_string(dir.path().join("state/logs-state.json")).unwrap_or_default();
        println!("slow endpoint ({} ms per PutLogEvents) for {:.0} s: {events} of {lines} lines acknowledged", slow.as_millis(), elapsed.as_secs_f64());
        let saved: serde_json::Value = serde_json::from_str(&offset).unwrap_or_default();
        println!(
            "saved position: offset {}",
            saved["files"][0]["offset"].as_u64().unwrap_or(0)
        );
        println!(
            "peak RSS: {peak_kib} KiB ({:.1} MiB)",
            peak_kib as f64 / 1024.0
        );
        print_calibration(calibration, None);
        return;
    }
    assert_eq!(events, events_wanted, "every line acknowledged once");
    let requests = counts.requests.load(Ordering::Relaxed);
    let max_body = counts.max_body.load(Ordering::Relaxed);
    // Lines in the events acknowledged (a trace's ten lines are one event).
    let events = if traces { events * 10 } else { events };
    println!("lines shipped and acknowledged: {events} in {requests} PutLogEvents requests (largest body {max_body} bytes)");
    println!(
        "wall time from start: {:.2} s (first acknowledgement after {:.2} s)",
        elapsed.as_secs_f64(),
        first_event.unwrap_or_default().as_secs_f64()
    );
    println!(
        "throughput: {:.0} lines/s",
        events as f64 / elapsed.as_secs_f64()
    );
    println!(
        "CPU: {cpu:.2} s = {:.2} CPU-seconds per million lines",
        cpu / (events as f64 / 1e6)
    );
    println!("publisher pinned to one core: {}", cores > 1);
    println!(
        "peak RSS: {peak_kib} KiB ({:.1} MiB)",
        peak_kib as f64 / 1024.0
    );
    print_calibration(calibration, Some(events as f64 / elapsed.as_secs_f64()));
}

fn print_calibration(mb_per_s: Option<f64>, lines_per_s: Option<f64>) {
    let Some(mb_per_s) = mb_per_s else { return };
    println!("calibration: SHA-256 on CPU 0 at {mb_per_s:.0} MB/s (openssl speed -evp sha256, 16 KiB blocks, 3 s)");
    if let Some(lps) = lines_per_s {
        println!(
            "throughput per calibration unit: {:.0} lines/s per GB/s of SHA-256",
            lps / (mb_per_s / 1000.0)
        );
    }
}
