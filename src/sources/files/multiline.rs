//! Multi-line events (`multi_line_start_pattern`): a line that matches the start pattern begins
//! an event, and the lines after it that do not are appended to it (joined by `\n`), as a stack
//! trace belongs to the line that logged it. An event is complete when the next start line
//! comes, or when [`QUIET`] has passed without another line.
//!
//! An event's position is the end of its last line: until the event is complete, nothing after
//! its start is handed on, so a saved position never lands inside it.

use std::time::{Duration, Instant};

use regex::Regex;

use super::timestamp::TimestampFormat;
use crate::sinks::cloudwatch_logs::MAX_EVENT_BYTES;

/// How long an event waits for another line before it is complete. The CloudWatch Agent checks
/// every second and closes an event about five seconds after its first line, even while lines
/// still come; waiting for five seconds of quiet instead keeps a trace whole however slowly it
/// is written (a pause of the writer, a rotation in between), and costs the last event of a
/// burst the same five seconds.
pub const QUIET: Duration = Duration::from_secs(5);

/// What marks a line that starts an event.
#[derive(Debug, Clone)]
pub enum StartPattern {
    Regex(Regex),
    /// `{timestamp_format}`: a line with a time in the entry's format.
    Timestamp(TimestampFormat),
}

impl StartPattern {
    fn starts(&self, line: &str) -> bool {
        match self {
            StartPattern::Regex(re) => re.is_match(line),
            StartPattern::Timestamp(f) => f.matches(line),
        }
    }
}

/// An event being put together, or complete.
#[derive(Debug)]
pub struct Event<P> {
    pub text: String,
    /// Where the source is after the event's last line.
    pub position: P,
}

/// Puts lines together into events.
#[derive(Debug)]
pub struct Assembler<P> {
    start: StartPattern,
    open: Option<(Event<P>, Instant)>,
}

impl<P> Assembler<P> {
    pub fn new(start: StartPattern) -> Self {
        Assembler { start, open: None }
    }

    /// Takes one line (`None`: an empty one) and the position after it. Returns the events that
    /// are complete now: the one this start line ends, or the part of an event that would grow
    /// past the largest event CloudWatch takes (the rest goes on as a new one).
    pub fn line(&mut self, text: Option<&str>, position: P, now: Instant) -> Vec<Event<P>> {
        let mut done = Vec::new();
        let starts = text.is_some_and(|t| self.start.starts(t));
        match (&mut self.open, text) {
            (Some((event, at)), _) if !starts => {
                let add = text.unwrap_or("");
                if event.text.len() + 1 + add.len() > MAX_EVENT_BYTES {
                    let (full, _) = self.open.take().expect("open");
                    done.push(full);
                    self.open = Some((
                        Event {
                            text: add.to_owned(),
                            position,
                        },
                        now,
                    ));
                } else {
                    event.text.push('\n');
                    event.text.push_str(add);
                    event.position = position;
                    *at = now;
                }
            }
            (_, Some(t)) => {
                done.extend(self.open.take().map(|(e, _)| e));
                self.open = Some((
                    Event {
                        text: t.to_owned(),
                        position,
                    },
                    now,
                ));
            }
            // An empty line with no event open (an empty line never starts one): nothing to
            // send, only the position moves.
            (_, None) => done.push(Event {
                text: String::new(),
                position,
            }),
        }
        done
    }

    /// The open event, if no line has come for [`QUIET`] (or `force`).
    pub fn expire(&mut self, now: Instant, force: bool) -> Option<Event<P>> {
        let quiet = self
            .open
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) >= QUIET);
        if quiet || force {
            self.open.take().map(|(e, _)| e)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(events: &[Event<u32>]) -> Vec<(&str, u32)> {
        events
            .iter()
            .map(|e| (e.text.as_str(), e.position))
            .collect()
    }

    #[test]
    fn a_stack_trace_is_one_event_and_the_next_start_line_ends_it() {
        let mut a = Assembler::new(StartPattern::Regex(Regex::new(r"^\d{4}-").unwrap()));
        let t0 = Instant::now();
        let mut out = Vec::new();
        for (i, line) in [
            Some("2026-11-30 ERROR boom"),
            Some("java.lang.IllegalStateException: x"),
            Some("    at a.B.c(B.java:1)"),
            None,
            Some("    at a.B.d(B.java:2)"),
            Some("2026-11-30 INFO next"),
        ]
        .into_iter()
        .enumerate()
        {
            out.extend(a.line(line, i as u32 + 1, t0));
        }
        assert_eq!(
            texts(&out),
            [(
                "2026-11-30 ERROR boom\njava.lang.IllegalStateException: x\n    at a.B.c(B.java:1)\n\n    at a.B.d(B.java:2)",
                5
            )]
        );
        assert!(a.expire(t0 + QUIET / 2, false).is_none());
        let last = a.expire(t0 + QUIET, false).unwrap();
        assert_eq!(
            (last.text.as_str(), last.position),
            ("2026-11-30 INFO next", 6)
        );
        // A line before any start line is an event of its own.
        let mut a = Assembler::new(StartPattern::Regex(Regex::new("^START").unwrap()));
        a.line(Some("orphan"), 1, t0);
        assert_eq!(a.line(Some("START x"), 2, t0)[0].text, "orphan");
    }

    #[test]
    fn an_event_never_outgrows_the_limit() {
        let mut a = Assembler::new(StartPattern::Regex(Regex::new("^S").unwrap()));
        let t0 = Instant::now();
        let piece = "x".repeat(MAX_EVENT_BYTES / 3);
        let mut out = a.line(Some("S"), 0, t0);
        for i in 1..=5 {
            out.extend(a.line(Some(&piece), i, t0));
        }
        out.extend(a.expire(t0, true));
        assert!(out.iter().all(|e| e.text.len() <= MAX_EVENT_BYTES));
        let joined: usize = out.iter().map(|e| e.text.len()).sum();
        assert_eq!(
            joined,
            1 + 5 * piece.len() + 5 - (out.len() - 1),
            "nothing dropped"
        );
        assert_eq!(out.last().unwrap().position, 5);
    }
}
