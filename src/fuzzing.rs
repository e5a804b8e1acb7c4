//! Entry points of the fuzz targets (`fuzz/fuzz_targets/`) and of the corpus test
//! (`tests/fuzz_corpus.rs`). Each takes arbitrary bytes, drives one reader or builder of the
//! publisher with them, and asserts what must hold for every input, not only that nothing
//! panics: a failed assertion here is a bug found. The asserts are the point of this module, so
//! it is the one place in the library that panics on purpose.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use crate::checkpoint::{Checkpoints, STATE_FILE};
use crate::config::{self, ConfigError, Filters, JournalSource};
use crate::sinks::cloudwatch_logs::{
    split_message, Batch, BatchBuilder, EVENT_OVERHEAD, MAX_BATCH_BYTES, MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES, MAX_SPAN_MS,
};
use crate::sources::files::multiline::{Assembler, StartPattern};
use crate::sources::files::timestamp::{LocalOffset, TimestampFormat};
use crate::sources::files::{Encoding, LineBuffer, PositionStore};
use crate::sources::journal::Journal;
use crate::sources::Position;

/// Reads parameters off the front of the input; an exhausted input reads as zeros.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(self.0.len())
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Every PutLogEvents rule a batch must keep.
fn check_batch(batch: &Batch) {
    assert!(batch.len() <= MAX_BATCH_EVENTS, "{} events", batch.len());
    let bytes: usize = batch.events().map(|(_, m)| m.len() + EVENT_OVERHEAD).sum();
    assert_eq!(bytes, batch.bytes());
    assert!(bytes <= MAX_BATCH_BYTES, "{bytes} bytes");
    let mut last = None;
    for (ts, message) in batch.events() {
        assert!(
            !message.is_empty() && message.len() <= MAX_EVENT_BYTES,
            "an event of {} bytes",
            message.len()
        );
        if let Some(last) = last {
            assert!(ts >= last, "events out of order: {ts} after {last}");
        }
        last = Some(ts);
    }
    if let (Some(first), Some(last)) = (batch.first_timestamp(), batch.last_timestamp()) {
        assert!(last - first <= MAX_SPAN_MS, "a span of {} ms", last - first);
    }
}

// ---------------------------------------------------------------------------------------------
// The config checker.

/// Config text → [`config::parse`]. A config that is accepted shows an effective config
/// (`validate`) that is accepted in turn and shows the same; the passwords (Cognito's and the
/// proxy's) change nothing shown; a refused one lists each problem on its own line.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz.json");
    let checked = match config::parse(path, &text) {
        Ok(c) => c,
        Err(ConfigError::Invalid { problems, .. }) => {
            assert!(!problems.is_empty(), "refused without a reason");
            let err = ConfigError::Invalid {
                path: path.to_owned(),
                problems: problems.clone(),
            };
            let shown = err.to_string();
            assert_eq!(
                shown.lines().count(),
                problems.len(),
                "one line per problem: {shown}"
            );
            for (line, p) in shown.lines().zip(&problems) {
                assert!(!p.message.is_empty(), "a problem without a message");
                assert!(line.starts_with("fuzz.json: "), "{line}");
            }
            return;
        }
        Err(ConfigError::Syntax { .. }) => {
            assert!(
                serde_json::from_str::<Value>(&text).is_err(),
                "valid JSON reported as a syntax error"
            );
            return;
        }
        Err(e) => panic!("parse does no I/O, yet: {e}"),
    };
    let shown = checked.effective_json();
    let shown_text = shown.to_string();
    let again = config::parse(path, &shown_text)
        .unwrap_or_else(|e| panic!("the effective config is refused: {e}\n{shown_text}"));
    assert_eq!(
        again.effective_json(),
        shown,
        "the effective config, checked again, shows something else\n{shown_text}"
    );

    // The same file with other passwords shows exactly the same.
    let Ok(mut root) = serde_json::from_str::<Value>(&text) else {
        panic!("accepted text that is not JSON")
    };
    let mut replaced = false;
    if let Some(agent) = root.get_mut("agent") {
        if let Some(pw) = agent.pointer_mut("/authentication/password") {
            if pw.is_string() {
                *pw = Value::String("other fuzz password".into());
                replaced = true;
            }
        }
        if let Some(Value::String(url)) = agent.get_mut("proxy") {
            if let Some(other) = other_proxy_password(url) {
                *url = other;
                replaced = true;
            }
        }
    }
    if replaced {
        let other = config::parse(path, &root.to_string())
            .unwrap_or_else(|e| panic!("refused once the password changed: {e}"));
        assert_eq!(
            other.effective_json(),
            shown,
            "a password shows in the effective config"
        );
        assert_eq!(
            format!("{other:?}"),
            format!("{checked:?}"),
            "a password shows in the config's Debug"
        );
    }
}

/// `url` with another password, if it has one.
fn other_proxy_password(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, host) = rest.rsplit_once('@')?;
    let (user, _) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:other-fuzz-password@{host}"))
}

// ---------------------------------------------------------------------------------------------
// The state file.

/// The bytes as the state file, loaded by [`Checkpoints::load`] in a folder of this process's
/// own under the temporary folder (`TMPDIR`).
pub fn state_file(data: &[u8]) {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("publisher-fuzz-state-{}", std::process::id()))
    });
    state_file_in(dir, data);
}

/// [`state_file`] in `dir`. A file that loads is left as it is, and saved, loaded and saved
/// again it gives the same bytes and the same positions; one that does not is set aside whole.
pub fn state_file_in(dir: &Path, data: &[u8]) {
    let path = dir.join(STATE_FILE);
    let aside = path.with_extension("json.corrupt");
    std::fs::create_dir_all(dir).expect("create the fuzz state folder");
    let _ = std::fs::remove_file(&aside);
    std::fs::write(&path, data).expect("write the state file");
    let first = Checkpoints::load(dir).expect("load the state file");
    if !path.exists() {
        assert_eq!(
            std::fs::read(&aside).expect("the file set aside"),
            data,
            "the file set aside is not the one that was there"
        );
        return;
    }
    assert_eq!(
        std::fs::read(&path).expect("read"),
        data,
        "loading changed the file"
    );
    let saved = resave(&first, &path);
    let second = Checkpoints::load(dir).expect("load the saved state");
    assert!(path.exists(), "the state file it saved was set aside");
    let saved_again = resave(&second, &path);
    assert_eq!(
        String::from_utf8_lossy(&saved),
        String::from_utf8_lossy(&saved_again),
        "saved, loaded and saved again, the state file changed"
    );

    let value: Value = serde_json::from_slice(&saved).expect("the saved state file is JSON");
    assert_eq!(value["version"], 1);
    assert_eq!(first.journal_cursor(&None), second.journal_cursor(&None));
    assert_eq!(first.journal_start(&None), second.journal_start(&None));
    if let Some(readers) = value["journald"].as_object() {
        for key in readers.keys() {
            let key = Some(key.as_str().into());
            assert_eq!(first.journal_cursor(&key), second.journal_cursor(&key));
            assert_eq!(first.journal_start(&key), second.journal_start(&key));
        }
    }
    for f in value["files"].as_array().into_iter().flatten() {
        let (Some(dev), Some(ino)) = (f["dev"].as_u64(), f["ino"].as_u64()) else {
            panic!("a saved file entry without dev and ino: {f}")
        };
        assert_eq!(first.offset(dev, ino), second.offset(dev, ino));
        assert!(first.offset(dev, ino).is_some());
    }
}

/// Saves `c` (marking it changed without changing it) and returns what was written.
fn resave(c: &Checkpoints, path: &Path) -> Vec<u8> {
    let followed = c.follow(["\0fuzz-a".to_owned()]);
    c.follow(["\0fuzz-b".to_owned()]);
    c.follow(followed);
    c.save().expect("save the state file");
    std::fs::read(path).expect("read the saved state file")
}

// ---------------------------------------------------------------------------------------------
// journalctl's JSON.

/// The filters a journal reader may have, picked by the first byte.
fn journal_filters(pick: u8) -> Filters {
    static EXCLUDE: OnceLock<Regex> = OnceLock::new();
    static INCLUDE: OnceLock<Regex> = OnceLock::new();
    let exclude = || {
        EXCLUDE
            .get_or_init(|| Regex::new("^DEBUG").expect("regex"))
            .clone()
    };
    let include = || {
        INCLUDE
            .get_or_init(|| Regex::new("(?i)error").expect("regex"))
            .clone()
    };
    match pick % 4 {
        0 => Filters::default(),
        1 => Filters {
            include: Vec::new(),
            exclude: vec![exclude()],
        },
        2 => Filters {
            include: vec![include()],
            exclude: Vec::new(),
        },
        _ => Filters {
            include: vec![include()],
            exclude: vec![exclude()],
        },
    }
}

/// The fields of a journal entry the reader uses, read on their own, the same way as the reader
/// reads them (the other fields skipped unread; the reader takes objects only).
#[derive(serde::Deserialize)]
struct JournalEntry {
    #[serde(rename = "__CURSOR")]
    cursor: String,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<String>,
    #[serde(rename = "MESSAGE", default)]
    message: Option<Value>,
}

/// A journal field's text as journalctl's JSON gives it: a string, bytes, or a list of either
/// for a repeated field. `None`: a value that is not a field.
fn journal_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|i| i.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            if let Some(bytes) = bytes {
                return Some(String::from_utf8_lossy(&bytes).into_owned());
            }
            let texts: Option<Vec<String>> = items.iter().map(journal_text).collect();
            Some(texts?.join("\n"))
        }
        _ => None,
    }
}

/// journalctl's output (first byte: the reader's filters and key) → [`Journal::entry`] line by
/// line. Every entry that is taken moves the position to its cursor and gives exactly its
/// message, as one event at its own time, unless filtered or empty; all batches keep every
/// limit.
pub fn journal(data: &[u8]) {
    let mut input = Input(data);
    let pick = input.byte();
    let filters = journal_filters(pick);
    let key: crate::sources::JournalKey = (pick & 4 != 0).then(|| "group/stream".into());
    let journal = Journal {
        program: PathBuf::from("journalctl"),
        source: JournalSource {
            key: key.clone(),
            log_group_name: None,
            log_stream_name: "journal".into(),
            retention_in_days: None,
            filters: filters.clone(),
            units: Vec::new(),
            priority: None,
            matches: Vec::new(),
        },
        once: true,
        flush_interval: Duration::from_secs(1),
    };
    let flush_each = pick & 8 != 0;
    let mut builder = BatchBuilder::new();
    let mut last_ts = 0;
    let mut batches = Vec::new();
    // (time if the entry gives one, message) of each event expected.
    let mut expected: Vec<(Option<i64>, String)> = Vec::new();
    // journalctl's lines as the reader hands them on: whole, with their newline; a last line
    // without one is never an entry.
    let rest = input.rest();
    let mut start = 0;
    while let Some(i) = memchr::memchr(b'\n', &rest[start..]) {
        let line = &rest[start..start + i + 1];
        start += i + 1;
        let before = builder.position().cloned();
        let handed = batches.len();
        // `entry` sets the cursor only when it takes the line as an entry.
        let mut taken = None;
        batches.extend(journal.entry(line, &mut builder, &mut last_ts, &mut taken));
        let Some(cursor) = taken else {
            assert_eq!(
                builder.position(),
                before.as_ref(),
                "a line that is no entry moved"
            );
            assert_eq!(
                batches.len(),
                handed,
                "a line that is no entry handed out a batch"
            );
            continue;
        };
        let entry: JournalEntry = serde_json::from_slice(line).expect("a line taken is an entry");
        assert_eq!(entry.cursor, cursor, "not the entry's cursor");
        assert_eq!(
            builder.position(),
            Some(&Position::Journal(key.clone(), cursor)),
            "the position is not the entry's cursor"
        );
        let text = match &entry.message {
            None => String::new(),
            Some(m) => journal_text(m).expect("a taken entry's MESSAGE is a field"),
        };
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.is_empty() && filters.keeps(text) {
            let ts = entry
                .realtime
                .as_deref()
                .and_then(|t| t.parse::<i64>().ok())
                .map(|us| us / 1000);
            expected.extend(split_message(text).map(|piece| (ts, piece.to_owned())));
        }
        if flush_each {
            batches.extend(builder.take());
        }
    }
    batches.extend(builder.take());
    let events: Vec<(i64, &str)> = batches.iter().flat_map(Batch::events).collect();
    for b in &batches {
        check_batch(b);
    }
    assert_eq!(events.len(), expected.len(), "events lost or added");
    for ((ts, text), (want_ts, want)) in events.iter().zip(&expected) {
        assert_eq!(text, want);
        if let Some(want_ts) = want_ts {
            assert_eq!(ts, want_ts);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Log lines: bytes → decoded lines → multi-line events.

/// The encodings a file may be read in, by the names a config gives.
const ENCODINGS: &[&str] = &[
    "utf-8",
    "latin1",
    "utf-16le",
    "utf-16be",
    "windows-1252",
    "shift_jis",
    "gbk",
    "gb18030",
    "big5",
    "euc-kr",
    "euc-jp",
    "iso-2022-jp",
    "koi8-r",
    "windows-1251",
    "iso-8859-2",
    "x-user-defined",
];

type Emitted = Vec<(Option<String>, u64)>;

/// Feeds `input` to a [`LineBuffer`] in reads of the sizes `rng` picks (`None`: one read),
/// draining after each read as the tailer does (the last one only if `drain_last`), then
/// finishes it. Returns each (text, position after it) and checks the counts on the way.
fn read_lines(
    encoding: Encoding,
    input: &[u8],
    mut rng: Option<fastrand::Rng>,
    drain_last: bool,
) -> Emitted {
    let mut lines = LineBuffer::new(encoding);
    let mut out: Emitted = Vec::new();
    let mut fed = 0;
    let mut consumed = 0u64;
    let collect = |out: &mut Emitted, base: u64, text: Option<&str>, end: usize| {
        if let Some(t) = text {
            assert!(
                !t.is_empty() && t.len() <= MAX_EVENT_BYTES,
                "a line of {} bytes",
                t.len()
            );
            assert!(!t.contains('\n'), "a line with a newline in it: {t:?}");
        }
        let at = base + end as u64;
        if let Some((_, last)) = out.last() {
            assert!(at >= *last, "the position went back from {last} to {at}");
        }
        assert!(at <= input.len() as u64, "a position past the input");
        out.push((text.map(str::to_owned), at));
    };
    // Small reads for short inputs; reads of up to the tailer's size for a long line.
    let most = if input.len() > 4096 { 1 << 16 } else { 64 };
    while fed < input.len() {
        let n = match rng.as_mut() {
            Some(r) => r.usize(1..=most).min(input.len() - fed),
            None => input.len() - fed,
        };
        // A read may fill less than it was offered.
        let offered = n + rng.as_mut().map_or(0, |r| r.usize(0..8));
        lines.spare(offered)[..n].copy_from_slice(&input[fed..fed + n]);
        lines.filled(offered, n);
        fed += n;
        if fed == input.len() && !drain_last {
            break;
        }
        let first = out.len();
        let got = lines.drain(|t, end| collect(&mut out, consumed, t, end));
        let last_end = out[first..].last().map_or(consumed, |(_, at)| *at);
        assert_eq!(
            consumed + got as u64,
            last_end,
            "drain's count is not its last position"
        );
        consumed += got as u64;
        assert_eq!(
            lines.pending() as u64,
            fed as u64 - consumed,
            "bytes lost in the buffer"
        );
        if rng.as_mut().is_some_and(|r| r.bool()) {
            lines.shrink();
            lines.release_if_empty();
        }
    }
    let got = lines.finish(|t, end| collect(&mut out, consumed, t, end));
    consumed += got as u64;
    assert_eq!(consumed, input.len() as u64, "finish left bytes unread");
    assert_eq!(lines.pending(), 0);
    if let Some((_, last)) = out.last() {
        assert_eq!(
            *last, consumed,
            "the last position is not the end of the input"
        );
    }
    out
}

/// Each stretch of the input between two positions is its lines, ending and all: checks the
/// lines put back together against the input, where the encoding lets text be encoded back.
fn check_reassembly(encoding: Encoding, input: &[u8], out: &Emitted) {
    let encode = |text: &str| -> Option<Vec<u8>> {
        match encoding {
            Encoding::Utf8 => Some(text.as_bytes().to_vec()),
            Encoding::Latin1 => text.chars().map(|c| u8::try_from(c).ok()).collect(),
            Encoding::Utf16Le => Some(text.encode_utf16().flat_map(u16::to_le_bytes).collect()),
            Encoding::Utf16Be => Some(text.encode_utf16().flat_map(u16::to_be_bytes).collect()),
            Encoding::Other(_) => None,
        }
    };
    let (bom, cr, lf) = (encode("\u{FEFF}"), encode("\r"), encode("\n"));
    let (Some(bom), Some(cr), Some(lf)) = (bom, cr, lf) else {
        return;
    };
    let valid = match encoding {
        Encoding::Utf8 => std::str::from_utf8(input).is_ok(),
        Encoding::Latin1 => true,
        Encoding::Utf16Le => {
            input.len().is_multiple_of(2)
                && encoding_rs::UTF_16LE
                    .decode_without_bom_handling_and_without_replacement(input)
                    .is_some()
        }
        Encoding::Utf16Be => {
            input.len().is_multiple_of(2)
                && encoding_rs::UTF_16BE
                    .decode_without_bom_handling_and_without_replacement(input)
                    .is_some()
        }
        Encoding::Other(_) => false,
    };
    if !valid {
        return;
    }
    let mut from = 0usize;
    let mut text = String::new();
    for (t, at) in out {
        text.push_str(t.as_deref().unwrap_or(""));
        let at = *at as usize;
        if at == from {
            // A piece of a long line: its position is the line's start.
            continue;
        }
        let stretch = &input[from..at];
        let body = encode(&text).expect("decoded text encodes back");
        // The line may have lost a byte order mark at its start, and its ending.
        let ending = |rest: &[u8]| {
            let rest = rest.strip_prefix(cr.as_slice()).unwrap_or(rest);
            rest.is_empty() || rest == lf.as_slice()
        };
        let ok = stretch.strip_prefix(body.as_slice()).is_some_and(ending)
            || stretch
                .strip_prefix(bom.as_slice())
                .and_then(|s| s.strip_prefix(body.as_slice()))
                .is_some_and(ending);
        assert!(
            ok,
            "input {from}..{at} ({} bytes) is not its line {:?} and an ending",
            stretch.len(),
            Batch::preview(&text)
        );
        text.clear();
        from = at;
    }
    assert!(text.is_empty(), "text after the last position");
}

/// Characters that were not in the input may not appear: a line cut where a character was
/// split would show U+FFFD twice.
fn check_no_new_replacements(encoding: Encoding, input: &[u8], out: &Emitted) {
    let whole = match encoding {
        Encoding::Utf8 => std::str::from_utf8(input)
            .ok()
            .map(std::borrow::Cow::Borrowed),
        Encoding::Latin1 => return,
        Encoding::Utf16Le | Encoding::Utf16Be if input.len() % 2 == 1 => return,
        Encoding::Utf16Le => {
            encoding_rs::UTF_16LE.decode_without_bom_handling_and_without_replacement(input)
        }
        Encoding::Utf16Be => {
            encoding_rs::UTF_16BE.decode_without_bom_handling_and_without_replacement(input)
        }
        // ISO-2022-JP's state goes on across a newline, so its lines may not decode alone.
        Encoding::Other(e) if e == encoding_rs::ISO_2022_JP => return,
        Encoding::Other(e) => e.decode_without_bom_handling_and_without_replacement(input),
    };
    let Some(whole) = whole else { return };
    let count = |t: &str| t.matches('\u{FFFD}').count();
    let emitted: usize = out
        .iter()
        .filter_map(|(t, _)| t.as_deref())
        .map(count)
        .sum();
    assert!(
        emitted <= count(&whole),
        "{} U+FFFD in the lines of an input that decodes with {}",
        emitted,
        count(&whole)
    );
}

/// The start patterns a multi-line entry may have, picked by a byte.
fn start_pattern(pick: u8) -> StartPattern {
    static PATTERNS: OnceLock<Vec<StartPattern>> = OnceLock::new();
    let patterns = PATTERNS.get_or_init(|| {
        let re = |p: &str| StartPattern::Regex(Regex::new(p).expect("regex"));
        vec![
            re(r"^\S"),
            re(r"^\d{4}-"),
            re(r"^[A-Z]"),
            StartPattern::Timestamp(
                TimestampFormat::new("%Y-%m-%d %H:%M:%S", true).expect("format"),
            ),
        ]
    });
    patterns[usize::from(pick) % patterns.len()].clone()
}

/// Lines → [`Assembler`]: events keep every line (joined by `\n`), in order, none larger than
/// an event may be, and the last one ends where the lines end.
fn check_multiline(start: StartPattern, out: &Emitted, quiet_every: u8) {
    let mut assembler = Assembler::new(start);
    let t0 = Instant::now();
    let mut events = Vec::new();
    for (i, (text, at)) in out.iter().enumerate() {
        let now = t0 + Duration::from_secs(i as u64);
        events.extend(assembler.line(text.as_deref(), *at, now));
        if quiet_every != 0 && i % usize::from(quiet_every) == 0 {
            events.extend(assembler.expire(now + crate::sources::files::multiline::QUIET, false));
        }
    }
    events.extend(assembler.expire(t0, true));
    assert!(
        assembler.expire(t0, true).is_none(),
        "an event left after all expired"
    );
    let mut last = 0;
    for e in &events {
        assert!(
            e.text.len() <= MAX_EVENT_BYTES,
            "an event of {} bytes",
            e.text.len()
        );
        assert!(e.position >= last, "an event's position went back");
        last = e.position;
    }
    assert_eq!(
        last,
        out.last().map_or(0, |(_, at)| *at),
        "the last event is not at the end"
    );
    let joined_events: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    let joined_lines: Vec<&str> = out
        .iter()
        .map(|(t, _)| t.as_deref().unwrap_or(""))
        .collect();
    assert!(
        joined_events.join("\n") == joined_lines.join("\n"),
        "multi-line events do not add up to the lines"
    );
}

/// A line that fills nearly a whole event in `encoding`, so the input after it meets the cut.
fn filler(encoding: Encoding, len: usize) -> Vec<u8> {
    let unit: &[u8] = match encoding {
        Encoding::Utf16Le => b"a\0",
        Encoding::Utf16Be => b"\0a",
        _ => b"a",
    };
    unit.repeat(len / unit.len())
}

/// Bytes of a log file → [`LineBuffer`] → (by the flags) [`Assembler`]. The first byte picks
/// the encoding, the second seeds the read sizes, the third sets flags: a long line before the
/// input (to meet the cut of a line too long for an event), no drain before finishing, and a
/// multi-line pattern. Read in pieces or at once, the lines are the same; they put back
/// together to the input where the encoding can say so; no line is empty, has a newline or is
/// too long, and no replacement character appears that was not in the input.
pub fn lines(data: &[u8]) {
    let mut input = Input(data);
    let name = ENCODINGS[usize::from(input.byte()) % ENCODINGS.len()];
    let encoding = Encoding::from_name(name).expect("a known encoding");
    let seed = input.byte();
    let flags = input.byte();
    let long = flags & 0xE4 == 0xE4;
    let drain_last = flags & 0x10 == 0;
    let bytes: std::borrow::Cow<[u8]> = if long {
        // Up to 1 KiB short of a full event, in code units.
        let short_by = usize::from(input.u16() % 1024);
        let mut b = filler(encoding, MAX_EVENT_BYTES - short_by);
        b.extend_from_slice(input.rest());
        b.into()
    } else {
        input.rest().into()
    };
    let chunked = read_lines(
        encoding,
        &bytes,
        Some(fastrand::Rng::with_seed(u64::from(seed))),
        drain_last,
    );
    if !long {
        let whole = read_lines(encoding, &bytes, None, true);
        assert_eq!(chunked, whole, "the lines depend on how the file was read");
    }
    check_reassembly(encoding, &bytes, &chunked);
    check_no_new_replacements(encoding, &bytes, &chunked);
    if flags & 0x08 != 0 {
        check_multiline(start_pattern(flags), &chunked, seed % 4);
    }
}

// ---------------------------------------------------------------------------------------------
// The batcher.

/// A long message of text (`s`, at least one character) repeated to `len` bytes or just past.
fn long_text(s: &str, len: usize) -> String {
    s.repeat(len / s.len() + 1)
}

/// Operations on a [`BatchBuilder`], read off the bytes: pushes of messages of every size at
/// times that go forward, stand still, go back or jump past a day; pieces of split messages;
/// position moves; takes; bursts of thousands of small events; splits. Every batch keeps every
/// limit, none is handed out before the next event would not fit, and the events come out in
/// order, none lost, each batch with the position of its last line.
pub fn batcher(data: &[u8]) {
    let mut input = Input(data);
    static FILLER: OnceLock<String> = OnceLock::new();
    let filler = FILLER.get_or_init(|| "x".repeat(MAX_EVENT_BYTES));
    let mut builder = BatchBuilder::new();
    let mut ts = 1_796_040_000_000i64;
    // Events pushed and not yet handed out, and the position the current batch moves to.
    let mut pending: std::collections::VecDeque<(i64, usize)> = Default::default();
    let mut position: Option<Position> = None;
    let mut serial = 0usize;
    // Enough for a few full batches by bytes; more only slows the fuzzer down.
    let mut budget = 3 * MAX_EVENT_BYTES;
    let next_pos = |serial: &mut usize| {
        *serial += 1;
        Position::Journal(None, serial.to_string())
    };
    let handed_out = |batch: &Batch,
                      pending: &mut std::collections::VecDeque<(i64, usize)>,
                      position: &Option<Position>| {
        check_batch(batch);
        assert_eq!(&batch.position, position, "a batch with the wrong position");
        for (ts, message) in batch.events() {
            let Some((want_ts, want_len)) = pending.pop_front() else {
                panic!("an event that was never pushed")
            };
            assert_eq!(
                (ts, message.len()),
                (want_ts, want_len),
                "events out of order"
            );
        }
        // A split keeps every event and the position with the second half (checked on the
        // smaller batches: copying the large ones would make most of the fuzzer's time).
        if batch.bytes() <= 64 * 1024 {
            let (a, b) = batch.clone().split();
            assert_eq!(a.position, None);
            assert_eq!(b.position, batch.position);
            assert!(
                a.events().chain(b.events()).eq(batch.events()),
                "a split lost events"
            );
        }
    };
    while !input.is_empty() && budget > 0 {
        let op = input.byte();
        let step = match input.byte() {
            0..=127 => 0,
            128..=199 => i64::from(input.byte()),
            200..=239 => -i64::from(input.byte()),
            240..=249 => MAX_SPAN_MS / 2 + 1,
            _ => -MAX_SPAN_MS,
        };
        ts += step;
        let size = input.u16();
        let len = match op % 4 {
            0 | 1 => usize::from(size % 256) + 1,
            2 => usize::from(size) % MAX_EVENT_BYTES + 1,
            _ => MAX_EVENT_BYTES - usize::from(size % 1024),
        };
        match op >> 4 {
            0..=7 => {
                let len = len.min(budget);
                budget -= len;
                let full = builder.is_full();
                let was_pending = builder.is_pending();
                let p = next_pos(&mut serial);
                let out = builder.push(ts, &filler[..len], p.clone());
                assert!(!full || out.is_some(), "a full batch took another event");
                if let Some(b) = &out {
                    assert!(was_pending, "a batch handed out with nothing in it");
                    assert!(!b.is_empty(), "an empty batch handed out by a push");
                    assert!(
                        !b.fits(ts, len),
                        "a batch handed out while the event fitted"
                    );
                    handed_out(b, &mut pending, &position);
                }
                pending.push_back((ts, len));
                position = Some(p);
            }
            8..=9 => {
                let len = len.min(budget);
                budget -= len;
                if let Some(b) = builder.push_piece(ts, &filler[..len]) {
                    assert!(
                        !b.fits(ts, len),
                        "a batch handed out while the piece fitted"
                    );
                    handed_out(&b, &mut pending, &position);
                    position = None;
                }
                pending.push_back((ts, len));
            }
            10 => {
                let p = next_pos(&mut serial);
                builder.advance(p.clone());
                position = Some(p);
            }
            11..=12 => {
                let out = builder.take();
                assert_eq!(out.is_some(), position.is_some() || !pending.is_empty());
                if let Some(b) = out {
                    handed_out(&b, &mut pending, &position);
                    assert!(pending.is_empty(), "take left events behind");
                    position = None;
                }
                assert!(builder.opened().is_none() && !builder.is_pending());
            }
            13 => {
                // A burst of small events at one time: either across the event count limit or
                // a short one. Only the last moves to a position of its own, which keeps the
                // burst cheap.
                let n = if op & 8 != 0 {
                    MAX_BATCH_EVENTS - 64 + usize::from(size % 256)
                } else {
                    usize::from(size % 256) + 1
                };
                let len = usize::from(op % 8) + 1;
                let n = n.min(budget / len);
                let within = Position::Journal(None, String::new());
                for i in 0..n {
                    budget -= len;
                    let p = if i + 1 == n {
                        next_pos(&mut serial)
                    } else {
                        within.clone()
                    };
                    if let Some(b) = builder.push(ts, &filler[..len], p.clone()) {
                        handed_out(&b, &mut pending, &position);
                    }
                    pending.push_back((ts, len));
                    position = Some(p);
                }
            }
            _ => {
                // A message too long for one event: split at characters, sent as pieces and a
                // last push.
                let unit = ["a", "é", "€", "😀", "aé€😀"][usize::from(size) % 5];
                let text = long_text(
                    unit,
                    MAX_EVENT_BYTES + usize::from(size) * 16 % MAX_EVENT_BYTES,
                );
                budget = budget.saturating_sub(text.len());
                let pieces: Vec<&str> = split_message(&text).collect();
                assert_eq!(pieces.concat(), text, "split_message lost text");
                assert!(pieces.len() >= 2);
                for (i, piece) in pieces.iter().enumerate() {
                    assert!(!piece.is_empty() && piece.len() <= MAX_EVENT_BYTES);
                    // All but the last piece leave the position where it was.
                    let last = (i + 1 == pieces.len()).then(|| next_pos(&mut serial));
                    let out = match &last {
                        Some(p) => builder.push(ts, piece, p.clone()),
                        None => builder.push_piece(ts, piece),
                    };
                    if let Some(b) = out {
                        handed_out(&b, &mut pending, &position);
                        position = None;
                    }
                    pending.push_back((ts, piece.len()));
                    if last.is_some() {
                        position = last;
                    }
                }
            }
        }
        assert_eq!(builder.position(), position.as_ref());
        assert_eq!(
            builder.is_pending(),
            position.is_some() || !pending.is_empty()
        );
        assert_eq!(builder.is_pending(), builder.opened().is_some());
    }
    if let Some(b) = builder.take() {
        handed_out(&b, &mut pending, &position);
    }
    assert!(pending.is_empty(), "events never handed out");
}

// ---------------------------------------------------------------------------------------------
// Timestamps.

/// Days since 1970-01-01 counted year by year and month by month: a second opinion on the
/// parser's date arithmetic.
fn days_since_epoch(year: i64, month: u32, day: u32) -> i64 {
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = 0;
    for y in 1970..year {
        days += if leap(y) { 366 } else { 365 };
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let before: i64 = lengths[..month as usize - 1].iter().sum();
    days + before + i64::from(day) - 1
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// A time written in a format made of the parser's tokens, both picked by the bytes, with the
/// time it stands for.
fn written_time(input: &mut Input) -> (String, String, i64) {
    let year = 1970 + i64::from(input.byte() % 130);
    let month = u32::from(input.byte() % 12) + 1;
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let day = u32::from(input.byte()) % days_in[month as usize - 1] + 1;
    let hour = u32::from(input.byte() % 24);
    let minute = u32::from(input.byte() % 60);
    let second = u32::from(input.byte() % 60);
    let style = input.u16();
    let sep = |i: u16| ["-", "/", ":", ".", " ", ",", "_", "T"][usize::from(i % 8)];
    let (mut format, mut text) = (String::new(), String::new());
    let mut put = |f: &str, t: String| {
        format.push_str(f);
        text.push_str(&t);
    };
    let mut days = days_since_epoch(year, month, day);
    // The date.
    match style % 4 {
        0 => put("%Y", format!("{year:04}")),
        1 if (1969..2069).contains(&year) => put("%y", format!("{:02}", year % 100)),
        1 => put("%Y", format!("{year:04}")),
        2 => put("%-d", format!("{day}")),
        _ => put("%d", format!("{day:2}")),
    }
    put(sep(style >> 2), sep(style >> 2).to_string());
    let by_day_of_year = style.is_multiple_of(4) && style & 0x40 != 0;
    if by_day_of_year {
        let doy = days - days_since_epoch(year, 1, 1) + 1;
        put("%j", format!("{doy:03}"));
    } else {
        match (style >> 7) % 4 {
            0 => put("%m", format!("{month:02}")),
            1 => put("%-m", format!("{month}")),
            2 => put("%b", MONTH_NAMES[month as usize - 1][..3].to_string()),
            _ => put("%B", MONTH_NAMES[month as usize - 1].to_string()),
        }
        put(sep(style >> 9), sep(style >> 9).to_string());
        match style % 4 {
            0 | 1 => put("%d", format!("{day:02}")),
            _ => put("%Y", format!("{year:04}")),
        }
    }
    put(" ", " ".to_string());
    // The time of day.
    if style & 0x1000 != 0 {
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        put("%I", format!("{h12:02}"));
        put(":%M:%S ", format!(":{minute:02}:{second:02} "));
        put("%p", (if hour < 12 { "AM" } else { "pm" }).to_string());
    } else {
        put("%H", format!("{hour:02}"));
        put(":%-M:%S", format!(":{minute}:{second:02}"));
    }
    let mut ms = 0;
    if style & 0x2000 != 0 {
        let digits = usize::from(input.byte() % 9) + 1;
        let fraction: String = (0..digits)
            .map(|_| char::from(b'0' + input.byte() % 10))
            .collect();
        ms = format!("{fraction:0<3}")[..3]
            .parse::<i64>()
            .expect("digits");
        put(".%f", format!(".{fraction}"));
    }
    let mut offset = 0;
    if style & 0x4000 != 0 {
        let minutes = i64::from(input.byte() % 53) * 30 - 12 * 60;
        offset = minutes * 60;
        let sign = if minutes < 0 { '-' } else { '+' };
        let colon = if style & 0x8000 != 0 { ":" } else { "" };
        put(
            " %z",
            format!(
                " {sign}{:02}{colon}{:02}",
                minutes.abs() / 60,
                minutes.abs() % 60
            ),
        );
    }
    days *= 86_400;
    let secs = days + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    (format, text, (secs - offset) * 1000 + ms)
}

/// [`TimestampFormat::new`], kept for the next inputs with the same format: compiling the
/// pattern costs far more than reading a line with it, and the fuzzer mostly changes the line.
/// The result is the same either way, so an input still fails the same way alone.
fn compiled(format: &str, utc: bool) -> Result<TimestampFormat, String> {
    use std::cell::RefCell;
    use std::collections::HashMap;
    type Cache = HashMap<(String, bool), Result<TimestampFormat, String>>;
    thread_local!(static CACHE: RefCell<Cache> = RefCell::new(HashMap::new()));
    CACHE.with_borrow_mut(|cache| {
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache
            .entry((format.to_owned(), utc))
            .or_insert_with(|| TimestampFormat::new(format, utc))
            .clone()
    })
}

/// The first byte chooses: a format and a line both from the bytes (times read in UTC or local
/// time), or a time written in a format made from the bytes, between text from them. A time
/// found is in the line, where the format matches, and the same when read from just the part
/// found (so trimming it leaves the rest); a written time reads back as itself.
pub fn timestamp(data: &[u8]) {
    let mut input = Input(data);
    let mode = input.byte();
    // A clock this side of the year 10000, as a machine's can be.
    let now = 1_796_040_000_000 + i64::from(input.u16() as i16) * 86_400_000 * 3;
    let mut local = LocalOffset::default();
    if mode & 1 == 0 {
        let format_len = usize::from(input.byte() % 64);
        let format = String::from_utf8_lossy(input.take(format_len)).into_owned();
        let line = String::from_utf8_lossy(input.rest()).into_owned();
        let Ok(f) = compiled(&format, mode & 2 == 0) else {
            return;
        };
        assert_eq!(f.format(), format);
        let Some((ms, range)) = f.find(&line, now, &mut local) else {
            return;
        };
        assert!(
            f.matches(&line),
            "found a time where the format does not match"
        );
        let Some(found) = line.get(range.clone()) else {
            panic!("the time found is not at characters of the line: {range:?}")
        };
        assert!(!found.is_empty());
        // Years have four digits at most.
        assert!(ms.abs() < 10_001 * 366 * 86_400_000, "{ms} ms");
        let again = f.find(found, now, &mut local);
        assert_eq!(
            again,
            Some((ms, 0..found.len())),
            "{found:?} alone reads otherwise"
        );
        return;
    }
    let (format, written, want) = written_time(&mut input);
    let around: String = input
        .rest()
        .iter()
        .map(|b| char::from(b"[]()<>=!#|' ;"[usize::from(*b) % 13]))
        .collect();
    let (before, after) = around.split_at(around.len() / 2);
    let line = format!("{before}{written}{after}");
    let f = compiled(&format, true)
        .unwrap_or_else(|e| panic!("a format of known tokens is refused: {e}"));
    let Some((ms, range)) = f.find(&line, now, &mut local) else {
        panic!("{written:?} is not found by {format:?}")
    };
    assert_eq!(ms, want, "{written:?} read by {format:?}");
    assert!(range.start <= before.len() && range.end >= before.len() + written.len());
}
