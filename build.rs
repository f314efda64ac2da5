//! Reads `sqlx.toml`, validates the migration directory (`migrations/` unless `sqlx.toml` says
//! otherwise), lints it for dangerous DDL, and generates the embedded manifest
//! (`$OUT_DIR/migrations_manifest.rs`).
//!
//! A bad migration set fails the build here, naming each offending file, so a binary that builds
//! always carries a set that sqlx would read the same way. The SQL itself is embedded by
//! `include_dir!` in `src/migrate/embedded.rs`; this script only checks it and writes the index.
//! The safety lint (`migrate-lint`) prints its warnings as cargo warnings and fails the build on
//! a finding whose rule is set to deny (`migration-lint.toml`). The rules are the workspace's
//! crates (`migrate-source`, `migrate-lint`), build-dependencies here and dependencies of the
//! binary: one reading of a directory, one lint.
//!
//! It also embeds the binary's own query set (`.sqlx/`, sqlx's offline data) for
//! `src/queries/`.
//!
//! The configuration (`config/`) is not read here: its one reader is the binary's `config`.
//! The build lints as the engine runs by default, with its `lock_timeout` guard on;
//! `server migrate lint` judges the set under the configuration in force where it runs (an
//! environment that turns the guard off is told which files then need their own).

use migrate_lint as lint;
use migrate_source::{SourceError, manifest, sqlx_toml};
use std::path::Path;
use std::{env, fs};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let sqlx_config = read_sqlx_toml(root);
    let shown_dir = sqlx_config.migrations_dir.trim_end_matches('/').to_string();
    let dir = root.join(&shown_dir);
    // A directory path makes cargo re-run this script when any file below it changes, appears
    // or disappears; the crate is then recompiled, so `include_dir!` picks the change up too.
    println!("cargo:rerun-if-changed={}", dir.display());
    // `include_dir!("$AGENT_MIGRATIONS_DIR")` in src/migrate/embedded.rs embeds this directory.
    println!("cargo:rustc-env=AGENT_MIGRATIONS_DIR={}", dir.display());

    let read = match migrate_source::read_dir(&dir, &sqlx_config) {
        Ok(read) => read,
        Err(SourceError::Invalid(errors)) => {
            let list: Vec<String> = errors.iter().map(|e| e.in_dir(&shown_dir)).collect();
            fail(&format!(
                "invalid migration set ({} problem(s)):\n  {}",
                list.len(),
                list.join("\n  ")
            ));
        }
        Err(e @ SourceError::Io { .. }) => fail(&format!("{shown_dir}/: {e}")),
    };
    for note in &read.notes {
        println!("cargo:warning={shown_dir}/{note}");
    }
    let specs = read.specs;
    lint_set(&specs, &shown_dir);
    check_snapshot(root);
    // The `.sqlx/` query set the binary carries (`server queries`, `migrate compat`).
    embed_query_set(root);
    fold_identical_code();

    // For `server --version`.
    println!("cargo:rustc-env=EMBEDDED_MIGRATIONS={}", specs.len());
    println!(
        "cargo:rustc-env=NEWEST_MIGRATION={}",
        specs
            .last()
            .map_or_else(|| "none".to_string(), |s| s.version.to_string())
    );

    let mut code = manifest::render_manifest(&specs);
    code.push_str(&format!(
        "pub(crate) static TABLE_NAME: &str = {:?};\n\
         pub(crate) static CREATE_SCHEMAS: &[&str] = &{:?};\n\
         pub(crate) static MIGRATIONS_DIR_NAME: &str = {:?};\n",
        sqlx_config.table_name, sqlx_config.create_schemas, shown_dir
    ));
    let out =
        Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations_manifest.rs");
    fs::write(&out, code).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
}

/// The directory of sqlx's offline data, as `cargo sqlx prepare` writes it.
const QUERY_DIR: &str = ".sqlx";

/// The binary's own query set: writes `$OUT_DIR/query_set.rs` (`QUERY_FILES: &[(&str, &str)]`,
/// an `include_str!` of each `.sqlx/query-*.json` under its name, sorted by name) and asks cargo
/// to re-run when `.sqlx/` changes. The files are parsed at run time by `src/queries/mod.rs` (a
/// unit test parses the embedded ones, so a file sqlx would not write fails the tests).
fn embed_query_set(root: &Path) {
    let dir = root.join(QUERY_DIR);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("query-") && n.ends_with(".json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => fail(&format!("cannot read {QUERY_DIR}/: {e}")),
    };
    names.sort();
    let mut code = String::from("pub(crate) static QUERY_FILES: &[(&str, &str)] = &[\n");
    for name in &names {
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            dir.join(name).display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("query_set.rs");
    fs::write(&out, code).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
}

/// Identical code folding when the release binary is linked (issue 27): functions whose bytes
/// and relocations are identical (generic code monomorphised more than once, which even fat LTO
/// leaves where the copies were inlined differently) are kept once. 15,878,488 -> 15,718,680
/// bytes with the release profile's fat LTO (under the thin LTO before it, 566,808 bytes were
/// folded); only .text and its unwind tables shrink. Only for x86_64-unknown-linux-gnu, whose
/// default linker is rust-lld (gold and mold take the flag too, GNU ld does not), and only for
/// the binaries of the release profile. Rust promises no distinct addresses for functions (data,
/// vtables included, is never folded), and a stripped binary's backtraces name no functions
/// anyway. `--icf=safe` folds nothing here: rustc emits no address-significance tables.
fn fold_identical_code() {
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    if release && target {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
    }
}

/// sqlx's own configuration file: the same directory, checksums, bookkeeping table and schemas
/// as `sqlx-cli` and `sqlx::migrate!` read from it. The project commits one, so the path always
/// exists (cargo re-runs a script whose watched path is missing on every build).
fn read_sqlx_toml(root: &Path) -> sqlx_toml::MigrateConfig {
    let toml_path = root.join(sqlx_toml::FILE);
    println!("cargo:rerun-if-changed={}", toml_path.display());
    let toml_text = match fs::read_to_string(&toml_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => fail(&format!("{}: {e}", sqlx_toml::FILE)),
    };
    sqlx_toml::parse(toml_text.as_deref()).unwrap_or_else(|e| fail(&e.to_string()))
}

/// The committed schema snapshot (`include_str!` in src/migrate/embedded.rs): its freshness
/// needs a database (`server migrate snapshot --check`, run by CI); here only its presence.
fn check_snapshot(root: &Path) {
    let snapshot = root.join("schema.snapshot");
    println!("cargo:rerun-if-changed={}", snapshot.display());
    match fs::read_to_string(&snapshot) {
        Ok(text) if text.starts_with("-- agent-backend schema snapshot") => {}
        Ok(_) => fail(
            "schema.snapshot: not a schema snapshot; rewrite it with `server migrate snapshot --fresh --write schema.snapshot`",
        ),
        Err(e) => fail(&format!(
            "schema.snapshot: {e}; write it with `server migrate snapshot --fresh --write schema.snapshot`"
        )),
    }
}

/// Runs the safety lint over the validated set: warnings become cargo warnings, a deny finding
/// fails the build with the whole report. The severity file is baked in for `server migrate lint`.
fn lint_set(specs: &[manifest::Migration], shown_dir: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config_path = root.join(lint::CONFIG_FILE);
    println!("cargo:rerun-if-changed={}", config_path.display());
    let config = match fs::read_to_string(&config_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => fail(&format!("{}: {e}", lint::CONFIG_FILE)),
    };
    let severities = lint::Severities::parse(lint::CONFIG_FILE, &config)
        .unwrap_or_else(|e| fail(&format!("invalid migration lint configuration: {e}")));

    let sources = lint::sources(specs);
    // The engine's default: its lock_timeout guard on (see the top of this file).
    let report = lint::lint_set(&sources, &severities, lint::Options::default());
    for finding in report.findings.iter().filter(|f| f.is_warn()) {
        println!(
            "cargo:warning={}",
            finding.render(&format!("{shown_dir}/")).replace('\n', " ")
        );
    }
    if report.denies() > 0 {
        let lines: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.allowed.is_none())
            .map(|f| format!("{:<5} {}", f.status(), f.render(&format!("{shown_dir}/"))))
            .collect();
        fail(&format!(
            "migration safety lint: {}:\n  {}\nFix the migration, allow the finding in its file with \
             `-- lint:allow <rule>: <reason>`, or set the rule's level in {} \
             (docs/migration-lint.md).",
            report.summary(),
            lines.join("\n  "),
            lint::CONFIG_FILE
        ));
    }

    let out =
        Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migration_lint.toml");
    fs::write(&out, config)
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
}

fn fail(message: &str) -> ! {
    // Cargo shows a failing build script's stderr; keep each problem on its own line.
    eprintln!("error: {message}");
    std::process::exit(1);
}
