//! What a migration directory means, for the build and the binary alike: the directory read as
//! sqlx 0.9 reads it ([`read_dir`], the one reader), the manifest and its refusals
//! ([`manifest`]), sqlx's `sqlx.toml` ([`sqlx_toml`]) and the one duration grammar
//! ([`duration`]).
//!
//! No database, no configuration, no logging: `build.rs` uses this crate as a build-dependency,
//! so it depends on `std`, `sha2`, `toml` and `thiserror` only.

pub mod duration;
pub mod manifest;
pub mod sqlx_toml;

use std::path::Path;

/// Reads a directory's regular files (sqlx follows symbolic links to files and skips everything
/// that is not a file) and validates them: the specs, the versions with only a down file, and
/// the warnings.
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
