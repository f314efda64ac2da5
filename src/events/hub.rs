//! [`Hub`]: the open streams of this instance by conversation, and what the listener tells them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use uuid::Uuid;

use super::stream::Options;
use crate::config::EventSettings;

/// What a stream knows of its conversation from notifications.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Known {
    /// The newest seq notified (0: none since the stream opened).
    pub newest: i64,
    /// The conversation was deleted.
    pub deleted: bool,
}

/// This instance's streams: one watch per conversation with a stream open, a resync counter
/// bumped each time the listener (re)connects, the shutdown flag, the cap, and how streams talk
/// to their clients (`events.heartbeat`, `events.retry`).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    conversations: Mutex<HashMap<Uuid, watch::Sender<Known>>>,
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

    fn conversations(&self) -> MutexGuard<'_, HashMap<Uuid, watch::Sender<Known>>> {
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
            .or_insert_with(|| watch::Sender::new(Known::default()))
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
        let Some(sender) = map.get(&id) else { return };
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

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut map = self.hub.conversations();
        // This subscription's receiver is still counted: it is the last one when the count is 1.
        if map
            .get(&self.conversation)
            .is_some_and(|s| s.receiver_count() <= 1)
        {
            map.remove(&self.conversation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
