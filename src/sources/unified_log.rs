//! macOS's unified log, read from `log stream --style ndjson`. Each reader keeps a [`Mark`]: the
//! time of the last entry it has delivered (or, with none delivered yet, of when reading
//! began) and the identities of the entries delivered at exactly that time. After a restart,
//! or when `log stream` dies, the gap is read with `log show --start` from the mark: entries
//! before it, and those at it that it names, are skipped, so nothing in between is lost and
//! nothing is sent twice. `log stream` is started before the gap is read, and an entry both
//! give (the few at the seam) is sent once.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::UnifiedLogSource;
use crate::service::{beating, Heartbeat, BEAT};
use crate::sinks::cloudwatch_logs::budget::{Budget, Share, Wait};
use crate::sinks::cloudwatch_logs::{Batch, BatchBuilder};
use crate::sources::capped_lines::{CappedLines, Next};
use crate::sources::files::timestamp::{days_from_civil, utc_text};
use crate::sources::Position;

/// Names the `log` to run instead of /usr/bin/log (tests use a stand-in).
pub const PROGRAM_ENV: &str = "CLOUDWATCH_PUBLISHER_LOG";
/// An entry longer than this (as JSON) is skipped rather than held in memory.
const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;
/// How far before `log stream` began the gap's entries are remembered, to be told apart from
/// the stream's own first entries.
const SEAM_US: i64 = 2_000_000;

/// A place in the unified log: entries before `at_us` (microseconds since the epoch) are
/// delivered, and so are those at `at_us` whose identities `ids` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mark {
    pub at_us: i64,
    pub ids: Vec<String>,
}

impl Mark {
    /// Reading begins at `at_us`: nothing at or after it delivered.
    pub fn starting(at_us: i64) -> Mark {
        Mark {
            at_us,
            ids: Vec::new(),
        }
    }

    /// As the state file keeps it: the time, then each identity, space-separated.
    pub fn encode(&self) -> String {
        let mut s = self.at_us.to_string();
        for id in &self.ids {
            s.push(' ');
            s.push_str(id);
        }
        s
    }

    pub fn parse(text: &str) -> Option<Mark> {
        let mut parts = text.split(' ');
        let at_us = parts.next()?.parse().ok()?;
        Some(Mark {
            at_us,
            ids: parts.filter(|p| !p.is_empty()).map(str::to_owned).collect(),
        })
    }

    /// Whether the entry at `at_us` with identity `id` is at or before this place.
    pub fn covers(&self, at_us: i64, id: &str) -> bool {
        at_us < self.at_us || (at_us == self.at_us && self.ids.iter().any(|i| i == id))
    }

    /// Moves past the entry at `at_us` with identity `id` (an entry from before the mark, out
    /// of order, leaves it where it is).
    pub fn pass(&mut self, at_us: i64, id: &str) {
        if at_us > self.at_us {
            self.at_us = at_us;
            self.ids.clear();
        }
        if at_us == self.at_us && !self.ids.iter().any(|i| i == id) {
            self.ids.push(id.to_owned());
        }
    }
}

/// The fields of an entry of `log --style ndjson` that are read.
#[derive(Deserialize)]
struct Entry {
    /// "2026-06-29 15:54:42.063082+0200"
    timestamp: Option<String>,
    #[serde(rename = "machTimestamp")]
    mach: Option<u64>,
    #[serde(rename = "threadID")]
    thread: Option<u64>,
    #[serde(rename = "traceID")]
    trace: Option<u64>,
    #[serde(rename = "eventType")]
    event_type: Option<String>,
    #[serde(rename = "eventMessage")]
    message: Option<String>,
}

impl Entry {
    /// What tells two entries of one microsecond apart: the kernel's tick count, the thread
    /// and the trace id.
    fn id(&self) -> String {
        format!(
            "{}.{}.{}",
            self.mach.unwrap_or(0),
            self.thread.unwrap_or(0),
            self.trace.unwrap_or(0)
        )
    }
}

/// "YYYY-MM-DD HH:MM:SS[.ffffff]±HHMM" → microseconds since the epoch.
pub fn parse_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    if b.len() < 24
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b' '
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = text.get(start..i)?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        let n: i64 = digits.parse().ok()?;
        micros = n * 10i64.pow(6u32.saturating_sub(digits.len() as u32))
            / 10i64.pow((digits.len() as u32).saturating_sub(6));
    }
    let sign = match b.get(i) {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ => return None,
    };
    if b.len() != i + 5 {
        return None;
    }
    let (zh, zm) = (num(i + 1..i + 3)?, num(i + 3..i + 5)?);
    if zh > 14 || zm > 59 {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    let local = days * 86_400 + h * 3600 + mi * 60 + s;
    Some((local - sign * (zh * 3600 + zm * 60)) * 1_000_000 + micros)
}

/// `log show --start`'s form of a time, in UTC: "YYYY-MM-DD HH:MM:SS+0000" (whole seconds,
/// rounded down; the entries of that second before the mark are skipped by it).
fn start_arg(at_us: i64) -> String {
    format!("{}+0000", utc_text(at_us.div_euclid(1_000_000)))
}

#[derive(Clone)]
pub struct UnifiedLog {
    pub program: PathBuf,
    pub source: UnifiedLogSource,
    /// Read what is there and stop (`--once`).
    pub once: bool,
    pub flush_interval: Duration,
}

/// How a child's entries meet the other child's at the seam.
enum Seam<'a> {
    /// Reading the gap: the identities of entries from this time on go in the set.
    Remember(i64, &'a mut HashSet<String>),
    /// Reading the stream: entries the gap gave are skipped, and so are entries from before
    /// this time that `Mark` covers (the stream gives nothing that old of its own).
    Skip(i64, &'a HashSet<String>, Mark),
}

/// What reading one child gave.
struct Read {
    entries: u64,
    stopped: bool,
}

impl UnifiedLog {
    pub fn program() -> PathBuf {
        std::env::var_os(PROGRAM_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/log"))
    }

    /// `log stream` (follow) or `log show --start` (the gap), with the reader's level and
    /// predicate.
    fn args(&self, show_from: Option<i64>) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        match show_from {
            Some(at_us) => {
                args.extend(["show".into(), "--style".into(), "ndjson".into()]);
                args.extend(["--start".into(), start_arg(at_us)]);
                // `log show` takes the level as flags, each adding to the one before.
                match self.source.level.as_str() {
                    "debug" => args.extend(["--info".into(), "--debug".into()]),
                    "info" => args.push("--info".into()),
                    _ => {}
                }
            }
            None => {
                args.extend(["stream".into(), "--style".into(), "ndjson".into()]);
                args.extend(["--type".into(), "log".into()]);
                args.extend(["--level".into(), self.source.level.clone()]);
            }
        }
        if let Some(p) = &self.source.predicate {
            args.extend(["--predicate".into(), p.clone()]);
        }
        args
    }

    fn spawn(&self, show_from: Option<i64>) -> std::io::Result<Child> {
        Command::new(&self.program)
            .args(self.args(show_from))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
    }

    /// Reads entries after `mark` into batches for `out` until `stop`.
    pub async fn run(
        self,
        mut mark: Mark,
        out: mpsc::Sender<Batch>,
        budget: Budget,
        stop: CancellationToken,
        heartbeat: Heartbeat,
    ) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut builder = BatchBuilder::new();
        let mut share = Share::new(budget);
        let mut warned = false;
        let key = self.source.key.clone();
        loop {
            // The stream first, so that nothing written while the gap is read is missed; its
            // output waits in the pipe meanwhile.
            let stream_began = crate::clock::wall_ms() * 1000;
            let mut stream = if self.once {
                None
            } else {
                match self.spawn(None) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        self.cannot_run(&e);
                        return;
                    }
                }
            };
            let mut seam = HashSet::new();
            let mut gap = match self.spawn(Some(mark.at_us)) {
                Ok(c) => c,
                Err(e) => {
                    self.cannot_run(&e);
                    return;
                }
            };
            let read = self
                .read(
                    &mut gap,
                    &mut mark,
                    &mut builder,
                    &mut share,
                    &out,
                    &stop,
                    &heartbeat,
                    Seam::Remember(stream_began - SEAM_US, &mut seam),
                    &key,
                )
                .await;
            let Some(read) = read else { return };
            let (gap_ok, gap_errors) = finish(gap).await;
            if read.stopped {
                break;
            }
            let Some(mut stream) = stream.take() else {
                // --once: the gap is all there is.
                break;
            };
            let read = if gap_ok {
                let skip = Seam::Skip(stream_began - SEAM_US, &seam, mark.clone());
                self.read(
                    &mut stream,
                    &mut mark,
                    &mut builder,
                    &mut share,
                    &out,
                    &stop,
                    &heartbeat,
                    skip,
                    &key,
                )
                .await
            } else {
                Some(Read {
                    entries: 0,
                    stopped: false,
                })
            };
            let Some(read) = read else { return };
            let (_, stream_errors) = finish(stream).await;
            if read.stopped {
                break;
            }
            if read.entries > 0 {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            if !warned || backoff.failures().is_multiple_of(10) {
                warned = true;
                if gap_ok {
                    tracing::warn!(program = %self.program.display(), error = %stream_errors.trim(),
                        retry_in_s = delay.as_secs(), "log stream ended; starting it again after the last entry read.");
                } else {
                    tracing::warn!(program = %self.program.display(), error = %gap_errors.trim(),
                        retry_in_s = delay.as_secs(), "log show failed, so the unified log is not read; trying again from the last entry delivered.");
                }
            }
            tokio::select! {
                _ = beating(&heartbeat, tokio::time::sleep(delay)) => {}
                _ = stop.cancelled() => break,
            }
        }
        let last = builder.take();
        share.send(last, &builder, &out, &heartbeat).await;
    }

    fn cannot_run(&self, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            tracing::warn!(program = %self.program.display(),
                "There is no log command on this machine (the unified log is macOS's), so the unified log is not shipped; the other logs are.");
        } else {
            tracing::warn!(program = %self.program.display(), error = %e,
                "Cannot run log; the unified log is not shipped.");
        }
    }

    /// Reads a child's new entries (see [`Seam`]), moving `mark` past each. None when the
    /// pipeline is gone.
    #[allow(clippy::too_many_arguments)]
    async fn read(
        &self,
        child: &mut Child,
        mark: &mut Mark,
        builder: &mut BatchBuilder,
        share: &mut Share,
        out: &mpsc::Sender<Batch>,
        stop: &CancellationToken,
        heartbeat: &Heartbeat,
        mut seam: Seam<'_>,
        key: &std::sync::Arc<str>,
    ) -> Option<Read> {
        let stdout: ChildStdout = child.stdout.take().expect("piped");
        let mut reader = BufReader::with_capacity(64 * 1024, stdout);
        let mut lines = CappedLines::new(MAX_ENTRY_BYTES);
        let mut read = Read {
            entries: 0,
            stopped: false,
        };
        loop {
            let deadline = builder
                .opened()
                .map(|t| Instant::from_std(t) + self.flush_interval);
            tokio::select! {
                _ = stop.cancelled() => { read.stopped = true; break; }
                // The sender is gone (its destination parked): read again later from the mark
                // of the last entry delivered.
                _ = out.closed() => return None,
                _ = tokio::time::sleep(BEAT) => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let due = builder.take();
                    if !share.send(due, builder, out, heartbeat).await { return None; }
                }
                r = lines.next(&mut reader) => match r {
                    Ok(Next::End) | Err(_) => break,
                    Ok(Next::Skipped) => {
                        tracing::warn!(limit = MAX_ENTRY_BYTES, "Skipping a unified log entry larger than the limit.");
                    }
                    Ok(Next::Line) => {
                        let Some((at_us, id, text)) = parse_entry(lines.line()) else { continue };
                        match &mut seam {
                            Seam::Remember(from, seen) => {
                                if mark.covers(at_us, &id) {
                                    continue;
                                }
                                if at_us >= *from {
                                    seen.insert(id.clone());
                                }
                            }
                            Seam::Skip(from, seen, gap) => {
                                if seen.contains(&id) || (at_us < *from && gap.covers(at_us, &id)) {
                                    continue;
                                }
                            }
                        }
                        // Room first (the pipe waits meanwhile); an entry not taken at a stop
                        // is read again after the mark.
                        let room = Share::room_for(text.len());
                        match share.wait(room, builder, self.flush_interval, out, stop, heartbeat).await {
                            Wait::Room => {}
                            Wait::Stopped => { read.stopped = true; break; }
                            Wait::Closed => return None,
                        }
                        read.entries += 1;
                        mark.pass(at_us, &id);
                        let position = Position::UnifiedLog(key.clone(), mark.encode());
                        let full = self.event(at_us / 1000, &text, position, builder);
                        if !share.send(full, builder, out, heartbeat).await { return None; }
                    }
                },
            }
        }
        Some(read)
    }

    /// One entry's message → events; returns batches that became full.
    fn event(
        &self,
        ts: i64,
        text: &str,
        position: Position,
        builder: &mut BatchBuilder,
    ) -> Vec<Batch> {
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() || !self.source.filters.keeps(text) {
            builder.advance(position);
            return Vec::new();
        }
        builder.push_message(ts, text, position)
    }
}

/// One line of `log`'s ndjson → (time in µs, identity, message). Lines that are no log entry
/// (`log stream`'s first line, `log show`'s closing count, activities) give nothing. Bytes
/// that are not UTF-8 become U+FFFD, as in files.
fn parse_entry(line: &[u8]) -> Option<(i64, String, String)> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if !text.starts_with('{') {
        return None;
    }
    let entry: Entry = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, bytes = line.len(), "Skipping a unified log entry that is not valid JSON.");
            return None;
        }
    };
    if entry.event_type.as_deref().is_some_and(|t| t != "logEvent") {
        return None;
    }
    let at_us = parse_time(entry.timestamp.as_deref()?)?;
    let id = entry.id();
    Some((at_us, id, entry.message.unwrap_or_default()))
}

/// Waits for a child that has been read to its end (or is given up on): whether it exited
/// well, and the start of what it printed on stderr.
async fn finish(mut child: Child) -> (bool, String) {
    let mut stderr = child.stderr.take();
    let _ = child.start_kill();
    let status = child.wait().await;
    let mut text = String::new();
    if let Some(e) = stderr.as_mut() {
        let _ = e.take(4096).read_to_string(&mut text).await;
    }
    (status.is_ok_and(|s| s.success()), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_logs_times_in_their_zone() {
        // 2026-06-29 13:54:42.063082 UTC
        let utc = parse_time("2026-06-29 13:54:42.063082+0000").unwrap();
        assert_eq!(parse_time("2026-06-29 15:54:42.063082+0200"), Some(utc));
        assert_eq!(parse_time("2026-06-29 06:54:42.063082-0700"), Some(utc));
        assert_eq!(utc % 1_000_000, 63_082);
        assert_eq!(
            utc / 1_000_000,
            days_from_civil(2026, 6, 29) * 86_400 + 13 * 3600 + 54 * 60 + 42
        );
        assert_eq!(parse_time("2026-06-29 13:54:42+0000"), Some(utc - 63_082));
        assert_eq!(
            parse_time("2026-06-29 13:54:42.5+0000"),
            Some(utc - 63_082 + 500_000)
        );
        for bad in [
            "",
            "2026-06-29",
            "2026-13-29 13:54:42.063082+0000",
            "2026-06-29 13:54:42.063082",
            "2026-06-29 13:54:42.063082+02",
            "2026-06-29T13:54:42.063082+0000",
            "2026-06-29 13:54:42.+0000",
            "２026-06-29 13:54:42.063082+0000",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn start_is_the_marks_second_in_utc() {
        let at = parse_time("2026-06-29 15:54:42.063082+0200").unwrap();
        assert_eq!(start_arg(at), "2026-06-29 13:54:42+0000");
    }

    #[test]
    fn a_mark_tells_entries_of_its_microsecond_apart() {
        let mut m = Mark::starting(100);
        assert!(m.covers(99, "a") && !m.covers(100, "a") && !m.covers(101, "a"));
        m.pass(100, "a");
        assert!(m.covers(100, "a") && !m.covers(100, "b"));
        m.pass(100, "b");
        m.pass(90, "late");
        assert_eq!(
            m,
            Mark {
                at_us: 100,
                ids: vec!["a".into(), "b".into()]
            }
        );
        m.pass(101, "c");
        assert_eq!(Mark::parse(&m.encode()), Some(m.clone()));
        assert_eq!(m.encode(), "101 c");
        assert_eq!(Mark::parse("100"), Some(Mark::starting(100)));
        assert_eq!(Mark::parse("x"), None);
    }

    #[test]
    fn takes_log_entries_and_passes_over_the_rest() {
        let line = br#"{"timestamp":"2026-06-29 15:54:42.063082+0200","machTimestamp":12868010147176,"threadID":11537025,"bootUUID":"B","eventMessage":"hello world","messageType":"Error","eventType":"logEvent","subsystem":"com.apple.bluetooth","category":"Server","processID":401,"traceID":45473881108119556}"#;
        let (at, id, text) = parse_entry(line).unwrap();
        assert_eq!(at, parse_time("2026-06-29 13:54:42.063082+0000").unwrap());
        assert_eq!(id, "12868010147176.11537025.45473881108119556");
        assert_eq!(text, "hello world");
        assert!(parse_entry(
            b"Filtering the log data using \"composedMessage CONTAINS \\\"x\\\"\"\n"
        )
        .is_none());
        assert!(parse_entry(br#"{"count":3335,"finished":1}"#).is_none());
        assert!(parse_entry(br#"{"timestamp":"2026-06-29 15:54:42.063082+0200","eventType":"activityCreateEvent","eventMessage":"x"}"#).is_none());
        let (_, _, text) = parse_entry(
            b"{\"timestamp\":\"2026-06-29 15:54:42+0200\",\"eventMessage\":\"caf\xe9\"}",
        )
        .unwrap();
        assert_eq!(text, "caf\u{fffd}");
    }
}
