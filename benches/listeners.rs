//! Local listeners flooded: the publisher's memory while several local clients send its StatsD
//! and embedded metric format (EMF) listeners all they can, for a bounded time, on loopback.
//!
//! Each case starts the release binary with `--dry-run` (PutMetricData and PutLogEvents
//! requests printed as JSON lines on standard output, which this process reads and counts) and
//! a config with StatsD (over UDP, or over TCP for the TCP case) and EMF (TCP and UDP on one
//! port; `log_group_names` allowing `flood-*`) on free loopback ports, pinned to one core
//! (CPU 0); the clients run on the other cores. StatsD collects and aggregates every 5 s, so
//! a case of 20 s sees four intervals end (and the gauges kept across them). Cases:
//!
//! - **statsd udp**: five clients, each sending datagrams of lines of one kind in turn, packed
//!   up to 1,432 bytes (DogStatsD's default): counters whose long name (about 230 bytes) and
//!   tag are new every line, eight sets with a new member every line, gauges with ever-new long
//!   names, one timer with ever-new values spread over 25 decades, and a counter with 40 tags
//!   whose values are new every line;
//! - **statsd tcp**: 72 idle connections, opened first and held 10 s (a listener serves 64 and
//!   closes one idle for 10 s when all are taken; one the publisher closes is opened again, at
//!   most every 200 ms), then two clients streaming lines of ever-new series and four sending
//!   lines of 1 MiB without a newline (each connection closed after its mebibyte and opened
//!   again); a client refused or closed connects again after 50 ms;
//! - **emf udp**: four clients sending documents (about 330 bytes, one a datagram) naming 128
//!   log groups, all allowed, as fast as they go;
//! - **emf tcp**: 72 idle connections as above, then six clients sending documents of 900 KiB.
//!
//! Reported per case: the publisher's peak RSS (`VmHWM` when the clients stop, and with the
//! stop that follows), its RSS at the end of the flood, at each quarter of it and its largest
//! sample (`VmRSS`, sampled every 100 ms), 2 s after the clients stopped, and idle before the
//! flood; what the clients sent; the UDP socket's kernel
//! drops (`/proc/net/udp`); what the publisher printed; and the refusals its log counted (the
//! listeners tell of them once a minute and at the stop, which comes after the flood). Then a
//! calibration of CPU 0 measured first (SHA-256 throughput from `openssl speed`).
//!
//! `cargo bench --bench listeners`; BENCH_LISTENERS_SECONDS sets each case's flood (20 s).
//! Under `cargo test` each case floods for 2 s (the idle connections are not held first) and
//! the peak RSS of the debug build must stay under [`TEST_PEAK_MIB`]; `cargo bench` checks the
//! release build's against [`PEAK_MIB`].

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use amazon_cloudwatch_publisher::sources::statsd::kernel_drops;
use support::{calibrate, dry_run, pin};

/// Idle connections opened before the other clients: more than a listener serves (64).
const IDLE_CONNECTIONS: usize = 72;
/// A StatsD client's datagram, at most (DogStatsD's default for UDP).
const DATAGRAM: usize = 1_432;
/// The EMF TCP case's documents.
const BIG_DOCUMENT: usize = 900 * 1024;
/// The StatsD TCP case's lines without a newline.
const LONG_LINE: usize = 1024 * 1024;
/// What the release build's peak RSS (the stop included) may reach in any case: the most any
/// figure of BENCHMARKS.md allows (200 files behind at once).
const PEAK_MIB: u64 = 48;
/// The same for the debug build under `cargo test` (its code alone is larger).
const TEST_PEAK_MIB: u64 = 128;

#[derive(Clone, Copy, PartialEq)]
enum Case {
    StatsdUdp,
    StatsdTcp,
    EmfUdp,
    EmfTcp,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::StatsdUdp => "statsd udp",
            Case::StatsdTcp => "statsd tcp",
            Case::EmfUdp => "emf udp",
            Case::EmfTcp => "emf tcp",
        }
    }
}

/// A number of the publisher's `/proc/PID/status`, e.g. `VmHWM:` (KiB).
fn status_field(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A loopback port free for both TCP and UDP (EMF listens on both).
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// `n` with thousands separated by commas.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The publisher, started for one case.
struct Publisher {
    child: Child,
    pid: u32,
    statsd_port: u16,
    emf_port: u16,
    /// Its log (standard error under `--dry-run`), whole once it has exited.
    log: mpsc::Receiver<Vec<String>>,
    /// Requests printed and their bytes.
    printed: JoinHandle<(u64, u64)>,
}

/// Starts the publisher on CPU 0 with StatsD over `statsd` ("udp" or "tcp") and EMF over TCP and
/// UDP; returns once every listener is bound.
fn start(dir: &std::path::Path, statsd: &str) -> Publisher {
    let (statsd_port, emf_port) = (free_port(), free_port());
    let config = serde_json::json!({
        "agent": {"instance": {"prefix": "bench", "serial": "listeners"}, "metrics_collection_interval": 3600,
                  "clock_sync_timeout": 0,
                  "logfile": dir.join("publisher.log"), "state_dir": dir.join("state")},
        "metrics": {"namespace": "Flood", "metrics_collected": {"statsd": {
            "service_address": format!("{statsd}://127.0.0.1:{statsd_port}"),
            "metrics_collection_interval": 5,
            "metrics_aggregation_interval": 5}}},
        "logs": {"force_flush_interval": 1,
                 "metrics_collected": {"emf": {"service_address": format!("127.0.0.1:{emf_port}"),
                                               "log_group_names": ["flood-*"]}}}
    });
    let mut child = dry_run(&config, dir);
    let pid = child.id();
    // Read whatever it prints, so that it never waits on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let printed = std::thread::spawn(move || {
        let (mut requests, mut bytes) = (0u64, 0u64);
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            bytes += n as u64;
            requests += count_lines(&buf[..n]);
        }
        (requests, bytes)
    });
    // --dry-run logs to standard error: ready once StatsD and both EMF sockets are bound.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (log_tx, log) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        let mut receiving = 0;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("Receiving StatsD metrics.")
                || line.contains("Receiving embedded metric format documents.")
            {
                receiving += 1;
                if receiving == 3 {
                    let _ = ready_tx.send(());
                }
            }
            lines.push(line);
        }
        let _ = log_tx.send(lines);
    });
    if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        let log = log.recv().unwrap_or_default().join("\n");
        panic!("the publisher did not start its listeners:\n{log}");
    }
    Publisher {
        child,
        pid,
        statsd_port,
        emf_port,
        log,
        printed,
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// What the clients sent, added up over them.
#[derive(Default)]
struct Sent {
    lines: AtomicU64,
    datagrams: AtomicU64,
    bytes: AtomicU64,
    /// Connections opened (TCP), the first ones included.
    connects: AtomicU64,
}

impl Sent {
    fn add(&self, lines: u64, datagrams: u64, bytes: u64) {
        self.lines.fetch_add(lines, Ordering::Relaxed);
        self.datagrams.fetch_add(datagrams, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// A UDP client: datagrams that `fill` writes (returning how many lines it wrote), sent to
/// `port` until `stop`.
fn udp_client(
    port: u16,
    stop: Arc<AtomicBool>,
    sent: Arc<Sent>,
    mut fill: impl FnMut(&mut String) -> u64 + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.connect(("127.0.0.1", port)).unwrap();
        let mut datagram = String::new();
        while !stop.load(Ordering::Relaxed) {
            datagram.clear();
            let lines = fill(&mut datagram);
            match socket.send(datagram.as_bytes()) {
                Ok(_) => sent.add(lines, 1, datagram.len() as u64),
                // The sender's own buffer may fill; loopback drops at the receiver, counted there.
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("cannot send a datagram: {e}"),
            }
        }
    })
}

/// Lines from `line` into `datagram`, newline-separated, up to [`DATAGRAM`] bytes (one at
/// least); the line that did not fit is kept in `pending` for the next datagram.
fn pack(datagram: &mut String, pending: &mut String, mut line: impl FnMut() -> String) -> u64 {
    let mut lines = 0;
    loop {
        if pending.is_empty() {
            *pending = line();
        }
        if lines > 0 && datagram.len() + 1 + pending.len() > DATAGRAM {
            return lines;
        }
        if lines > 0 {
            datagram.push('\n');
        }
        datagram.push_str(pending);
        pending.clear();
        lines += 1;
    }
}

/// A StatsD client's datagrams, each of one kind in turn: counters whose long name and tag are
/// new every line, eight sets with a new member every line, gauges with ever-new long names, a
/// timer with ever-new values over 25 decades (22,500 of three significant digits), counters
/// with 40 tags whose values are new every line. The names (about 230 bytes, CloudWatch takes
/// 255) and the tag fill an interval's bytes before its count of metrics.
fn statsd_datagrams(client: u64) -> impl FnMut(&mut String) -> u64 + Send + 'static {
    let long = "x".repeat(200);
    let mut pending: [String; 5] = Default::default();
    let (mut datagrams, mut n) = (0u64, 0u64);
    move |datagram| {
        let kind = (datagrams % 5) as usize;
        datagrams += 1;
        let mut next = || {
            n += 1;
            // New in every line of every client.
            let id = n << 4 | client;
            match kind {
                0 => format!(
                    "flood.series.{long}.{id:x}:1|c|#id:{id:016x}{long},route:/r{}",
                    n % 7
                ),
                1 => format!("flood.set.{}:{id:x}|s", n % 8),
                2 => format!("flood.gauge.{long}.{id:x}:{}|g", n % 1000),
                3 => {
                    let mantissa = 1.0 + 9.0 * (id as f64 * 0.618_033_988_749_895).fract();
                    let value = mantissa * 10f64.powi((n % 25) as i32 - 12);
                    format!("flood.latency:{value}|ms")
                }
                _ => {
                    let tags: Vec<String> = (0..40).map(|t| format!("t{t}:{id:x}")).collect();
                    format!("flood.tagged:1|c|#{}", tags.join(","))
                }
            }
        };
        pack(datagram, &mut pending[kind], &mut next)
    }
}

/// Connects to `addr` within a second.
fn connect(addr: SocketAddr) -> Option<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(200))).ok()?;
    Some(s)
}

/// Holds `count` connections to `port` open without sending anything; one the publisher closes
/// is opened again (each at most every 200 ms).
fn idle_holder(
    port: u16,
    count: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<Sent>,
    opened: mpsc::Sender<()>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let open = |sent: &Sent| {
            let s = connect(addr)?;
            s.set_nonblocking(true).ok()?;
            sent.connects.fetch_add(1, Ordering::Relaxed);
            Some(s)
        };
        let mut held: Vec<Option<TcpStream>> = (0..count).map(|_| open(&sent)).collect();
        let _ = opened.send(());
        let mut byte = [0u8; 1];
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            for slot in &mut held {
                let closed = match slot {
                    None => true,
                    Some(s) => match s.read(&mut byte) {
                        Ok(_) => true,
                        Err(e) => e.kind() != ErrorKind::WouldBlock,
                    },
                };
                if closed {
                    *slot = open(&sent);
                }
            }
        }
    })
}

/// A TCP client writing `chunk(n)` over and over to `port` until `stop`; with `reconnect_after`,
/// it closes the connection after that many chunks and opens a new one. A connection refused or
/// closed by the publisher is opened again after 50 ms.
fn tcp_client(
    port: u16,
    reconnect_after: Option<u64>,
    stop: Arc<AtomicBool>,
    sent: Arc<Sent>,
    mut chunk: impl FnMut(u64) -> (Vec<u8>, u64) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut n = 0u64;
        'connections: while !stop.load(Ordering::Relaxed) {
            let Some(mut s) = connect(addr) else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            sent.connects.fetch_add(1, Ordering::Relaxed);
            let mut on_this = 0u64;
            loop {
                let (bytes, lines) = chunk(n);
                n += 1;
                let mut off = 0;
                while off < bytes.len() {
                    if stop.load(Ordering::Relaxed) {
                        break 'connections;
                    }
                    match s.write(&bytes[off..]) {
                        Ok(0) => {
                            std::thread::sleep(Duration::from_millis(50));
                            continue 'connections;
                        }
                        Ok(w) => {
                            off += w;
                            sent.bytes.fetch_add(w as u64, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(50));
                            continue 'connections;
                        }
                    }
                }
                sent.lines.fetch_add(lines, Ordering::Relaxed);
                on_this += 1;
                if reconnect_after.is_some_and(|most| on_this >= most) {
                    continue 'connections;
                }
            }
        }
    })
}

/// Starts the clients of `case`. The idle connections (if any) are opened first and held
/// `idle_ahead` before the others start, so that they are idle long enough to make way.
fn clients(
    case: Case,
    p: &Publisher,
    idle_ahead: Duration,
    stop: &Arc<AtomicBool>,
    sent: &Arc<Sent>,
) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    let idle = |port, threads: &mut Vec<JoinHandle<()>>| {
        let (tx, rx) = mpsc::channel();
        threads.push(idle_holder(
            port,
            IDLE_CONNECTIONS,
            Arc::clone(stop),
            Arc::clone(sent),
            tx,
        ));
        rx.recv().unwrap();
        std::thread::sleep(idle_ahead);
    };
    let udp = |port: u16, fill: Box<dyn FnMut(&mut String) -> u64 + Send>| {
        udp_client(port, Arc::clone(stop), Arc::clone(sent), fill)
    };
    match case {
        Case::StatsdUdp => {
            for c in 0..5 {
                threads.push(udp(p.statsd_port, Box::new(statsd_datagrams(c))));
            }
        }
        Case::StatsdTcp => {
            let port = p.statsd_port;
            idle(port, &mut threads);
            for _ in 0..2 {
                threads.push(tcp_client(
                    port,
                    None,
                    Arc::clone(stop),
                    Arc::clone(sent),
                    |n| {
                        // 1,000 lines of new series a write.
                        let mut text = String::new();
                        for i in n * 1000..(n + 1) * 1000 {
                            text.push_str(&format!("flood.tcp.{i}:1|c|#id:{i}\n"));
                        }
                        (text.into_bytes(), 1000)
                    },
                ));
            }
            for _ in 0..4 {
                threads.push(tcp_client(
                    port,
                    Some(1),
                    Arc::clone(stop),
                    Arc::clone(sent),
                    |_| (vec![b'x'; LONG_LINE], 1),
                ));
            }
        }
        Case::EmfUdp => {
            let port = p.emf_port;
            for c in 0..4u64 {
                let mut n = c;
                threads.push(udp(
                    port,
                    Box::new(move |datagram: &mut String| {
                        n += 4;
                        datagram.push_str(&format!(
                            r#"{{"_aws":{{"Timestamp":{},"LogGroupName":"flood-{}","LogStreamName":"s{}","CloudWatchMetrics":[{{"Namespace":"Flood","Dimensions":[["Service","Operation"]],"Metrics":[{{"Name":"Latency","Unit":"Milliseconds"}},{{"Name":"Size","Unit":"Bytes"}}]}}]}},"Service":"shop","Operation":"checkout","Latency":{},"Size":{},"RequestId":"{n:016x}"}}"#,
                            now_ms(),
                            n % 128,
                            n % 2,
                            (n % 250) as f64 / 2.0,
                            n % 4096
                        ));
                        1
                    }),
                ));
            }
        }
        Case::EmfTcp => {
            let port = p.emf_port;
            idle(port, &mut threads);
            for c in 0..6u64 {
                let head = format!(
                    r#"{{"_aws":{{"Timestamp":{},"LogGroupName":"flood-big-{c}","CloudWatchMetrics":[{{"Namespace":"Flood","Dimensions":[["Client"]],"Metrics":[{{"Name":"Size","Unit":"Bytes"}}]}}]}},"Client":"c{c}","Size":{BIG_DOCUMENT},"Padding":""#,
                    now_ms()
                );
                let mut doc = head.into_bytes();
                doc.resize(BIG_DOCUMENT - 3, b'x');
                doc.extend_from_slice(b"\"}\n");
                threads.push(tcp_client(
                    port,
                    None,
                    Arc::clone(stop),
                    Arc::clone(sent),
                    move |_| (doc.clone(), 1),
                ));
            }
        }
    }
    threads
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The refusals the publisher's log tells of: the message (a part of it), the field that
/// counts, and what it is called here.
const REFUSALS: &[(&str, &str, &str)] = &[
    (
        "Refused TCP connections",
        "connections",
        "connections refused",
    ),
    (
        "Closed idle TCP connections",
        "connections",
        "idle connections closed",
    ),
    (
        "Dropped long lines received over TCP",
        "lines",
        "long lines without room",
    ),
    (
        "Ignored StatsD lines that are not metrics",
        "lines",
        "lines not StatsD",
    ),
    (
        "past the most kept per aggregation interval",
        "metrics",
        "new metrics past 10,000",
    ),
    (
        "Dropped new members of StatsD sets",
        "members",
        "set members past 10,000",
    ),
    (
        "past the most bytes an aggregation interval keeps",
        "values",
        "values past 8 MiB",
    ),
    (
        "Cut the tags of StatsD values",
        "values",
        "values' tags cut",
    ),
    (
        "Kept StatsD timings to fewer",
        "timings",
        "timings coarsened",
    ),
    (
        "Forgot the last values of the StatsD gauges",
        "gauges",
        "gauges forgotten",
    ),
    (
        "The kernel dropped StatsD datagrams",
        "datagrams",
        "kernel drops told",
    ),
    (
        "their destination's buffer is full",
        "documents",
        "documents, buffer full",
    ),
    (
        "longer than a log event may be",
        "documents",
        "documents too long",
    ),
    (
        "naming yet another log group or stream",
        "documents",
        "documents past 64 destinations",
    ),
    (
        "naming a log group the config does not allow",
        "documents",
        "documents of groups not allowed",
    ),
    (
        "Shipped more documents that are not valid",
        "documents",
        "documents not EMF",
    ),
];

/// Adds up the refusals in `log`, in [`REFUSALS`]' order (the TCP listeners' by port, as
/// `statsd` or `emf`); log lines at WARN or ERROR that are none of them are returned too.
fn refusals(log: &[String], ports: (u16, u16)) -> (Vec<(String, u64)>, Vec<String>) {
    let mut counts: Vec<(String, u64)> = Vec::new();
    let mut other = Vec::new();
    for line in log {
        let Some(&(_, field, name)) = REFUSALS.iter().find(|(m, _, _)| line.contains(m)) else {
            if (line.contains(" WARN ") || line.contains(" ERROR ")) && !line.contains("clock") {
                other.push(line.clone());
            }
            continue;
        };
        let n: u64 = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{field}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        // `listen="127.0.0.1:8125"`
        let name = if line.contains(&format!("127.0.0.1:{}\"", ports.0)) {
            format!("statsd {name}")
        } else if line.contains(&format!("127.0.0.1:{}\"", ports.1)) {
            format!("emf {name}")
        } else {
            name.to_owned()
        };
        match counts.iter_mut().find(|(k, _)| *k == name) {
            Some((_, total)) => *total += n,
            None => counts.push((name, n)),
        }
    }
    counts.sort_by_key(|(k, _)| {
        REFUSALS
            .iter()
            .position(|(_, _, name)| k.ends_with(name))
            .unwrap_or(usize::MAX)
    });
    (counts, other)
}

struct Outcome {
    idle_kib: u64,
    /// VmHWM when the clients stopped, and the last seen before the publisher exited.
    peak_kib: u64,
    peak_with_stop_kib: u64,
    /// VmRSS at the end of each quarter of the flood.
    quarters_kib: [u64; 4],
    /// The largest VmRSS sample during the flood, and its second.
    top: (u64, f64),
    /// VmRSS a while after the clients stopped.
    after_kib: u64,
    seconds: f64,
    sent: String,
    kernel_drops: Option<u64>,
    printed: (u64, u64),
    refusals: Vec<(String, u64)>,
    other_warnings: Vec<String>,
    stop_seconds: f64,
}

fn run(case: Case, seconds: f64, idle_ahead: Duration, settle: Duration) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let statsd = if case == Case::StatsdTcp {
        "tcp"
    } else {
        "udp"
    };
    let mut p = start(dir.path(), statsd);
    let pid = p.pid;
    // Let start-up settle before the idle figure.
    std::thread::sleep(Duration::from_millis(500));
    let idle_kib = status_field(pid, "VmRSS:").unwrap_or(0);
    // VmHWM and VmRSS sampled every 100 ms until the publisher is gone.
    let samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let hwm = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (samples, hwm) = (Arc::clone(&samples), Arc::clone(&hwm));
        std::thread::spawn(move || {
            while let (Some(rss), Some(peak)) =
                (status_field(pid, "VmRSS:"), status_field(pid, "VmHWM:"))
            {
                hwm.fetch_max(peak, Ordering::Relaxed);
                samples.lock().unwrap().push((Instant::now(), rss));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Sent::default());
    let threads = clients(case, &p, idle_ahead, &stop, &sent);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let flood_seconds = started.elapsed().as_secs_f64();
    let peak_kib = status_field(pid, "VmHWM:").unwrap_or(0);
    let end_rss = status_field(pid, "VmRSS:").unwrap_or(0);
    let udp_port = match case {
        Case::StatsdUdp => Some(p.statsd_port),
        Case::EmfUdp => Some(p.emf_port),
        _ => None,
    };
    let drops = udp_port.and_then(kernel_drops);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    // What it keeps once the clients are gone (EMF's readers may still ship the backlog).
    std::thread::sleep(settle);
    let after_kib = status_field(pid, "VmRSS:").unwrap_or(0);
    // The stop: the listeners tell what they refused, StatsD hands over its interval.
    let stopping = Instant::now();
    // SAFETY: kill only sends a signal to the child started above.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    let status = p.child.wait().unwrap();
    let stop_seconds = stopping.elapsed().as_secs_f64();
    sampler.join().unwrap();
    assert!(
        status.success(),
        "{}: the publisher stopped with {status}",
        case.name()
    );
    let log = p.log.recv().unwrap_or_default();
    let printed = p.printed.join().unwrap();

    let samples = samples.lock().unwrap();
    let mut quarters_kib = [0u64; 4];
    for (q, slot) in quarters_kib.iter_mut().enumerate() {
        let at = started + Duration::from_secs_f64(flood_seconds * (q + 1) as f64 / 4.0);
        *slot = samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map_or(0, |&(_, rss)| rss);
    }
    quarters_kib[3] = end_rss;
    // The largest sample during the flood, and when.
    let (top_kib, top_at) = samples
        .iter()
        .filter(|(t, _)| *t >= started && *t <= started + Duration::from_secs_f64(flood_seconds))
        .map(|&(t, rss)| (rss, (t - started).as_secs_f64()))
        .fold((0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
    let (lines, datagrams, bytes, connects) = (
        sent.lines.load(Ordering::Relaxed),
        sent.datagrams.load(Ordering::Relaxed),
        sent.bytes.load(Ordering::Relaxed),
        sent.connects.load(Ordering::Relaxed),
    );
    let sent = match case {
        Case::StatsdUdp => format!(
            "{} lines in {} datagrams ({:.0} MB) from 5 clients",
            thousands(lines),
            thousands(datagrams),
            bytes as f64 / 1e6
        ),
        Case::StatsdTcp => format!(
            "{IDLE_CONNECTIONS} idle connections (held {} s first), 2 streaming and 4 sending 1 MiB lines without a newline: {} lines, {:.0} MB written to sockets, {} connections opened",
            idle_ahead.as_secs(),
            thousands(lines),
            bytes as f64 / 1e6,
            thousands(connects)
        ),
        Case::EmfUdp => format!(
            "{} documents naming 128 log groups ({:.0} MB) from 4 clients",
            thousands(datagrams),
            bytes as f64 / 1e6
        ),
        Case::EmfTcp => format!(
            "{IDLE_CONNECTIONS} idle connections (held {} s first) and 6 sending 900 KiB documents: {} documents, {:.0} MB written to sockets, {} connections opened",
            idle_ahead.as_secs(),
            thousands(lines),
            bytes as f64 / 1e6,
            thousands(connects)
        ),
    };
    let (refusals, other_warnings) = refusals(&log, (p.statsd_port, p.emf_port));
    Outcome {
        idle_kib,
        peak_kib,
        peak_with_stop_kib: hwm.load(Ordering::Relaxed).max(peak_kib),
        quarters_kib,
        top: (top_kib, top_at),
        after_kib,
        seconds: flood_seconds,
        sent,
        kernel_drops: drops,
        printed,
        refusals,
        other_warnings,
        stop_seconds,
    }
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let seconds: f64 = if bench {
        std::env::var("BENCH_LISTENERS_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(20.0)
    } else {
        2.0
    };
    let bound_mib = if bench { PEAK_MIB } else { TEST_PEAK_MIB };
    // The listeners close a connection idle this long for a new one when all are taken.
    let idle_ahead = Duration::from_secs(if bench { 10 } else { 0 });
    let settle = Duration::from_millis(if bench { 2000 } else { 500 });
    // The clients and this process on every core but the first, the publisher on the first.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores > 1 {
        pin(&(1..cores).collect::<Vec<_>>()).unwrap();
    }
    let calibration = bench.then(calibrate);
    println!(
        "each case floods for {seconds} s; publisher pinned to one core: {}; peak RSS bound {bound_mib} MiB",
        cores > 1
    );
    let mut over = Vec::new();
    for case in [Case::StatsdUdp, Case::StatsdTcp, Case::EmfUdp, Case::EmfTcp] {
        let o = run(case, seconds, idle_ahead, settle);
        let told = if o.refusals.is_empty() {
            "none".to_owned()
        } else {
            o.refusals
                .iter()
                .map(|(k, n)| format!("{k} {}", thousands(*n)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "{:<10} peak RSS {:.1} MiB ({:.1} MiB with the stop), final RSS {:.1} MiB (quarters {:.1}/{:.1}/{:.1}/{:.1}; largest sample {:.1} MiB at {:.1} s), {:.1} MiB {:.1} s after, idle before {:.1} MiB; {:.1} s; sent {}{}; printed {} requests ({:.1} MB); stopped in {:.2} s; the log counted: {told}",
            case.name(),
            mib(o.peak_kib),
            mib(o.peak_with_stop_kib),
            mib(o.quarters_kib[3]),
            mib(o.quarters_kib[0]),
            mib(o.quarters_kib[1]),
            mib(o.quarters_kib[2]),
            mib(o.quarters_kib[3]),
            mib(o.top.0),
            o.top.1,
            mib(o.after_kib),
            settle.as_secs_f64(),
            mib(o.idle_kib),
            o.seconds,
            o.sent,
            o.kernel_drops
                .map_or(String::new(), |d| format!("; kernel drops {}", thousands(d))),
            thousands(o.printed.0),
            o.printed.1 as f64 / 1e6,
            o.stop_seconds,
        );
        for w in &o.other_warnings {
            println!("  publisher: {w}");
        }
        if o.peak_with_stop_kib > bound_mib * 1024 {
            over.push(format!(
                "{}: {:.1} MiB",
                case.name(),
                mib(o.peak_with_stop_kib)
            ));
        }
    }
    if let Some(mb_per_s) = calibration {
        println!("calibration: SHA-256 on CPU 0 at {mb_per_s:.0} MB/s (openssl speed -evp sha256, 16 KiB blocks, 3 s)");
    }
    assert!(
        over.is_empty(),
        "peak RSS over {bound_mib} MiB while flooded: {over:?}"
    );
}
