//! The build-time half of the embedded query set: `build.rs` includes this file and calls
//! [`embed`], which lists `.sqlx/query-*.json` and writes `$OUT_DIR/query_set.rs`, an
//! `include_str!` of each file under its name. The files are parsed at run time by
//! `src/queries/mod.rs` (a unit test parses the embedded ones, so a file sqlx would not write
//! fails the tests).
//!
//! Depends on `std` only: build.rs compiles it.

use std::path::Path;
use std::{env, fs};

/// The directory of sqlx's offline data, as `cargo sqlx prepare` writes it.
pub const DIR: &str = ".sqlx";

/// Writes `$OUT_DIR/query_set.rs` (`QUERY_FILES: &[(&str, &str)]`, file name and text, sorted
/// by name) and asks cargo to re-run when `.sqlx/` changes.
pub fn embed(root: &Path) {
    let dir = root.join(DIR);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("query-") && n.ends_with(".json"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            eprintln!("error: cannot read {DIR}/: {e}");
            std::process::exit(1);
        }
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
    if let Err(e) = fs::write(&out, code) {
        eprintln!("error: cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
