//! One memory budget for every log file: the bytes of lines read and not yet delivered, shared
//! by all readers, their batches and the requests in flight. A reader reserves room before it
//! reads; the room goes with the batches the lines end up in and comes back when CloudWatch has
//! taken them (or the batch is dropped). When the budget is spent, readers wait their turn,
//! first come first served, so however many files are behind, memory stays bounded and no file
//! starves: the files themselves are the buffer.

use std::sync::Arc;

use tokio::sync::Semaphore;

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
}
