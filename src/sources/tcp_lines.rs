//! Lines sent over TCP to a local receiver (StatsD, embedded metric format documents):
//! connections are accepted up to a limit, each read a line at a time with a cap on a line's
//! length. At a stop, what has already arrived on a connection is still read.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::capped_lines::{CappedLines, Next};

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// At a stop, how long a connection is still read while data keeps arriving.
const DRAIN: Duration = Duration::from_millis(100);

/// What a connection sent.
pub enum Received {
    /// A line, with its newline (the last one of a connection may have none).
    Line(Vec<u8>),
    /// A line longer than the cap went by, unread.
    TooLong,
}

/// Accepts connections on `listener` until `stop`, handing each line of each to `take`.
pub async fn serve<F, Fut>(listener: TcpListener, max_line: usize, stop: CancellationToken, take: F)
where
    F: Fn(Received) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let tracker = tokio_util::task::TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&connections).acquire_owned() => p.expect("never closed"),
            _ = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "A connection could not be accepted.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let (take, stop) = (take.clone(), stop.clone());
        tracker.spawn(async move {
            connection(stream, max_line, stop, take).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

async fn connection<F, Fut>(stream: TcpStream, max_line: usize, stop: CancellationToken, take: F)
where
    F: Fn(Received) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut reader = BufReader::new(stream);
    // The newline is counted too.
    let mut lines = CappedLines::new(max_line + 1);
    loop {
        let next = if stop.is_cancelled() {
            match tokio::time::timeout(DRAIN, lines.next(&mut reader)).await {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            // `next` keeps what it read of a line when the stop interrupts it.
            tokio::select! {
                r = lines.next(&mut reader) => r,
                _ = stop.cancelled() => continue,
            }
        };
        match next {
            Ok(Next::Line) => take(Received::Line(lines.line().to_vec())).await,
            Ok(Next::Skipped) => take(Received::TooLong).await,
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
