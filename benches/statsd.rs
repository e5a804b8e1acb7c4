//! StatsD throughput: datagrams received and aggregated by the real binary on one core, and
//! whether the kernel dropped any at the socket.
//!
//! Each step starts the release binary with `--dry-run` (PutMetricData requests printed as
//! JSON lines on standard output) and a StatsD listener on a free loopback port, pinned to one
//! core (CPU 0), and sends it datagrams of one line each from a thread on the other core,
//! paced to a rate or as fast as the sender can go. Once the socket's queue is empty it reads
//! the socket's drop counter (`/proc/net/udp`), the publisher's CPU time and peak RSS, stops it
//! with SIGTERM (it hands over the interval so far) and adds up what came out: a counter's
//! `StatisticValues.Sum`, a timing's `Counts`. Received/sent must be 1 where the kernel dropped
//! nothing.
//!
//! `cargo bench --bench statsd` runs the steps below with BENCH_STATSD_DATAGRAMS datagrams each
//! (default 1,000,000) and prints, per step: what was sent and at what rate, what came out,
//! the datagrams/s received and aggregated (from the first send until the socket's queue was
//! empty), the kernel's drops, the socket's receive buffer as the publisher logged it and the
//! most it held (sampled every 2 ms), the publisher's CPU-seconds per million datagrams,
//! datagrams per wake-up (its voluntary context switches) and its peak RSS; then the highest
//! rate without a drop, beside a calibration of CPU 0 measured first (SHA-256 throughput from
//! `openssl speed`). Steps:
//!
//! - `bench.hits:1|c` at 100k, 200k and 400k datagrams/s, then unpaced;
//! - a mix (three in four are counters over 50 tag sets, `bench.hits:1|c|#route:/r7,code:200`,
//!   one in four timings over 10, `bench.latency:12.5|ms|#route:/r3`, 250 distinct values) at
//!   200k/s, then unpaced;
//! - the counter at 200k/s with `allowed_pending_messages` 416: the receive buffer a kernel
//!   with the default `net.core.rmem_max` (212,992) gives whatever is asked;
//! - saturated, counter and mix: one sending core cannot outrun the publisher (the kernel's
//!   loopback delivery runs on the sender's core), so the publisher is stopped (SIGSTOP), its
//!   socket's queue filled to about 80 % of the buffer, and the publisher continued and timed
//!   until the queue is empty, over and over until the datagrams are sent: the rate one busy
//!   core empties the queue at.
//!
//! BENCH_STATSD_RATES (e.g. `150000,300000,0`; 0 is unpaced) replaces the counter steps.
//! Under `cargo test` it sends 20,000 of each kind at 20,000/s and checks that every datagram
//! is either published or counted as dropped by the kernel.

mod support;

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use amazon_cloudwatch_publisher::sources::statsd::kernel_drops;
use support::{calibrate, cpu_seconds, dry_run, pin};

/// Datagrams handed to one `sendmmsg`: the most a paced sender sends at once.
const BATCH: usize = 32;

/// What is sent.
#[derive(Clone, Copy, PartialEq)]
enum Workload {
    /// `bench.hits:1|c`, every datagram the same.
    Counter,
    /// Counters over 50 tag sets and timings over 10, three to one.
    Mixed,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Counter => "counter",
            Workload::Mixed => "mix",
        }
    }

    /// The datagrams sent, over and over.
    fn datagrams(self) -> Vec<Vec<u8>> {
        match self {
            Workload::Counter => vec![b"bench.hits:1|c".to_vec()],
            Workload::Mixed => {
                let mut out = Vec::new();
                let (mut counters, mut timings) = (0, 0);
                for i in 0..1000 {
                    if i % 4 == 3 {
                        let value = (timings * 7) % 500;
                        out.push(
                            format!("bench.latency:{value}.5|ms|#route:/r{}", timings % 10)
                                .into_bytes(),
                        );
                        timings += 1;
                    } else {
                        let code = if counters % 10 == 0 { 500 } else { 200 };
                        out.push(
                            format!("bench.hits:1|c|#route:/r{},code:{code}", counters % 50)
                                .into_bytes(),
                        );
                        counters += 1;
                    }
                }
                out
            }
        }
    }
}

struct Step {
    workload: Workload,
    /// Datagrams a second; 0 is as fast as the sender goes.
    rate: u64,
    /// `allowed_pending_messages`; None leaves the default (10,000).
    pending: Option<u64>,
}

struct Outcome {
    sent: u64,
    /// Counter increments and timing values published.
    counted: u64,
    timings_sent: u64,
    timings_counted: u64,
    send_seconds: f64,
    /// From the first send until the socket's queue was empty.
    drain_seconds: f64,
    drops: u64,
    receive_buffer: u64,
    /// The most the socket's queue held (bytes, as the kernel counts them), sampled.
    peak_queue: u64,
    cpu: f64,
    /// Times the publisher went to sleep (and was woken) while it ran.
    wakeups: u64,
    peak_kib: u64,
}

/// The receive queue of the UDP socket bound to `port`, in bytes (`/proc/net/udp`).
fn receive_queue(port: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let local = f.get(1)?.rsplit_once(':')?.1;
        if u16::from_str_radix(local, 16).ok()? != port {
            return None;
        }
        u64::from_str_radix(f.get(4)?.split_once(':')?.1, 16).ok()
    })
}

/// A number of the publisher's `/proc/PID/status`, e.g. `VmHWM:` (KiB).
fn status_field(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Times the publisher's threads went to sleep (voluntary context switches, all threads).
fn sleeps(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let text = std::fs::read_to_string(t.path().join("status")).ok()?;
            text.lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .sum()
}

/// Sends `count` datagrams from the cycle `datagrams` on the connected `socket`, at `rate` a
/// second (0: as fast as it goes), at most [`BATCH`] at once.
fn send(socket: &UdpSocket, datagrams: &[Vec<u8>], count: u64, rate: u64) {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut batch: Vec<&[u8]> = Vec::with_capacity(BATCH);
    while sent < count {
        let due = if rate == 0 {
            count
        } else {
            (start.elapsed().as_nanos() as u64)
                .saturating_mul(rate)
                .checked_div(1_000_000_000)
                .unwrap_or(0)
                .min(count)
        };
        if due <= sent {
            std::hint::spin_loop();
            continue;
        }
        batch.clear();
        for j in 0..((due - sent) as usize).min(BATCH) {
            batch.push(&datagrams[(sent as usize + j) % datagrams.len()]);
        }
        match send_batch(socket, &batch) {
            Ok(n) => sent += n as u64,
            // Loopback drops at the receiver, silently; the sender's own buffer may fill.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOBUFS)
                    || e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("cannot send: {e}"),
        }
    }
}

/// Sends `batch` in one `sendmmsg`; returns how many went.
#[cfg(target_os = "linux")]
fn send_batch(socket: &UdpSocket, batch: &[&[u8]]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: zeroed iovec and mmsghdr are valid (null pointers, zero lengths).
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    let n = batch.len().min(BATCH);
    for j in 0..n {
        iov[j].iov_base = batch[j].as_ptr() as *mut libc::c_void;
        iov[j].iov_len = batch[j].len();
        headers[j].msg_hdr.msg_iov = &mut iov[j];
        headers[j].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: the first n headers point at iovecs that point at the batch's datagrams, which
    // outlive the call; the socket is connected, so no addresses are needed.
    let r = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), n as _, 0) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Sends `batch` one datagram at a time (no `sendmmsg` here).
#[cfg(not(target_os = "linux"))]
fn send_batch(socket: &UdpSocket, batch: &[&[u8]]) -> std::io::Result<usize> {
    for (i, d) in batch.iter().enumerate() {
        if let Err(e) = socket.send(d) {
            return if i == 0 { Err(e) } else { Ok(i) };
        }
    }
    Ok(batch.len())
}

/// Adds up what the dry run printed: (counter increments, timing values).
fn read_published(stdout: impl std::io::Read) -> (u64, u64) {
    let (mut counted, mut timings) = (0.0, 0.0);
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(request) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        for d in request["MetricData"].as_array().into_iter().flatten() {
            let n = if let Some(counts) = d["Counts"].as_array() {
                counts.iter().filter_map(|c| c.as_f64()).sum()
            } else if let Some(sum) = d["StatisticValues"]["Sum"].as_f64() {
                sum
            } else {
                d["Value"].as_f64().unwrap_or(0.0)
            };
            match d["MetricName"].as_str() {
                Some("bench_hits") => counted += n,
                Some("bench_latency") => timings += n,
                _ => {}
            }
        }
    }
    ((counted + timings).round() as u64, timings.round() as u64)
}

/// Starts the publisher on CPU 0 with StatsD on `port`; returns it once it listens, with its
/// receive buffer.
fn start(dir: &std::path::Path, port: u16, pending: Option<u64>) -> (Child, u64) {
    let mut statsd = serde_json::json!({
        "service_address": format!("127.0.0.1:{port}"),
        "metrics_collection_interval": 10,
        "metrics_aggregation_interval": 60
    });
    if let Some(p) = pending {
        statsd["allowed_pending_messages"] = serde_json::json!(p);
    }
    let config = serde_json::json!({
        "agent": {"instance": {"prefix": "bench", "serial": "statsd"}, "metrics_collection_interval": 3600,
                  "clock_sync_timeout": 0,
                  "logfile": dir.join("publisher.log"), "state_dir": dir.join("state")},
        "metrics": {"namespace": "Bench", "metrics_collected": {"statsd": statsd}}
    });
    let mut child = dry_run(&config, dir);
    // --dry-run logs to standard error; "Receiving StatsD metrics." comes once it is bound.
    let (ready_tx, ready_rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut log = String::new();
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("Receiving StatsD metrics.") {
                let buffer = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("receive_buffer="))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                let _ = ready_tx.send(Ok(buffer));
            } else if line.contains("WARN") && !line.contains("clock") || line.contains("ERROR") {
                eprintln!("publisher: {line}");
            }
            log.push_str(&line);
            log.push('\n');
        }
        let _ = ready_tx.send(Err(log));
    });
    match ready_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(buffer)) => (child, buffer),
        other => {
            let _ = child.kill();
            panic!("the publisher did not start receiving StatsD: {other:?}");
        }
    }
}

fn run(step: &Step, count: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut child, receive_buffer) = start(dir.path(), port, step.pending);
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let published = std::thread::spawn(move || read_published(stdout));

    let datagrams = step.workload.datagrams();
    let timings_sent = (0..count as usize)
        .filter(|i| datagrams[i % datagrams.len()].starts_with(b"bench.latency"))
        .count() as u64;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    // The most the queue held, looked at every 2 ms while sending.
    let sending = Arc::new(AtomicBool::new(true));
    let peak_queue = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (sending, peak_queue) = (Arc::clone(&sending), Arc::clone(&peak_queue));
        std::thread::spawn(move || {
            while sending.load(Ordering::Relaxed) {
                peak_queue.fetch_max(receive_queue(port).unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let cpu_before = cpu_seconds(pid);
    let sleeps_before = sleeps(pid);
    let started = Instant::now();
    send(&socket, &datagrams, count, step.rate);
    let send_seconds = started.elapsed().as_secs_f64();
    // Received and aggregated once the queue is empty (the last datagram is being parsed).
    let deadline = Instant::now() + Duration::from_secs(30);
    while receive_queue(port).unwrap_or(0) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    let drain_seconds = started.elapsed().as_secs_f64();
    sending.store(false, Ordering::Relaxed);
    watcher.join().unwrap();
    // Before the publisher exits and its socket's line goes.
    let drops = kernel_drops(port).expect("the publisher's socket is in /proc/net/udp");
    let cpu = cpu_seconds(pid) - cpu_before;
    let peak_kib = status_field(pid, "VmHWM:").unwrap_or(0);
    let wakeups = sleeps(pid) - sleeps_before;
    // SAFETY: kill only sends a signal to the child started above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "the publisher stopped with {status}");
    let (counted, timings_counted) = published.join().unwrap();
    Outcome {
        sent: count,
        counted,
        timings_sent,
        timings_counted,
        send_seconds,
        drain_seconds,
        drops,
        receive_buffer,
        peak_queue: peak_queue.load(Ordering::Relaxed),
        cpu,
        wakeups,
        peak_kib,
    }
}

/// The publisher's state letter (`/proc/PID/stat`): `T` once stopped.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// What the publisher's one core does when it cannot keep up: with the publisher stopped
/// (SIGSTOP), the socket's queue is filled to about 80 % of its receive buffer; then it is
/// continued and timed until the queue is empty, over and over.
struct Saturated {
    sent: u64,
    counted: u64,
    drops: u64,
    /// Time from SIGCONT until the queue was empty, over all rounds.
    drain_seconds: f64,
    cpu: f64,
    burst: u64,
}

fn saturated(workload: Workload, count: u64) -> Saturated {
    let dir = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (mut child, receive_buffer) = start(dir.path(), port, None);
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let published = std::thread::spawn(move || read_published(stdout));
    let datagrams = workload.datagrams();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(("127.0.0.1", port)).unwrap();
    // A one-line datagram takes about 830 bytes of the buffer as the kernel counts it.
    let burst = (receive_buffer / 1024).max(1);
    let rounds = count.div_ceil(burst);
    let signal = |sig| {
        // SAFETY: kill only sends a signal to the child started above.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    };
    let (mut drain, mut cpu) = (Duration::ZERO, 0.0);
    for _ in 0..rounds {
        signal(libc::SIGSTOP);
        while state(pid) != Some('T') {
            std::thread::yield_now();
        }
        send(&socket, &datagrams, burst, 0);
        let before = cpu_seconds(pid);
        let t = Instant::now();
        signal(libc::SIGCONT);
        while receive_queue(port).unwrap_or(0) > 0 {
            std::hint::spin_loop();
        }
        drain += t.elapsed();
        // The last datagram's parse; and the CPU count moves in ticks, so add up the rounds.
        std::thread::sleep(Duration::from_millis(1));
        cpu += cpu_seconds(pid) - before;
    }
    let drops = kernel_drops(port).expect("the publisher's socket is in /proc/net/udp");
    signal(libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "the publisher stopped with {status}");
    let (counted, _) = published.join().unwrap();
    Saturated {
        sent: rounds * burst,
        counted,
        drops,
        drain_seconds: drain.as_secs_f64(),
        cpu,
        burst,
    }
}

fn describe(step: &Step) -> String {
    let rate = if step.rate == 0 {
        "unpaced".to_owned()
    } else {
        format!("{}k/s", step.rate / 1000)
    };
    match step.pending {
        Some(p) => format!(
            "{} {rate}, allowed_pending_messages {p}",
            step.workload.name()
        ),
        None => format!("{} {rate}", step.workload.name()),
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let count: u64 = if bench {
        std::env::var("BENCH_STATSD_DATAGRAMS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000)
    } else {
        20_000
    };
    let rates: Vec<u64> = std::env::var("BENCH_STATSD_RATES")
        .ok()
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 200_000, 400_000, 0]);
    let steps: Vec<Step> = if bench {
        let counter = |rate, pending| Step {
            workload: Workload::Counter,
            rate,
            pending,
        };
        let mut steps: Vec<Step> = rates.iter().map(|&r| counter(r, None)).collect();
        if std::env::var_os("BENCH_STATSD_RATES").is_none() {
            for rate in [200_000, 0] {
                steps.push(Step {
                    workload: Workload::Mixed,
                    rate,
                    pending: None,
                });
            }
            steps.push(counter(200_000, Some(416)));
        }
        steps
    } else {
        [Workload::Counter, Workload::Mixed]
            .into_iter()
            .map(|workload| Step {
                workload,
                rate: 20_000,
                pending: None,
            })
            .collect()
    };

    // The sender and this process on every core but the first, the publisher on the first.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        pin(&(1..cores).collect::<Vec<_>>()).unwrap();
    }
    let calibration = bench.then(calibrate);
    let rmem_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap_or_default();
    println!(
        "{count} datagrams a step, one line each; publisher pinned to one core: {}; net.core.rmem_max {}",
        cores > 1,
        rmem_max.trim()
    );
    let mut best: Option<(u64, f64)> = None;
    let mut lost = Vec::new();
    for step in &steps {
        let o = run(step, count);
        let rate = o.counted as f64 / o.drain_seconds;
        println!(
            "{:<42} sent {} at {:.0}/s; published {} ({:.4} of sent){}; {:.0} datagrams/s received and aggregated; kernel drops {}; receive buffer {} bytes, most held {} ({:.0} %); CPU {:.2} s = {:.2} CPU-s per million; {:.1} datagrams per wake-up; peak RSS {} KiB",
            describe(step),
            o.sent,
            o.sent as f64 / o.send_seconds,
            o.counted,
            o.counted as f64 / o.sent as f64,
            if o.timings_sent > 0 {
                format!(" (timings {} of {})", o.timings_counted, o.timings_sent)
            } else {
                String::new()
            },
            rate,
            o.drops,
            o.receive_buffer,
            o.peak_queue,
            o.peak_queue as f64 * 100.0 / o.receive_buffer.max(1) as f64,
            o.cpu,
            o.cpu / (o.counted.max(1) as f64 / 1e6),
            o.counted as f64 / o.wakeups.max(1) as f64,
            o.peak_kib,
        );
        if o.counted + o.drops != o.sent {
            lost.push(format!(
                "{}: {} datagrams neither published nor dropped by the kernel",
                describe(step),
                o.sent as i64 - (o.counted + o.drops) as i64
            ));
        }
        if step.workload == Workload::Counter && step.pending.is_none() && o.drops == 0 {
            let sent_rate = o.sent as f64 / o.send_seconds;
            if best.is_none_or(|(_, r)| sent_rate > r) {
                best = Some((step.rate, sent_rate));
            }
        }
    }
    if bench {
        for workload in [Workload::Counter, Workload::Mixed] {
            let o = saturated(workload, count);
            println!(
                "{:<42} {} rounds of {} queued while stopped: published {} ({:.4} of sent); emptied at {:.0} datagrams/s; kernel drops {}; CPU {:.2} s = {:.2} CPU-s per million",
                format!("{} saturated", workload.name()),
                o.sent / o.burst,
                o.burst,
                o.counted,
                o.counted as f64 / o.sent as f64,
                o.counted as f64 / o.drain_seconds,
                o.drops,
                o.cpu,
                o.cpu / (o.counted.max(1) as f64 / 1e6),
            );
            if o.counted + o.drops != o.sent {
                lost.push(format!(
                    "{} saturated: {} datagrams neither published nor dropped by the kernel",
                    workload.name(),
                    o.sent as i64 - (o.counted + o.drops) as i64
                ));
            }
        }
    }
    match best {
        Some((0, r)) => println!(
            "highest counter rate without a drop: unpaced, {r:.0}/s (as fast as the sender went)"
        ),
        Some((paced, r)) => {
            println!("highest counter rate without a drop: the {paced}/s step ({r:.0}/s sent)")
        }
        None => println!("highest counter rate without a drop: none of the steps"),
    }
    if let Some(mb_per_s) = calibration {
        println!("calibration: SHA-256 on CPU 0 at {mb_per_s:.0} MB/s (openssl speed -evp sha256, 16 KiB blocks, 3 s)");
    }
    assert!(
        lost.is_empty(),
        "every datagram is published or dropped by the kernel: {lost:?}"
    );
}
