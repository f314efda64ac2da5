//! The validated set a [`crate::Migrator`] applies, and where it records itself.

use std::path::Path;

use migrate_source::manifest::Migration;
use migrate_source::{SourceError, read_dir, sqlx_toml};

use crate::history::Bookkeeping;
use crate::snapshot::Snapshot;

/// A validated, version-sorted set of migrations: the embedded one in production, or one read
/// from a directory by tests, benchmarks and tools (never by the serving path).
#[derive(Debug, Clone)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
    bookkeeping: Bookkeeping,
    /// The schema the set produces, read on first use (the embedded set's `schema.snapshot`).
    snapshot: Option<fn() -> &'static Snapshot>,
}

impl MigrationSet {
    /// Wraps migrations already validated by [`manifest::build`] (sorted, unique versions),
    /// recorded in sqlx's default table.
    pub fn new(migrations: Vec<Migration>) -> Self {
        debug_assert!(migrations.windows(2).all(|w| w[0].version < w[1].version));
        Self {
            migrations,
            bookkeeping: Bookkeeping::default(),
            snapshot: None,
        }
    }

    /// The set with the snapshot of the schema it produces, for drift checks.
    pub fn with_snapshot(mut self, snapshot: fn() -> &'static Snapshot) -> Self {
        self.snapshot = Some(snapshot);
        self
    }

    /// The schema this set produces on an empty database, when it carries one.
    pub fn snapshot(&self) -> Option<&'static Snapshot> {
        self.snapshot.map(|get| get())
    }

    pub fn with_bookkeeping(mut self, bookkeeping: Bookkeeping) -> Self {
        self.bookkeeping = bookkeeping;
        self
    }

    pub fn bookkeeping(&self) -> &Bookkeeping {
        &self.bookkeeping
    }

    /// Reads and validates a directory's files with the same rules as the build and sqlx's
    /// defaults (no `sqlx.toml`).
    pub fn from_dir(dir: &Path) -> Result<Self, SourceError> {
        Self::from_dir_with(dir, &sqlx_toml::MigrateConfig::default())
    }

    /// [`Self::from_dir`] as configured by a `sqlx.toml` (its `migrations-dir` is the caller's).
    pub fn from_dir_with(
        dir: &Path,
        config: &sqlx_toml::MigrateConfig,
    ) -> Result<Self, SourceError> {
        let read = read_dir(dir, config)?;
        Ok(Self::new(read.specs).with_bookkeeping(Bookkeeping {
            table: config.table_name.clone(),
            create_schemas: config.create_schemas.clone(),
        }))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Migration> {
        self.migrations.iter()
    }

    pub fn len(&self) -> usize {
        self.migrations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.migrations.is_empty()
    }

    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.migrations
            .binary_search_by_key(&version, |m| m.version)
            .ok()
            .map(|i| &self.migrations[i])
    }

    /// The highest version in the set, if any.
    pub fn newest(&self) -> Option<i64> {
        self.migrations.last().map(|m| m.version)
    }
}
