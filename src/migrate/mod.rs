//! Schema migrations in sqlx's format, embedded in the binary and applied before serving.
//!
//! The rules live in the workspace's crates, which know nothing of this binary's
//! configuration, metrics or HTTP; this module names them where the binary has always found
//! them and adds what only the binary has:
//! - [`manifest`], [`duration`], [`sqlx_toml`], [`read_dir`]: `migrate-source`, what a
//!   directory means (shared with `build.rs`).
//! - [`lint`]: `migrate-lint`, the safety lint (shared with `build.rs`).
//! - [`engine`], [`history`], [`lock`], [`snapshot`], [`roundtrip`], [`Migrator`]:
//!   `migrate-engine`, sqlx's bookkeeping and lock over a connection the caller opened.
//! - [`embedded`]: the set compiled into this binary.

pub mod embedded;

pub use migrate_engine::*;
pub use migrate_lint as lint;
pub use migrate_source::{duration, manifest, sqlx_toml};
