//! Validates `migrations/` and generates the embedded manifest (`$OUT_DIR/migrations_manifest.rs`).
//!
//! A bad migration set fails the build here, naming each offending file, so a binary that builds
//! always carries a set that sqlx would read the same way. The SQL itself is embedded by
//! `include_dir!` in `src/migrate/embedded.rs`; this script only checks it and writes the index.

#[path = "src/migrate/manifest.rs"]
#[allow(dead_code)]
mod manifest;

use std::path::Path;
use std::{env, fs};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    // A directory path makes cargo re-run this script when any file below it changes, appears
    // or disappears; the crate is then recompiled, so `include_dir!` picks the change up too.
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut files = Vec::new();
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", dir.display())));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", dir.display())));
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if !path.is_file() || !manifest::is_sql_file(&name) {
            if !name.starts_with('.') {
                println!("cargo:warning=migrations/{name}: not a migration (*.sql file); ignored");
            }
            continue;
        }
        let bytes = fs::read(&path).unwrap_or_else(|e| fail(&format!("migrations/{name}: {e}")));
        files.push(manifest::SourceFile { name, bytes });
    }

    let specs = match manifest::build(&files) {
        Ok(specs) => specs,
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            fail(&format!(
                "invalid migration set ({} problem(s)):\n  {}",
                list.len(),
                list.join("\n  ")
            ));
        }
    };

    // For `server --version`.
    println!("cargo:rustc-env=EMBEDDED_MIGRATIONS={}", specs.len());
    println!(
        "cargo:rustc-env=NEWEST_MIGRATION={}",
        specs
            .last()
            .map_or_else(|| "none".to_string(), |s| s.version.to_string())
    );

    let out =
        Path::new(&env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("migrations_manifest.rs");
    fs::write(&out, manifest::render_manifest(&specs))
        .unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", out.display())));
}

fn fail(message: &str) -> ! {
    // Cargo shows a failing build script's stderr; keep each problem on its own line.
    eprintln!("error: {message}");
    std::process::exit(1);
}
