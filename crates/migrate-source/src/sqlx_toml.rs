//! `sqlx.toml`, read the way sqlx 0.9 reads its `[migrate]` table, so that this binary and
//! `sqlx-cli` / `sqlx::migrate!` agree on the directory, the checksums, the bookkeeping table and
//! the schemas to create.
//!
//! Like `manifest.rs`, read by `build.rs` (a build-dependency), which reads the crate root's
//! `sqlx.toml` before it reads the migrations, and by the binary, for tests and tools that read
//! another project's directory. It depends on `std` and `toml` only.
//!
//! Supported: `[migrate]` `table-name`, `migrations-dir`, `create-schemas`, `ignored-chars`, and
//! `[migrate.defaults]` (read by `sqlx migrate add` only: validated, with no effect here);
//! `[macros]` and `[drivers]` are sqlx's own business (the `query!` macros read them, with the
//! `sqlx-toml` feature on). Any other key, such as `[common] database-url-var` (the binary reads
//! `DATABASE_URL` through its own configuration), fails the build naming it: a setting this
//! binary would silently not apply is worse than none.

use std::collections::BTreeSet;
use std::fmt;

/// The file's name, at the crate root (sqlx's place for it).
pub const FILE: &str = "sqlx.toml";

/// What `sqlx.toml` sets for migrations, with sqlx's defaults for what it leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateConfig {
    /// The bookkeeping table, as written (may be schema-qualified and quoted, as in sqlx).
    pub table_name: String,
    /// The migration directory, relative to the crate root.
    pub migrations_dir: String,
    /// Schemas created (`CREATE SCHEMA IF NOT EXISTS`) under the lock before the table.
    pub create_schemas: Vec<String>,
    /// Characters dropped from a file's text before it is hashed.
    pub ignored_chars: BTreeSet<char>,
}

impl Default for MigrateConfig {
    fn default() -> Self {
        Self {
            table_name: "_sqlx_migrations".to_string(),
            migrations_dir: "migrations".to_string(),
            create_schemas: Vec::new(),
            ignored_chars: BTreeSet::new(),
        }
    }
}

/// Why `sqlx.toml` cannot be used; the message names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlxTomlError(pub String);

impl fmt::Display for SqlxTomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{FILE}: {}", self.0)
    }
}

impl std::error::Error for SqlxTomlError {}

fn err<T>(message: impl Into<String>) -> Result<T, SqlxTomlError> {
    Err(SqlxTomlError(message.into()))
}

fn string(key: &str, value: &toml::Value) -> Result<String, SqlxTomlError> {
    match value.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.to_string()),
        Some(_) => err(format!("`{key}` is empty")),
        None => err(format!("`{key}` must be a string")),
    }
}

fn strings(key: &str, value: &toml::Value) -> Result<Vec<String>, SqlxTomlError> {
    let Some(items) = value.as_array() else {
        return err(format!("`{key}` must be an array of strings"));
    };
    items.iter().map(|item| string(key, item)).collect()
}

/// Reads the text of a `sqlx.toml`. `None` (no file) gives sqlx's defaults.
pub fn parse(text: Option<&str>) -> Result<MigrateConfig, SqlxTomlError> {
    let mut config = MigrateConfig::default();
    let Some(text) = text else {
        return Ok(config);
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| SqlxTomlError(e.message().to_string()))?;
    for (key, value) in &table {
        if ["migrate", "macros", "drivers"].contains(&key.as_str()) {
            continue;
        }
        // An empty table (`[drivers.postgres]` in a template) sets nothing.
        if !value.as_table().is_some_and(table_is_empty) {
            return err(format!(
                "`[{key}]` is not supported by this binary (it reads `[migrate]`; sqlx's macros \
                 read `[macros]` and `[drivers]`); remove it, or set the database URL through \
                 config/ and DATABASE_URL (docs/operations.md)"
            ));
        }
    }
    let Some(migrate) = table.get("migrate") else {
        return Ok(config);
    };
    let Some(migrate) = migrate.as_table() else {
        return err("`migrate` must be a table");
    };
    for (key, value) in migrate {
        let full = format!("migrate.{key}");
        match key.as_str() {
            "table-name" => config.table_name = string(&full, value)?,
            "migrations-dir" => config.migrations_dir = string(&full, value)?,
            "create-schemas" => config.create_schemas = strings(&full, value)?,
            "ignored-chars" => {
                let Some(items) = value.as_array() else {
                    return err(format!(
                        "`{full}` must be an array of one-character strings"
                    ));
                };
                for item in items {
                    let mut chars = item.as_str().unwrap_or_default().chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => {
                            config.ignored_chars.insert(c);
                        }
                        _ => {
                            return err(format!(
                                "`{full}` holds {item}, which is not one character"
                            ));
                        }
                    }
                }
            }
            "defaults" => check_defaults(value)?,
            _ => {
                return err(format!(
                    "`{full}` is not a key this binary supports (table-name, migrations-dir, \
                     create-schemas, ignored-chars, defaults)"
                ));
            }
        }
    }
    Ok(config)
}

fn table_is_empty(table: &toml::Table) -> bool {
    table
        .values()
        .all(|v| v.as_table().is_some_and(table_is_empty))
}

/// `[migrate.defaults]` steers `sqlx migrate add` only; its values are still checked as sqlx does.
fn check_defaults(value: &toml::Value) -> Result<(), SqlxTomlError> {
    let Some(defaults) = value.as_table() else {
        return err("`migrate.defaults` must be a table");
    };
    for (key, value) in defaults {
        let allowed: &[&str] = match key.as_str() {
            "migration-type" => &["inferred", "simple", "reversible"],
            "migration-versioning" => &["inferred", "timestamp", "sequential"],
            _ => {
                return err(format!(
                    "`migrate.defaults.{key}` is not a key sqlx 0.9 knows \
                     (migration-type, migration-versioning)"
                ));
            }
        };
        if !value.as_str().is_some_and(|v| allowed.contains(&v)) {
            return err(format!(
                "`migrate.defaults.{key}` must be one of {}",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_sqlx_defaults() {
        assert_eq!(parse(None), Ok(MigrateConfig::default()));
        assert_eq!(parse(Some("")), Ok(MigrateConfig::default()));
    }

    #[test]
    fn reads_the_migrate_table() {
        let config = parse(Some(
            r#"
            [drivers.postgres]
            [migrate]
            table-name = "ops._sqlx_migrations"
            migrations-dir = "db/migrations"
            create-schemas = ["ops"]
            ignored-chars = ["\r", "\uFEFF"]
            [migrate.defaults]
            migration-type = "reversible"
            migration-versioning = "timestamp"
            "#,
        ))
        .expect("valid");
        assert_eq!(config.table_name, "ops._sqlx_migrations");
        assert_eq!(config.migrations_dir, "db/migrations");
        assert_eq!(config.create_schemas, ["ops"]);
        assert_eq!(config.ignored_chars, ['\r', '\u{feff}'].into());
    }

    #[test]
    fn refuses_what_it_would_not_apply_naming_the_key() {
        for (text, key) in [
            ("[common]\ndatabase-url-var = \"X\"", "`[common]`"),
            ("[common]\n[common.x]\ny = 1", "`[common]`"),
            ("[migrate]\ntable = \"t\"", "`migrate.table`"),
            (
                "[migrate]\nignored-chars = [\"ab\"]",
                "`migrate.ignored-chars`",
            ),
            ("[migrate]\ntable-name = \"\"", "`migrate.table-name`"),
            (
                "[migrate.defaults]\nmigration-type = \"sideways\"",
                "`migrate.defaults.migration-type`",
            ),
        ] {
            let e = parse(Some(text)).expect_err(text);
            assert!(e.to_string().contains(key), "{text}: {e}");
            assert!(e.to_string().starts_with("sqlx.toml: "), "{e}");
        }
    }
}
