//! Connections: one dedicated session for migrations (with its guards and its own
//! `application_name`, to `database.migration_url`), connecting with retries, and the request
//! pool (to `database.url`, which may be a transaction-mode pooler) with its connection budget.
//! One job per module, each given only the settings it needs:
//!
//! - [`options`]: connect options (the migration session's guards, the pool's name) and one
//!   connect bounded by `database.connect_timeout`, whose timeout says so;
//! - [`diagnosis`]: what a failure means (permanent, lost, not PostgreSQL) and what to check;
//! - [`retry`]: [`Attempts`], the one budget for connecting and the stage's reruns;
//! - [`create`]: the development database, created when missing;
//! - [`pool`]: the request pool, `acquire` (timed, counted, traced) and the query spans;
//! - [`sessions`]: the registry of the pool's server sessions, ended at shutdown;
//! - [`budget`]: the pool against PostgreSQL's connection limit.

mod budget;
mod create;
mod diagnosis;
mod options;
mod pool;
mod retry;
mod scratch;
mod sessions;

pub use budget::{ConnectionLimits, check_budget};
// What a lost connection is: the engine's classification, one for the stage and the API.
pub use crate::migrate::{is_connection_lost, is_lost_session};
pub use options::{
    MIGRATE_APP_NAME, SERVE_APP_NAME, connect, listener_options, migration_session_options,
    session_check,
};
pub use pool::{acquire, pool, pool_with_sessions, query_span};
pub use retry::{Attempts, connect_with_retries, connect_within};
pub use scratch::ScratchDatabase;
pub use sessions::{Sessions, end_busy_sessions};

/// Why the database could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// `hint`: what to check, for the last attempt's cause ([`unreachable_hint`]).
    #[error("database unreachable after {attempts} attempt(s) at {url}: {cause}; {hint}")]
    Unreachable {
        attempts: u32,
        url: String,
        cause: String,
        hint: String,
    },
    #[error("cannot connect to the database at {url}: {cause}")]
    Refused { url: String, cause: String },
}
