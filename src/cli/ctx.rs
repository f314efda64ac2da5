//! [`Ctx`]: what a `server migrate` command that talks to the database is given. Its own
//! module so that the commands and their dispatcher (`migrate.rs`) both depend on it, and not
//! on each other.

use sqlx::PgConnection;

use super::output::Output;
use crate::config::Settings;
use crate::migrate::Migrator;

/// What a command that talks to the database gets: the configuration, the engine over the set,
/// the migration session and the output.
pub struct Ctx<'a> {
    pub settings: &'a Settings,
    pub migrator: Migrator<'a>,
    pub conn: PgConnection,
    pub out: Output,
}
