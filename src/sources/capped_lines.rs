//! A stream read one line at a time with a cap on what one line may hold: a child process's
//! output (journalctl's, `log`'s), a TCP connection's lines (StatsD, EMF).

use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::sync::Semaphore;

/// A stream, one line at a time, holding at most `limit` bytes of a line, its newline
/// included (the rest of a longer one is skipped). All state is kept here, so a read interrupted by `select!` loses
/// nothing.
pub struct CappedLines {
    buf: Vec<u8>,
    skipping: bool,
    limit: usize,
    /// Room shared with other readers for what a line holds past [`FREE_BYTES`]: a line that
    /// finds none left is skipped (see [`CappedLines::shared`]).
    room: Option<Arc<Semaphore>>,
    /// Bytes of `room` this reader holds.
    held: usize,
    /// Lines skipped for want of room since the last [`CappedLines::take_unroomed`].
    unroomed: u64,
}

/// What a line may hold without taking shared room.
pub const FREE_BYTES: usize = 16 * 1024;
/// Shared room is taken in steps this big.
const ROOM_STEP: usize = 64 * 1024;

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
            room: None,
            held: 0,
            unroomed: 0,
        }
    }

    /// Like [`CappedLines::new`], and what a line holds past [`FREE_BYTES`] is taken from
    /// `room`, shared by many readers (the connections of a listener): with none left, the
    /// line is skipped, counted ([`CappedLines::take_unroomed`]), rather than waited for,
    /// which could leave every reader waiting for room the others hold.
    pub fn shared(limit: usize, room: Arc<Semaphore>) -> CappedLines {
        let mut lines = CappedLines::new(limit);
        lines.room = Some(room);
        lines
    }

    /// Lines skipped for want of shared room since the last call.
    pub fn take_unroomed(&mut self) -> u64 {
        std::mem::take(&mut self.unroomed)
    }

    /// Room for a line of `len` bytes: true if it may hold them.
    fn make_room(&mut self, len: usize) -> bool {
        let Some(room) = &self.room else {
            return true;
        };
        if len <= FREE_BYTES + self.held {
            return true;
        }
        let want = (len - FREE_BYTES - self.held).div_ceil(ROOM_STEP) * ROOM_STEP;
        match room.try_acquire_many(want as u32) {
            Ok(permit) => {
                permit.forget();
                self.held += want;
                true
            }
            Err(_) => false,
        }
    }

    /// Gives back the shared room and the memory a long line took.
    fn release(&mut self) {
        if self.buf.capacity() > FREE_BYTES {
            self.buf = Vec::new();
        }
        if let Some(room) = &self.room {
            room.add_permits(std::mem::take(&mut self.held));
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
            self.release();
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
                    self.release();
                } else if !self.make_room(self.buf.len() + n) {
                    self.skipping = true;
                    self.unroomed += 1;
                    self.buf = Vec::new();
                    self.release();
                } else {
                    self.buf.extend_from_slice(&available[..n]);
                }
            }
            reader.consume(n);
            if complete {
                // A line skipped for want of room is counted apart
                // ([`CappedLines::take_unroomed`]): it was not too long.
                if std::mem::take(&mut self.skipping) {
                    return Ok(Next::Skipped);
                }
                return Ok(Next::Line);
            }
        }
    }
}

impl Drop for CappedLines {
    fn drop(&mut self) {
        self.release();
    }
}
