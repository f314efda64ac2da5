//! One stream's bytes (`text/event-stream`): `retry:`, then the events after the client's last
//! id, read from the log in batches, then each new one as the hub signals it, a comment as a
//! heartbeat when idle, and at shutdown a last `retry:` before the end.
//!
//! The order rule, which makes resuming exact: before each read of the log the stream marks
//! what it has been told as seen, then reads `seq > last sent`; a notification that lands
//! after the mark wakes it again. So every event is read once, in seq order, whether it
//! arrived by notification, by a resync after the listener reconnected, or was in the log
//! before the stream opened.
//!
//! Bounded: the stream makes its next chunk only when the connection takes the last one (the
//! body is polled by the writer), so a reader that stops reading costs one batch at most; the
//! connection layer cuts it after `server.send_timeout` of blocked writes.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use uuid::Uuid;

use super::Subscription;

/// Events read from the log per query.
pub const BATCH: i64 = 50;

/// How long a stream waits before reading again after a failed read (pool exhausted, the
/// database restarting).
const READ_RETRY: Duration = Duration::from_millis(250);

/// One logged event as the stream sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The conversation's sequence number: the SSE `id`.
    pub seq: i64,
    /// The SSE `event` field (`message.created`, …).
    pub name: String,
    /// The SSE `data` field: one line of JSON.
    pub data: String,
}

/// Where a stream reads its events: the conversation's log after `seq`, oldest first, at most
/// `limit` (`api::events` reads `conversation_events`).
pub trait Log: Send + Sync + 'static {
    fn after(
        &self,
        conversation: Uuid,
        seq: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Event>, sqlx::Error>> + Send;

    /// Whether the conversation still exists: asked after a resync found nothing new, since
    /// the deletion's notification may have been the one the gap hid.
    fn exists(&self, conversation: Uuid) -> impl Future<Output = Result<bool, sqlx::Error>> + Send;
}

/// How a stream talks to its client.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub heartbeat: Duration,
    pub retry: Duration,
}

/// The stream of `conversation` after `after`, as body chunks.
pub fn body<L: Log>(
    subscription: Subscription,
    log: L,
    conversation: Uuid,
    after: i64,
    options: Options,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let mut heartbeat =
        tokio::time::interval_at(Instant::now() + options.heartbeat, options.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = State {
        sub: subscription,
        log,
        conversation,
        last: after,
        read: true,
        resynced: false,
        opened: false,
        done: false,
        heartbeat,
        options,
        span: crate::telemetry::traced(
            || tracing::info_span!("events.stream", conversation.id = %conversation, after),
        ),
        _open: crate::monitoring::OpenStream::begin(),
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.next().await?;
        Some((Ok(chunk), state))
    })
}

struct State<L> {
    sub: Subscription,
    log: L,
    conversation: Uuid,
    /// The last seq sent (or the client's).
    last: i64,
    /// The log may hold events after `last`.
    read: bool,
    /// The listener reconnected since the last read.
    resynced: bool,
    opened: bool,
    done: bool,
    heartbeat: Interval,
    options: Options,
    span: tracing::Span,
    _open: crate::monitoring::OpenStream,
}

impl<L: Log> State<L> {
    async fn next(&mut self) -> Option<Bytes> {
        if !self.opened {
            self.opened = true;
            return Some(retry(self.options.retry, None));
        }
        loop {
            if self.done {
                return None;
            }
            if *self.sub.shutdown.borrow() {
                self.done = true;
                return Some(retry(self.options.retry, Some("server shutting down")));
            }
            if self.read {
                // Mark first, then read: a notification after this point wakes the stream again.
                let (known, marks) = self.sub.mark();
                let read = {
                    use tracing::Instrument;
                    self.sub
                        .read(&self.log, self.last, marks)
                        .instrument(self.span.clone())
                        .await
                };
                match read {
                    Ok(events) => {
                        self.read = events.len() as i64 == BATCH;
                        if let Some(newest) = events.last() {
                            self.last = newest.seq;
                            crate::monitoring::events_sent(events.len());
                            return Some(encode(&events));
                        }
                        let resynced = std::mem::take(&mut self.resynced);
                        let gone = known.deleted
                            || (resynced
                                && !self.log.exists(self.conversation).await.unwrap_or(true));
                        if gone {
                            self.done = true;
                            return Some(deleted(self.conversation));
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(
                            conversation.id = %self.conversation,
                            "Event stream cannot read the log ({e}); retrying"
                        );
                        tokio::select! {
                            _ = tokio::time::sleep(READ_RETRY) => {}
                            _ = self.sub.shutdown.changed() => {}
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = self.sub.shutdown.changed() => {}
                changed = self.sub.known.changed() => {
                    // The sender lives while a subscription does: an error cannot happen, and
                    // would end the stream rather than spin.
                    if changed.is_err() {
                        self.done = true;
                    }
                    self.read = true;
                }
                _ = self.sub.resync.changed() => {
                    self.read = true;
                    self.resynced = true;
                }
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(b": keep-alive\n\n")),
            }
        }
    }
}

/// `retry: <ms>`, with a comment saying why.
fn retry(after: Duration, why: Option<&str>) -> Bytes {
    let mut frame = String::new();
    if let Some(why) = why {
        frame.push_str(&format!(": {why}\n"));
    }
    frame.push_str(&format!("retry: {}\n\n", after.as_millis()));
    Bytes::from(frame)
}

/// Events as SSE frames, one chunk. `data` is one line (compact JSON escapes line breaks).
fn encode(events: &[Event]) -> Bytes {
    let mut out = String::with_capacity(events.iter().map(|e| e.data.len() + 48).sum());
    for e in events {
        debug_assert!(!e.data.contains('\n'));
        out.push_str(&format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            e.seq, e.name, e.data
        ));
    }
    Bytes::from(out)
}

fn deleted(conversation: Uuid) -> Bytes {
    Bytes::from(format!(
        "event: conversation.deleted\ndata: {{\"id\":\"{conversation}\"}}\n\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_server_sent_events() {
        let events = [Event {
            seq: 7,
            name: "message.created".into(),
            data: r#"{"a":"x\ny"}"#.replace('\n', "\\n"),
        }];
        assert_eq!(
            encode(&events),
            "id: 7\nevent: message.created\ndata: {\"a\":\"x\\ny\"}\n\n"
        );
        assert_eq!(
            retry(Duration::from_secs(1), Some("bye")),
            ": bye\nretry: 1000\n\n"
        );
    }
}
