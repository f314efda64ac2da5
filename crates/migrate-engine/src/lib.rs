//! The migration engine: sqlx 0.9's bookkeeping and advisory lock, applied to a validated set
//! over a connection the caller opened.
//!
//! - [`history`]: the `_sqlx_migrations` table, read and written exactly as sqlx 0.9 does.
//! - [`lock`]: sqlx's advisory-lock key, with a timeout and a log of who holds it.
//! - [`engine`]: plans, apply, rollback, repair (`Migrator`); `step` runs one migration with
//!   its row; `status` says what the rows mean under the operator's [`Policy`].
//! - [`snapshot`]: the schema read from the catalogs as text, and drift from it.
//! - [`roundtrip`]: `migrate test`'s up, down, up on an empty database.
//! - [`Observer`]: what a run reports as it goes (lock waits, a span per migration), for the
//!   caller to record; [`RunReport`] carries the rest (per-migration timings).
//!
//! It opens no connection, reads no configuration and records no metric: it depends on sqlx,
//! `tracing` (the facade, for log events) and `migrate-source`, never on the binary. Its log
//! events keep the targets they had inside the binary (`agent_backend::migrate::engine`,
//! `…::lock`, `…::status`), so log lines and `RUST_LOG=agent_backend=…` filters are as before.

mod dirty;
pub mod engine;
mod error;
pub mod history;
pub mod lock;
mod lost;
mod observer;
pub mod roundtrip;
mod set;
pub mod snapshot;
mod status;
mod step;

pub use dirty::{Direction, DirtyReport, InvalidIndex};
pub use engine::{MigrateOptions, Migrator, RepairAction, RunReport, Step};
pub use error::{MigrateError, error_text};
pub use history::Bookkeeping;
pub use lost::{is_connection_lost, is_lost_session};
pub use migrate_source::manifest::{Migration, MigrationKind, Script};
pub use migrate_source::{SourceError, read_dir};
pub use observer::{Observer, Quiet};
pub use set::MigrationSet;
pub use status::{DriftPolicy, Policy, Status, UnknownAppliedPolicy, Verdict};
