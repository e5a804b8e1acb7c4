//! Lines sent over TCP to a local receiver (StatsD, embedded metric format documents):
//! connections are accepted up to a limit, each read a line at a time with a cap on a line's
//! length. At a stop, what has already arrived on a connection is still read.
//!
//! Local senders are not trusted to be kind: what all connections of a listener hold is
//! bounded in bytes (each line past a small free part takes room shared by all of them; a line
//! that finds none left is dropped, counted), and when every connection is taken, the one idle
//! the longest makes way for a new one, so idle clients cannot lock the others out.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::capped_lines::{CappedLines, Next};
use super::DRAIN_AT_STOP;

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// What the lines of all a listener's connections may hold past each line's free part
/// ([`super::capped_lines::FREE_BYTES`]): with 64 connections, at most 4 MiB + 64 × 16 KiB of
/// lines, and 64 × 8 KiB of read buffers.
pub const LINE_ROOM: usize = 4 * 1024 * 1024;
/// When every connection is taken, one that sent nothing for this long is closed to make
/// way for a new one.
const IDLE_EVICT: Duration = Duration::from_secs(10);
/// At a stop, how long a connection is still read while data keeps arriving (a line at most
/// this far apart; and all within [`DRAIN_AT_STOP`]).
const DRAIN: Duration = Duration::from_millis(100);
/// How often what was refused is told of, at most.
const COMPLAINT_EVERY: Duration = Duration::from_secs(60);

/// One connection being served: when it last sent something, and how to close it.
struct Served {
    id: u64,
    last: Arc<AtomicU64>,
    close: CancellationToken,
}

/// What a listener refused since it last said so.
#[derive(Default)]
struct Refusals {
    /// Lines dropped for want of shared room.
    unroomed: AtomicU64,
    /// Idle connections closed for new ones.
    evicted: AtomicU64,
    /// Connections refused: every one taken and none idle.
    refused: AtomicU64,
}

impl Refusals {
    fn tell(&self, listen: &str) {
        let unroomed = self.unroomed.swap(0, Ordering::Relaxed);
        let evicted = self.evicted.swap(0, Ordering::Relaxed);
        let refused = self.refused.swap(0, Ordering::Relaxed);
        if unroomed > 0 {
            tracing::warn!(listen, lines = unroomed, room_mib = LINE_ROOM >> 20,
                "Dropped long lines received over TCP: the lines on all connections took all the room they may (counted since the last such message).");
        }
        if evicted > 0 {
            tracing::info!(
                listen,
                connections = evicted,
                most = MAX_CONNECTIONS,
                "Closed idle TCP connections to make way for new ones."
            );
        }
        if refused > 0 {
            tracing::warn!(
                listen,
                connections = refused,
                most = MAX_CONNECTIONS,
                "Refused TCP connections: every connection is taken and none is idle."
            );
        }
    }
}

/// What a connection sent.
pub enum Received {
    /// A line, with its newline (the last one of a connection may have none).
    Line(Vec<u8>),
    /// A line longer than the cap went by, unread.
    TooLong,
}

/// How much a listener takes: connections, idle time before one makes way, lines' room.
#[derive(Debug, Clone, Copy)]
struct Limits {
    connections: usize,
    idle_evict: Duration,
    line_room: usize,
}

const LIMITS: Limits = Limits {
    connections: MAX_CONNECTIONS,
    idle_evict: IDLE_EVICT,
    line_room: LINE_ROOM,
};

/// Accepts connections on `listener` until `stop`, handing each line of each to `take`.
pub async fn serve<F, Fut>(listener: TcpListener, max_line: usize, stop: CancellationToken, take: F)
where
    F: Fn(Received) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    serve_within(listener, max_line, LIMITS, stop, take).await
}

async fn serve_within<F, Fut>(
    listener: TcpListener,
    max_line: usize,
    limits: Limits,
    stop: CancellationToken,
    take: F,
) where
    F: Fn(Received) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let room = Arc::new(Semaphore::new(limits.line_room));
    let served: Arc<Mutex<Vec<Served>>> = Arc::default();
    let refusals = Arc::new(Refusals::default());
    let start = Instant::now();
    let mut next_id = 0u64;
    let mut told = Instant::now();
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "A connection could not be accepted.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = tokio::time::sleep_until(told + COMPLAINT_EVERY) => {
                told = Instant::now();
                refusals.tell(&listen);
                continue;
            }
            _ = stop.cancelled() => break,
        };
        let now = start.elapsed().as_millis() as u64;
        {
            let served = served.lock().unwrap_or_else(|e| e.into_inner());
            let open: Vec<&Served> = served.iter().filter(|c| !c.close.is_cancelled()).collect();
            if open.len() >= limits.connections {
                let idlest = open
                    .iter()
                    .min_by_key(|c| c.last.load(Ordering::Relaxed))
                    .filter(|c| {
                        now.saturating_sub(c.last.load(Ordering::Relaxed))
                            >= limits.idle_evict.as_millis() as u64
                    });
                match idlest {
                    Some(c) => {
                        c.close.cancel();
                        refusals.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        refusals.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
        }
        next_id += 1;
        let me = Served {
            id: next_id,
            last: Arc::new(AtomicU64::new(now)),
            close: stop.child_token(),
        };
        let (last, close, id) = (Arc::clone(&me.last), me.close.clone(), me.id);
        served.lock().unwrap_or_else(|e| e.into_inner()).push(me);
        let (take, stop, room, served, refusals) = (
            take.clone(),
            stop.clone(),
            Arc::clone(&room),
            Arc::clone(&served),
            Arc::clone(&refusals),
        );
        tracker.spawn(async move {
            let lines = CappedLines::shared(max_line + 1, room);
            let activity = Activity { start, last };
            connection(stream, lines, stop, close, activity, &refusals, take).await;
            served
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|c| c.id != id);
        });
    }
    tracker.close();
    tracker.wait().await;
    refusals.tell(&listen);
}

/// When a connection last sent something.
struct Activity {
    start: Instant,
    last: Arc<AtomicU64>,
}

impl Activity {
    fn now(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

async fn connection<F, Fut>(
    stream: TcpStream,
    mut lines: CappedLines,
    stop: CancellationToken,
    close: CancellationToken,
    activity: Activity,
    refusals: &Refusals,
    take: F,
) where
    F: Fn(Received) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut reader = BufReader::new(stream);
    // Set at the stop: what arrives after it is not read.
    let mut drain_until: Option<Instant> = None;
    loop {
        let next = if stop.is_cancelled() {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN_AT_STOP);
            let wait = DRAIN.min(until.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, lines.next(&mut reader)).await {
                Ok(r) if Instant::now() < until => r,
                _ => return,
            }
        } else {
            // `next` keeps what it read of a line when the stop interrupts it.
            tokio::select! {
                r = lines.next(&mut reader) => r,
                // Closed to make way for a new connection (the stop cancels it too).
                _ = close.cancelled(), if !stop.is_cancelled() => {
                    if stop.is_cancelled() {
                        continue;
                    }
                    return;
                }
            }
        };
        activity.now();
        match next {
            Ok(Next::Line) => take(Received::Line(lines.line().to_vec())).await,
            Ok(Next::Skipped) => {
                let unroomed = lines.take_unroomed();
                if unroomed > 0 {
                    refusals.unroomed.fetch_add(unroomed, Ordering::Relaxed);
                } else {
                    take(Received::TooLong).await;
                }
            }
            Ok(Next::End) => {
                if !lines.line().is_empty() {
                    take(Received::Line(lines.line().to_vec())).await;
                }
                return;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A listener serving with `limits`, its address, and the lines it received.
    async fn listening(
        limits: Limits,
        stop: &CancellationToken,
    ) -> (std::net::SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let sink = Arc::clone(&got);
        tokio::spawn(serve_within(
            listener,
            8 << 20,
            limits,
            stop.clone(),
            move |r| {
                let sink = Arc::clone(&sink);
                async move {
                    if let Received::Line(l) = r {
                        sink.lock().unwrap().push(l);
                    }
                }
            },
        ));
        (addr, got)
    }

    async fn wait_for(got: &Mutex<Vec<Vec<u8>>>, n: usize) -> bool {
        for _ in 0..100 {
            if got.lock().unwrap().len() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn idle_connections_make_way_for_a_new_one() {
        let stop = CancellationToken::new();
        let limits = Limits {
            connections: 2,
            idle_evict: Duration::from_millis(200),
            line_room: LINE_ROOM,
        };
        let (addr, got) = listening(limits, &stop).await;
        // Two clients connect and say nothing more.
        let _idle: Vec<TcpStream> = vec![
            TcpStream::connect(addr).await.unwrap(),
            TcpStream::connect(addr).await.unwrap(),
        ];
        tokio::time::sleep(Duration::from_millis(400)).await;
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(b"served\n").await.unwrap();
        assert!(wait_for(&got, 1).await, "the third client is served");
        assert_eq!(got.lock().unwrap()[0], b"served\n");
        stop.cancel();
    }

    #[tokio::test]
    async fn busy_connections_are_not_closed_and_a_new_one_is_refused() {
        let stop = CancellationToken::new();
        let limits = Limits {
            connections: 1,
            idle_evict: Duration::from_secs(60),
            line_room: LINE_ROOM,
        };
        let (addr, got) = listening(limits, &stop).await;
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"one\n").await.unwrap();
        assert!(wait_for(&got, 1).await);
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let _ = refused.write_all(b"never\n").await;
        busy.write_all(b"two\n").await.unwrap();
        assert!(wait_for(&got, 2).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*got.lock().unwrap(), [b"one\n".to_vec(), b"two\n".to_vec()]);
        stop.cancel();
    }

    #[tokio::test]
    async fn the_lines_of_all_connections_share_a_room_in_bytes() {
        let stop = CancellationToken::new();
        let limits = Limits {
            connections: 8,
            idle_evict: Duration::from_secs(60),
            line_room: 1 << 20,
        };
        let (addr, got) = listening(limits, &stop).await;
        // Two clients each hold most of a long line, unfinished: the second finds no room
        // and its line is dropped, while short lines still pass.
        let mut a = TcpStream::connect(addr).await.unwrap();
        a.write_all(&vec![b'a'; 900 << 10]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut b = TcpStream::connect(addr).await.unwrap();
        b.write_all(&vec![b'b'; 900 << 10]).await.unwrap();
        b.write_all(b"\nshort\n").await.unwrap();
        assert!(wait_for(&got, 1).await);
        a.write_all(b"\n").await.unwrap();
        assert!(wait_for(&got, 2).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lens: Vec<usize> = got.lock().unwrap().iter().map(Vec::len).collect();
        assert_eq!(
            lens,
            [6, (900 << 10) + 1],
            "b's long line dropped, a's kept"
        );
        // Its room is back: another long line fits.
        b.write_all(&vec![b'c'; 900 << 10]).await.unwrap();
        b.write_all(b"\n").await.unwrap();
        assert!(wait_for(&got, 3).await);
        stop.cancel();
    }
}
