//! Bytes → log lines: bytes are decoded from the file's encoding (UTF-8 unless the entry says
//! otherwise) with invalid ones as U+FFFD, the line ending goes, leading whitespace stays, empty
//! lines are skipped, and a line too long for one event becomes several. A line is decoded once
//! it is whole, so a character split across two reads is decoded whole.

use std::borrow::Cow;

use crate::sinks::cloudwatch_logs::{split_message, MAX_EVENT_BYTES};

/// How a file's bytes are text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Utf8,
    /// ISO-8859-1: each byte is the character of that number.
    Latin1,
    Utf16Le,
    Utf16Be,
    /// Any other the WHATWG encoding standard names (windows-1252, gbk, shift_jis, ...): all
    /// keep `\n` a byte of its own.
    Other(&'static encoding_rs::Encoding),
}

impl Encoding {
    /// The encoding a config names (case does not matter), as the CloudWatch Agent accepts them.
    pub fn from_name(name: &str) -> Option<Encoding> {
        let lower = name.trim().to_ascii_lowercase();
        Some(match lower.as_str() {
            "utf-8" | "utf8" | "utf_8" | "ascii" | "us-ascii" => Encoding::Utf8,
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "iso_8859-1" | "l1" => {
                Encoding::Latin1
            }
            "utf-16" | "utf-16le" | "utf16" | "utf16le" => Encoding::Utf16Le,
            "utf-16be" | "utf16be" => Encoding::Utf16Be,
            other => {
                let e = encoding_rs::Encoding::for_label(other.as_bytes())?;
                if e == encoding_rs::UTF_8 {
                    Encoding::Utf8
                } else if e == encoding_rs::UTF_16LE {
                    Encoding::Utf16Le
                } else if e == encoding_rs::UTF_16BE {
                    Encoding::Utf16Be
                } else if e == encoding_rs::REPLACEMENT {
                    return None;
                } else {
                    Encoding::Other(e)
                }
            }
        })
    }

    /// The encoding's name, as `validate` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Latin1 => "iso-8859-1",
            Encoding::Utf16Le => "utf-16le",
            Encoding::Utf16Be => "utf-16be",
            Encoding::Other(e) => e.name(),
        }
    }

    /// Bytes of a code unit: 2 for UTF-16.
    fn unit(self) -> usize {
        match self {
            Encoding::Utf16Le | Encoding::Utf16Be => 2,
            _ => 1,
        }
    }

    fn decode(self, raw: &[u8]) -> Cow<'_, str> {
        let text = match self {
            Encoding::Utf8 => match std::str::from_utf8(raw) {
                Ok(s) => Cow::Borrowed(s),
                Err(_) => String::from_utf8_lossy(raw),
            },
            Encoding::Latin1 => Cow::Owned(raw.iter().map(|&b| char::from(b)).collect()),
            Encoding::Utf16Le => encoding_rs::UTF_16LE.decode_without_bom_handling(raw).0,
            Encoding::Utf16Be => encoding_rs::UTF_16BE.decode_without_bom_handling(raw).0,
            Encoding::Other(e) => e.decode_without_bom_handling(raw).0,
        };
        match text {
            Cow::Borrowed(t) => Cow::Borrowed(t.strip_prefix('\u{FEFF}').unwrap_or(t)),
            Cow::Owned(t) if t.starts_with('\u{FEFF}') => {
                Cow::Owned(t['\u{FEFF}'.len_utf8()..].to_owned())
            }
            owned => owned,
        }
    }

    /// The line ending's carriage return, in this encoding.
    fn cr(self) -> &'static [u8] {
        match self {
            Encoding::Utf16Le => b"\r\0",
            Encoding::Utf16Be => b"\0\r",
            _ => b"\r",
        }
    }
}

/// Bytes read from a file that have not yet become lines.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Everything before this index has been searched for a newline already.
    scanned: usize,
    encoding: Encoding,
}

impl LineBuffer {
    pub fn new(encoding: Encoding) -> LineBuffer {
        LineBuffer {
            encoding,
            ..LineBuffer::default()
        }
    }

    /// Where the next newline after `from` is: (index of its first byte, its length).
    fn newline(&self, from: usize) -> Option<(usize, usize)> {
        let mut at = from;
        loop {
            let i = at + memchr::memchr(b'\n', &self.buf[at..])?;
            match self.encoding {
                Encoding::Utf16Le if i.is_multiple_of(2) && self.buf.get(i + 1) == Some(&0) => {
                    return Some((i, 2))
                }
                Encoding::Utf16Be if i % 2 == 1 && self.buf[i - 1] == 0 => return Some((i - 1, 2)),
                Encoding::Utf16Le | Encoding::Utf16Be => at = i + 1,
                _ => return Some((i, 1)),
            }
        }
    }

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

    /// Keeps no more memory than the incomplete last line needs: a reader waiting its turn
    /// (hundreds of files behind) holds a line's worth, not a read's.
    pub fn shrink(&mut self) {
        if self.buf.capacity() > 2 * self.buf.len() + 4096 {
            self.buf.shrink_to(self.buf.len());
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
        let enc = self.encoding;
        loop {
            let search_from = self.scanned.max(start);
            match self.newline(search_from) {
                Some((nl, len)) => {
                    emit_line(enc, &self.buf[start..nl], start, nl + len, &mut emit);
                    start = nl + len;
                }
                None => {
                    // A two-byte newline may have only its first byte here yet.
                    self.scanned = self.buf.len().saturating_sub(enc.unit() - 1);
                    if self.buf.len() - start >= MAX_EVENT_BYTES {
                        let max = MAX_EVENT_BYTES / enc.unit() * enc.unit();
                        let rest = &self.buf[start..];
                        let cut = start
                            + match enc {
                                Encoding::Utf8 => char_cut(rest, max),
                                Encoding::Latin1 => max,
                                Encoding::Utf16Le => decoded_cut(encoding_rs::UTF_16LE, rest, max),
                                Encoding::Utf16Be => decoded_cut(encoding_rs::UTF_16BE, rest, max),
                                Encoding::Other(e) => decoded_cut(e, rest, max),
                            };
                        emit_line(enc, &self.buf[start..cut], start, cut, &mut emit);
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
            // Positions count from where the buffer began before the drain above.
            emit_line(self.encoding, &self.buf, n, n + len, &mut emit);
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

/// An index at most `max` where `bytes` can be cut without splitting a character of
/// `encoding` (a surrogate pair of UTF-16, a Shift_JIS or GB18030 sequence): before the bytes
/// of a character a decoder still holds, unfinished, at `max`. Decodes up to `max` bytes, which
/// only a line longer than an event without a newline yet costs.
fn decoded_cut(encoding: &'static encoding_rs::Encoding, bytes: &[u8], max: usize) -> usize {
    use encoding_rs::DecoderResult;
    let src = &bytes[..max.min(bytes.len())];
    let mut decoder = encoding.new_decoder_without_bom_handling();
    let mut scratch = [0u8; 4096];
    let mut read = 0;
    loop {
        let (result, n, _) =
            decoder.decode_to_utf8_without_replacement(&src[read..], &mut scratch, false);
        read += n;
        if result == DecoderResult::InputEmpty {
            break;
        }
    }
    match decoder.decode_to_utf8_without_replacement(&[], &mut scratch, true) {
        (DecoderResult::Malformed(held, again), _, _) => {
            let held = usize::from(held) + usize::from(again);
            // A character is at most 4 bytes: more held is not a character split here.
            if held < src.len() && held <= 4 {
                src.len() - held
            } else {
                src.len()
            }
        }
        _ => src.len(),
    }
}

/// One line's bytes (without `\n`) → events. Pieces of a line too long for one event carry
/// the position of the line's start, all but the last: if only some were delivered, the line
/// is sent again rather than lost.
fn emit_line(
    enc: Encoding,
    raw: &[u8],
    start: usize,
    end: usize,
    emit: &mut impl FnMut(Option<&str>, usize),
) {
    let raw = raw.strip_suffix(enc.cr()).unwrap_or(raw);
    let text = enc.decode(raw);
    if text.is_empty() {
        emit(None, end);
        return;
    }
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
    fn a_line_cut_at_the_event_limit_keeps_its_characters_whole() {
        // Found by the lines fuzz target: a line cut at the limit split a two-byte Shift_JIS
        // character or a UTF-16 surrogate pair, and both halves became U+FFFD.
        let cases: [(&str, Vec<u8>); 3] = [
            ("shift_jis", {
                let mut raw = vec![b'a'];
                raw.extend(std::iter::repeat_n([0x93u8, 0xfa], MAX_EVENT_BYTES / 2).flatten());
                raw
            }),
            ("gb18030", {
                let mut raw = vec![b'a'; 3];
                raw.extend(
                    std::iter::repeat_n([0x81u8, 0x30, 0x81, 0x30], MAX_EVENT_BYTES / 4).flatten(),
                );
                raw
            }),
            ("utf-16le", {
                let mut raw = b"a\0b\0".to_vec();
                raw.extend(
                    "😀"
                        .encode_utf16()
                        .flat_map(u16::to_le_bytes)
                        .cycle()
                        .take(MAX_EVENT_BYTES + 2),
                );
                raw
            }),
        ];
        for (name, raw) in cases {
            let mut b = LineBuffer::new(Encoding::from_name(name).unwrap());
            let mut out = feed(&mut b, &raw);
            b.finish(|t, end| out.push((t.map(str::to_owned), end)));
            let text: String = out.iter().filter_map(|(t, _)| t.clone()).collect();
            assert!(out.len() >= 2, "{name}: cut");
            assert!(!text.contains('\u{FFFD}'), "{name}: a character split");
        }
    }

    #[test]
    fn finishing_a_buffer_with_whole_lines_still_in_it_counts_from_its_start() {
        // Found by the lines fuzz target: the last line's position left out the lines drained
        // just before it.
        let mut b = LineBuffer::default();
        let spare = b.spare(9);
        spare.copy_from_slice(
            b"one
two
t",
        );
        b.filled(9, 9);
        let mut out = Vec::new();
        assert_eq!(b.finish(|t, end| out.push((t.map(str::to_owned), end))), 9);
        assert_eq!(
            out,
            [
                (Some("one".into()), 4),
                (Some("two".into()), 8),
                (Some("t".into()), 9)
            ]
        );
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

    #[test]
    fn encodings_each_decoded_whole_even_when_split_across_reads() {
        // Latin-1: é is one byte.
        let mut b = LineBuffer::new(Encoding::from_name("ISO-8859-1").unwrap());
        assert_eq!(feed(&mut b, b"caf\xe9\n"), [(Some("café".into()), 5)]);
        // windows-1252: 0x80 is the euro sign (not a control character as in Latin-1).
        let mut b = LineBuffer::new(Encoding::from_name("windows-1252").unwrap());
        assert_eq!(feed(&mut b, b"\x80 5\n")[0].0.as_deref(), Some("€ 5"));
        // Shift_JIS: a two-byte character split between two reads.
        let mut b = LineBuffer::new(Encoding::from_name("shift_jis").unwrap());
        assert!(feed(&mut b, b"\x93\xfa").is_empty());
        assert_eq!(feed(&mut b, b"\x96\x7b\n"), [(Some("日本".into()), 5)]);
        // GBK.
        let mut b = LineBuffer::new(Encoding::from_name("gbk").unwrap());
        assert_eq!(
            feed(&mut b, b"\xc4\xe3\xba\xc3\r\n")[0].0.as_deref(),
            Some("你好")
        );
        // UTF-16LE with a BOM and CRLF; a newline's two bytes split between reads; a 0x0A byte
        // inside a character (U+010A) is not a newline.
        let mut b = LineBuffer::new(Encoding::from_name("UTF-16").unwrap());
        let mut raw = vec![0xFF, 0xFE];
        for u in "Ċa\r\nb\n".encode_utf16() {
            raw.extend(u.to_le_bytes());
        }
        let first = feed(&mut b, &raw[..9]);
        assert!(first.is_empty(), "{first:?}");
        let rest = feed(&mut b, &raw[9..]);
        assert_eq!(rest, [(Some("Ċa".into()), 10), (Some("b".into()), 14)]);
        // UTF-16BE.
        let mut b = LineBuffer::new(Encoding::from_name("utf-16be").unwrap());
        let raw: Vec<u8> = "x\ny\n".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(
            feed(&mut b, &raw),
            [(Some("x".into()), 4), (Some("y".into()), 8)]
        );
        // Invalid bytes still become U+FFFD; unknown names are refused.
        let mut b = LineBuffer::new(Encoding::from_name("gbk").unwrap());
        assert_eq!(feed(&mut b, b"\xff\n")[0].0.as_deref(), Some("\u{FFFD}"));
        assert_eq!(Encoding::from_name("klingon"), None);
        assert_eq!(Encoding::from_name("UTF8"), Some(Encoding::Utf8));
    }
}
