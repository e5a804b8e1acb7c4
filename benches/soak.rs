//! Soak: a day of a busy device, accelerated. The real binary runs for SOAK_MINUTES (default
//! 30; 3 under `cargo test`) against a local endpoint, with
//!
//! - metrics every second (`metrics_collection_interval: 1`, the original 13 metrics);
//! - 20 files, each written 200 lines a second by this bench and rotated every 30 s as
//!   logrotate's `create` does with `rotate 1` (the file renamed to `app-NN.log.1` over the
//!   previous one, the writer going on in the renamed file for 300 ms before it opens the new
//!   `app-NN.log`), followed through one pattern, `app-*.log`;
//! - CloudWatch away for 2 minutes every 10 minutes (from 1:30, 11:30, ...): PutLogEvents and
//!   PutMetricData are answered 503;
//! - Cognito credentials that expire 90 s after they are issued, and id tokens that live 90 s.
//!
//! CloudWatch Logs and CloudWatch requests are answered by the endpoint here, which checks
//! every line (each carries its file and its number: in each file's stream they must come in
//! order, each once, across rotations) and every metric datum (each once). Cognito requests
//! (`X-Amz-Target: AWSCognitoIdentityProviderService.*`, `AWSCognitoIdentityService.*`) are
//! passed on to moto's server behind the test harness (tests/support/moto_harness.py), which
//! issues credentials valid for 90 s and is told to report id tokens valid for 90 s. The
//! publisher reaches both through one `AWS_ENDPOINT_URL` and has no AWS credentials of its own.
//!
//! It samples the publisher's RSS and open file descriptors every 10 s and the state file's
//! size every second. At the end it stops the writers, ends any outage, waits until every line
//! and every spooled metric is delivered, counts the descriptors, stops the publisher with
//! SIGTERM, and reports; it exits non-zero if a target is missed:
//!
//! - RSS at the end less than 1 MiB above RSS at 5:00, and, on runs of 20, 30, ... minutes,
//!   above RSS at 10:00, as far from an outage as the end (judged on runs of 10 minutes or
//!   more; shorter runs take their baseline at half time and only report);
//! - open descriptors, counted once the drain's connections have been idle for the HTTP
//!   client's pool timeout (90 s): files as at 1 minute, sockets no more than then;
//! - every line delivered once and in order (a batch whose acknowledgement could not be
//!   written may come again: counted apart);
//! - every metric datum once, and a round every second outside outages (rounds not taken
//!   during an outage are reported);
//! - the state file never above 64 KiB.
//!
//! SOAK_DIR puts the folder with the log files and the state file in another file system than
//! /tmp's; SOAK_KEEP leaves it (with the publisher's log) for a look afterwards.
//!
//! Needs the Python with moto (`scripts/test` sets up .venv; or PUBLISHER_TEST_PYTHON) and
//! openssl (the calibration, under `cargo bench`).

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{calibrate, cpu_seconds, BIN};

use serde_json::{json, Value};

const FILES: usize = 20;
const LINES_PER_SECOND: u64 = 200;
/// Bytes per line, the newline included.
const LINE_BYTES: usize = 100;
const ROTATE_EVERY: Duration = Duration::from_secs(30);
/// How long the writer goes on in the renamed file before it opens the new one (a program
/// reopens its log when logrotate's postrotate signals it).
const REOPEN_AFTER: Duration = Duration::from_millis(300);
const OUTAGE_FIRST: u64 = 90;
const OUTAGE_EVERY: u64 = 600;
const OUTAGE_LENGTH: u64 = 120;
/// Lifetime of Cognito id tokens; moto's credentials expire 90 s after issue anyway.
const TOKEN_LIFETIME: u32 = 90;
const SAMPLE_EVERY: u64 = 10;
const RSS_BASELINE: u64 = 300;
const FD_BASELINE: u64 = 60;
const RSS_GROWTH_MAX_KIB: u64 = 1024;
const STATE_FILE_MAX: u64 = 64 * 1024;
/// How long the publisher has, after the writers stop, to deliver what is left.
const DRAIN_DEADLINE: Duration = Duration::from_secs(300);
/// How long after the drain descriptors are counted: the SDK's HTTP client (hyper's pool)
/// closes a connection idle for 90 s.
const POOL_IDLE: Duration = Duration::from_secs(95);
const USER: &str = "soak-00000001";
const PASSWORD: &str = "Soak-Test-Passw0rd!";

// ---------------------------------------------------------------------------------------------
// The endpoint

/// One file's lines as they arrive, in its stream.
#[derive(Default)]
struct Lineage {
    /// The number the next line must carry.
    next: u64,
    /// Lines skipped (a number larger than expected came).
    missing: u64,
    /// Lines that came again (a number smaller than expected).
    repeated: u64,
    /// Lines that named another file than the stream's.
    foreign: u64,
}

#[derive(Default)]
struct MetricsSeen {
    requests: u64,
    datums: u64,
    /// (name, dimensions, timestamp in ms) of every datum accepted.
    keys: HashSet<(String, String, i64)>,
    repeated: u64,
    /// Timestamps of the rounds (each round's datums share one).
    rounds: BTreeSet<i64>,
    undecodable: u64,
}

#[derive(Default)]
struct Endpoint {
    moto_port: u16,
    outage: AtomicBool,
    /// Requests answered, by operation.
    answered: Mutex<BTreeMap<String, u64>>,
    /// Requests answered 503 during an outage, by operation.
    refused: Mutex<BTreeMap<String, u64>>,
    /// Cognito calls passed on, by operation (InitiateAuth by flow).
    cognito: Mutex<BTreeMap<String, u64>>,
    cognito_failed: AtomicU64,
    lineages: Mutex<HashMap<String, Lineage>>,
    lines: AtomicU64,
    metrics: Mutex<MetricsSeen>,
    /// Requests checked whose answer could not be written (the publisher may send them again).
    unacknowledged: AtomicU64,
    unacknowledged_lines: AtomicU64,
    /// After each outage: when it ended, and how long until the first PutLogEvents and the
    /// first PutMetricData were accepted.
    recoveries: Mutex<Vec<Recovery>>,
}

#[derive(Default)]
struct Recovery {
    ended: Option<Instant>,
    logs: Option<Duration>,
    metrics: Option<Duration>,
    /// The streams with a PutLogEvents accepted since, and when the last of them had one.
    streams: HashSet<String>,
    every_stream: Option<Duration>,
}

impl Endpoint {
    /// Notes an accepted PutLogEvents (with its stream) or PutMetricData.
    fn accepted(&self, stream: Option<String>) {
        let mut recoveries = self.recoveries.lock().unwrap();
        let Some(r) = recoveries.last_mut() else {
            return;
        };
        let Some(ended) = r.ended else { return };
        let since = ended.elapsed();
        match stream {
            Some(stream) => {
                r.logs.get_or_insert(since);
                r.streams.insert(stream);
                if r.streams.len() == FILES {
                    r.every_stream.get_or_insert(since);
                }
            }
            None => {
                r.metrics.get_or_insert(since);
            }
        }
    }
}

struct Request {
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut request = Request {
        path,
        headers,
        body: Vec::new(),
    };
    let length = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    request.body.resize(length, 0);
    reader.read_exact(&mut request.body)?;
    Ok(Some(request))
}

fn answer(status: &str, content_type: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// CBOR for {"__type": code, "message": message}.
fn cbor_error(code: &str, message: &str) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 256);
        if s.len() < 24 {
            out.push(0x60 | s.len() as u8);
        } else {
            out.extend_from_slice(&[0x78, s.len() as u8]);
        }
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = vec![0xa2];
    text(&mut out, "__type");
    text(&mut out, code);
    text(&mut out, "message");
    text(&mut out, message);
    out
}

fn count(map: &Mutex<BTreeMap<String, u64>>, key: &str) {
    *map.lock().unwrap().entry(key.to_owned()).or_default() += 1;
}

/// Serves one keep-alive connection.
fn serve(stream: TcpStream, endpoint: Arc<Endpoint>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(1 << 20, stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader)? {
        let target = request.header("x-amz-target").unwrap_or("").to_owned();
        let cbor = request.header("smithy-protocol").is_some();
        let op = if cbor {
            request.path.rsplit('/').next().unwrap_or("")
        } else {
            target.rsplit_once('.').map_or("", |(_, op)| op)
        };
        let op = if op.is_empty() { "?" } else { op };
        let down = endpoint.outage.load(Ordering::Relaxed);
        let mut checked_lines = None;
        let out = if target.starts_with("AWSCognito") {
            forward(&endpoint, &request, op)
        } else if cbor && down {
            count(&endpoint.refused, op);
            answer(
                "503 Service Unavailable",
                "application/cbor",
                "smithy-protocol: rpc-v2-cbor\r\n",
                &cbor_error("ServiceUnavailable", "soak outage"),
            )
        } else if cbor {
            if op == "PutMetricData" {
                check_metrics(&endpoint, &request);
                checked_lines = Some(0);
                endpoint.accepted(None);
            }
            count(&endpoint.answered, op);
            answer(
                "200 OK",
                "application/cbor",
                "smithy-protocol: rpc-v2-cbor\r\n",
                b"\xa0",
            )
        } else if op == "PutLogEvents" && down {
            count(&endpoint.refused, op);
            answer(
                "503 Service Unavailable",
                "application/x-amz-json-1.1",
                "",
                br#"{"__type":"ServiceUnavailableException","message":"soak outage"}"#,
            )
        } else {
            if op == "PutLogEvents" {
                let (stream, lines) = check_lines(&endpoint, &request.body);
                checked_lines = Some(lines);
                endpoint.accepted(Some(stream));
            }
            count(&endpoint.answered, op);
            answer("200 OK", "application/x-amz-json-1.1", "", b"{}")
        };
        if writer.write_all(&out).is_err() {
            if let Some(lines) = checked_lines {
                endpoint.unacknowledged.fetch_add(1, Ordering::Relaxed);
                endpoint
                    .unacknowledged_lines
                    .fetch_add(lines, Ordering::Relaxed);
            }
            return Ok(());
        }
    }
    Ok(())
}

/// Notes the lines of an accepted PutLogEvents; returns its stream and how many it held.
fn check_lines(endpoint: &Endpoint, body: &[u8]) -> (String, u64) {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let stream = request["logStreamName"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let file = stream.strip_suffix(".log").unwrap_or(&stream).to_owned();
    let events = request["logEvents"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut lineages = endpoint.lineages.lock().unwrap();
    let lineage = lineages.entry(stream.clone()).or_default();
    for e in events {
        let message = e["message"].as_str().unwrap_or_default();
        let mut words = message.split(' ');
        if words.next() != Some(file.as_str()) {
            lineage.foreign += 1;
        }
        let n: u64 = words
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u64::MAX);
        match n.cmp(&lineage.next) {
            std::cmp::Ordering::Equal => lineage.next += 1,
            std::cmp::Ordering::Greater if n != u64::MAX => {
                lineage.missing += n - lineage.next;
                lineage.next = n + 1;
            }
            _ => lineage.repeated += 1,
        }
    }
    endpoint
        .lines
        .fetch_add(events.len() as u64, Ordering::Relaxed);
    (stream, events.len() as u64)
}

/// Notes the datums of an accepted PutMetricData (CBOR, gzipped when large).
fn check_metrics(endpoint: &Endpoint, request: &Request) {
    let mut seen = endpoint.metrics.lock().unwrap();
    seen.requests += 1;
    let mut body = request.body.clone();
    if request
        .header("content-encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
    {
        let mut plain = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut plain)
            .is_err()
        {
            seen.undecodable += 1;
            return;
        }
        body = plain;
    }
    let Some(value) = cbor::decode(&body) else {
        seen.undecodable += 1;
        return;
    };
    for d in value["MetricData"].as_array().into_iter().flatten() {
        let name = d["MetricName"].as_str().unwrap_or_default().to_owned();
        let dimensions = d["Dimensions"].to_string();
        let ms = d["Timestamp"]
            .as_f64()
            .map_or(i64::MIN, |s| (s * 1000.0).round() as i64);
        seen.datums += 1;
        seen.rounds.insert(ms);
        if !seen.keys.insert((name, dimensions, ms)) {
            seen.repeated += 1;
        }
    }
}

/// Passes a Cognito request on to moto's server and returns its answer.
fn forward(endpoint: &Endpoint, request: &Request, op: &str) -> Vec<u8> {
    let kind = if op == "InitiateAuth" {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        format!("InitiateAuth {}", body["AuthFlow"].as_str().unwrap_or("?"))
    } else {
        op.to_owned()
    };
    count(&endpoint.cognito, &kind);
    match pass_on(endpoint.moto_port, request) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("soak: passing {kind} on to moto failed: {e}");
            endpoint.cognito_failed.fetch_add(1, Ordering::Relaxed);
            answer(
                "503 Service Unavailable",
                "application/x-amz-json-1.1",
                "",
                br#"{"__type":"ServiceUnavailableException","message":"moto unreachable"}"#,
            )
        }
    }
}

fn pass_on(port: u16, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut moto = TcpStream::connect(("127.0.0.1", port))?;
    moto.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut out = format!(
        "POST {} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n",
        request.path
    );
    for (k, v) in &request.headers {
        if !["host", "connection", "content-length"]
            .iter()
            .any(|h| k.eq_ignore_ascii_case(h))
        {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        request.body.len()
    ));
    moto.write_all(out.as_bytes())?;
    moto.write_all(&request.body)?;
    let mut got = Vec::new();
    moto.read_to_end(&mut got)?;
    let split = memchr::memmem::find(&got, b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers in moto's answer"))?;
    let head = String::from_utf8_lossy(&got[..split]).into_owned();
    let body = &got[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_once(' '))
        .map(|(_, s)| s.to_owned())
        .ok_or_else(|| std::io::Error::other("no status line in moto's answer"))?;
    let mut relay = format!("HTTP/1.1 {status}\r\n");
    for l in lines {
        let name = l.split(':').next().unwrap_or("").trim();
        if ![
            "content-length",
            "connection",
            "transfer-encoding",
            "keep-alive",
        ]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        {
            relay.push_str(l);
            relay.push_str("\r\n");
        }
    }
    relay.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut relay = relay.into_bytes();
    relay.extend_from_slice(body);
    Ok(relay)
}

/// Just enough CBOR (RFC 8949) to read a PutMetricData request as JSON: definite and
/// indefinite lengths, tags (their content kept), floats; byte strings become null.
mod cbor {
    use serde_json::{Map, Number, Value};

    pub fn decode(bytes: &[u8]) -> Option<Value> {
        let mut at = 0;
        item(bytes, &mut at)
    }

    fn byte(b: &[u8], at: &mut usize) -> Option<u8> {
        let v = *b.get(*at)?;
        *at += 1;
        Some(v)
    }

    fn uint(b: &[u8], at: &mut usize, n: usize) -> Option<u64> {
        let bytes = b.get(*at..*at + n)?;
        *at += n;
        Some(bytes.iter().fold(0, |v, &x| (v << 8) | u64::from(x)))
    }

    /// The argument of an item: `None` for an indefinite length.
    fn argument(b: &[u8], at: &mut usize, info: u8) -> Option<Option<u64>> {
        Some(Some(match info {
            0..=23 => u64::from(info),
            24 => uint(b, at, 1)?,
            25 => uint(b, at, 2)?,
            26 => uint(b, at, 4)?,
            27 => uint(b, at, 8)?,
            31 => return Some(None),
            _ => return None,
        }))
    }

    fn at_break(b: &[u8], at: &mut usize) -> bool {
        if b.get(*at) == Some(&0xff) {
            *at += 1;
            true
        } else {
            false
        }
    }

    fn half(bits: u16) -> f64 {
        let exponent = i32::from((bits >> 10) & 0x1f);
        let mantissa = f64::from(bits & 0x3ff);
        let value = match exponent {
            0 => mantissa * 2f64.powi(-24),
            31 if mantissa == 0.0 => f64::INFINITY,
            31 => f64::NAN,
            e => (1.0 + mantissa / 1024.0) * 2f64.powi(e - 15),
        };
        if bits & 0x8000 != 0 {
            -value
        } else {
            value
        }
    }

    fn float(v: f64) -> Value {
        Number::from_f64(v).map_or(Value::Null, Value::Number)
    }

    fn string(b: &[u8], at: &mut usize, len: Option<u64>) -> Option<Vec<u8>> {
        match len {
            Some(n) => {
                let s = b.get(*at..*at + n as usize)?.to_vec();
                *at += n as usize;
                Some(s)
            }
            None => {
                let mut s = Vec::new();
                while !at_break(b, at) {
                    let head = byte(b, at)?;
                    let n = argument(b, at, head & 0x1f)??;
                    s.extend(string(b, at, Some(n))?);
                }
                Some(s)
            }
        }
    }

    fn item(b: &[u8], at: &mut usize) -> Option<Value> {
        let head = byte(b, at)?;
        let (major, info) = (head >> 5, head & 0x1f);
        if major == 7 {
            return Some(match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 | 23 => Value::Null,
                25 => float(half(uint(b, at, 2)? as u16)),
                26 => float(f64::from(f32::from_bits(uint(b, at, 4)? as u32))),
                27 => float(f64::from_bits(uint(b, at, 8)?)),
                _ => return None,
            });
        }
        let arg = argument(b, at, info)?;
        Some(match major {
            0 => Value::from(arg?),
            1 => Value::from(-1 - arg? as i64),
            2 => {
                string(b, at, arg)?;
                Value::Null
            }
            3 => Value::String(String::from_utf8(string(b, at, arg)?).ok()?),
            4 => {
                let mut items = Vec::new();
                match arg {
                    Some(n) => {
                        for _ in 0..n {
                            items.push(item(b, at)?);
                        }
                    }
                    None => {
                        while !at_break(b, at) {
                            items.push(item(b, at)?);
                        }
                    }
                }
                Value::Array(items)
            }
            5 => {
                let mut map = Map::new();
                let mut pair = |b: &[u8], at: &mut usize| -> Option<()> {
                    let key = match item(b, at)? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    map.insert(key, item(b, at)?);
                    Some(())
                };
                match arg {
                    Some(n) => {
                        for _ in 0..n {
                            pair(b, at)?;
                        }
                    }
                    None => {
                        while !at_break(b, at) {
                            pair(b, at)?;
                        }
                    }
                }
                Value::Object(map)
            }
            // A tag (1: epoch seconds): its content.
            6 => item(b, at)?,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The writers

/// Writes every file's lines on schedule and rotates the files; counts what it wrote.
struct Writers {
    dir: PathBuf,
    files: Vec<File>,
    written: Arc<Vec<AtomicU64>>,
    rotations: Arc<AtomicU64>,
}

fn file_name(i: usize) -> String {
    format!("app-{i:02}.log")
}

fn open_append(path: &Path) -> File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Writers {
    fn new(dir: &Path) -> Writers {
        let files = (0..FILES)
            .map(|i| open_append(&dir.join(file_name(i))))
            .collect();
        Writers {
            dir: dir.to_owned(),
            files,
            written: Arc::new((0..FILES).map(|_| AtomicU64::new(0)).collect()),
            rotations: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Writes until `stop`, from `start` on.
    fn run(mut self, start: Instant, stop: Arc<AtomicBool>) {
        let mut next_rotation = start + ROTATE_EVERY;
        let mut reopen_at: Option<Instant> = None;
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut written = vec![0u64; FILES];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if now >= next_rotation {
                for i in 0..FILES {
                    let path = self.dir.join(file_name(i));
                    let rotated = self.dir.join(format!("{}.1", file_name(i)));
                    std::fs::rename(&path, &rotated).unwrap();
                }
                self.rotations.fetch_add(1, Ordering::Relaxed);
                next_rotation += ROTATE_EVERY;
                reopen_at = Some(now + REOPEN_AFTER);
            }
            if reopen_at.is_some_and(|t| now >= t) {
                reopen_at = None;
                for (i, file) in self.files.iter_mut().enumerate() {
                    *file = open_append(&self.dir.join(file_name(i)));
                }
            }
            let due = (now - start).as_millis() as u64 * LINES_PER_SECOND / 1000;
            for (i, (file, count)) in self.files.iter_mut().zip(&mut written).enumerate() {
                buf.clear();
                while *count < due {
                    line(&mut buf, i, *count);
                    *count += 1;
                }
                if !buf.is_empty() {
                    file.write_all(&buf).unwrap();
                    self.written[i].store(*count, Ordering::Relaxed);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `app-07 000000001234 xxx...x\n`: the file and the line's number, 100 bytes in all.
fn line(buf: &mut Vec<u8>, file: usize, n: u64) {
    let start = buf.len();
    write!(buf, "app-{file:02} {n:012} ").unwrap();
    buf.resize(start + LINE_BYTES - 1, b'x');
    buf.push(b'\n');
}

// ---------------------------------------------------------------------------------------------
// moto

/// The Python with moto installed: $PUBLISHER_TEST_PYTHON, else the project's .venv.
fn python() -> PathBuf {
    let p = std::env::var_os("PUBLISHER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import moto, cbor2, boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} cannot import moto, cbor2 and boto3. Run `scripts/test` (it creates .venv with \
         tests/support/requirements.txt), or set PUBLISHER_TEST_PYTHON to a Python that has them.",
        p.display()
    );
    p
}

fn harness() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_harness.py")
}

/// moto's server behind the harness, killed on drop and, since the bench profile aborts on
/// a panic and `exit` runs no destructors, by [`stop_moto`] too.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static MOTO_PID: AtomicU64 = AtomicU64::new(0);

/// Kills moto's server if it was started.
fn stop_moto() {
    let pid = MOTO_PID.swap(0, Ordering::Relaxed);
    if pid != 0 {
        // SAFETY: kill only sends a signal to the child this process started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.contains(" 200 ").then(|| body.to_owned())
}

impl Moto {
    fn start(python: &Path, dir: &Path) -> Moto {
        let port_file = dir.join("moto.port");
        let child = Command::new(python)
            .arg(harness())
            .args(["serve", "--port", "0", "--port-file"])
            .arg(&port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the moto harness");
        MOTO_PID.store(u64::from(child.id()), Ordering::Relaxed);
        let mut moto = Moto { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                moto.port = text.trim().parse().unwrap();
                if http_get(moto.port, "/moto-api/").is_some() {
                    return moto;
                }
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("the moto harness exited early ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "the moto harness did not start within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A user pool, app client, identity pool and the device's user: the `authentication` keys.
    fn cognito_setup(&self, python: &Path) -> Value {
        let out = Command::new(python)
            .arg(harness())
            .args(["cognito-setup", "--endpoint"])
            .arg(format!("http://127.0.0.1:{}", self.port))
            .args(["--password", PASSWORD, "--username", USER])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cognito-setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut auth: Value = serde_json::from_slice(&out.stdout).unwrap();
        auth["password"] = json!(PASSWORD);
        http_get(
            self.port,
            &format!("/_harness/token-lifetime?seconds={TOKEN_LIFETIME}"),
        )
        .expect("the harness takes a token lifetime");
        auth
    }
}

// ---------------------------------------------------------------------------------------------
// The publisher, seen from /proc

fn proc_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors by kind: log files (current and rotated), sockets, and the rest.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Fds {
    logs: u64,
    rotated: u64,
    sockets: u64,
    other: BTreeMap<String, u64>,
}

impl Fds {
    fn total(&self) -> u64 {
        self.logs + self.rotated + self.sockets + self.other.values().sum::<u64>()
    }

    fn read(pid: u32, logs: &Path) -> Fds {
        let mut fds = Fds::default();
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            return fds;
        };
        for e in entries.flatten() {
            let Ok(target) = std::fs::read_link(e.path()) else {
                continue;
            };
            let text = target.to_string_lossy();
            if target.starts_with(logs) {
                if text.ends_with(".log") {
                    fds.logs += 1;
                } else {
                    fds.rotated += 1;
                }
            } else if text.starts_with("socket:") {
                fds.sockets += 1;
            } else {
                let kind = if text.starts_with('/') {
                    target
                        .file_name()
                        .map_or(text.to_string(), |n| n.to_string_lossy().into_owned())
                } else {
                    text.split(':').next().unwrap_or("?").to_owned()
                };
                *fds.other.entry(kind).or_default() += 1;
            }
        }
        fds
    }
}

impl std::fmt::Display for Fds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} log files, {} rotated, {} sockets",
            self.total(),
            self.logs,
            self.rotated,
            self.sockets
        )?;
        for (k, n) in &self.other {
            write!(f, ", {n} {k}")?;
        }
        write!(f, ")")
    }
}

fn in_outage(t: u64) -> bool {
    t >= OUTAGE_FIRST && (t - OUTAGE_FIRST) % OUTAGE_EVERY < OUTAGE_LENGTH
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB ({kib} KiB)", kib as f64 / 1024.0)
}

fn clock(t: u64) -> String {
    format!("{:02}:{:02}", t / 60, t % 60)
}

/// One sample of the publisher every SAMPLE_EVERY seconds.
struct Sample {
    t: u64,
    rss: u64,
    anon: u64,
    fds: Fds,
}

fn end_outage(endpoint: &Endpoint) {
    endpoint.recoveries.lock().unwrap().push(Recovery {
        ended: Some(Instant::now()),
        ..Recovery::default()
    });
}

/// Kills the publisher and panics with the end of its log.
fn fail(why: &str, child: &mut Child, log: &Path) -> ! {
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    panic!(
        "{why}; the publisher's log ends:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let minutes: f64 = std::env::var("SOAK_MINUTES")
        .ok()
        .map(|v| v.parse().expect("SOAK_MINUTES is a number of minutes"))
        .unwrap_or(if bench { 30.0 } else { 3.0 });
    let run_for = (minutes * 60.0).round() as u64;
    assert!(run_for >= 30, "SOAK_MINUTES: at least half a minute");
    // A run shorter than the pattern (an outage every 10 minutes) takes its baselines earlier
    // and does not judge RSS growth.
    let full = run_for >= OUTAGE_EVERY;
    let rss_baseline = RSS_BASELINE.min(run_for / 2);
    let fd_baseline = FD_BASELINE.min(run_for / 3);

    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        stop_moto();
        default_hook(info);
    }));
    let python = python();
    let calibration = bench.then(calibrate);
    // SOAK_DIR: where the folder goes (the log files and the state file), e.g. another file
    // system than /tmp's.
    let temporary = match std::env::var_os("SOAK_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    // SOAK_KEEP: leave the folder (the publisher's log, the state file) for a look afterwards.
    let (dir, _temporary) = if std::env::var_os("SOAK_KEEP").is_some() {
        let path = temporary.keep();
        println!("soak: keeping {}", path.display());
        (path, None)
    } else {
        (temporary.path().to_owned(), Some(temporary))
    };
    let logs = dir.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let state = dir.join("state");
    let state_file = state.join("logs-state.json");
    let spool = state.join("metrics-spool");
    let publisher_log = dir.join("publisher.log");

    let moto = Moto::start(&python, &dir);
    let auth = moto.cognito_setup(&python);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = Arc::new(Endpoint {
        moto_port: moto.port,
        ..Endpoint::default()
    });
    {
        let endpoint = Arc::clone(&endpoint);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let endpoint = Arc::clone(&endpoint);
                std::thread::spawn(move || serve(stream, endpoint));
            }
        });
    }

    let config = json!({
        "agent": {
            "instance": {"prefix": "soak", "serial": "00000001"},
            "region": "us-east-1",
            "authentication": auth,
            "metrics_collection_interval": 1,
            // This machine's clock may not say it is synchronized; nothing waits for it.
            "clock_sync_timeout": 0,
            "logfile": publisher_log,
            "state_dir": state,
        },
        "metrics": {"namespace": "System/Soak"},
        "logs": {"log_group_name": "soak", "logs_collected": {"files": {"collect_list": [
            {"file_path": logs.join("app-*.log"), "from_beginning": true}]}}}
    });
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    // It holds the password: only its owner may read it.
    std::fs::set_permissions(
        &config_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let writers = Writers::new(&logs);
    let written = Arc::clone(&writers.written);
    let rotations = Arc::clone(&writers.rotations);
    let stop_writing = Arc::new(AtomicBool::new(false));

    let mut command = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            command.env_remove(k);
        }
    }
    let mut child = command
        .arg(&config_path)
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("HOME", &dir)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("JOURNAL_STREAM")
        .env_remove("INVOCATION_ID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let writer = {
        let stop = Arc::clone(&stop_writing);
        std::thread::spawn(move || writers.run(start, stop))
    };
    println!(
        "soak: {minutes} min; {FILES} files × {LINES_PER_SECOND} lines/s rotated every {} s; \
         metrics every second; CloudWatch away {OUTAGE_LENGTH} s every {OUTAGE_EVERY} s from \
         {OUTAGE_FIRST} s; Cognito credentials and id tokens valid {TOKEN_LIFETIME} s",
        ROTATE_EVERY.as_secs()
    );
    let mut samples: Vec<Sample> = Vec::new();
    let mut state_max = 0u64;
    let mut outages = 0u64;
    let mut t = 0u64;
    while t < run_for {
        t += 1;
        let wake = start + Duration::from_secs(t);
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        let down = in_outage(t);
        if down && !endpoint.outage.swap(true, Ordering::Relaxed) {
            outages += 1;
        } else if !down && endpoint.outage.swap(false, Ordering::Relaxed) {
            end_outage(&endpoint);
        }
        if let Ok(m) = std::fs::metadata(&state_file) {
            state_max = state_max.max(m.len());
        }
        if child.try_wait().unwrap().is_some() {
            fail(
                &format!("the publisher exited after {t} s"),
                &mut child,
                &publisher_log,
            );
        }
        if t.is_multiple_of(SAMPLE_EVERY) {
            samples.push(Sample {
                t,
                rss: proc_kib(pid, "VmRSS:"),
                anon: proc_kib(pid, "RssAnon:"),
                fds: Fds::read(pid, &logs),
            });
        }
        if t.is_multiple_of(60) {
            let s = samples.last().unwrap();
            let written: u64 = written.iter().map(|w| w.load(Ordering::Relaxed)).sum();
            println!(
                "  {}  RSS {:>6} KiB (anon {:>5})  fds {:>2}  lines {:>9} delivered of {:>9}  \
                 state file {:>6} B (max {:>6})  CPU {:>6.1} s{}",
                clock(t),
                s.rss,
                s.anon,
                s.fds.total(),
                endpoint.lines.load(Ordering::Relaxed),
                written,
                std::fs::metadata(&state_file).map_or(0, |m| m.len()),
                state_max,
                cpu_seconds(pid),
                if down { "  (CloudWatch away)" } else { "" }
            );
        }
    }
    let end_of_run = samples.last().map_or(0, |s| s.rss);
    let cpu_run = cpu_seconds(pid);

    // The end: no more lines, CloudWatch back, everything delivered.
    stop_writing.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    if endpoint.outage.swap(false, Ordering::Relaxed) {
        end_outage(&endpoint);
    }
    let written: Vec<u64> = written.iter().map(|w| w.load(Ordering::Relaxed)).collect();
    let drain_start = Instant::now();
    let delivered = |endpoint: &Endpoint| {
        let lineages = endpoint.lineages.lock().unwrap();
        (0..FILES).all(|i| {
            lineages
                .get(&file_name(i))
                .is_some_and(|l| l.next >= written[i])
        })
    };
    let spooled = || std::fs::read_dir(&spool).map_or(0, |d| d.count());
    let mut drained = true;
    while !(delivered(&endpoint) && spooled() == 0) {
        if drain_start.elapsed() > DRAIN_DEADLINE {
            drained = false;
            break;
        }
        if child.try_wait().unwrap().is_some() {
            fail(
                "the publisher exited while what was left was delivered",
                &mut child,
                &publisher_log,
            );
        }
        if let Ok(m) = std::fs::metadata(&state_file) {
            state_max = state_max.max(m.len());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let drained_in = drain_start.elapsed();
    // Connections the drain opened stay in the HTTP client's pool until they have been idle
    // for its timeout (90 s); only metrics (and Cognito) keep using one meanwhile.
    std::thread::sleep(Duration::from_secs(5));
    let fds_drained = Fds::read(pid, &logs);
    std::thread::sleep(POOL_IDLE.saturating_sub(Duration::from_secs(5)));
    let fds_end = Fds::read(pid, &logs);
    let rss_end = proc_kib(pid, "VmRSS:");
    let hwm = proc_kib(pid, "VmHWM:");
    let cpu_total = cpu_seconds(pid);
    // SAFETY: kill only sends a signal to the child started above.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(30) {
            fail(
                "the publisher did not stop within 30 s of SIGTERM",
                &mut child,
                &publisher_log,
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stop_took = stopped.elapsed();
    let state_final = std::fs::metadata(&state_file).map_or(0, |m| m.len());
    state_max = state_max.max(state_final);
    let state_entries = std::fs::read(&state_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v["files"].as_array().map(Vec::len))
        .unwrap_or(0);

    // The report.
    let at = |when: u64| samples.iter().find(|s| s.t >= when).unwrap();
    let baseline = at(rss_baseline);
    let after_baseline: Vec<&Sample> = samples.iter().filter(|s| s.t >= rss_baseline).collect();
    let peak_after = after_baseline.iter().map(|s| s.rss).max().unwrap_or(0);
    let growth = end_of_run as i64 - baseline.rss as i64;
    let fds_start = &at(fd_baseline).fds;
    let lineages = endpoint.lineages.lock().unwrap();
    let mut missing = 0;
    let mut repeated = 0;
    let mut foreign = 0;
    let mut beyond = 0;
    for (i, w) in written.iter().enumerate() {
        let l = lineages.get(&file_name(i));
        missing += l.map_or(*w, |l| l.missing + w.saturating_sub(l.next));
        repeated += l.map_or(0, |l| l.repeated);
        foreign += l.map_or(0, |l| l.foreign);
        beyond += l.map_or(0, |l| l.next.saturating_sub(*w));
    }
    let lines_written: u64 = written.iter().sum();
    let lines_delivered = endpoint.lines.load(Ordering::Relaxed);
    let unacknowledged = endpoint.unacknowledged.load(Ordering::Relaxed);
    let unacknowledged_lines = endpoint.unacknowledged_lines.load(Ordering::Relaxed);
    let metrics = endpoint.metrics.lock().unwrap();
    let rounds: Vec<i64> = metrics.rounds.iter().copied().collect();
    // Rounds are a second apart; a longer step between two is rounds not taken (or lost),
    // during an outage (or just after one: a round may wait for a retry) or outside them.
    let mut skipped_in_outages = 0;
    let mut skipped = Vec::new();
    for w in rounds.windows(2) {
        let missing = ((w[1] - w[0]) as f64 / 1000.0).round() as i64 - 1;
        if missing <= 0 {
            continue;
        }
        let at = ((w[0] - start_ms) / 1000).max(0) as u64;
        if in_outage(at) || in_outage(at.saturating_sub(10)) {
            skipped_in_outages += missing;
        } else {
            skipped.push(format!("{missing} after {}", clock(at)));
        }
    }
    let elapsed = start.elapsed().as_secs_f64();

    println!();
    println!("soak: {minutes} min ({run_for} s), {outages} outages, {} rotations of each file; then {:.1} s until everything was delivered", rotations.load(Ordering::Relaxed), drained_in.as_secs_f64());
    println!("RSS: {} at {}; {} at the end of the run ({}); growth {growth:+} KiB; peak after {}: {}; after the drain {}; VmHWM {}",
        mib(baseline.rss), clock(baseline.t), mib(end_of_run), clock(run_for), clock(rss_baseline), mib(peak_after), mib(rss_end), mib(hwm));
    let mut every = String::new();
    for s in samples.iter().filter(|s| s.t.is_multiple_of(300)) {
        every.push_str(&format!(" {} {} ({} anon);", clock(s.t), s.rss, s.anon));
    }
    println!("RSS every 5 min, KiB:{every}");
    // Away from outages and their drains: the band RSS moves in with the lines in flight.
    let calm: Vec<u64> = after_baseline
        .iter()
        .filter(|s| !in_outage(s.t) && !in_outage(s.t.saturating_sub(90)))
        .map(|s| s.rss)
        .collect();
    if let (Some(lo), Some(hi)) = (calm.iter().min(), calm.iter().max()) {
        println!(
            "RSS between outages after {}: {lo}–{hi} KiB ({} samples)",
            clock(rss_baseline),
            calm.len()
        );
    }
    // The end is as far from the last outage as 10:00 is from the first: the fairer
    // comparison when 5:00 is soon after an outage.
    let same_phase_growth = (run_for >= 2 * OUTAGE_EVERY && run_for.is_multiple_of(OUTAGE_EVERY))
        .then(|| {
            let s = at(OUTAGE_EVERY);
            (s.t, end_of_run as i64 - s.rss as i64)
        });
    if let Some((t, g)) = same_phase_growth {
        println!(
            "RSS growth from {} (the same point between outages as the end): {g:+} KiB",
            clock(t)
        );
    }
    println!(
        "open descriptors: {} at {}; {} after the drain; {} {} s later",
        fds_start,
        clock(fd_baseline),
        fds_drained,
        fds_end,
        POOL_IDLE.as_secs() - 5
    );
    println!(
        "most open: {}",
        samples
            .iter()
            .max_by_key(|s| s.fds.total())
            .map_or(String::new(), |s| format!("{} at {}", s.fds, clock(s.t)))
    );
    println!("lines: {lines_written} written, {lines_delivered} delivered ({:.0} lines/s); missing {missing}, repeated {repeated} ({unacknowledged} requests' acknowledgements could not be written, {unacknowledged_lines} lines in PutLogEvents among them), in the wrong stream {foreign}, never written {beyond}",
        lines_delivered as f64 / elapsed);
    println!("metrics: {} datums in {} PutMetricData requests accepted; {} rounds ({} to {}); repeated datums {}; undecodable requests {}; rounds missing (a second apart) during or just after outages {skipped_in_outages}, at other times {}",
        metrics.datums, metrics.requests, rounds.len(),
        clock(((rounds.first().copied().unwrap_or(start_ms) - start_ms) / 1000).max(0) as u64),
        clock(((rounds.last().copied().unwrap_or(start_ms) - start_ms) / 1000).max(0) as u64),
        metrics.repeated, metrics.undecodable,
        if skipped.is_empty() { "none".to_owned() } else { skipped.join(", ") });
    let seconds =
        |d: Option<Duration>| d.map_or("never".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()));
    for (i, r) in endpoint.recoveries.lock().unwrap().iter().enumerate() {
        println!(
            "after outage {}: the first PutLogEvents accepted {}, one of every stream {}, the first PutMetricData {} after it ended",
            i + 1,
            seconds(r.logs),
            seconds(r.every_stream),
            seconds(r.metrics)
        );
    }
    println!("state file: at most {state_max} bytes; {state_final} bytes with {state_entries} file entries at the end");
    println!(
        "CPU: {cpu_run:.1} s over the run ({:.2} % of one core); {cpu_total:.1} s with the drain",
        cpu_run / run_for as f64 * 100.0
    );
    let fmt = |m: &BTreeMap<String, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "requests answered: {}",
        fmt(&endpoint.answered.lock().unwrap())
    );
    println!(
        "requests refused (503): {}",
        fmt(&endpoint.refused.lock().unwrap())
    );
    let cognito = endpoint.cognito.lock().unwrap();
    let credentials = cognito
        .get("GetCredentialsForIdentity")
        .copied()
        .unwrap_or(0);
    println!(
        "Cognito calls: {}; {} failed to reach moto; credentials fetched every {:.0} s on average",
        fmt(&cognito),
        endpoint.cognito_failed.load(Ordering::Relaxed),
        elapsed / credentials.max(1) as f64
    );
    let log = std::fs::read_to_string(&publisher_log).unwrap_or_default();
    let mut said: BTreeMap<String, u64> = BTreeMap::new();
    for l in log.lines() {
        if let Some(level) = ["WARN", "ERROR"].iter().find(|w| l.contains(*w)) {
            let message: String = l
                .split_once(level)
                .map_or(l, |(_, m)| m)
                .chars()
                .take(110)
                .collect();
            *said.entry(format!("{level}{message}")).or_default() += 1;
        }
    }
    println!(
        "publisher's log: {} lines; warnings and errors:",
        log.lines().count()
    );
    for (m, n) in &said {
        println!("  {n:>5} × {m}");
    }
    println!(
        "stopped by SIGTERM in {:.2} s: {status}",
        stop_took.as_secs_f64()
    );
    if let Ok(m) = std::fs::metadata(BIN) {
        // The target directory may be shared with another checkout: say which binary ran.
        let built = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        println!(
            "binary: {BIN}, {} bytes, built at {built} (seconds since the epoch)",
            m.len()
        );
    }
    if let Some(c) = calibration {
        println!("calibration: SHA-256 on CPU 0 at {c:.0} MB/s (openssl speed -evp sha256, 16 KiB blocks, 3 s)");
    }

    let mut failed = Vec::new();
    if !drained {
        failed.push(format!(
            "not everything was delivered within {} s of the end ({} spool files left)",
            DRAIN_DEADLINE.as_secs(),
            spooled()
        ));
    }
    if full && growth >= RSS_GROWTH_MAX_KIB as i64 {
        failed.push(format!(
            "RSS grew {growth} KiB after {} (target < 1 MiB)",
            clock(rss_baseline)
        ));
    }
    if let Some((t, g)) = same_phase_growth {
        if g >= RSS_GROWTH_MAX_KIB as i64 {
            failed.push(format!(
                "RSS grew {g} KiB after {} (target < 1 MiB)",
                clock(t)
            ));
        }
    }
    // Files exactly as at the start; connections no more than then (the pool keeps a
    // connection per request once in flight at the same time, until it is idle for 90 s).
    let files = |f: &Fds| f.total() - f.sockets;
    if files(&fds_end) != files(fds_start) || fds_end.sockets > fds_start.sockets {
        failed.push(format!(
            "descriptors after the drain: {fds_end}; at {}: {fds_start}",
            clock(fd_baseline)
        ));
    }
    if missing > 0 || foreign > 0 || beyond > 0 {
        failed.push(format!(
            "lines missing {missing}, in the wrong stream {foreign}, never written {beyond}"
        ));
    }
    if repeated > unacknowledged_lines {
        failed.push(format!(
            "{repeated} lines came twice, more than the {unacknowledged_lines} of unacknowledged requests"
        ));
    }
    if metrics.repeated > 0 || !skipped.is_empty() || metrics.undecodable > 0 {
        failed.push(format!(
            "metrics: {} datums twice, rounds missing outside outages ({}), {} requests undecodable",
            metrics.repeated,
            skipped.join(", "),
            metrics.undecodable
        ));
    }
    if state_max > STATE_FILE_MAX {
        failed.push(format!(
            "the state file reached {state_max} bytes (target ≤ {STATE_FILE_MAX})"
        ));
    }
    if !status.success() {
        failed.push(format!("the publisher exited with {status}"));
    }
    if !full {
        println!(
            "RSS growth not judged: the run is shorter than {} minutes",
            OUTAGE_EVERY / 60
        );
    }
    if failed.is_empty() {
        println!("every target met");
    } else {
        for f in &failed {
            println!("TARGET MISSED: {f}");
        }
        drop(moto);
        std::process::exit(1);
    }
}
