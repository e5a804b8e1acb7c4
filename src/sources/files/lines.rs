//! Bytes → log lines: invalid UTF-8 becomes U+FFFD, the line ending goes, leading whitespace
//! stays, empty lines are skipped, and a line too long for one event becomes several.

use std::borrow::Cow;

use crate::sinks::cloudwatch_logs::{split_message, MAX_EVENT_BYTES};

/// Bytes read from a file that have not yet become lines.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Everything before this index has been searched for a newline already.
    scanned: usize,
}

impl LineBuffer {
    /// Room for `n` more bytes at the end; fill it, then call [`LineBuffer::filled`].
    pub fn spare(&mut self, n: usize) -> &mut [u8] {
        let len = self.buf.len();
        self.buf.resize(len + n, 0);
        &mut self.buf[len..]
    }

    /// Keeps `n` of the bytes offered by the last [`LineBuffer::spare`].
    pub fn filled(&mut self, offered: usize, n: usize) {
        let len = self.buf.len();
        self.buf.truncate(len - offered + n);
    }

    /// Bytes of an incomplete last line.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Gives the read buffer's memory back while there is nothing in it (an idle file).
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = Vec::new();
            self.scanned = 0;
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.scanned = 0;
    }

    /// Hands out every complete line. `emit(text, end)` gets the text (`None` for an empty
    /// line, which only moves the position) and how many bytes of the buffer are consumed once
    /// it is delivered. A line longer than the largest event without a newline yet is handed
    /// out in pieces so memory stays bounded. Returns the bytes consumed.
    pub fn drain(&mut self, mut emit: impl FnMut(Option<&str>, usize)) -> usize {
        let mut start = 0;
        loop {
            let search_from = self.scanned.max(start);
            match memchr::memchr(b'\n', &self.buf[search_from..]) {
                Some(i) => {
                    let nl = search_from + i;
                    emit_line(&self.buf[start..nl], start, nl + 1, &mut emit);
                    start = nl + 1;
                }
                None => {
                    self.scanned = self.buf.len();
                    if self.buf.len() - start >= MAX_EVENT_BYTES {
                        let cut = start + char_cut(&self.buf[start..], MAX_EVENT_BYTES);
                        emit_line(&self.buf[start..cut], start, cut, &mut emit);
                        start = cut;
                        continue;
                    }
                    break;
                }
            }
        }
        self.buf.drain(..start);
        self.scanned -= start.min(self.scanned);
        start
    }

    /// Hands out the incomplete last line too: the file has ended for good (rotated away or
    /// deleted) and no newline will come.
    pub fn finish(&mut self, mut emit: impl FnMut(Option<&str>, usize)) -> usize {
        let mut n = self.drain(&mut emit);
        if !self.buf.is_empty() {
            let len = self.buf.len();
            emit_line(&self.buf, 0, len, &mut emit);
            n += len;
            self.clear();
        }
        n
    }
}

/// An index at most `max` where `bytes` can be cut without splitting a UTF-8 sequence.
fn char_cut(bytes: &[u8], max: usize) -> usize {
    let mut cut = max.min(bytes.len());
    // Step back over at most three continuation bytes; if there are more, the bytes are not
    // UTF-8 there anyway and any cut is as good.
    for _ in 0..3 {
        if cut == 0 || cut >= bytes.len() || (bytes[cut] & 0xC0) != 0x80 {
            break;
        }
        cut -= 1;
    }
    if cut == 0 {
        max.min(bytes.len())
    } else {
        cut
    }
}

/// One line's bytes (without `\n`) → events. Pieces of a line too long for one event carry
/// the position of the line's start, all but the last: if only some were delivered, the line
/// is sent again rather than lost.
fn emit_line(raw: &[u8], start: usize, end: usize, emit: &mut impl FnMut(Option<&str>, usize)) {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.is_empty() {
        emit(None, end);
        return;
    }
    let text = match std::str::from_utf8(raw) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(raw),
    };
    if text.len() <= MAX_EVENT_BYTES {
        emit(Some(&text), end);
        return;
    }
    let mut pieces = split_message(&text).peekable();
    while let Some(piece) = pieces.next() {
        let at = if pieces.peek().is_some() { start } else { end };
        emit(Some(piece), at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(buf: &mut LineBuffer, bytes: &[u8]) -> Vec<(Option<String>, usize)> {
        let spare = buf.spare(bytes.len());
        spare.copy_from_slice(bytes);
        let mut out = Vec::new();
        buf.drain(|t, end| out.push((t.map(str::to_owned), end)));
        out
    }

    #[test]
    fn endings_go_indentation_stays_empty_lines_only_move() {
        let mut b = LineBuffer::default();
        let out = feed(&mut b, b"one\r\n  at frame\n\n\r\nhalf");
        assert_eq!(
            out,
            [
                (Some("one".into()), 5),
                (Some("  at frame".into()), 16),
                (None, 17),
                (None, 19),
            ]
        );
        assert_eq!(b.pending(), 4);
        let out = feed(&mut b, b" done\n");
        assert_eq!(out, [(Some("half done".into()), 10)]);
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let mut b = LineBuffer::default();
        let out = feed(&mut b, b"ok \xff\xfe end\n");
        assert_eq!(out[0].0.as_deref(), Some("ok \u{FFFD}\u{FFFD} end"));
    }

    #[test]
    fn a_long_line_becomes_several_events_in_order() {
        let mut b = LineBuffer::default();
        let mut line = "é".repeat(MAX_EVENT_BYTES); // 2 bytes each: twice the largest event
        line.push('\n');
        let out = feed(&mut b, line.as_bytes());
        let text: String = out.iter().map(|(t, _)| t.clone().unwrap()).collect();
        assert_eq!(text.len(), line.len() - 1);
        assert!(out
            .iter()
            .all(|(t, _)| t.as_ref().unwrap().len() <= MAX_EVENT_BYTES));
        assert_eq!(out.last().unwrap().1, line.len());
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn a_line_without_newline_is_cut_when_it_reaches_the_event_limit() {
        let mut b = LineBuffer::default();
        let out = feed(&mut b, &vec![b'a'; MAX_EVENT_BYTES + 10]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1, MAX_EVENT_BYTES);
        assert_eq!(b.pending(), 10);
        let mut rest = Vec::new();
        b.finish(|t, end| rest.push((t.map(str::len), end)));
        assert_eq!(rest, [(Some(10), 10)]);
    }

    #[test]
    fn lossy_expansion_is_split_and_early_pieces_keep_the_line_start() {
        let mut b = LineBuffer::default();
        let mut raw = b"x\n".to_vec();
        raw.extend(vec![0xffu8; 400_000]); // each byte becomes 3 bytes of U+FFFD
        raw.push(b'\n');
        let out = feed(&mut b, &raw);
        assert_eq!(out[0], (Some("x".into()), 2));
        let pieces = &out[1..];
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[0].1, 2, "first piece points at the line's start");
        assert_eq!(pieces[1].1, raw.len());
    }
}
