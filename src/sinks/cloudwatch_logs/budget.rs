//! One memory budget for every log source: the bytes of lines and entries read and not yet
//! delivered, shared by all readers (files, the journal, the unified log, the embedded metric
//! format's buffers), their batches and the requests in flight. A file reader reserves room
//! before it reads; a reader of a child process's output ([`Share`]) before it takes an entry
//! into a batch. The room goes with the batches the lines end up in and comes back when
//! CloudWatch has taken them (or the batch is dropped). When the budget is spent, readers wait
//! their turn, first come first served, so however many sources are behind, memory stays
//! bounded and none starves: the files, the journal and the child's pipe are the buffer.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::{Batch, BatchBuilder, EVENT_OVERHEAD, MAX_EVENT_BYTES};
use crate::service::{beating, Heartbeat, BEAT};

/// The default budget: enough for several full PutLogEvents requests per stream in flight.
pub const DEFAULT_MIB: u32 = 16;

#[derive(Debug, Clone)]
pub struct Budget {
    room: Arc<Semaphore>,
    total: u32,
}

/// Room taken from the budget; given back when dropped.
#[derive(Debug)]
pub struct Held {
    room: Option<Arc<Semaphore>>,
    bytes: u32,
}

impl Budget {
    pub fn new(bytes: u32) -> Budget {
        Budget {
            room: Arc::new(Semaphore::new(bytes as usize)),
            total: bytes,
        }
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    /// Waits for `bytes` of room (at most the whole budget), in turn with other readers.
    pub async fn reserve(&self, bytes: u32) -> Held {
        let bytes = bytes.min(self.total);
        match self.room.acquire_many(bytes).await {
            Ok(permit) => {
                permit.forget();
                Held {
                    room: Some(Arc::clone(&self.room)),
                    bytes,
                }
            }
            // The semaphore is never closed.
            Err(_) => Held::none(),
        }
    }

    /// Room not taken now.
    #[cfg(test)]
    pub fn available(&self) -> usize {
        self.room.available_permits()
    }
}

impl Held {
    pub fn none() -> Held {
        Held {
            room: None,
            bytes: 0,
        }
    }

    pub fn bytes(&self) -> u32 {
        self.bytes
    }

    /// Moves up to `bytes` of this room into a `Held` of its own.
    pub fn split(&mut self, bytes: usize) -> Held {
        let n = (bytes.min(u32::MAX as usize) as u32).min(self.bytes);
        self.bytes -= n;
        Held {
            room: self.room.clone(),
            bytes: n,
        }
    }

    /// Takes `other`'s room into this one.
    pub fn absorb(&mut self, mut other: Held) {
        if self.room.is_none() {
            self.room = other.room.take();
        }
        self.bytes += std::mem::take(&mut other.bytes);
    }
}

/// The room of a reader that takes entries from a child process's output (the journal, the
/// unified log): it waits for an entry's room before the entry joins a batch, so its open batch,
/// the batch queued and the one in flight all count, and the child waits on a full pipe
/// meanwhile.
#[derive(Debug)]
pub struct Share {
    budget: Budget,
    /// The room of the events in the open batch (and of the entry about to join it).
    held: Held,
}

/// How waiting for room ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Wait {
    Room,
    Stopped,
    /// The sender is gone.
    Closed,
}

impl Share {
    pub fn new(budget: Budget) -> Share {
        Share {
            budget,
            held: Held::none(),
        }
    }

    /// The room a message of `len` bytes takes in a batch, however it is split into events.
    pub fn room_for(len: usize) -> usize {
        len + EVENT_OVERHEAD * (1 + len / MAX_EVENT_BYTES)
    }

    /// Waits for `bytes` of room (at most the budget), in turn with every other reader. The
    /// open batch is handed on when it falls due meanwhile: its room comes back once it is
    /// delivered, so readers holding room in open batches never wait on each other for ever.
    pub async fn wait(
        &mut self,
        bytes: usize,
        builder: &mut BatchBuilder,
        flush: Duration,
        out: &mpsc::Sender<Batch>,
        stop: &CancellationToken,
        heartbeat: &Heartbeat,
    ) -> Wait {
        let budget = self.budget.clone();
        let reserve = budget.reserve(bytes.min(u32::MAX as usize) as u32);
        tokio::pin!(reserve);
        loop {
            heartbeat.beat();
            let deadline = builder.opened().map(|t| Instant::from_std(t) + flush);
            tokio::select! {
                held = &mut reserve => {
                    self.held.absorb(held);
                    return Wait::Room;
                }
                _ = stop.cancelled() => return Wait::Stopped,
                _ = tokio::time::sleep(BEAT) => {}
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    let due = builder.take();
                    if !self.send(due, builder, out, heartbeat).await {
                        return Wait::Closed;
                    }
                }
            }
        }
    }

    /// Hands `batches` on, each with the room of its bytes (all taken before any goes, so the
    /// room left over is known), then keeps only the room of what is left in `builder`; false
    /// if the sender is gone.
    pub async fn send(
        &mut self,
        batches: impl IntoIterator<Item = Batch>,
        builder: &BatchBuilder,
        out: &mpsc::Sender<Batch>,
        heartbeat: &Heartbeat,
    ) -> bool {
        let batches: Vec<Batch> = batches
            .into_iter()
            .map(|mut b| {
                b.held = Some(Arc::new(self.held.split(b.bytes())));
                b
            })
            .collect();
        self.settle(builder);
        for b in batches {
            if beating(heartbeat, out.send(b)).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Keeps the room of the events in `builder` and gives back the rest (an entry that added
    /// less than it was given room for, or none: filtered out, say).
    pub fn settle(&mut self, builder: &BatchBuilder) {
        let extra = (self.held.bytes() as usize).saturating_sub(builder.bytes());
        drop(self.held.split(extra));
    }

    /// Room held now.
    #[cfg(test)]
    pub fn held(&self) -> u32 {
        self.held.bytes()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let (Some(room), true) = (&self.room, self.bytes > 0) {
            room.add_permits(self.bytes as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn room_comes_back_when_what_holds_it_is_dropped() {
        let budget = Budget::new(100);
        let mut a = budget.reserve(60).await;
        assert_eq!(budget.available(), 40);
        let b = a.split(25);
        assert_eq!((a.bytes(), b.bytes()), (35, 25));
        drop(a);
        assert_eq!(budget.available(), 75);
        let mut c = Held::none();
        c.absorb(b);
        assert_eq!(c.bytes(), 25);
        drop(c);
        assert_eq!(budget.available(), 100);
        // More than the budget is the whole budget, not a wait forever.
        assert_eq!(budget.reserve(1000).await.bytes(), 100);
    }

    #[tokio::test]
    async fn readers_waiting_for_room_are_served_in_turn() {
        let budget = Budget::new(10);
        let first = budget.reserve(10).await;
        let (b1, b2) = (budget.clone(), budget.clone());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (o1, o2) = (Arc::clone(&order), Arc::clone(&order));
        let one = tokio::spawn(async move {
            let h = b1.reserve(8).await;
            o1.lock().unwrap().push(1);
            h
        });
        tokio::task::yield_now().await;
        let two = tokio::spawn(async move {
            let _h = b2.reserve(2).await;
            o2.lock().unwrap().push(2);
        });
        tokio::task::yield_now().await;
        // Two fits now but waits behind one: first come, first served.
        drop(first);
        let held = one.await.unwrap();
        two.await.unwrap();
        assert_eq!(*order.lock().unwrap(), [1, 2]);
        drop(held);
    }

    #[tokio::test]
    async fn a_share_holds_its_open_batchs_room_and_sends_it_when_due_while_it_waits() {
        use crate::sources::Position;
        let budget = Budget::new(1000);
        let health = crate::service::Health::default();
        let beat = health.register("reader");
        let stop = CancellationToken::new();
        let (tx, mut rx) = mpsc::channel(1);
        let mut builder = BatchBuilder::new();
        let mut share = Share::new(budget.clone());
        let flush = Duration::from_millis(50);

        // Room for the entry first; then only what the events take stays held.
        let wait = share
            .wait(500, &mut builder, flush, &tx, &stop, &beat)
            .await;
        assert_eq!(wait, Wait::Room);
        assert_eq!(budget.available(), 500);
        let full = builder.push_message(1, &"x".repeat(100), Position::Journal(None, "1".into()));
        assert!(share.send(full, &builder, &tx, &beat).await);
        assert_eq!((share.held(), budget.available()), (126, 874));

        // More than is left: the wait hands on the open batch when it is due, with its room,
        // which comes back once that batch is done with.
        let waited = tokio::spawn(async move {
            let wait = share
                .wait(900, &mut builder, flush, &tx, &stop, &beat)
                .await;
            (wait, share, builder.is_pending())
        });
        let batch = rx.recv().await.expect("the due batch");
        assert_eq!(batch.held.as_ref().map(|h| h.bytes()), Some(126));
        assert!(!waited.is_finished());
        drop(batch);
        let (wait, share, pending) = waited.await.unwrap();
        assert_eq!((wait, share.held(), pending), (Wait::Room, 900, false));
        assert_eq!(budget.available(), 100);
        drop(share);
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn a_share_waiting_for_room_stops_when_told() {
        let budget = Budget::new(10);
        let _all = budget.reserve(10).await;
        let health = crate::service::Health::default();
        let beat = health.register("reader");
        let stop = CancellationToken::new();
        stop.cancel();
        let (tx, _rx) = mpsc::channel(1);
        let mut share = Share::new(budget);
        let mut builder = BatchBuilder::new();
        let wait = share
            .wait(5, &mut builder, Duration::from_secs(1), &tx, &stop, &beat)
            .await;
        assert_eq!((wait, share.held()), (Wait::Stopped, 0));
    }
}
