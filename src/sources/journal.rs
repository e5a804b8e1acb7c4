//! The systemd journal, read from `journalctl --output=json --follow`, resumed after the last
//! delivered entry's cursor, or with none delivered yet, from the entry reading first began at
//! (the first of the boot it began in), so entries written while the publisher was stopped are
//! read even across a reboot. The child is restarted with backoff if it dies and killed when
//! the publisher stops.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::JournalSource;
use crate::service::{beating, Heartbeat, BEAT};
use crate::sinks::cloudwatch_logs::budget::{Budget, Share, Wait};
use crate::sinks::cloudwatch_logs::{Batch, BatchBuilder};
use crate::sources::capped_lines::{CappedLines, Next};
use crate::sources::Position;

/// Names the `journalctl` to run instead of the one on `PATH` (tests use a stand-in).
pub const PROGRAM_ENV: &str = "CLOUDWATCH_PUBLISHER_JOURNALCTL";
/// A journal entry longer than this (as JSON) is skipped rather than held in memory.
const MAX_ENTRY_BYTES: usize = 16 * 1024 * 1024;

fn lines() -> CappedLines {
    CappedLines::new(MAX_ENTRY_BYTES)
}

#[derive(Clone)]
pub struct Journal {
    pub program: PathBuf,
    pub source: JournalSource,
    /// Read what is there and stop (`--once`).
    pub once: bool,
    pub flush_interval: Duration,
}

/// Where reading begins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// The last delivered entry's cursor: reading goes on after it.
    pub after: Option<String>,
    /// With none delivered: the entry reading began at (included), across boots.
    pub from: Option<String>,
    /// The boot `from` is the first entry of, when that was looked up at this start: then
    /// there is no earlier boot to read first.
    pub boot: Option<String>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "__CURSOR")]
    cursor: String,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<String>,
    /// Microseconds of the monotonic clock of the entry's boot.
    #[serde(rename = "__MONOTONIC_TIMESTAMP")]
    monotonic: Option<String>,
    #[serde(rename = "_BOOT_ID")]
    boot: Option<String>,
    #[serde(rename = "MESSAGE", default)]
    message: Option<Field>,
}

/// A journal field as journalctl's JSON shows it: text, bytes (not valid UTF-8, printed as a
/// list of numbers), or several values when the field is repeated.
///
/// Read by hand rather than as an untagged enum: that would hold the whole value in a generic
/// form first, 32 bytes for each number of a byte list, so a message of megabytes that is not
/// UTF-8 would take thirty times its size.
enum Field {
    Text(String),
    Bytes(Vec<u8>),
    Many(Vec<Field>),
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Field, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> serde::de::Visitor<'de> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string, a list of bytes or a list of values")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Field, E> {
        Ok(Field::Text(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Field, E> {
        Ok(Field::Text(v))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Field, A::Error> {
        // The first element says which list this is: numbers are bytes, anything else values.
        match seq.next_element::<Element>()? {
            None => Ok(Field::Bytes(Vec::new())),
            Some(Element::Byte(b)) => {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).saturating_add(1));
                bytes.push(b);
                while let Some(b) = seq.next_element::<u8>()? {
                    bytes.push(b);
                }
                Ok(Field::Bytes(bytes))
            }
            Some(Element::Field(first)) => {
                let mut many = vec![first];
                while let Some(f) = seq.next_element::<Field>()? {
                    many.push(f);
                }
                Ok(Field::Many(many))
            }
        }
    }
}

/// The first element of a list: a byte, or a field of its own.
enum Element {
    Byte(u8),
    Field(Field),
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Element, D::Error> {
        struct ElementVisitor;
        impl<'de> serde::de::Visitor<'de> for ElementVisitor {
            type Value = Element;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte, a string or a list")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Element, E> {
                u8::try_from(v)
                    .map(Element::Byte)
                    .map_err(|_| E::custom(format!("{v} is not a byte")))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Element, E> {
                FieldVisitor.visit_str(v).map(Element::Field)
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Element, E> {
                FieldVisitor.visit_string(v).map(Element::Field)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Element, A::Error> {
                FieldVisitor.visit_seq(seq).map(Element::Field)
            }
        }
        d.deserialize_any(ElementVisitor)
    }
}

impl Field {
    fn into_text(self) -> String {
        match self {
            Field::Text(s) => s,
            Field::Bytes(b) => String::from_utf8(b)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            Field::Many(v) => v
                .into_iter()
                .map(Field::into_text)
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl Journal {
    pub fn program() -> PathBuf {
        std::env::var_os(PROGRAM_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("journalctl"))
    }

    /// The boot of the newest entry in the journal: this boot, as journald records it.
    ///
    /// journalctl's own `--boot` (and the one `--follow` implies since systemd 250) takes this
    /// boot's id from /proc/sys/kernel/random/boot_id instead. Inside a container that file is
    /// overmounted with the container's id, which a sandboxed service
    /// (`ProtectKernelTunables=`) does not see: it then gets the host's id, matches no entry, and
    /// nothing would ever be shipped. Asking the journal avoids that.
    async fn newest_boot(&self) -> Option<String> {
        #[derive(Deserialize)]
        struct Newest {
            #[serde(rename = "_BOOT_ID")]
            boot: String,
        }
        let out = Command::new(&self.program)
            .args(["--output=json", "--lines=1", "--quiet"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(30), out)
            .await
            .ok()?
            .ok()?;
        let line = out.stdout.split(|&b| b == b'\n').next()?;
        let boot = serde_json::from_slice::<Newest>(line).ok()?.boot;
        (boot.len() == 32 && boot.bytes().all(|b| b.is_ascii_hexdigit())).then_some(boot)
    }

    /// Where reading begins with nothing saved: this boot's id and its first entry's cursor.
    /// None if the journal has no entries or journalctl cannot be run.
    pub async fn first_of_this_boot(&self) -> Option<(String, String)> {
        #[derive(Deserialize)]
        struct First {
            #[serde(rename = "__CURSOR")]
            cursor: String,
        }
        let boot = self.newest_boot().await?;
        let mut child = Command::new(&self.program)
            .args(["--output=json", "--quiet", &format!("--boot={boot}")])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let mut reader = BufReader::new(child.stdout.take()?);
        let mut lines = lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next(&mut reader));
        let cursor = match first.await {
            Ok(Ok(Next::Line)) => serde_json::from_slice::<First>(lines.line()).ok()?.cursor,
            _ => return None,
        };
        Some((boot, cursor))
    }

    fn args(
        &self,
        cursor: Option<&str>,
        start: Option<&str>,
        follow: bool,
        boot: Option<&str>,
    ) -> Vec<String> {
        let mut args = vec![
            "--output=json".to_owned(),
            "--all".to_owned(),
            "--no-tail".to_owned(),
            "--quiet".to_owned(),
        ];
        if follow {
            args.push("--follow".into());
        }
        match (cursor, start) {
            (Some(c), _) => args.push(format!("--after-cursor={c}")),
            (None, Some(s)) => args.push(format!("--cursor={s}")),
            (None, None) => {}
        }
        // From the start of this boot when there is nowhere else to begin; when following,
        // this boot only (as --follow would imply), named explicitly.
        if (cursor.is_none() && start.is_none()) || follow {
            args.push(match boot {
                Some(id) => format!("--boot={id}"),
                None => "--boot".into(),
            });
        }
        for unit in &self.source.units {
            args.push(format!("--unit={unit}"));
        }
        if let Some(p) = &self.source.priority {
            args.push(format!("--priority={p}"));
        }
        for (i, group) in self.source.matches.iter().enumerate() {
            if i > 0 {
                args.push("+".into());
            }
            args.extend(
                group
                    .iter()
                    .map(|(field, value)| format!("{field}={value}")),
            );
        }
        args
    }

    /// Reads entries from where `resume` says (with nothing there, from the start of this
    /// boot) into batches for `out` until `stop`, each entry taking its room in `budget` first
    /// (journalctl waits on a full pipe meanwhile).
    pub async fn run(
        self,
        resume: Resume,
        out: mpsc::Sender<Batch>,
        budget: Budget,
        stop: CancellationToken,
        heartbeat: Heartbeat,
    ) {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        let mut builder = BatchBuilder::new();
        let mut share = Share::new(budget);
        let mut last_ts = 0i64;
        let mut warned = false;
        let mut cursor = resume.after;
        let mut start = if cursor.is_none() { resume.from } else { None };
        let mut boot = start.as_ref().and(resume.boot);
        // `--follow` keeps to the current boot, so entries after the cursor (or the start) from
        // an earlier boot (written while the publisher was stopped before a reboot) are read
        // first by a run without it.
        let mut catching_up =
            (cursor.is_some() || (start.is_some() && boot.is_none())) && !self.once;
        loop {
            let follow = !self.once && !catching_up;
            if boot.is_none() && (follow || (cursor.is_none() && start.is_none())) {
                boot = beating(&heartbeat, self.newest_boot()).await;
            }
            let mut child = match Command::new(&self.program)
                .args(self.args(cursor.as_deref(), start.as_deref(), follow, boot.as_deref()))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
            {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(program = %self.program.display(),
                        "There is no journalctl on this machine, so the journal is not shipped; the other logs are.");
                    return;
                }
                Err(e) => {
                    tracing::warn!(program = %self.program.display(), error = %e, "Cannot run journalctl; the journal is not shipped.");
                    return;
                }
            };
            let stdout = child.stdout.take().expect("piped");
            let mut stderr = child.stderr.take().expect("piped");
            let errors = tokio::spawn(async move {
                let mut text = String::new();
                let _ = (&mut stderr).take(4096).read_to_string(&mut text).await;
                text
            });
            let mut reader = BufReader::with_capacity(64 * 1024, stdout);
            let mut lines = lines();
            let mut entries = 0u64;
            let mut stopped = false;
            loop {
                let deadline = builder
                    .opened()
                    .map(|t| Instant::from_std(t) + self.flush_interval);
                tokio::select! {
                    _ = stop.cancelled() => { stopped = true; break; }
                    // The sender is gone (its destination parked): read again later from the
                    // last entry delivered.
                    _ = out.closed() => return,
                    _ = tokio::time::sleep(BEAT) => {}
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                        let due = builder.take();
                        if !share.send(due, &builder, &out, &heartbeat).await { return; }
                    }
                    r = lines.next(&mut reader) => match r {
                        Ok(Next::End) | Err(_) => break,
                        Ok(Next::Skipped) => {
                            tracing::warn!(limit = MAX_ENTRY_BYTES, "Skipping a journal entry larger than the limit.");
                        }
                        Ok(Next::Line) => {
                            // The entry's JSON is longer than the events it makes.
                            let room = Share::room_for(lines.line().len());
                            match share.wait(room, &mut builder, self.flush_interval, &out, &stop, &heartbeat).await {
                                Wait::Room => {}
                                // Not taken: read again after its cursor's predecessor.
                                Wait::Stopped => { stopped = true; break; }
                                Wait::Closed => return,
                            }
                            entries += 1;
                            let full = self.entry(lines.line(), &mut builder, &mut last_ts, &mut cursor);
                            if !share.send(full, &builder, &out, &heartbeat).await { return; }
                        }
                    },
                }
            }
            let _ = child.start_kill();
            let status = child.wait().await;
            let errors = errors.await.unwrap_or_default();
            let success = status.as_ref().is_ok_and(|s| s.success());
            if stopped || (self.once && success) {
                break;
            }
            if catching_up && success {
                catching_up = false;
                continue;
            }
            if entries == 0 && (cursor.is_some() || start.is_some()) && errors.contains("cursor") {
                tracing::warn!(error = %errors.trim(),
                    "The saved journal cursor is not in the journal any more (a volatile journal after a reboot?); reading from the start of this boot.");
                cursor = None;
                catching_up = false;
                // Where reading begins now is saved like any position, so that a restart
                // before anything is delivered begins here too.
                (boot, start) = match beating(&heartbeat, self.first_of_this_boot()).await {
                    Some((b, first)) => (Some(b), Some(first)),
                    None => (None, None),
                };
                if let Some(first) = &start {
                    builder.advance(Position::JournalFrom(
                        self.source.key.clone(),
                        first.clone(),
                    ));
                    let moved = builder.take();
                    if !share.send(moved, &builder, &out, &heartbeat).await {
                        return;
                    }
                }
                continue;
            }
            if entries > 0 {
                backoff.reset();
            }
            let delay = backoff.next_delay();
            let status = status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string());
            if !warned || backoff.failures().is_multiple_of(10) {
                warned = true;
                tracing::warn!(program = %self.program.display(), %status, error = %errors.trim(),
                    retry_in_s = delay.as_secs(), "journalctl ended; starting it again after the last entry read.");
            }
            tokio::select! {
                _ = beating(&heartbeat, tokio::time::sleep(delay)) => {}
                _ = stop.cancelled() => break,
            }
        }
        let last = builder.take();
        share.send(last, &builder, &out, &heartbeat).await;
    }

    /// One line of journalctl's output → events; returns batches that became full.
    #[doc(hidden)] // public for the fuzz target
    pub fn entry(
        &self,
        line: &[u8],
        builder: &mut BatchBuilder,
        last_ts: &mut i64,
        cursor: &mut Option<String>,
    ) -> Vec<Batch> {
        // journalctl prints each entry as a JSON object. Anything else is no entry: a list
        // would be read as the fields in order.
        if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            tracing::warn!(
                bytes = line.len(),
                "Skipping a line of journalctl's output that is not a JSON object."
            );
            return Vec::new();
        }
        let entry: Entry = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, bytes = line.len(), "Skipping a journal entry that is not valid JSON (or too large).");
                return Vec::new();
            }
        };
        let clock = crate::clock::get().read();
        let realtime = entry
            .realtime
            .as_deref()
            .and_then(|t| t.parse::<i64>().ok())
            .map(|us| us / 1000);
        // Logged in this boot while the clock is not synchronized: the entry's monotonic time
        // on the wall clock's present offset, shifted once the clock is synchronized.
        let monotonic = entry
            .monotonic
            .as_deref()
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|_| !clock.synchronized && this_boot(entry.boot.as_deref()));
        let ts = match monotonic {
            Some(us) => us / 1000 + clock.offset_ms,
            None => realtime.unwrap_or(clock.wall_ms),
        };
        builder.stamped_on(monotonic.map(|_| clock.offset_ms));
        *last_ts = ts;
        *cursor = Some(entry.cursor.clone());
        let position = Position::Journal(self.source.key.clone(), entry.cursor);
        let text = entry.message.map(Field::into_text).unwrap_or_default();
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() || !self.source.filters.keeps(text) {
            builder.advance(position);
            return Vec::new();
        }
        builder.push_message(ts, text, position)
    }
}

/// Whether a `_BOOT_ID` (32 hex digits) is this boot's (the kernel writes it with dashes).
fn this_boot(boot: Option<&str>) -> bool {
    match (boot, crate::clock::boot_id()) {
        (Some(entry), Some(ours)) => ours.replace('-', "").eq_ignore_ascii_case(entry),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(json: &str) -> Option<String> {
        serde_json::from_str::<Entry>(&format!(r#"{{"__CURSOR":"c","MESSAGE":{json}}}"#))
            .unwrap()
            .message
            .map(Field::into_text)
    }

    #[test]
    fn a_field_is_text_bytes_or_several_values() {
        assert_eq!(message(r#""plain""#).as_deref(), Some("plain"));
        assert_eq!(message("[104,105,32,255]").as_deref(), Some("hi \u{FFFD}"));
        assert_eq!(message("[104,105]").as_deref(), Some("hi"));
        assert_eq!(message("[]").as_deref(), Some(""));
        assert_eq!(message("null"), None);
        assert_eq!(
            message(r#"["one",[116,119,111],"three"]"#).as_deref(),
            Some("one\ntwo\nthree")
        );
        for bad in ["[104,256]", "[104,\"x\"]", "7", "{}"] {
            assert!(
                serde_json::from_str::<Entry>(&format!(r#"{{"__CURSOR":"c","MESSAGE":{bad}}}"#))
                    .is_err(),
                "{bad}"
            );
        }
    }
}
