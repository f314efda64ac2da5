//! The conversation event streams' machinery, below the HTTP route (`api::events`):
//!
//! - the log is PostgreSQL's: `conversation_events`, written by triggers in the transaction of
//!   each change, `seq` dense per conversation, counted in `conversation_event_seqs`
//!   (migration `20261203000001`);
//! - [`Hub`]: this instance's open streams by conversation, the cap on them, and what each is
//!   told (the newest seq notified, a resync after the listener reconnected, shutdown);
//! - [`listener`]: the one session per instance that `LISTEN`s on [`CHANNEL`] (to the direct
//!   URL, as migrations: a transaction pooler cannot hold a `LISTEN`), reconnecting with backoff;
//! - [`stream`]: one stream's bytes: `retry:`, the events after the client's last id read from
//!   the log, then live ones as the hub signals them, heartbeats, and the end at shutdown.
//!
//! Notifications carry ids only; the log is the truth. A stream reads the log whenever it is
//! told something may be there, so a lost notification (the listener's connection down) costs
//! a resync read, never an event. The streams of one conversation at one position share that
//! read (the hub's [`Subscription::read`]).

mod hub;
pub mod listener;
pub mod stream;

pub use hub::{Hub, Known, Marks, Subscription};

/// The channel the log's triggers notify: `"<conversation id> <seq>"`, or
/// `"<conversation id> deleted"`.
pub const CHANNEL: &str = "agent_conversation_events";
