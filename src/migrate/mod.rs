//! Schema migrations in sqlx's format, embedded in the binary and applied before serving.
//!
//! - [`manifest`]: file-name rules, validation and checksums (shared with `build.rs`).
//! - [`duration`]: the one duration grammar of configuration, headers and lint (shared with
//!   `build.rs`).
//! - [`sqlx_toml`]: sqlx's `sqlx.toml` `[migrate]` table (shared with `build.rs`).
//! - [`embedded`]: the set compiled into this binary.
//! - [`history`]: the `_sqlx_migrations` table, read and written exactly as sqlx 0.9 does.
//! - [`lock`]: sqlx's advisory-lock key, with a timeout and a log of who holds it.
//! - [`engine`]: plans, apply, rollback, repair (`Migrator`); `step` runs one migration with
//!   its row; `status` says what the rows mean under the operator's [`Policy`].
//! - [`snapshot`]: the schema read from the catalogs as text, and drift from it.
//! - [`lint`]: the safety lint for dangerous DDL (shared with `build.rs`).

mod dirty;
pub mod duration;
pub mod embedded;
pub mod engine;
mod error;
pub mod history;
pub mod lint;
pub mod lock;
pub mod manifest;
pub mod roundtrip;
pub mod snapshot;
pub mod sqlx_toml;
mod status;
mod step;

pub use dirty::{Direction, DirtyReport, InvalidIndex};
pub use engine::{MigrateOptions, Migrator, RepairAction, RunReport, Step};
pub use error::{MigrateError, error_text};
pub use manifest::{Migration, MigrationKind, Script};
pub use status::{Policy, Status, UnknownPolicy, Verdict};

use std::path::Path;

use snapshot::Snapshot;

/// Where a set records itself: sqlx's bookkeeping table and the schemas created before it
/// (`sqlx.toml`'s `table-name` and `create-schemas`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookkeeping {
    /// The table as written in `sqlx.toml`: interpolated into SQL as is, as sqlx does.
    pub table: String,
    pub create_schemas: Vec<String>,
}

impl Default for Bookkeeping {
    fn default() -> Self {
        Self {
            table: manifest::DEFAULT_TABLE.to_string(),
            create_schemas: Vec::new(),
        }
    }
}

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

/// Reads a directory's regular files as the build does and validates them: the specs, the
/// versions with only a down file, and the warnings.
pub fn read_dir(
    dir: &Path,
    config: &sqlx_toml::MigrateConfig,
) -> Result<manifest::Manifest, SourceError> {
    let mut files = Vec::new();
    let read_err = |source| SourceError::Io {
        path: dir.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        if entry.path().is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let bytes = std::fs::read(entry.path()).map_err(read_err)?;
            files.push(manifest::SourceFile { name, bytes });
        }
    }
    let options = manifest::ReadOptions {
        ignored_chars: config.ignored_chars.clone(),
    };
    manifest::build(&files, &options).map_err(SourceError::Invalid)
}

/// Why a migration directory could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read migration directory {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid migration set: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<manifest::ManifestError>),
}
