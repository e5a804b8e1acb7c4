//! A stream read one line at a time with a cap on what one line may hold: a child process's
//! output (journalctl's, `log`'s), a TCP connection's lines (StatsD, EMF).

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// A stream, one line at a time, holding at most `limit` bytes of a line, its newline
/// included (the rest of a longer one is skipped). All state is kept here, so a read interrupted by `select!` loses
/// nothing.
pub struct CappedLines {
    buf: Vec<u8>,
    skipping: bool,
    limit: usize,
}

pub enum Next {
    /// A whole line is in [`CappedLines::line`].
    Line,
    /// A line over the limit went by.
    Skipped,
    /// The output ended.
    End,
}

impl CappedLines {
    pub fn new(limit: usize) -> CappedLines {
        CappedLines {
            buf: Vec::new(),
            skipping: false,
            limit,
        }
    }

    /// The line [`CappedLines::next`] found, with its newline; cleared by the next call. After
    /// [`Next::End`], what the stream ended with that had no newline.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    pub async fn next<R: AsyncBufRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<Next> {
        if !self.skipping && self.buf.last() == Some(&b'\n') {
            self.buf.clear();
        }
        loop {
            let available = reader.fill_buf().await?;
            if available.is_empty() {
                return Ok(Next::End);
            }
            let (n, complete) = match memchr::memchr(b'\n', available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if !self.skipping {
                if self.buf.len() + n > self.limit {
                    self.skipping = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(&available[..n]);
                }
            }
            reader.consume(n);
            if complete {
                return Ok(if std::mem::take(&mut self.skipping) {
                    Next::Skipped
                } else {
                    Next::Line
                });
            }
        }
    }
}
