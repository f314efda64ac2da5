//! [`Hub`]: the open streams of this instance by conversation, what the listener tells them,
//! and the log reads they share.
//!
//! A notification wakes every stream of its conversation at once; those at the same position
//! would each run the same query. They share one read instead ([`Subscription::read`]): a
//! stream joins a read of the same conversation after the same seq only when that read began
//! after everything the stream has been told (its [`Marks`]), so the stream's order rule holds
//! as if it had read alone. A conversation watched by N streams costs one read per event, not N.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore, watch};
use uuid::Uuid;

use super::stream::{BATCH, Event, Log, Options};
use crate::config::EventSettings;

/// What a stream knows of its conversation from notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    /// The newest seq notified (0: none since the stream opened).
    pub newest: i64,
    /// The conversation was deleted.
    pub deleted: bool,
}

/// What a stream had been told when it read ([`Subscription::mark`]): a read that began with at
/// least as much holds every event the stream may expect from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// [`Known::newest`] as marked.
    newest: i64,
    /// The resync counter as marked.
    resync: u64,
}

impl Marks {
    fn cover(self, other: Marks) -> bool {
        self.newest >= other.newest && self.resync >= other.resync
    }
}

/// A shared read's outcome: the events, or the error every stream that waited on it retries.
pub type Read = Result<Arc<Vec<Event>>, Arc<sqlx::Error>>;

/// One read of a conversation's log after one seq, begun with `marks`; every stream waiting on
/// it holds `result`.
struct Flight {
    marks: Marks,
    result: Arc<OnceCell<Read>>,
}

/// A conversation with streams open here: what they are told, and its reads of the log (in
/// flight, or finished and not yet cleared) by the seq they read after.
struct Conversation {
    known: watch::Sender<Known>,
    reads: HashMap<i64, Flight>,
}

impl Conversation {
    /// The read of the log after `after` that a stream with `marks` may wait on: one in flight
    /// or finished (not failed) that began with at least `marks`, or a new one.
    fn share(&mut self, after: i64, marks: Marks) -> Arc<OnceCell<Read>> {
        match self.reads.get(&after) {
            // A failed read is not shared with the retries: they read again.
            Some(flight)
                if flight.marks.cover(marks) && !matches!(flight.result.get(), Some(Err(_))) =>
            {
                flight.result.clone()
            }
            _ => {
                // Reads nobody waits on any more (finished, or their readers gone) go.
                self.reads.retain(|_, f| Arc::strong_count(&f.result) > 1);
                let result = Arc::new(OnceCell::new());
                self.reads.insert(
                    after,
                    Flight {
                        marks,
                        result: result.clone(),
                    },
                );
                result
            }
        }
    }
}

/// This instance's streams: one watch per conversation with a stream open, a resync counter
/// bumped each time the listener (re)connects, the shutdown flag, the cap, and how streams talk
/// to their clients (`events.heartbeat`, `events.retry`).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    conversations: Mutex<HashMap<Uuid, Conversation>>,
    resync: watch::Sender<u64>,
    shutdown: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    options: Options,
}

/// One open stream's view of the hub; dropping it frees its place under the cap.
pub struct Subscription {
    hub: Hub,
    conversation: Uuid,
    /// Changes when a notification names a newer seq, or the deletion.
    pub known: watch::Receiver<Known>,
    /// Changes when the listener has (re)connected: what it missed is in the log.
    pub resync: watch::Receiver<u64>,
    /// Turns `true` when the instance shuts down.
    pub shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Hub {
    pub fn new(settings: &EventSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                conversations: Mutex::default(),
                resync: watch::Sender::new(0),
                shutdown: watch::Sender::new(false),
                permits: Arc::new(Semaphore::new(settings.max_streams)),
                options: Options {
                    heartbeat: settings.heartbeat,
                    retry: settings.retry,
                },
            }),
        }
    }

    /// How this instance's streams talk to their clients.
    pub fn options(&self) -> Options {
        self.inner.options
    }

    fn conversations(&self) -> MutexGuard<'_, HashMap<Uuid, Conversation>> {
        // A panic while holding the lock leaves the map whole (every operation is one call).
        self.inner
            .conversations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A place for one more stream of `conversation`, or `None` when the instance already holds
    /// `events.max_streams` of them or is shutting down.
    pub fn subscribe(&self, conversation: Uuid) -> Option<Subscription> {
        if *self.inner.shutdown.borrow() {
            return None;
        }
        let permit = self.inner.permits.clone().try_acquire_owned().ok()?;
        let known = self
            .conversations()
            .entry(conversation)
            .or_insert_with(|| Conversation {
                known: watch::Sender::new(Known::default()),
                reads: HashMap::new(),
            })
            .known
            .subscribe();
        Some(Subscription {
            hub: self.clone(),
            conversation,
            known,
            resync: self.inner.resync.subscribe(),
            shutdown: self.inner.shutdown.subscribe(),
            _permit: permit,
        })
    }

    /// A notification's payload, from the listener: `"<id> <seq>"` or `"<id> deleted"`. One
    /// that does not parse (not written by the log's triggers) is ignored.
    pub fn notify(&self, payload: &str) {
        let Some((id, what)) = payload.split_once(' ') else {
            return;
        };
        let Ok(id) = id.parse::<Uuid>() else { return };
        let map = self.conversations();
        let Some(sender) = map.get(&id).map(|c| &c.known) else {
            return;
        };
        match what {
            "deleted" => {
                sender.send_modify(|k| k.deleted = true);
            }
            seq => {
                let Ok(seq) = seq.parse::<i64>() else { return };
                sender.send_if_modified(|k| {
                    let newer = seq > k.newest;
                    k.newest = k.newest.max(seq);
                    newer
                });
            }
        }
    }

    /// The listener is (again) listening: every stream reads what it may have missed.
    pub fn resync(&self) {
        self.inner.resync.send_modify(|n| *n += 1);
    }

    /// Shutdown: streams end (with a `retry:` hint) and no new one opens.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

impl Subscription {
    /// Marks what this stream has been told as seen: a notification or resync after this call
    /// changes `known` or `resync` again. The stream reads after marking.
    pub fn mark(&mut self) -> (Known, Marks) {
        let known = *self.known.borrow_and_update();
        let resync = *self.resync.borrow_and_update();
        let marks = Marks {
            newest: known.newest,
            resync,
        };
        (known, marks)
    }

    /// The conversation's log after `after`, at most [`BATCH`] events, read once for every
    /// stream of this instance that asks with the same `after` and whose `marks` the read
    /// covers. A read whose first reader went away is finished by the next one waiting on it.
    pub async fn read<L: Log>(&self, log: &L, after: i64, marks: Marks) -> Read {
        let result = {
            let mut map = self.hub.conversations();
            // A subscription keeps its conversation's entry; without one it reads alone.
            match map.get_mut(&self.conversation) {
                None => Arc::new(OnceCell::new()),
                Some(conversation) => conversation.share(after, marks),
            }
        };
        // A finished read stays for streams woken late by the same notification (what they
        // were told, it covers) until the conversation's next new read clears it.
        result
            .get_or_init(|| async {
                crate::monitoring::event_log_read();
                log.after(self.conversation, after, BATCH)
                    .await
                    .map(Arc::new)
                    .map_err(Arc::new)
            })
            .await
            .clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.hub.conversations();
        // This subscription's receiver is still counted: it is the last one when the count is 1.
        if map
            .get(&self.conversation)
            .is_some_and(|c| c.known.receiver_count() <= 1)
        {
            map.remove(&self.conversation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_is_shared_with_the_streams_it_covers_and_a_failed_one_with_none() {
        let mut c = Conversation {
            known: watch::Sender::new(Known::default()),
            reads: HashMap::new(),
        };
        let m = |newest, resync| Marks { newest, resync };
        let first = c.share(0, m(3, 1));
        assert!(Arc::ptr_eq(&first, &c.share(0, m(3, 1))), "told the same");
        assert!(Arc::ptr_eq(&first, &c.share(0, m(2, 0))), "told less");
        let newer = c.share(0, m(4, 1));
        assert!(!Arc::ptr_eq(&first, &newer), "told a newer seq");
        assert!(!Arc::ptr_eq(&newer, &c.share(0, m(4, 2))), "resynced since");
        assert!(
            !Arc::ptr_eq(&first, &c.share(7, m(3, 1))),
            "another position"
        );

        let failed = c.share(9, m(9, 2));
        failed
            .set(Err(Arc::new(sqlx::Error::PoolTimedOut)))
            .unwrap();
        assert!(!Arc::ptr_eq(&failed, &c.share(9, m(9, 2))), "failed");

        // Reads nobody waits on go when a new read starts: only the newest one stays.
        drop((first, newer, failed));
        c.reads.clear();
        let kept = c.share(1, m(1, 0));
        drop(c.share(2, m(2, 0)));
        c.share(3, m(3, 0));
        assert_eq!(c.reads.len(), 2, "the one waited on and the newest");
        assert!(Arc::ptr_eq(&kept, &c.reads[&1].result));
    }

    #[test]
    fn notifications_reach_the_conversations_streams_and_the_cap_holds() {
        let hub = Hub::new(&EventSettings {
            max_streams: 2,
            heartbeat: std::time::Duration::from_secs(15),
            retry: std::time::Duration::from_secs(1),
        });
        let a = Uuid::from_u128(1);
        let mut first = hub.subscribe(a).unwrap();
        let second = hub.subscribe(Uuid::from_u128(2)).unwrap();
        assert!(hub.subscribe(a).is_none(), "over the cap");
        hub.notify(&format!("{a} 5"));
        hub.notify(&format!("{a} 3"));
        hub.notify("not a payload");
        assert!(first.known.has_changed().unwrap());
        assert_eq!(first.known.borrow_and_update().newest, 5);
        hub.notify(&format!("{a} deleted"));
        assert!(first.known.borrow_and_update().deleted);
        drop(second);
        let third = hub
            .subscribe(a)
            .expect("the dropped stream's place is free");
        assert!(hub.subscribe(a).is_none(), "two open again: over the cap");
        drop(third);
        drop(first);
        assert!(hub.conversations().is_empty());
        hub.shutdown();
        assert!(hub.subscribe(a).is_none(), "shutting down");
    }
}
