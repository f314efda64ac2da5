//! Reading a migration directory exactly the way sqlx 0.9 does, refusing only the sets that
//! would break an invariant when they run, and warning about the rest.
//!
//! One reading for everyone: `build.rs` (a build-dependency), which validates the migration
//! directory and generates the embedded manifest, and the binary, which loads a directory at run
//! time for tests, benchmarks and `migrate lint` ([`crate::read_dir`]). It depends on `std`,
//! `sha2` and [`crate::duration`] only.
//!
//! sqlx's reading (`sqlx_core::migrate::source::resolve_blocking_with_config`), kept exactly so
//! that `_sqlx_migrations` rows are interchangeable and the differential test
//! (`tests/it/sqlx_parity.rs`) holds:
//! - every regular file is looked at; a name without `_`, or whose part after the first `_` does
//!   not end in `.sql`, is not a migration and is ignored;
//! - the version is the part before the first `_`, read as an `i64` (so `+1` and `007` are 1 and
//!   7); a part that does not read is an error;
//! - `.up.sql` / `.down.sql` make a reversible half, anything else ending in `.sql` is simple;
//!   the description is the rest with that suffix trimmed (repeatedly) and every `_` read as a
//!   space;
//! - the file must be UTF-8; its text is the SQL, byte for byte (a BOM stays);
//! - the checksum is SHA-384 of the text, minus the `ignored-chars` of `sqlx.toml` when set;
//! - a text that starts with `-- no-transaction` runs outside a transaction.
//!
//! Refused although sqlx reads them, because running them breaks an invariant (one row per
//! version, guards that are applied): two files for one version and direction, simple and
//! `.up.sql` files for one version, and a malformed `-- lock_timeout:` / `-- statement_timeout:`
//! header. Accepted with a warning ([`Note`]): a file that is ignored, a version below 1, an empty
//! up file, an `.up.sql` without its `.down.sql`, a `.down.sql` without an up file, up and down
//! files that disagree on the description, an empty description, and a byte-order mark.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha2::{Digest, Sha384};

use crate::duration::{Bare, POSTGRES_MAX_MILLIS, Span};

/// The marker sqlx looks for at the very start of a file to run it outside a transaction.
pub const NO_TRANSACTION_MARKER: &str = "-- no-transaction";

/// The bookkeeping table sqlx uses when `sqlx.toml` names no other.
pub const DEFAULT_TABLE: &str = "_sqlx_migrations";

/// One regular file of a migration directory: its name (no directory part) and its bytes.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// How a directory is read: sqlx's `ResolveConfig`, filled from `sqlx.toml`'s `[migrate]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Characters dropped from the text before it is hashed (`ignored-chars`).
    pub ignored_chars: BTreeSet<char>,
}

/// Whether a version is a single file or an up/down pair, as its up file is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationKind {
    /// `<version>_<description>.sql` (a `.down.sql` beside it still reverts it, as in sqlx).
    Simple,
    /// `<version>_<description>.up.sql` (its `.down.sql` may be missing, as sqlx allows).
    Reversible,
}

impl MigrationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationKind::Simple => "simple",
            MigrationKind::Reversible => "reversible",
        }
    }
}

/// One validated SQL script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// File name inside the migration directory.
    pub file: String,
    pub sql: String,
    /// SHA-384 of the text (less the ignored characters), as sqlx stores it in
    /// `_sqlx_migrations.checksum`.
    pub checksum: [u8; 48],
    pub no_tx: bool,
    /// Session settings from the file's header (`-- lock_timeout: 30s`), applied around it.
    pub settings: Vec<(String, String)>,
}

/// One validated migration version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub description: String,
    pub kind: MigrationKind,
    pub up: Script,
    pub down: Option<Script>,
}

/// A `.down.sql` with no up file for its version: read (sqlx reads it too) but never run by
/// this binary, which embeds only versions it can apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoneDown {
    pub version: i64,
    pub description: String,
    pub script: Script,
}

/// A directory read and validated: the migrations by version, and what the reader should know.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    pub specs: Vec<Migration>,
    pub lone_downs: Vec<LoneDown>,
    /// Warnings, sorted by file name.
    pub notes: Vec<Note>,
}

/// Something accepted (sqlx accepts it) that the author should know about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub file: String,
    pub kind: NoteKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteKind {
    /// Not `<version>_<description>[.up|.down].sql`: sqlx ignores it, so does the build.
    NotAMigration,
    /// An up (or simple) file with nothing but whitespace: it records its version and runs nothing.
    EmptyUp,
    /// An `.up.sql` without its `.down.sql`: `migrate rollback` cannot pass this version.
    NoDown,
    /// A `.down.sql` without an up file: never run.
    LoneDown,
    /// A `.down.sql` beside a simple `.sql` file: sqlx reverts with it, and so does this binary.
    DownForSimple { up: String },
    /// Up and down files of one version with different descriptions; the up's is recorded.
    DescriptionMismatch { other: String },
    /// Nothing between the version and `.sql`: the row's description is empty.
    EmptyDescription,
    /// Version 0 or below (sqlx's own test sets start at `0_setup.sql`): `migrate rollback 0`
    /// keeps it, as `sqlx migrate revert --target-version 0` does.
    VersionBelowOne,
    /// The text starts with a UTF-8 byte-order mark, which PostgreSQL reads as part of the first
    /// token (and which hides a `-- no-transaction` after it, for sqlx as for this binary).
    ByteOrderMark,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        match &self.kind {
            NoteKind::NotAMigration => write!(
                f,
                "not a migration (<version>_<description>.sql); ignored, as sqlx ignores it"
            ),
            NoteKind::EmptyUp => write!(
                f,
                "empty migration: it records its version and runs nothing"
            ),
            NoteKind::NoDown => write!(
                f,
                "no .down.sql beside this .up.sql: `migrate rollback` cannot revert this version"
            ),
            NoteKind::LoneDown => write!(
                f,
                "down migration without an up migration for its version; never run"
            ),
            NoteKind::DownForSimple { up } => write!(
                f,
                "down migration for the simple migration {up}; it reverts it (as in sqlx), but \
                 name the pair .up.sql/.down.sql to say so"
            ),
            NoteKind::DescriptionMismatch { other } => write!(
                f,
                "description differs from {other}'s; the up file's is recorded"
            ),
            NoteKind::EmptyDescription => write!(f, "empty description"),
            NoteKind::VersionBelowOne => write!(
                f,
                "version below 1: `migrate rollback 0` reverts every version above 0 and keeps this one"
            ),
            NoteKind::ByteOrderMark => write!(
                f,
                "starts with a UTF-8 byte-order mark: PostgreSQL reads it as part of the first \
                 token (a syntax error when it runs) and `-- no-transaction` after it is not seen; \
                 save the file without the BOM"
            ),
        }
    }
}

/// The rule a file broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// The part before the first `_` is not an `i64` (sqlx refuses it too).
    BadVersion(String),
    /// Another file already uses this version in the same direction.
    DuplicateVersion { version: i64, other: String },
    /// Simple and `.up.sql` files for one version: both would run and record one version.
    MixedKinds { other: String },
    /// The file is not valid UTF-8 (sqlx refuses it too).
    NotUtf8 { byte_offset: usize },
    /// A header setting that is not `-- lock_timeout: <duration>` or
    /// `-- statement_timeout: <duration>`.
    BadHeader(String),
}

/// A file that breaks a rule; `Display` names the file first (as given: callers prefix the
/// directory with [`ManifestError::in_dir`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: String,
    pub rule: Rule,
}

impl ManifestError {
    /// The message with the file's path under `dir` (e.g. `migrations/1_x.sql: …`).
    pub fn in_dir(&self, dir: &str) -> String {
        let dir = dir.trim_end_matches('/');
        if dir.is_empty() {
            self.to_string()
        } else {
            format!("{dir}/{self}")
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        match &self.rule {
            Rule::BadVersion(version) => write!(
                f,
                "version {version:?} is not an integer; expected <version>_<description>.sql or \
                 <version>_<description>.up.sql + .down.sql, e.g. 20261124120000_create_users.up.sql"
            ),
            Rule::DuplicateVersion { version, other } => write!(
                f,
                "duplicate version {version}: {other} uses it too; give one of them a new version"
            ),
            Rule::MixedKinds { other } => write!(
                f,
                "simple and reversible up files for one version ({other}); both would run under one \
                 version: keep either <version>_<name>.sql or an .up.sql/.down.sql pair"
            ),
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

/// Direction of one file of a version: sqlx's `MigrationType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileType {
    Simple,
    Up,
    Down,
}

impl FileType {
    /// sqlx's `MigrationType::from_filename`.
    pub fn from_name(rest: &str) -> Self {
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

/// Session settings a file may override in its leading comment lines.
pub const HEADER_SETTINGS: [&str; 2] = ["lock_timeout", "statement_timeout"];

/// Reads `-- <setting>: <value>` lines from the file's leading comment block. The value is a
/// duration of the one grammar ([`crate::duration`]; a bare number is PostgreSQL's
/// milliseconds), within PostgreSQL's range for these settings, and is kept as PostgreSQL reads
/// it (`5m` becomes `5min`).
pub fn header_settings(sql: &str) -> Result<Vec<(String, String)>, String> {
    let mut settings = Vec::new();
    for line in sql.lines() {
        let line = line.trim_start_matches('\u{feff}').trim();
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
        let span = Span::parse(value, Bare::Millis)
            .map_err(|_| format!("{key}: {value:?} is not a duration such as 30s or 10min"))?;
        if span.duration().as_millis() > POSTGRES_MAX_MILLIS {
            return Err(format!(
                "{key}: {value:?} is more than PostgreSQL takes ({POSTGRES_MAX_MILLIS}ms, about 24 days)"
            ));
        }
        settings.push((key.to_string(), span.postgres()));
    }
    Ok(settings)
}

/// SHA-384 of the bytes, exactly as sqlx 0.9 computes a migration checksum.
pub fn checksum(bytes: &[u8]) -> [u8; 48] {
    Sha384::digest(bytes).into()
}

/// sqlx's `checksum_with`: SHA-384 of the text with every ignored character left out.
pub fn checksum_with(sql: &str, ignored_chars: &BTreeSet<char>) -> [u8; 48] {
    if ignored_chars.is_empty() {
        return checksum(sql.as_bytes());
    }
    let mut digest = Sha384::new();
    for fragment in sql.split(|c| ignored_chars.contains(&c)) {
        digest.update(fragment.as_bytes());
    }
    digest.finalize().into()
}

/// A file name read as sqlx reads it: `None` when it is not a migration at all.
struct Name {
    version: Result<i64, String>,
    description: String,
    file_type: FileType,
}

fn parse_name(name: &str) -> Option<Name> {
    let (version, rest) = name.split_once('_')?;
    if !rest.ends_with(".sql") {
        return None;
    }
    let file_type = FileType::from_name(rest);
    Some(Name {
        // `str::parse::<i64>`, as sqlx: a sign and leading zeros are allowed.
        version: version.parse().map_err(|_| version.to_string()),
        // `trim_end_matches`, `replace('_', " ")`: sqlx's exact derivation of the description.
        description: rest.trim_end_matches(file_type.suffix()).replace('_', " "),
        file_type,
    })
}

fn script(file: &SourceFile, options: &ReadOptions) -> Result<Script, Rule> {
    let sql = std::str::from_utf8(&file.bytes).map_err(|e| Rule::NotUtf8 {
        byte_offset: e.valid_up_to(),
    })?;
    Ok(Script {
        file: file.name.clone(),
        sql: sql.to_string(),
        checksum: checksum_with(sql, &options.ignored_chars),
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

/// Reads a whole directory's regular files as sqlx 0.9 does and returns the migrations sorted by
/// version with the warnings, or every broken rule (one message per cause, sorted by file
/// name) so one build shows them all.
pub fn build(files: &[SourceFile], options: &ReadOptions) -> Result<Manifest, Vec<ManifestError>> {
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let slots = slots(files, options, &mut errors, &mut notes);
    let mut specs = Vec::with_capacity(slots.len());
    let mut lone_downs = Vec::new();
    for (version, slot) in slots {
        match slot.resolve(version, &mut notes) {
            Ok(Resolved::Migration(spec)) => specs.push(spec),
            Ok(Resolved::LoneDown(lone)) => lone_downs.push(lone),
            Err(slot_errors) => errors.extend(slot_errors),
        }
    }
    if errors.is_empty() {
        notes.sort_by(|a, b| a.file.cmp(&b.file));
        Ok(Manifest {
            specs,
            lone_downs,
            notes,
        })
    } else {
        errors.sort_by(|a, b| a.file.cmp(&b.file));
        Err(errors)
    }
}

/// Each file read on its own (name, version, text, header) and put in its version's slot.
fn slots(
    files: &[SourceFile],
    options: &ReadOptions,
    errors: &mut Vec<ManifestError>,
    notes: &mut Vec<Note>,
) -> BTreeMap<i64, Slot> {
    let mut slots: BTreeMap<i64, Slot> = BTreeMap::new();
    let mut files: Vec<&SourceFile> = files.iter().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    for file in files {
        let fail = |rule| ManifestError {
            file: file.name.clone(),
            rule,
        };
        let note = |kind| Note {
            file: file.name.clone(),
            kind,
        };
        let Some(name) = parse_name(&file.name) else {
            // Dot files (`.gitkeep`, editor droppings) are nobody's migration: no warning.
            if !file.name.starts_with('.') {
                notes.push(note(NoteKind::NotAMigration));
            }
            continue;
        };
        let version = match name.version {
            Ok(v) => v,
            Err(text) => {
                errors.push(fail(Rule::BadVersion(text)));
                continue;
            }
        };
        let script = match script(file, options) {
            Ok(script) => script,
            Err(rule) => {
                errors.push(fail(rule));
                continue;
            }
        };
        if version < 1 {
            notes.push(note(NoteKind::VersionBelowOne));
        }
        if name.description.is_empty() {
            notes.push(note(NoteKind::EmptyDescription));
        }
        if name.file_type != FileType::Down && script.sql.trim().is_empty() {
            notes.push(note(NoteKind::EmptyUp));
        }
        if script.sql.starts_with('\u{feff}') {
            notes.push(note(NoteKind::ByteOrderMark));
        }
        let slot = slots.entry(version).or_default();
        let list = match name.file_type {
            FileType::Simple => &mut slot.simple,
            FileType::Up => &mut slot.up,
            FileType::Down => &mut slot.down,
        };
        list.push((script, name.description));
    }
    slots
}

/// What one version's files make.
enum Resolved {
    Migration(Migration),
    LoneDown(LoneDown),
}

impl Slot {
    /// The version's migration (or lone down file), with its notes; or why its files cannot
    /// make one.
    fn resolve(self, version: i64, notes: &mut Vec<Note>) -> Result<Resolved, Vec<ManifestError>> {
        self.refusals(version)?;
        let Slot { simple, up, down } = self;
        let down = down.into_iter().next();
        let (kind, (up, description)) = match (simple.into_iter().next(), up.into_iter().next()) {
            (Some(simple), _) => (MigrationKind::Simple, simple),
            (None, Some(up)) => (MigrationKind::Reversible, up),
            (None, None) => {
                let (script, description) = down.expect("a slot holds at least one file");
                notes.push(Note {
                    file: script.file.clone(),
                    kind: NoteKind::LoneDown,
                });
                return Ok(Resolved::LoneDown(LoneDown {
                    version,
                    description,
                    script,
                }));
            }
        };
        match (&down, kind) {
            (None, MigrationKind::Reversible) => notes.push(Note {
                file: up.file.clone(),
                kind: NoteKind::NoDown,
            }),
            (Some((d, _)), MigrationKind::Simple) => notes.push(Note {
                file: d.file.clone(),
                kind: NoteKind::DownForSimple {
                    up: up.file.clone(),
                },
            }),
            _ => {}
        }
        if let Some((d, down_description)) = &down
            && *down_description != description
        {
            notes.push(Note {
                file: d.file.clone(),
                kind: NoteKind::DescriptionMismatch {
                    other: up.file.clone(),
                },
            });
        }
        Ok(Resolved::Migration(Migration {
            version,
            description,
            kind,
            up,
            down: down.map(|(script, _)| script),
        }))
    }

    /// Two files for one version and direction; simple and `.up.sql` files for one version.
    fn refusals(&self, version: i64) -> Result<(), Vec<ManifestError>> {
        let mut errors = Vec::new();
        for list in [&self.simple, &self.up, &self.down] {
            for (dup, _) in list.iter().skip(1) {
                errors.push(ManifestError {
                    file: dup.file.clone(),
                    rule: Rule::DuplicateVersion {
                        version,
                        other: list[0].0.file.clone(),
                    },
                });
            }
        }
        if let (Some((s, _)), Some((u, _))) = (self.simple.first(), self.up.first()) {
            errors.push(ManifestError {
                file: s.file.clone(),
                rule: Rule::MixedKinds {
                    other: u.file.clone(),
                },
            });
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Rust source for the embedded manifest: a `static MANIFEST: &[Entry]` whose SQL is looked up in
/// the `include_dir` copy of the directory at run time. Written by `build.rs` into `OUT_DIR`.
pub fn render_manifest(specs: &[Migration]) -> String {
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
        "// @generated by build.rs from the migration directory: do not edit.\n\
         pub(crate) static MANIFEST: &[Entry] = &[\n",
    );
    for spec in specs {
        let down = spec
            .down
            .as_ref()
            .map_or_else(|| "None".to_string(), |d| format!("Some({})", script(d)));
        let kind = match spec.kind {
            MigrationKind::Simple => "MigrationKind::Simple",
            MigrationKind::Reversible => "MigrationKind::Reversible",
        };
        out.push_str(&format!(
            "    Entry {{ version: {}, description: {:?}, kind: {kind}, up: {}, down: {} }},\n",
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

    fn read(files: &[SourceFile]) -> Manifest {
        build(files, &ReadOptions::default()).expect("valid set")
    }

    fn notes(files: &[SourceFile]) -> Vec<(String, NoteKind)> {
        read(files)
            .notes
            .into_iter()
            .map(|n| (n.file, n.kind))
            .collect()
    }

    /// The single error of a set, checked to name `file`.
    fn only_error(files: &[SourceFile], file: &str) -> Rule {
        let errors = build(files, &ReadOptions::default()).expect_err("set must be rejected");
        assert_eq!(errors.len(), 1, "{errors:?}");
        let e = &errors[0];
        assert_eq!(e.file, file);
        assert!(
            e.in_dir("db/migrations/")
                .starts_with(&format!("db/migrations/{file}: ")),
            "{e}"
        );
        e.rule.clone()
    }

    #[test]
    fn reads_names_like_sqlx() {
        let m = read(&[
            f(
                "20240101000000_create_users_table.sql",
                "CREATE TABLE users();",
            ),
            f(
                "2_add_index.up.sql",
                "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (c);",
            ),
            f("2_add_index.down.sql", "DROP INDEX i;"),
            f("+3_signed.sql", "SELECT 3;"),
            f("004_padded.sql.sql", "SELECT 4;"),
        ]);
        let specs = m.specs;
        let versions: Vec<_> = specs.iter().map(|s| s.version).collect();
        assert_eq!(versions, [2, 3, 4, 20240101000000]);
        assert_eq!(specs[0].description, "add index");
        assert_eq!(specs[0].kind, MigrationKind::Reversible);
        assert!(specs[0].up.no_tx);
        assert!(!specs[0].down.as_ref().expect("down").no_tx);
        assert_eq!(specs[2].description, "padded", "suffix trimmed repeatedly");
        assert_eq!(specs[3].description, "create users table");
        assert_eq!(specs[3].kind, MigrationKind::Simple);
        assert_eq!(specs[3].up.checksum, checksum(b"CREATE TABLE users();"));
        assert!(m.notes.is_empty(), "{:?}", m.notes);
    }

    #[test]
    fn ignores_what_sqlx_ignores_and_says_so() {
        let found = notes(&[
            f("README.md", "not a migration"),
            f("nounderscore.sql", "SELECT 1;"),
            f("1_x.sql.bak", "SELECT 1;"),
            f(".gitkeep", ""),
            f("1_x.sql", "SELECT 1;"),
        ]);
        assert_eq!(
            found,
            [
                ("1_x.sql.bak".to_string(), NoteKind::NotAMigration),
                ("README.md".to_string(), NoteKind::NotAMigration),
                ("nounderscore.sql".to_string(), NoteKind::NotAMigration),
            ]
        );
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
    fn ignored_chars_leave_the_checksum_of_the_stripped_text() {
        let ignored: BTreeSet<char> = ['\r', '\u{feff}'].into();
        assert_eq!(
            checksum_with("\u{feff}SELECT 1;\r\nSELECT 2;\r\n", &ignored),
            checksum(b"SELECT 1;\nSELECT 2;\n")
        );
        let options = ReadOptions {
            ignored_chars: ['\r'].into(),
        };
        let m = build(&[f("1_x.sql", "SELECT 1;\r\n")], &options).expect("valid");
        assert_eq!(m.specs[0].up.checksum, checksum(b"SELECT 1;\n"));
        assert_eq!(
            m.specs[0].up.sql, "SELECT 1;\r\n",
            "the SQL keeps every byte"
        );
    }

    #[test]
    fn no_transaction_only_at_the_very_start() {
        let m = read(&[f("1_x.sql", "\n-- no-transaction\nSELECT 1;")]);
        assert!(!m.specs[0].up.no_tx);
        let m = read(&[f(
            "1_x.sql",
            "-- no-transactional: still the prefix\nSELECT 1;",
        )]);
        assert!(m.specs[0].up.no_tx, "sqlx matches the prefix only");
        let m = read(&[f("1_x.sql", "\u{feff}-- no-transaction\nSELECT 1;")]);
        assert!(!m.specs[0].up.no_tx);
        assert_eq!(m.notes[0].kind, NoteKind::ByteOrderMark);
    }

    #[test]
    fn rejects_versions_sqlx_cannot_read() {
        for (name, rule) in [
            ("create_users.sql", Rule::BadVersion("create".into())),
            ("_x.sql", Rule::BadVersion(String::new())),
            (
                "99999999999999999999_huge.sql",
                Rule::BadVersion("99999999999999999999".into()),
            ),
            (".1_hidden.sql", Rule::BadVersion(".1".into())),
        ] {
            assert_eq!(only_error(&[f(name, "SELECT 1;")], name), rule, "{name}");
        }
    }

    #[test]
    fn accepts_versions_below_one_like_sqlx() {
        let m = read(&[
            f("0_setup.sql", "SELECT 0;"),
            f("-1_before.sql", "SELECT -1;"),
        ]);
        let versions: Vec<_> = m.specs.iter().map(|s| s.version).collect();
        assert_eq!(versions, [-1, 0]);
        assert!(m.notes.iter().all(|n| n.kind == NoteKind::VersionBelowOne));
        assert_eq!(m.notes.len(), 2);
    }

    #[test]
    fn rejects_duplicate_versions_once_per_file() {
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
    fn accepts_half_pairs_like_sqlx() {
        let m = read(&[
            f("3_x.down.sql", "DROP TABLE x;"),
            f("4_y.up.sql", "CREATE TABLE y();"),
        ]);
        assert_eq!(m.specs.len(), 1);
        assert_eq!(m.specs[0].version, 4);
        assert_eq!(m.specs[0].kind, MigrationKind::Reversible);
        assert!(m.specs[0].down.is_none());
        assert_eq!(m.lone_downs.len(), 1);
        assert_eq!(m.lone_downs[0].version, 3);
        let kinds: Vec<_> = m.notes.iter().map(|n| n.kind.clone()).collect();
        assert_eq!(kinds, [NoteKind::LoneDown, NoteKind::NoDown]);
    }

    #[test]
    fn accepts_empty_down_files_silently_and_warns_about_empty_ups() {
        let m = read(&[
            f("5_a.up.sql", "CREATE TABLE a();"),
            f("5_a.down.sql", ""),
            f("6_b.sql", "  \n\t\n"),
        ]);
        assert_eq!(m.specs.len(), 2);
        assert_eq!(m.specs[0].down.as_ref().expect("down").sql, "");
        assert_eq!(
            m.notes,
            [Note {
                file: "6_b.sql".into(),
                kind: NoteKind::EmptyUp
            }]
        );
    }

    #[test]
    fn rejects_simple_and_up_files_for_one_version() {
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
    fn a_down_file_beside_a_simple_file_reverts_it() {
        let m = read(&[f("4_x.sql", "SELECT 1;"), f("4_x.down.sql", "SELECT 2;")]);
        assert_eq!(m.specs[0].kind, MigrationKind::Simple);
        assert_eq!(m.specs[0].down.as_ref().expect("down").file, "4_x.down.sql");
        assert!(matches!(m.notes[0].kind, NoteKind::DownForSimple { .. }));
    }

    #[test]
    fn pairs_with_different_descriptions_record_the_up_description() {
        let m = read(&[f("5_a.up.sql", "SELECT 1;"), f("5_b.down.sql", "SELECT 1;")]);
        assert_eq!(m.specs[0].description, "a");
        assert_eq!(
            m.notes[0].kind,
            NoteKind::DescriptionMismatch {
                other: "5_a.up.sql".into()
            }
        );
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
    fn reports_every_broken_file_at_once_and_nothing_else() {
        let errors = build(
            &[
                f("x_y.sql", "SELECT 1;"),
                f("8_e.sql", "-- lock_timeout: soon\nSELECT 1;"),
                f("9_d.up.sql", "SELECT 1;"),
                f("9_d.down.sql", "SELECT 1;"),
                f("09_d.up.sql", "SELECT 1;"),
            ],
            &ReadOptions::default(),
        )
        .expect_err("rejected");
        let files: Vec<_> = errors.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(files, ["8_e.sql", "9_d.up.sql", "x_y.sql"]);
    }

    #[test]
    fn header_settings_are_read_from_leading_comments_only() {
        let sql = "-- no-transaction\n-- lock_timeout: 30s\n--statement_timeout:10min\nSELECT 1;\n-- lock_timeout: 1s\n";
        let m = read(&[f("1_x.sql", sql)]);
        assert_eq!(
            m.specs[0].up.settings,
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

    /// The one duration grammar: `m` (configuration's minutes) is sent as PostgreSQL's `min`,
    /// and a value PostgreSQL would refuse at deploy time is refused at build time.
    #[test]
    fn header_settings_are_rendered_as_postgresql_reads_them() {
        let sql = "-- lock_timeout: 5m\n-- statement_timeout: 1500\nSELECT 1;";
        assert_eq!(
            header_settings(sql),
            Ok(vec![
                ("lock_timeout".to_string(), "5min".to_string()),
                ("statement_timeout".to_string(), "1500".to_string())
            ])
        );
        assert_eq!(
            header_settings("-- lock_timeout: 2 s\n"),
            Ok(vec![("lock_timeout".to_string(), "2s".to_string())])
        );
        assert_eq!(
            header_settings("-- lock_timeout: 24d\n").map(|s| s.len()),
            Ok(1)
        );
        let e = header_settings("-- statement_timeout: 25d\n").expect_err("out of range");
        assert!(e.contains("more than PostgreSQL takes"), "{e}");
    }

    #[test]
    fn rendered_manifest_names_every_file() {
        let m = read(&[f("1_a.up.sql", "SELECT 1;"), f("1_a.down.sql", "SELECT 2;")]);
        let code = render_manifest(&m.specs);
        assert!(code.contains("version: 1,"));
        assert!(code.contains("kind: MigrationKind::Reversible"));
        assert!(code.contains("\"1_a.up.sql\""));
        assert!(code.contains("Some(ScriptEntry { file: \"1_a.down.sql\""));
    }
}
