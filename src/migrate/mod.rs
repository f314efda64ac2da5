//! Schema migrations in sqlx's format, embedded in the binary and applied before serving.
//!
//! - [`manifest`]: file-name rules, validation and checksums (shared with `build.rs`).
//! - [`embedded`]: the set compiled into this binary.
//! - [`history`]: the `_sqlx_migrations` table, read and written exactly as sqlx 0.9 does.
//! - [`lock`]: sqlx's advisory-lock key, with a timeout and a log of who holds it.
//! - [`engine`]: status, apply and verify.
//! - [`lint`]: the safety lint for dangerous DDL (shared with `build.rs`).

pub mod embedded;
pub mod engine;
mod error;
pub mod history;
pub mod lint;
pub mod lock;
pub mod manifest;

pub use engine::{
    Direction, DirtyReport, MigrateOptions, Migrator, RepairAction, RunReport, Status,
    UnknownPolicy,
};
pub use error::{MigrateError, error_text};
pub use manifest::{Kind, Script, Spec as Migration};

use std::path::Path;

/// A validated, version-sorted set of migrations: the embedded one in production, or one read
/// from a directory by tests, benchmarks and tools (never by the serving path).
#[derive(Debug, Clone)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
}

impl MigrationSet {
    /// Wraps migrations already validated by [`manifest::build`] (sorted, unique versions).
    pub fn new(migrations: Vec<Migration>) -> Self {
        debug_assert!(migrations.windows(2).all(|w| w[0].version < w[1].version));
        Self { migrations }
    }

    /// Reads and validates the `.sql` files of a directory with the same rules as the build.
    pub fn from_dir(dir: &Path) -> Result<Self, SourceError> {
        let mut files = Vec::new();
        let read_err = |source| SourceError::Io {
            path: dir.display().to_string(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_file() && manifest::is_sql_file(&name) {
                let bytes = std::fs::read(entry.path()).map_err(read_err)?;
                files.push(manifest::SourceFile { name, bytes });
            }
        }
        manifest::build(&files)
            .map(Self::new)
            .map_err(SourceError::Invalid)
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
