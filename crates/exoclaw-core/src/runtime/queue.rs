//! Per-session ordering: turns for one session key run one at a time, in the order they arrived;
//! at most `bound` wait behind the running one, and one more is refused at once
//! ([`SessionBusy`]); different sessions run in parallel.
//!
//! A turn takes its place with [`SessionQueues::enter`], synchronously, so the order is the order
//! in which the gateway read the requests (not the order in which tasks happen to be polled), and
//! waits for its turn with [`Ticket::ready`]. The [`Turn`] it gets back holds the session; dropping
//! it hands the session to the next waiter. A session with nobody running or waiting leaves the
//! map, so the map holds busy sessions only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// A session has as many turns waiting as it may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the session `{key}` already has a turn running and {waiting} waiting, the most it queues; wait for an answer and send again"
)]
pub struct SessionBusy {
    /// The session key.
    pub key: String,
    /// Turns waiting behind the running one.
    pub waiting: usize,
}

#[derive(Debug, Default)]
struct Slot {
    /// Waiters in arrival order; each is woken by being sent the session.
    waiting: VecDeque<oneshot::Sender<()>>,
}

/// The busy sessions, by key.
#[derive(Debug, Default)]
pub struct SessionQueues {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

/// A place in a session's queue.
#[derive(Debug)]
#[must_use = "a ticket holds a place in the queue; wait for it with `ready`"]
pub struct Ticket {
    turn: Turn,
}

/// The session, held while a turn runs; dropping it lets the next waiter in.
#[derive(Debug)]
pub struct Turn {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    key: String,
    /// Fires when the session is this turn's; `None` once it is (or was from the start).
    wait: Option<oneshot::Receiver<()>>,
}

fn lock(slots: &Mutex<HashMap<String, Slot>>) -> MutexGuard<'_, HashMap<String, Slot>> {
    match slots.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl SessionQueues {
    /// Takes the next place in `key`'s queue: the session itself when it is free, else a place
    /// behind the others, unless `bound` turns wait already.
    pub fn enter(&self, key: &str, bound: usize) -> Result<Ticket, SessionBusy> {
        let mut slots = lock(&self.slots);
        let turn = |wait| Turn { slots: Arc::clone(&self.slots), key: key.to_owned(), wait };
        let Some(slot) = slots.get_mut(key) else {
            slots.insert(key.to_owned(), Slot::default());
            return Ok(Ticket { turn: turn(None) });
        };
        // Waiters that gave up (their request was cancelled) keep no place.
        slot.waiting.retain(|w| !w.is_closed());
        if slot.waiting.len() >= bound {
            return Err(SessionBusy { key: key.to_owned(), waiting: slot.waiting.len() });
        }
        let (wake, wait) = oneshot::channel();
        slot.waiting.push_back(wake);
        Ok(Ticket { turn: turn(Some(wait)) })
    }

    /// Sessions with a turn running.
    pub fn busy(&self) -> usize {
        lock(&self.slots).len()
    }

    /// Turns waiting behind a running one, over all sessions.
    pub fn waiting(&self) -> usize {
        lock(&self.slots).values().map(|s| s.waiting.iter().filter(|w| !w.is_closed()).count()).sum()
    }
}

impl Ticket {
    /// Whether the ticket holds the session already (nobody was ahead).
    pub fn is_ready(&self) -> bool {
        self.turn.wait.is_none()
    }

    /// Waits until every turn ahead is done; the session is then this turn's. Dropping the
    /// future while it waits gives the place up (and passes the session on if it had just come).
    pub async fn ready(mut self) -> Turn {
        if let Some(wait) = self.turn.wait.as_mut() {
            // Awaited in place, so that a drop mid-wait still sees the receiver (see `Drop`). An
            // error means the holder went without passing the session on, which it never does;
            // either way the turn goes ahead.
            let _ = wait.await;
            self.turn.wait = None;
        }
        self.turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(mut wait) = self.wait.take()
            && wait.try_recv().is_err()
        {
            // A waiter giving up before its turn came: its sender is now closed and is skipped
            // when the session is passed on. (Had the session just been passed to it, `try_recv`
            // succeeds and it passes it on below, or the session would stay busy for good.)
            return;
        }
        let mut slots = lock(&self.slots);
        let Some(slot) = slots.get_mut(&self.key) else { return };
        while let Some(next) = slot.waiting.pop_front() {
            if next.send(()).is_ok() {
                return;
            }
        }
        slots.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn turns_run_in_arrival_order_and_the_map_empties() {
        let queues = SessionQueues::default();
        let first = queues.enter("a", 2).unwrap();
        assert!(first.is_ready());
        let second = queues.enter("a", 2).unwrap();
        let third = queues.enter("a", 2).unwrap();
        assert!(!second.is_ready());
        let busy = queues.enter("a", 2).unwrap_err();
        assert_eq!(busy.waiting, 2);
        assert!(busy.to_string().contains("`a` already has a turn running and 2 waiting"), "{busy}");
        // Another session is not held up.
        let other = queues.enter("b", 0).unwrap();
        assert!(other.is_ready());
        assert_eq!((queues.busy(), queues.waiting()), (2, 2));

        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |ticket: Ticket, name: &'static str| {
            let order = Arc::clone(&order);
            tokio::spawn(async move {
                let turn = ticket.ready().await;
                order.lock().unwrap().push(name);
                tokio::time::sleep(Duration::from_millis(5)).await;
                drop(turn);
            })
        };
        // Spawned out of order: the queue, not the scheduler, decides.
        let t3 = spawn(third, "third");
        let t2 = spawn(second, "second");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(order.lock().unwrap().is_empty(), "nobody runs while the first holds the session");
        drop(first.ready().await);
        t2.await.unwrap();
        t3.await.unwrap();
        assert_eq!(*order.lock().unwrap(), ["second", "third"]);
        drop(other);
        assert_eq!((queues.busy(), queues.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_frees_its_place() {
        let queues = SessionQueues::default();
        let first = queues.enter("a", 1).unwrap().ready().await;
        let quitter = queues.enter("a", 1).unwrap();
        assert!(queues.enter("a", 1).is_err());
        drop(quitter);
        let next = queues.enter("a", 1).unwrap();
        drop(first);
        let next = tokio::time::timeout(Duration::from_secs(1), next.ready()).await.unwrap();
        drop(next);
        assert_eq!(queues.busy(), 0);
    }
}
