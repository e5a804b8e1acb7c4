//! PutLogEvents' limits, and the batch builder that keeps every request inside them.
//!
//! A batch keeps its messages in one string and the events as end offsets into it: one
//! allocation per batch instead of one per line, and cheap to rebuild for a retry.

use std::sync::Arc;
use std::time::Instant;

use super::budget::Held;
use crate::sources::Position;

/// Largest PutLogEvents request, counted as message bytes plus [`EVENT_OVERHEAD`] per event.
#[cfg(not(fuzzing))]
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What CloudWatch adds to each event's UTF-8 length when it counts a batch.
pub const EVENT_OVERHEAD: usize = 26;
/// Most events in one request.
#[cfg(not(fuzzing))]
pub const MAX_BATCH_EVENTS: usize = 10_000;
// The fuzz targets' build (cargo-fuzz sets `--cfg fuzzing`) scales the two size limits down, so
// that every input can meet them in microseconds rather than by copying megabytes: the same
// code and arithmetic, at a smaller scale. `cargo test` runs the corpus at the real limits.
#[cfg(fuzzing)]
pub const MAX_BATCH_BYTES: usize = 8_192;
#[cfg(fuzzing)]
pub const MAX_BATCH_EVENTS: usize = 100;
/// Largest message of one event, so that a batch of that one event is within the limit.
pub const MAX_EVENT_BYTES: usize = MAX_BATCH_BYTES - EVENT_OVERHEAD;
/// Longest time between the first and the last event of one request.
pub const MAX_SPAN_MS: i64 = 24 * 3600 * 1000;
/// CloudWatch stores events from at most this long ago...
pub const MAX_AGE_MS: i64 = 14 * 24 * 3600 * 1000;
/// ...to at most this far ahead.
pub const MAX_AHEAD_MS: i64 = 2 * 3600 * 1000;

/// Whether CloudWatch would store an event stamped `ts` at `now` (the retention aside).
pub fn in_window(ts: i64, now: i64) -> bool {
    ts >= now.saturating_sub(MAX_AGE_MS) && ts <= now.saturating_add(MAX_AHEAD_MS)
}

/// Events for one (group, stream), within every PutLogEvents limit, in chronological order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    text: String,
    /// (timestamp in ms, end of the message in `text`)
    events: Vec<(i64, usize)>,
    /// Where the source is after these events; `None` if nothing moved.
    pub position: Option<Position>,
    /// When the first event (or position change) was added, for the flush deadline.
    pub opened: Option<Instant>,
    /// The room its lines take in the log sources' memory budget, given back with the batch.
    pub held: Option<Arc<Held>>,
    /// Its times were stamped while the system clock was not synchronized, when the wall
    /// clock's offset from the monotonic clock was this; they wait for the clock and are then
    /// shifted (see [`crate::clock`]).
    pub unsynced: Option<i64>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Bytes as CloudWatch counts them.
    pub fn bytes(&self) -> usize {
        self.text.len() + EVENT_OVERHEAD * self.events.len()
    }

    pub fn first_timestamp(&self) -> Option<i64> {
        self.events.first().map(|e| e.0)
    }

    pub fn last_timestamp(&self) -> Option<i64> {
        self.events.last().map(|e| e.0)
    }

    /// The events as (timestamp, message), in order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = (i64, &str)> + '_ {
        let mut start = 0;
        self.events.iter().map(move |&(ts, end)| {
            let msg = &self.text[start..end];
            start = end;
            (ts, msg)
        })
    }

    /// Whether an event of `len` bytes at `ts` can join without breaking a limit.
    pub fn fits(&self, ts: i64, len: usize) -> bool {
        if self.events.len() >= MAX_BATCH_EVENTS
            || self.bytes() + len + EVENT_OVERHEAD > MAX_BATCH_BYTES
        {
            return false;
        }
        match (self.first_timestamp(), self.last_timestamp()) {
            (Some(first), Some(last)) => ts >= last && ts - first <= MAX_SPAN_MS,
            _ => true,
        }
    }

    /// Moves every event's time by `ms` (onto the synchronized clock).
    pub fn shift(&mut self, ms: i64) {
        for e in &mut self.events {
            e.0 = e.0.saturating_add(ms);
        }
        self.unsynced = None;
    }

    /// Adds an event the caller has checked with [`Batch::fits`].
    fn push_unchecked(&mut self, ts: i64, message: &str) {
        debug_assert!(!message.is_empty() && message.len() <= MAX_EVENT_BYTES);
        self.text.push_str(message);
        self.events.push((ts, self.text.len()));
    }

    /// Splits the batch into two halves (for diagnosing a refused request); the position
    /// stays with the second half.
    pub fn split(self) -> (Batch, Batch) {
        let mid = self.events.len() / 2;
        let mut first = Batch {
            opened: self.opened,
            unsynced: self.unsynced,
            ..Batch::default()
        };
        let mut second = Batch {
            opened: self.opened,
            position: self.position.clone(),
            held: self.held.clone(),
            unsynced: self.unsynced,
            ..Batch::default()
        };
        for (i, (ts, msg)) in self.events().enumerate() {
            if i < mid {
                first.push_unchecked(ts, msg);
            } else {
                second.push_unchecked(ts, msg);
            }
        }
        (first, second)
    }

    /// A one-line preview of an event, for messages about it.
    pub fn preview(message: &str) -> String {
        let mut end = message.len().min(120);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        if end < message.len() {
            format!("{}… ({} bytes)", &message[..end], message.len())
        } else {
            message.to_owned()
        }
    }
}

/// Builds batches from a stream of events: a batch is handed out as soon as the next event
/// would break a limit, so a burst becomes many full requests, never one oversized one.
#[derive(Debug, Default)]
pub struct BatchBuilder {
    current: Batch,
    /// The clock the next events are stamped on (see [`BatchBuilder::stamped_on`]).
    unsynced: Option<i64>,
}

impl BatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one event (a message of at most [`MAX_EVENT_BYTES`], not empty) and the source
    /// position after it. Returns the batch that was full, if this event started a new one.
    ///
    /// An event older than the one before it starts a new batch (each request must be in
    /// chronological order; separate requests need not be).
    pub fn push(&mut self, ts: i64, message: &str, position: Position) -> Option<Batch> {
        let done = self.make_room(ts, message.len());
        self.current.opened.get_or_insert_with(Instant::now);
        self.current.push_unchecked(ts, message);
        self.current.position = Some(position);
        done
    }

    /// Adds a piece of a message split over several events, all but the last: the position
    /// stays where it was, so the message is sent again whole rather than lost in part.
    pub fn push_piece(&mut self, ts: i64, piece: &str) -> Option<Batch> {
        let done = self.make_room(ts, piece.len());
        self.current.opened.get_or_insert_with(Instant::now);
        self.current.push_unchecked(ts, piece);
        done
    }

    /// Adds a message of any length (not empty): one event, or, when longer than an event
    /// may be, its pieces, the position moving only with the last. Returns the batches that
    /// became full.
    pub fn push_message(&mut self, ts: i64, message: &str, position: Position) -> Vec<Batch> {
        let mut full = Vec::new();
        if message.len() <= MAX_EVENT_BYTES {
            full.extend(self.push(ts, message, position));
            return full;
        }
        let mut pieces = split_message(message).peekable();
        while let Some(piece) = pieces.next() {
            if pieces.peek().is_some() {
                full.extend(self.push_piece(ts, piece));
            } else {
                full.extend(self.push(ts, piece, position.clone()));
            }
        }
        full
    }

    /// Says which clock the next events' times come from: `Some(offset)` while the system
    /// clock is not synchronized (the wall clock's offset from the monotonic clock), `None`
    /// once it is, or for times that are not the clock's (taken from the lines themselves).
    /// Events of different clocks (or of one stepped by more than [`crate::clock::STEP_MS`])
    /// never share a batch, since a batch is shifted as one.
    pub fn stamped_on(&mut self, unsynced: Option<i64>) {
        self.unsynced = unsynced;
    }

    /// Hands out the current batch if an event of `len` bytes at `ts` cannot join it.
    fn make_room(&mut self, ts: i64, len: usize) -> Option<Batch> {
        let same_clock = match (self.current.unsynced, self.unsynced) {
            (None, None) => true,
            (Some(a), Some(b)) => (a - b).abs() <= crate::clock::STEP_MS,
            _ => false,
        };
        let done = if !self.current.fits(ts, len) || (!self.current.is_empty() && !same_clock) {
            self.take()
        } else {
            None
        };
        if self.current.is_empty() {
            self.current.unsynced = self.unsynced;
        }
        done
    }

    /// Records that the source moved without an event (filtered or empty lines).
    pub fn advance(&mut self, position: Position) {
        self.current.opened.get_or_insert_with(Instant::now);
        self.current.position = Some(position);
    }

    /// Whether no further event could join the current batch.
    pub fn is_full(&self) -> bool {
        self.current.len() >= MAX_BATCH_EVENTS
            || self.current.bytes() + 1 + EVENT_OVERHEAD > MAX_BATCH_BYTES
    }

    /// Whether there is anything (events or a moved position) to hand out.
    pub fn is_pending(&self) -> bool {
        self.current.position.is_some() || !self.current.is_empty()
    }

    /// Bytes of the events in the current batch, as CloudWatch counts them.
    pub fn bytes(&self) -> usize {
        self.current.bytes()
    }

    /// When the current batch got its first event or position change.
    pub fn opened(&self) -> Option<Instant> {
        self.current.opened
    }

    /// The position the current batch moves to, if any.
    pub fn position(&self) -> Option<&Position> {
        self.current.position.as_ref()
    }

    pub fn take(&mut self) -> Option<Batch> {
        self.is_pending().then(|| std::mem::take(&mut self.current))
    }
}

/// Splits a message longer than [`MAX_EVENT_BYTES`] into pieces at character boundaries.
pub fn split_message(message: &str) -> impl Iterator<Item = &str> {
    let mut rest = message;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(MAX_EVENT_BYTES);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pos(n: usize) -> Position {
        Position::Journal(None, n.to_string())
    }

    fn check(batch: &Batch) -> Result<(), String> {
        if batch.is_empty() {
            return Ok(());
        }
        if batch.len() > MAX_BATCH_EVENTS {
            return Err(format!("{} events", batch.len()));
        }
        let bytes: usize = batch.events().map(|(_, m)| m.len() + EVENT_OVERHEAD).sum();
        if bytes > MAX_BATCH_BYTES {
            return Err(format!("{bytes} bytes"));
        }
        let ts: Vec<i64> = batch.events().map(|(t, _)| t).collect();
        if ts.windows(2).any(|w| w[1] < w[0]) {
            return Err("not chronological".into());
        }
        if ts[ts.len() - 1] - ts[0] > MAX_SPAN_MS {
            return Err("span over 24 h".into());
        }
        if batch
            .events()
            .any(|(_, m)| m.is_empty() || m.len() > MAX_EVENT_BYTES)
        {
            return Err("bad event size".into());
        }
        Ok(())
    }

    /// Events as (time step, message length); lengths lean to the interesting sizes.
    fn events() -> impl Strategy<Value = Vec<(i64, usize)>> {
        let step = prop_oneof![
            8 => Just(0i64),
            4 => 0i64..1000,
            1 => -5_000i64..0,
            1 => Just(MAX_SPAN_MS / 2 + 1),
        ];
        let len = prop_oneof![
            10 => 1usize..200,
            2 => 200usize..20_000,
            1 => MAX_EVENT_BYTES - 10..=MAX_EVENT_BYTES,
        ];
        proptest::collection::vec((step, len), 0..3000)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn no_batch_breaks_a_limit_and_nothing_is_lost(events in events()) {
            let mut b = BatchBuilder::new();
            let mut out = Vec::new();
            let mut ts = 1_700_000_000_000i64;
            let filler = "x".repeat(MAX_EVENT_BYTES);
            for (i, (step, len)) in events.iter().enumerate() {
                ts += step;
                if let Some(batch) = b.push(ts, &filler[..*len], pos(i)) {
                    out.push(batch);
                }
            }
            out.extend(b.take());
            let mut seen = 0;
            for batch in &out {
                prop_assert!(!batch.is_empty());
                if let Err(e) = check(batch) {
                    return Err(TestCaseError::fail(e));
                }
                for (_, m) in batch.events() {
                    prop_assert_eq!(m.len(), events[seen].1);
                    seen += 1;
                }
                prop_assert_eq!(batch.position.clone(), Some(pos(seen - 1)));
            }
            prop_assert_eq!(seen, events.len());
        }

        #[test]
        fn long_messages_split_at_char_boundaries(s in "[a-zé€😀]{0,40}", n in 0usize..5) {
            let long = s.repeat(n * 60_000 + 1);
            let pieces: Vec<&str> = split_message(&long).collect();
            prop_assert_eq!(pieces.concat(), long.clone());
            prop_assert!(pieces.iter().all(|p| !p.is_empty() && p.len() <= MAX_EVENT_BYTES));
        }
    }

    #[test]
    fn full_batches_come_out_when_the_next_event_does_not_fit() {
        let mut b = BatchBuilder::new();
        let mut full = 0;
        for i in 0..25_000 {
            if let Some(batch) = b.push(1, "line", pos(i)) {
                assert_eq!(batch.len(), MAX_BATCH_EVENTS);
                full += 1;
            }
        }
        assert_eq!(full, 2);
        assert_eq!(b.take().unwrap().len(), 5_000);
        assert!(b.take().is_none());
    }

    #[test]
    fn events_of_another_clock_start_a_batch_and_a_batch_shifts_as_one() {
        let mut b = BatchBuilder::new();
        b.stamped_on(Some(-1_000_000));
        assert!(b.push(10, "a", pos(1)).is_none());
        // The same clock, but for jitter below a step: the same batch.
        b.stamped_on(Some(-1_000_000 + 3));
        assert!(b.push(11, "b", pos(2)).is_none());
        // Synchronized now: a new batch, and the old one keeps its mark.
        b.stamped_on(None);
        let mut held = b
            .push(5_000, "c", pos(3))
            .expect("a new clock closes the batch");
        assert_eq!(held.unsynced, Some(-1_000_000));
        held.shift(1_000_000);
        assert_eq!(held.unsynced, None);
        assert_eq!(
            held.events().map(|e| e.0).collect::<Vec<_>>(),
            [1_000_010, 1_000_011]
        );
        let now = b.take().unwrap();
        assert_eq!((now.unsynced, now.len()), (None, 1));
        // A step while unsynchronized is another clock too.
        b.stamped_on(Some(0));
        b.push(1, "d", pos(4));
        b.stamped_on(Some(-3_600_000));
        assert!(b.push(2, "e", pos(5)).is_some());
    }

    #[test]
    fn a_position_alone_is_pending_and_split_keeps_it_last() {
        let mut b = BatchBuilder::new();
        b.advance(pos(7));
        let batch = b.take().unwrap();
        assert!(batch.is_empty() && batch.position == Some(pos(7)));
        for i in 0..5 {
            b.push(i, &format!("m{i}"), pos(i as usize));
        }
        let (a, c) = b.take().unwrap().split();
        assert_eq!(a.events().map(|e| e.1).collect::<Vec<_>>(), ["m0", "m1"]);
        assert_eq!(a.position, None);
        assert_eq!(c.len(), 3);
        assert_eq!(c.position, Some(pos(4)));
    }
}
