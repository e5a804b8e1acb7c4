//! Unix signals, turned into one typed stream in one place.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: finish in-flight work and exit.
    Shutdown,
    /// SIGHUP: nothing to reload yet; logged and otherwise ignored rather than fatal.
    Hangup,
}

/// Listens for signals; cancels `shutdown` on the first SIGTERM or SIGINT.
pub fn spawn(shutdown: CancellationToken) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        loop {
            let s = tokio::select! {
                _ = term.recv() => Signal::Shutdown,
                _ = int.recv() => Signal::Shutdown,
                _ = hup.recv() => Signal::Hangup,
                _ = shutdown.cancelled() => return,
            };
            match s {
                Signal::Shutdown => {
                    tracing::info!("Shutting down: finishing in-flight requests.");
                    shutdown.cancel();
                    return;
                }
                Signal::Hangup => {
                    tracing::info!("Got SIGHUP; there is nothing to reload, carrying on.")
                }
            }
        }
    }))
}
