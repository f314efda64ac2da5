//! Reading a migration directory the way sqlx 0.9 does, and refusing the sets sqlx would accept
//! by accident.
//!
//! This file is compiled twice: by `build.rs` (through `#[path]`), which validates `migrations/`
//! and generates the embedded manifest, and by the library, which uses the same code to load a
//! directory at run time for tests, benchmarks and `migrate lint`. It therefore depends on `std`
//! and `sha2` only, never on `crate::`.
//!
//! sqlx's rules, kept exactly so that `_sqlx_migrations` rows are interchangeable:
//! - the file name is `<version>_<description>.sql`, or `.up.sql` / `.down.sql` for a reversible
//!   pair; the version is the part before the first `_`, the description the rest with the
//!   suffix trimmed and every `_` read as a space;
//! - the checksum is SHA-384 of the file's exact bytes;
//! - a file whose text starts with `-- no-transaction` runs outside a transaction.
//!
//! Stricter than sqlx (sqlx silently ignores or accepts these): a `.sql` name that does not parse,
//! a version that is not a positive integer, a duplicate version, half of a reversible pair,
//! simple and reversible files for one version, an empty file, a file that is not UTF-8.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha384};

/// The marker sqlx looks for at the very start of a file to run it outside a transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- no-transaction";

/// One file of a migration directory: its name (no directory part) and its bytes.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Whether a version is a single file or an up/down pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Simple,
    Reversible,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Simple => "simple",
            Kind::Reversible => "reversible",
        }
    }
}

/// One validated SQL script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// File name inside the migration directory.
    pub file: String,
    pub sql: String,
    /// SHA-384 of the file bytes, as sqlx stores it in `_sqlx_migrations.checksum`.
    pub checksum: [u8; 48],
    pub no_tx: bool,
    /// Session settings from the file's header (`-- lock_timeout: 30s`), applied around it.
    pub settings: Vec<(String, String)>,
}

/// One validated migration version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub version: i64,
    pub description: String,
    pub kind: Kind,
    pub up: Script,
    pub down: Option<Script>,
}

/// The rule a file broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The name ends in `.sql` but is not `<version>_<description>[.up|.down].sql`.
    BadName(String),
    /// Another file already uses this version.
    DuplicateVersion { version: i64, other: String },
    /// A `.down.sql` with no `.up.sql` for its version.
    DownWithoutUp,
    /// An `.up.sql` with no `.down.sql` for its version.
    UpWithoutDown,
    /// Simple and reversible files for one version.
    MixedKinds { other: String },
    /// Up and down files of one version with different descriptions.
    DescriptionMismatch { other: String },
    /// The file has no SQL (zero bytes or only whitespace).
    Empty,
    /// The file is not valid UTF-8.
    NotUtf8 { byte_offset: usize },
    /// A header setting that is not `-- lock_timeout: <duration>` or
    /// `-- statement_timeout: <duration>`.
    BadHeader(String),
}

/// A file that breaks a rule; `Display` names the file first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    pub rule: Rule,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "migrations/{}: ", self.file)?;
        match &self.rule {
            Rule::BadName(why) => write!(
                f,
                "file name does not parse ({why}); expected <version>_<description>.sql or \
                 <version>_<description>.up.sql + .down.sql, e.g. 20261124120000_create_users.up.sql"
            ),
            Rule::DuplicateVersion { version, other } => write!(
                f,
                "duplicate version {version}: migrations/{other} uses it too; give one of them a new version"
            ),
            Rule::DownWithoutUp => write!(
                f,
                "down migration without its up migration; add the matching .up.sql or remove this file"
            ),
            Rule::UpWithoutDown => write!(
                f,
                "up migration without its down migration; add the matching .down.sql (reversible pairs \
                 come from `sqlx migrate add -r <name>`)"
            ),
            Rule::MixedKinds { other } => write!(
                f,
                "simple and reversible files for one version (migrations/{other}); use either one \
                 <version>_<name>.sql or an .up.sql/.down.sql pair"
            ),
            Rule::DescriptionMismatch { other } => write!(
                f,
                "up and down files have different descriptions (migrations/{other}); name them alike"
            ),
            Rule::Empty => write!(f, "empty migration file; write its SQL or remove it"),
            Rule::BadHeader(why) => write!(
                f,
                "bad header setting ({why}); use e.g. `-- lock_timeout: 30s` or `-- statement_timeout: 10min`"
            ),
            Rule::NotUtf8 { byte_offset } => write!(
                f,
                "not valid UTF-8 (first bad byte at offset {byte_offset}); save the file as UTF-8"
            ),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Direction of one file of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileType {
    Simple,
    Up,
    Down,
}

impl FileType {
    fn from_name(rest: &str) -> Self {
        if rest.ends_with(".up.sql") {
            FileType::Up
        } else if rest.ends_with(".down.sql") {
            FileType::Down
        } else {
            FileType::Simple
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            FileType::Simple => ".sql",
            FileType::Up => ".up.sql",
            FileType::Down => ".down.sql",
        }
    }
}

/// Whether a directory entry is a migration candidate (sqlx reads `*.sql`; we ignore the rest
/// but tell the caller, which turns it into a build warning).
pub fn is_sql_file(name: &str) -> bool {
    name.ends_with(".sql") && !name.starts_with('.')
}

/// Session settings a file may override in its leading comment lines.
pub const HEADER_SETTINGS: [&str; 2] = ["lock_timeout", "statement_timeout"];

/// Reads `-- <setting>: <value>` lines from the file's leading comment block. The value is a
/// PostgreSQL duration: digits, optionally followed by a unit (ms, s, min, h, d).
pub fn header_settings(sql: &str) -> Result<Vec<(String, String)>, String> {
    let mut settings = Vec::new();
    for line in sql.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix("--") else {
            break;
        };
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if !HEADER_SETTINGS.contains(&key) {
            continue;
        }
        let value = value.trim();
        let digits = value.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &value[digits.len()..];
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || !["", "ms", "s", "min", "h", "d"].contains(&unit)
        {
            return Err(format!(
                "{key}: {value:?} is not a duration such as 30s or 10min"
            ));
        }
        settings.push((key.to_string(), value.to_string()));
    }
    Ok(settings)
}

/// SHA-384 of the bytes, exactly as sqlx 0.9 computes a migration checksum.
pub fn checksum(bytes: &[u8]) -> [u8; 48] {
    Sha384::digest(bytes).into()
}

/// Parses `<version>_<rest>` the way sqlx does, rejecting what sqlx would misread.
fn parse_name(name: &str) -> Result<(i64, String, FileType), String> {
    let (version, rest) = name
        .split_once('_')
        .ok_or_else(|| "no `_` between version and description".to_string())?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("version {version:?} is not a positive integer"));
    }
    let version: i64 = version
        .parse()
        .map_err(|_| format!("version {version:?} does not fit in a 64-bit integer"))?;
    if version <= 0 {
        return Err("version must be greater than zero".to_string());
    }
    let file_type = FileType::from_name(rest);
    // `trim_end_matches`, `replace('_', " ")`: sqlx's exact derivation of the description.
    let description = rest.trim_end_matches(file_type.suffix()).replace('_', " ");
    if description.trim().is_empty() {
        return Err("the description is empty".to_string());
    }
    Ok((version, description, file_type))
}

fn script(file: &SourceFile) -> Result<Script, Rule> {
    let sql = std::str::from_utf8(&file.bytes).map_err(|e| Rule::NotUtf8 {
        byte_offset: e.valid_up_to(),
    })?;
    if sql.trim().is_empty() {
        return Err(Rule::Empty);
    }
    Ok(Script {
        file: file.name.clone(),
        sql: sql.to_string(),
        checksum: checksum(&file.bytes),
        no_tx: sql.starts_with(NO_TRANSACTION_MARKER),
        settings: header_settings(sql).map_err(Rule::BadHeader)?,
    })
}

#[derive(Default)]
struct Slot {
    simple: Vec<(Script, String)>,
    up: Vec<(Script, String)>,
    down: Vec<(Script, String)>,
}

/// Validates a whole directory's `.sql` files and returns the migrations sorted by version, or
/// every broken rule (sorted by file name) so one build shows them all.
pub fn build(files: &[SourceFile]) -> Result<Vec<Spec>, Vec<ManifestError>> {
    let mut errors = Vec::new();
    let mut slots: BTreeMap<i64, Slot> = BTreeMap::new();
    let mut files: Vec<&SourceFile> = files.iter().filter(|f| is_sql_file(&f.name)).collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));

    for file in files {
        let fail = |rule| ManifestError {
            file: file.name.clone(),
            rule,
        };
        let (version, description, file_type) = match parse_name(&file.name) {
            Ok(parsed) => parsed,
            Err(why) => {
                errors.push(fail(Rule::BadName(why)));
                continue;
            }
        };
        let script = match script(file) {
            Ok(script) => script,
            Err(rule) => {
                errors.push(fail(rule));
                continue;
            }
        };
        let slot = slots.entry(version).or_default();
        let list = match file_type {
            FileType::Simple => &mut slot.simple,
            FileType::Up => &mut slot.up,
            FileType::Down => &mut slot.down,
        };
        list.push((script, description));
    }

    let mut specs = Vec::with_capacity(slots.len());
    for (version, slot) in slots {
        let Slot {
            mut simple,
            mut up,
            mut down,
        } = slot;
        let mut slot_errors = Vec::new();
        for list in [&simple, &up, &down] {
            for (dup, _) in list.iter().skip(1) {
                slot_errors.push(ManifestError {
                    file: dup.file.clone(),
                    rule: Rule::DuplicateVersion {
                        version,
                        other: list[0].0.file.clone(),
                    },
                });
            }
        }
        if let (Some((s, _)), Some((r, _))) = (simple.first(), up.first().or(down.first())) {
            slot_errors.push(ManifestError {
                file: s.file.clone(),
                rule: Rule::MixedKinds {
                    other: r.file.clone(),
                },
            });
        } else if simple.is_empty() {
            match (up.first(), down.first()) {
                (None, Some((d, _))) => slot_errors.push(ManifestError {
                    file: d.file.clone(),
                    rule: Rule::DownWithoutUp,
                }),
                (Some((u, _)), None) => slot_errors.push(ManifestError {
                    file: u.file.clone(),
                    rule: Rule::UpWithoutDown,
                }),
                (Some((u, ud)), Some((d, dd))) if ud != dd => slot_errors.push(ManifestError {
                    file: d.file.clone(),
                    rule: Rule::DescriptionMismatch {
                        other: u.file.clone(),
                    },
                }),
                _ => {}
            }
        }
        if !slot_errors.is_empty() {
            errors.extend(slot_errors);
            continue;
        }
        let spec = if let Some((script, description)) = simple.pop() {
            Spec {
                version,
                description,
                kind: Kind::Simple,
                up: script,
                down: None,
            }
        } else {
            let (up, description) = up.pop().expect("checked above: one up file");
            let (down, _) = down.pop().expect("checked above: one down file");
            Spec {
                version,
                description,
                kind: Kind::Reversible,
                up,
                down: Some(down),
            }
        };
        specs.push(spec);
    }

    if errors.is_empty() {
        Ok(specs)
    } else {
        errors.sort_by(|a, b| a.file.cmp(&b.file));
        Err(errors)
    }
}

/// Rust source for the embedded manifest: a `static MANIFEST: &[Entry]` whose SQL is looked up in
/// the `include_dir` copy of the directory at run time. Written by `build.rs` into `OUT_DIR`.
pub fn render_manifest(specs: &[Spec]) -> String {
    fn script(s: &Script) -> String {
        let settings: Vec<String> = s
            .settings
            .iter()
            .map(|(k, v)| format!("({k:?}, {v:?})"))
            .collect();
        format!(
            "ScriptEntry {{ file: {:?}, checksum: {:?}, no_tx: {}, settings: &[{}] }}",
            s.file,
            s.checksum,
            s.no_tx,
            settings.join(", ")
        )
    }
    let mut out = String::from(
        "// @generated by build.rs from migrations/: do not edit.\n\
         pub(crate) static MANIFEST: &[Entry] = &[\n",
    );
    for spec in specs {
        let down = spec
            .down
            .as_ref()
            .map_or_else(|| "None".to_string(), |d| format!("Some({})", script(d)));
        out.push_str(&format!(
            "    Entry {{ version: {}, description: {:?}, up: {}, down: {} }},\n",
            spec.version,
            spec.description,
            script(&spec.up),
            down
        ));
    }
    out.push_str("];\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, sql: &str) -> SourceFile {
        SourceFile {
            name: name.to_string(),
            bytes: sql.as_bytes().to_vec(),
        }
    }

    /// The single error of a set, checked to name `file`.
    fn only_error(files: &[SourceFile], file: &str) -> Rule {
        let errors = build(files).expect_err("set must be rejected");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.file, file);
        assert!(
            e.to_string().starts_with(&format!("migrations/{file}: ")),
            "{e}"
        );
        e.rule.clone()
    }

    #[test]
    fn reads_names_like_sqlx() {
        let specs = build(&[
            f(
                "20240101000000_create_users_table.sql",
                "CREATE TABLE users();",
            ),
            f(
                "2_add_index.up.sql",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);",
            ),
            f("2_add_index.down.sql", "DROP INDEX i;"),
            f("README.md", "not a migration"),
        ])
        .expect("valid");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].version, 2);
        assert_eq!(specs[0].description, "add index");
        assert_eq!(specs[0].kind, Kind::Reversible);
        assert!(specs[0].up.no_tx);
        assert!(!specs[0].down.as_ref().expect("down").no_tx);
        assert_eq!(specs[1].version, 20240101000000);
        assert_eq!(specs[1].description, "create users table");
        assert_eq!(specs[1].kind, Kind::Simple);
        assert_eq!(specs[1].up.checksum, checksum(b"CREATE TABLE users();"));
    }

    #[test]
    fn checksum_is_sha384_of_exact_bytes() {
        // sha384("abc") from FIPS 180-2.
        let hex: String = checksum(b"abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
        );
        assert_ne!(checksum(b"SELECT 1;\n"), checksum(b"SELECT 1;\r\n"));
    }

    #[test]
    fn no_transaction_only_at_the_very_start() {
        let specs = build(&[f("1_x.sql", "\n-- no-transaction\nSELECT 1;")]).expect("valid");
        assert!(!specs[0].up.no_tx);
    }

    #[test]
    fn rejects_names_that_do_not_parse() {
        for name in [
            "create_users.sql",
            "nounderscore.sql",
            "0_zero.sql",
            "-1_negative.sql",
            "+1_plus.sql",
            "99999999999999999999_huge.sql",
            "1_.sql",
            "1_.up.sql",
        ] {
            let rule = only_error(&[f(name, "SELECT 1;")], name);
            assert!(matches!(rule, Rule::BadName(_)), "{name}: {rule:?}");
        }
    }

    #[test]
    fn rejects_duplicate_versions() {
        let rule = only_error(
            &[f("1_a.sql", "SELECT 1;"), f("001_b.sql", "SELECT 2;")],
            "1_a.sql",
        );
        assert_eq!(
            rule,
            Rule::DuplicateVersion {
                version: 1,
                other: "001_b.sql".into()
            }
        );
    }

    #[test]
    fn rejects_down_without_up_and_up_without_down() {
        let rule = only_error(&[f("3_x.down.sql", "DROP TABLE x;")], "3_x.down.sql");
        assert_eq!(rule, Rule::DownWithoutUp);
        let rule = only_error(&[f("3_x.up.sql", "CREATE TABLE x();")], "3_x.up.sql");
        assert_eq!(rule, Rule::UpWithoutDown);
    }

    #[test]
    fn rejects_simple_and_reversible_for_one_version() {
        let rule = only_error(
            &[
                f("4_x.sql", "SELECT 1;"),
                f("4_x.up.sql", "SELECT 1;"),
                f("4_x.down.sql", "SELECT 1;"),
            ],
            "4_x.sql",
        );
        assert_eq!(
            rule,
            Rule::MixedKinds {
                other: "4_x.up.sql".into()
            }
        );
    }

    #[test]
    fn rejects_pairs_with_different_descriptions() {
        let rule = only_error(
            &[f("5_a.up.sql", "SELECT 1;"), f("5_b.down.sql", "SELECT 1;")],
            "5_b.down.sql",
        );
        assert!(matches!(rule, Rule::DescriptionMismatch { .. }), "{rule:?}");
    }

    #[test]
    fn rejects_empty_files() {
        for sql in ["", "  \n\t\n"] {
            assert_eq!(
                only_error(&[f("6_empty.sql", sql)], "6_empty.sql"),
                Rule::Empty
            );
        }
    }

    #[test]
    fn rejects_files_that_are_not_utf8() {
        let file = SourceFile {
            name: "7_latin1.sql".into(),
            bytes: b"SELECT 'caf\xe9';".to_vec(),
        };
        assert_eq!(
            only_error(&[file], "7_latin1.sql"),
            Rule::NotUtf8 { byte_offset: 11 }
        );
    }

    #[test]
    fn reports_every_broken_file_at_once() {
        let errors = build(&[
            f("x.sql", "SELECT 1;"),
            f("8_e.sql", ""),
            f("9_d.down.sql", "SELECT 1;"),
        ])
        .expect_err("rejected");
        let files: Vec<_> = errors.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(files, ["8_e.sql", "9_d.down.sql", "x.sql"]);
    }

    #[test]
    fn header_settings_are_read_from_leading_comments_only() {
        let sql = "-- no-transaction\n-- lock_timeout: 30s\n--statement_timeout:10min\nSELECT 1;\n-- lock_timeout: 1s\n";
        let specs = build(&[f("1_x.sql", sql)]).expect("valid");
        assert_eq!(
            specs[0].up.settings,
            [
                ("lock_timeout".to_string(), "30s".to_string()),
                ("statement_timeout".to_string(), "10min".to_string())
            ]
        );
        let rule = only_error(
            &[f("2_y.sql", "-- lock_timeout: soon\nSELECT 1;")],
            "2_y.sql",
        );
        assert!(matches!(rule, Rule::BadHeader(_)), "{rule:?}");
    }

    #[test]
    fn rendered_manifest_names_every_file() {
        let specs =
            build(&[f("1_a.up.sql", "SELECT 1;"), f("1_a.down.sql", "SELECT 2;")]).expect("valid");
        let code = render_manifest(&specs);
        assert!(code.contains("version: 1,"));
        assert!(code.contains("\"1_a.up.sql\""));
        assert!(code.contains("Some(ScriptEntry { file: \"1_a.down.sql\""));
    }
}
