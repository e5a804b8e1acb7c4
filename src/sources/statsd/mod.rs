//! StatsD: metrics the machine's own programs send to a local port, over UDP (or TCP where the
//! config asks), in the Etsy format with DogStatsD's tags.
//!
//! One task receives and aggregates (see [`aggregate`]); at the end of each aggregation
//! interval the records go to the metrics pipeline, which publishes them or keeps them in its
//! spool. At a stop the interval so far is handed over too, so nothing received is lost to a
//! restart. Lines that are not StatsD are counted and logged at most once a minute, with an
//! example; they never stop the listener. So are the values the aggregator's bounds refused
//! or cut, one count for each bound, with the bound.

pub mod aggregate;
pub mod parse;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Listen, Statsd, Transport};
use crate::metric::MetricRecord;
use crate::sources::tcp_lines::{self, Received};
pub use aggregate::{Aggregator, Publish, Refused};

/// How often the malformed lines are told of, at most.
const COMPLAINT_EVERY: Duration = Duration::from_secs(60);
/// A datagram is at most this long (UDP's limit).
const MAX_DATAGRAM: usize = 65_536;
/// A TCP line longer than this is not StatsD.
const MAX_TCP_LINE: usize = 65_536;
/// Bytes of receive buffer asked for per allowed pending message.
pub const BYTES_PER_MESSAGE: usize = 512;

/// A StatsD socket, bound at start so that a port in use is an error before the service
/// reports ready.
pub enum Bound {
    Udp(UdpSocket),
    Tcp(TcpListener),
}

impl Bound {
    /// Binds `listen`; for UDP the receive buffer is sized for `pending` messages, as far as
    /// the kernel allows (`net.core.rmem_max`).
    pub fn bind(listen: Listen, pending: usize) -> io::Result<Bound> {
        match listen.transport {
            Transport::Udp => {
                let socket = std::net::UdpSocket::bind(listen.address)?;
                socket.set_nonblocking(true)?;
                set_receive_buffer(&socket, pending.saturating_mul(BYTES_PER_MESSAGE));
                Ok(Bound::Udp(UdpSocket::from_std(socket)?))
            }
            Transport::Tcp => {
                let socket = std::net::TcpListener::bind(listen.address)?;
                socket.set_nonblocking(true)?;
                Ok(Bound::Tcp(TcpListener::from_std(socket)?))
            }
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Bound::Udp(s) => s.local_addr(),
            Bound::Tcp(s) => s.local_addr(),
        }
    }

    /// The UDP receive buffer the kernel gave, in bytes.
    pub fn receive_buffer(&self) -> Option<usize> {
        match self {
            Bound::Udp(s) => receive_buffer(s),
            Bound::Tcp(_) => None,
        }
    }
}

fn set_receive_buffer(socket: &impl std::os::fd::AsRawFd, bytes: usize) {
    let size = bytes.min(i32::MAX as usize) as libc::c_int;
    // SAFETY: setsockopt reads an int of the given size from a valid pointer.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn receive_buffer(socket: &impl std::os::fd::AsRawFd) -> Option<usize> {
    let mut size: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes to a valid int.
    let r = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&mut size as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(size as usize)
}

/// Datagrams the kernel dropped on the UDP socket bound to `port` because its receive buffer
/// was full (Linux's `/proc/net/udp`); `None` elsewhere.
pub fn kernel_drops(port: u16) -> Option<u64> {
    let mut found = None;
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                let drops = fields.last().and_then(|d| d.parse::<u64>().ok())?;
                *found.get_or_insert(0) += drops;
            }
        }
    }
    found
}

/// The kernel's count of datagrams dropped on the socket, told of when it grows.
struct KernelDrops {
    port: u16,
    buffer: usize,
    seen: Option<u64>,
    looked: Instant,
}

impl KernelDrops {
    /// Reads the count (off the async thread) at most once a minute; warns when it grew.
    async fn look(&mut self) {
        if self.seen.is_some() && self.looked.elapsed() < COMPLAINT_EVERY {
            return;
        }
        self.looked = Instant::now();
        let port = self.port;
        let Ok(Some(now)) = tokio::task::spawn_blocking(move || kernel_drops(port)).await else {
            return;
        };
        if let Some(before) = self.seen.filter(|&b| now > b) {
            tracing::warn!(
                datagrams = now - before,
                receive_buffer = self.buffer,
                "The kernel dropped StatsD datagrams: they came faster than they were read and the receive buffer was full; raise allowed_pending_messages (and net.core.rmem_max)."
            );
        }
        self.seen = Some(now);
    }
}

/// What was not taken, told of at most once a minute.
#[derive(Debug, Default)]
struct Complaints {
    malformed: u64,
    example: Option<(String, String)>,
    too_many: u64,
    /// New members of sets that had as many as they keep.
    members: u64,
    /// New metrics, set members and timing values past the bytes an interval keeps.
    full: u64,
    /// Values whose tags were cut to what CloudWatch's dimensions leave room for.
    tags_cut: u64,
    /// Timings kept to fewer than three significant digits.
    coarsened: u64,
    /// Gauges' last values forgotten.
    gauges_forgotten: u64,
    told: Option<Instant>,
}

impl Complaints {
    fn malformed(&mut self, line: &str, reason: String) {
        self.malformed += 1;
        if self.example.is_none() {
            let line: String = line.chars().take(200).collect();
            self.example = Some((line, reason));
        }
    }

    /// Logs what was refused or cut since the last time, if a minute has passed.
    fn tell(&mut self, force: bool, tag_room: usize) {
        if [
            self.malformed,
            self.too_many,
            self.members,
            self.full,
            self.tags_cut,
            self.coarsened,
            self.gauges_forgotten,
        ]
        .iter()
        .all(|&n| n == 0)
        {
            return;
        }
        if !force && self.told.is_some_and(|t| t.elapsed() < COMPLAINT_EVERY) {
            return;
        }
        self.told = Some(Instant::now());
        if self.malformed > 0 {
            let (line, reason) = self.example.take().unwrap_or_default();
            tracing::warn!(
                lines = self.malformed,
                example = %line,
                reason = %reason,
                "Ignored StatsD lines that are not metrics (counted since the last such message)."
            );
        }
        if self.too_many > 0 {
            tracing::warn!(
                metrics = self.too_many,
                most = aggregate::MAX_SERIES,
                "Dropped StatsD values of new metrics past the most kept per aggregation interval; are tags carrying ids?"
            );
        }
        if self.members > 0 {
            tracing::warn!(
                members = self.members,
                most = aggregate::MAX_MEMBERS,
                "Dropped new members of StatsD sets past the most one set keeps per collection interval; those sets count no more than that."
            );
        }
        if self.full > 0 {
            tracing::warn!(
                values = self.full,
                most_bytes = aggregate::MAX_BYTES,
                "Dropped StatsD values of new metrics, set members and timing values past the most bytes an aggregation interval keeps; are names or tags carrying ids?"
            );
        }
        if self.tags_cut > 0 {
            tracing::warn!(
                values = self.tags_cut,
                most = tag_room,
                "Cut the tags of StatsD values to the most a metric keeps: CloudWatch takes 30 dimensions, host, append_dimensions and metric_type among them; the first tags by name were kept."
            );
        }
        if self.coarsened > 0 {
            tracing::warn!(
                timings = self.coarsened,
                most = aggregate::MAX_DISTINCT,
                "Kept StatsD timings to fewer than three significant digits: their values spread too widely for the most distinct values a timing keeps per aggregation interval."
            );
        }
        if self.gauges_forgotten > 0 {
            tracing::warn!(
                gauges = self.gauges_forgotten,
                most = aggregate::MAX_GAUGES,
                "Forgot the last values of the StatsD gauges set least recently, past the most kept across intervals; a +N or -N to them starts from 0. Are tags carrying ids?"
            );
        }
        self.malformed = 0;
        self.too_many = 0;
        self.members = 0;
        self.full = 0;
        self.tags_cut = 0;
        self.coarsened = 0;
        self.gauges_forgotten = 0;
    }
}

struct Shared {
    aggregator: Aggregator,
    complaints: Complaints,
}

impl Shared {
    /// Logs what was refused or cut since the last time, if a minute has passed (or `force`).
    fn tell(&mut self, force: bool) {
        let trimmed = self.aggregator.take_trimmed();
        self.complaints.tags_cut += trimmed.tags;
        self.complaints.coarsened += trimmed.timings;
        self.complaints.gauges_forgotten += trimmed.gauges;
        self.complaints.tell(force, self.aggregator.tag_room());
    }

    /// Takes every line of `text`.
    fn take_lines(&mut self, text: &[u8]) {
        let mut metrics = Vec::new();
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let Ok(line) = std::str::from_utf8(line) else {
                let text = String::from_utf8_lossy(line).into_owned();
                self.complaints.malformed(&text, "not UTF-8 text".into());
                continue;
            };
            metrics.clear();
            if let Err(e) = parse::parse_line(line, &mut metrics) {
                self.complaints.malformed(line, e.0);
                continue;
            }
            for m in &metrics {
                match self.aggregator.add(m) {
                    Ok(()) => {}
                    Err(Refused::TooManySeries) => self.complaints.too_many += 1,
                    Err(Refused::TooManyMembers) => self.complaints.members += 1,
                    Err(Refused::Full) => self.complaints.full += 1,
                    Err(Refused::Invalid(reason)) => self.complaints.malformed(line, reason),
                }
            }
        }
    }
}

/// The StatsD listener.
pub struct StatsdSource {
    pub config: Statsd,
    pub publish: Publish,
}

impl StatsdSource {
    /// Receives on `socket` until `stop`; each aggregation interval's records go to `out`, the
    /// last (partial) one at the stop.
    pub async fn run(
        self,
        socket: Bound,
        out: mpsc::Sender<Vec<MetricRecord>>,
        stop: CancellationToken,
    ) {
        let shared = Arc::new(Mutex::new(Shared {
            aggregator: Aggregator::new(
                (self.config.metric_separator != ".").then(|| self.config.metric_separator.clone()),
                self.publish,
            ),
            complaints: Complaints::default(),
        }));
        // UDP datagrams the kernel dropped for want of room are watched for, once a minute.
        let mut drops = match &socket {
            Bound::Udp(_) => socket.local_addr().ok().map(|a| KernelDrops {
                port: a.port(),
                buffer: socket.receive_buffer().unwrap_or_default(),
                seen: None,
                looked: Instant::now(),
            }),
            Bound::Tcp(_) => None,
        };
        let receiving = CancellationToken::new();
        let receiver = tokio::spawn(receive(socket, Arc::clone(&shared), receiving.clone()));
        let collection = self.config.collection_interval;
        let aggregation = self.config.aggregation_interval;
        let window = aggregation.unwrap_or(collection);
        let mut window_start = aligned(crate::clock::wall_ms(), window);
        let mut next = next_boundary(collection);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = stop.cancelled() => break,
            }
            next = next_boundary(collection);
            if let Some(d) = &mut drops {
                d.look().await;
            }
            let now_ms = crate::clock::wall_ms();
            let records = {
                let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                s.tell(false);
                if aligned(now_ms, window) > window_start {
                    Some(s.aggregator.take(window_start, aggregation.is_none()))
                } else {
                    s.aggregator.collect();
                    None
                }
            };
            if let Some(records) = records {
                window_start = aligned(now_ms, window);
                if !records.is_empty() && out.send(records).await.is_err() {
                    break;
                }
            }
        }
        receiving.cancel();
        let _ = receiver.await;
        let records = {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            s.tell(true);
            s.aggregator.take(window_start, aggregation.is_none())
        };
        if !records.is_empty() {
            tracing::info!(
                metrics = records.len(),
                "Handing over the StatsD metrics of the interval so far."
            );
            let _ = out.send(records).await;
        }
    }
}

/// The start of the interval of length `every` that holds `ms`.
fn aligned(ms: i64, every: Duration) -> i64 {
    let every = every.as_millis().max(1) as i64;
    ms - ms.rem_euclid(every)
}

/// When the next collection interval (aligned to the wall clock) begins.
fn next_boundary(every: Duration) -> Instant {
    let now = crate::clock::wall_ms();
    let every_ms = every.as_millis().max(1) as i64;
    let wait = every_ms - now.rem_euclid(every_ms);
    Instant::now() + Duration::from_millis(wait as u64)
}

async fn receive(socket: Bound, shared: Arc<Mutex<Shared>>, stop: CancellationToken) {
    match socket {
        Bound::Udp(socket) => receive_udp(socket, shared, stop).await,
        Bound::Tcp(listener) => accept_tcp(listener, shared, stop).await,
    }
}

async fn receive_udp(socket: UdpSocket, shared: Arc<Mutex<Shared>>, stop: CancellationToken) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = socket.readable() => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "Cannot receive StatsD datagrams.");
                    return;
                }
            }
            _ = stop.cancelled() => break,
        }
        // Everything queued, then wait again; other tasks (signals, the tick, the watchdog's
        // beats) get their turn every 128 datagrams, however fast they come.
        let mut taken = 0u32;
        loop {
            taken += 1;
            if taken.is_multiple_of(128) {
                tokio::task::yield_now().await;
                // A flood never empties the queue: the stop is looked for here too.
                if stop.is_cancelled() {
                    break;
                }
            }
            match socket.try_recv(&mut buf) {
                Ok(n) => shared
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take_lines(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "A StatsD datagram could not be received.");
                    break;
                }
            }
        }
    }
    // What is queued at the stop is still taken, within a bound: a sender flooding the port
    // cannot hold the stop up.
    let until = tokio::time::Instant::now() + crate::sources::DRAIN_AT_STOP;
    let mut taken = 0u32;
    while let Ok(n) = socket.try_recv(&mut buf) {
        shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take_lines(&buf[..n]);
        taken += 1;
        if taken.is_multiple_of(128) {
            if tokio::time::Instant::now() >= until {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

async fn accept_tcp(listener: TcpListener, shared: Arc<Mutex<Shared>>, stop: CancellationToken) {
    tcp_lines::serve(listener, MAX_TCP_LINE, stop, move |received| {
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        match received {
            Received::Line(line) => s.take_lines(&line),
            Received::TooLong => s.complaints.malformed(
                "(too long to show)",
                format!("a line longer than {MAX_TCP_LINE} bytes"),
            ),
        }
        std::future::ready(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared {
            aggregator: Aggregator::new(
                None,
                Publish {
                    namespace: "Own".into(),
                    dimensions: vec![("host".into(), "pi".into())],
                    storage_resolution: 60,
                },
            ),
            complaints: Complaints::default(),
        }
    }

    #[test]
    fn each_bound_hit_is_counted_on_its_own() {
        let mut s = shared();
        let members: String = (0..aggregate::MAX_MEMBERS + 3)
            .map(|i| format!("users:u{i}|s\n"))
            .collect();
        s.take_lines(members.as_bytes());
        let tags: Vec<String> = (0..40).map(|i| format!("t{i}:v")).collect();
        s.take_lines(format!("cut:1|c|#{}", tags.join(",")).as_bytes());
        // Long names and tags fill the interval's bytes before its count of metrics.
        for i in 0..400 {
            let tags: Vec<String> = (0..20).map(|t| format!("t{t}:{i:0>1000}")).collect();
            s.take_lines(format!("{i:0>250}:1|c|#{}", tags.join(",")).as_bytes());
        }
        assert_eq!(s.complaints.members, 3);
        assert!(s.complaints.full > 0);
        assert_eq!(s.complaints.too_many, 0);
        assert_eq!(s.complaints.malformed, 0);
        s.tell(true);
        // What the aggregator cut is told with the rest.
        assert_eq!(s.aggregator.take_trimmed(), aggregate::Trimmed::default());
        assert_eq!((s.complaints.members, s.complaints.full), (0, 0));

        let mut s = shared();
        for i in 0..aggregate::MAX_SERIES + 2 {
            s.take_lines(format!("m{i}:1|c").as_bytes());
        }
        assert_eq!((s.complaints.too_many, s.complaints.full), (2, 0));
    }

    #[test]
    fn intervals_are_aligned_to_the_wall_clock() {
        assert_eq!(aligned(125_000, Duration::from_secs(60)), 120_000);
        assert_eq!(aligned(120_000, Duration::from_secs(60)), 120_000);
        assert_eq!(aligned(9_999, Duration::from_secs(10)), 0);
    }

    #[test]
    fn malformed_lines_are_counted_with_one_example() {
        let mut s = shared();
        s.take_lines(b"good:1|c\nbad line\nworse:x|c\n\n\xff\xfe:1|c\r\nok:2|g\r\n");
        assert_eq!(s.complaints.malformed, 3);
        assert_eq!(s.complaints.example.as_ref().unwrap().0, "bad line");
        assert_eq!(s.aggregator.len(), 2);
        s.tell(false);
        assert_eq!(s.complaints.malformed, 0);
        s.take_lines(b"bad again");
        s.tell(false);
        // Within the minute: kept for later.
        assert_eq!(s.complaints.malformed, 1);
    }
}
