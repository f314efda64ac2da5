//! `server migrate lint [DIR] [--config FILE] [--json]`: the build's migration safety lint, on
//! demand. No database: it reads the embedded set (judged by the severity file baked in at
//! build time), or the `.sql` files of DIR (judged by `--config`, else `DIR/../migration-lint.toml`
//! when present, else the defaults).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Settings;
use crate::exit::Exit;
use crate::migrate::lint::{self, Options, Report, Severities};
use crate::migrate::{MigrationSet, SourceError, embedded};

/// Runs the lint and prints the report; exit 0 without a deny finding, 10 with one (or when
/// DIR is not a valid migration set, which the build would refuse too), 2 when DIR is not a
/// directory, 3 when the severity file is unreadable or invalid.
pub fn run(
    engine_lock_timeout_off: bool,
    dir: Option<&Path>,
    config: Option<&Path>,
    json_out: bool,
) -> Exit {
    let (set, prefix, default_config) = match dir {
        None => (
            embedded::migrations().clone(),
            "migrations/".to_string(),
            None,
        ),
        Some(dir) => {
            if !dir.is_dir() {
                eprintln!("server: {} is not a directory of migrations", dir.display());
                return Exit::Usage;
            }
            let shown = dir.display().to_string();
            let prefix = if shown.ends_with('/') {
                shown
            } else {
                format!("{shown}/")
            };
            let set = match MigrationSet::from_dir(dir) {
                Ok(set) => set,
                Err(SourceError::Invalid(errors)) => {
                    let errors: Vec<ErrorView> = errors
                        .iter()
                        .map(|e| ErrorView::new(&prefix, &e.file, &e.to_string()))
                        .collect();
                    print_invalid(&errors, json_out);
                    return Exit::LintDenied;
                }
                Err(e) => {
                    eprintln!("server: {e}");
                    return Exit::Usage;
                }
            };
            let beside = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.parent().map(|p| p.join(lint::CONFIG_FILE)))
                .filter(|p| p.is_file());
            (set, prefix, beside)
        }
    };

    let (severities, config_label) = match config.map(Path::to_path_buf).or(default_config) {
        Some(path) => match read_severities(&path) {
            Ok(s) => (s, path.display().to_string()),
            Err(e) => {
                eprintln!("server: {e}");
                return Exit::Config;
            }
        },
        None if dir.is_none() => match Severities::parse(
            &format!("{} (embedded)", lint::CONFIG_FILE),
            embedded::lint_config(),
        ) {
            Ok(s) => (s, format!("{} (embedded at build time)", lint::CONFIG_FILE)),
            Err(e) => {
                eprintln!("server: {e}");
                return Exit::Config;
            }
        },
        None => (Severities::default(), "defaults".to_string()),
    };

    let options = Options {
        engine_lock_timeout_off,
    };
    let sources = lint::up_sources(set.iter());
    let report = lint::lint_set(&sources, &severities, options);
    print(
        &report,
        &prefix,
        &config_label,
        &severities,
        options,
        json_out,
    );
    if report.denies() > 0 {
        Exit::LintDenied
    } else {
        Exit::Success
    }
}

fn read_severities(path: &PathBuf) -> Result<Severities, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read lint configuration {}: {e}", path.display()))?;
    Severities::parse(&path.display().to_string(), &text)
        .map_err(|e| format!("invalid lint configuration: {e}"))
}

/// The JSON document of `server migrate lint --json`: the same for a linted set and for a
/// directory that is not a valid set (`valid: false`, `errors`, nothing linted).
#[derive(Serialize)]
struct LintView<'a> {
    ok: bool,
    valid: bool,
    errors: &'a [ErrorView],
    files: usize,
    statements: usize,
    deny: usize,
    warn: usize,
    allowed: usize,
    config: &'a str,
    engine_lock_timeout_off: bool,
    severities: BTreeMap<&'static str, &'static str>,
    findings: Vec<FindingView<'a>>,
}

#[derive(Serialize)]
struct FindingView<'a> {
    file: String,
    line: usize,
    rule: &'static str,
    level: &'static str,
    message: &'a str,
    why: Option<&'static str>,
    fix: Option<&'static str>,
    allowed_reason: Option<&'a str>,
}

/// A reason DIR is not a valid migration set, naming the file under DIR.
#[derive(Serialize)]
struct ErrorView {
    file: String,
    message: String,
}

impl ErrorView {
    /// `shown` is the manifest error's text; its own `migrations/` paths become `prefix`
    /// (the directory as the user gave it).
    fn new(prefix: &str, file: &str, shown: &str) -> Self {
        let message = shown
            .strip_prefix(&format!("migrations/{file}: "))
            .or_else(|| shown.strip_prefix(&format!("{file}: ")))
            .unwrap_or(shown)
            .replace("migrations/", prefix);
        Self {
            file: format!("{prefix}{file}"),
            message,
        }
    }
}

fn print_invalid(errors: &[ErrorView], json_out: bool) {
    if json_out {
        let view = LintView {
            ok: false,
            valid: false,
            errors,
            files: 0,
            statements: 0,
            deny: 0,
            warn: 0,
            allowed: 0,
            config: "",
            engine_lock_timeout_off: false,
            severities: BTreeMap::new(),
            findings: Vec::new(),
        };
        print_json(&view);
        return;
    }
    for e in errors {
        eprintln!("server: {}: {}", e.file, e.message);
    }
    eprintln!("server: not a valid migration set; nothing was linted");
}

fn print_json(view: &LintView<'_>) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(
        stdout,
        "{}",
        serde_json::to_string_pretty(view).unwrap_or_default()
    );
}

fn print(
    report: &Report,
    prefix: &str,
    config: &str,
    severities: &Severities,
    options: Options,
    json_out: bool,
) {
    if json_out {
        let view = LintView {
            ok: report.denies() == 0,
            valid: true,
            errors: &[],
            files: report.files,
            statements: report.statements,
            deny: report.denies(),
            warn: report.warnings(),
            allowed: report.allowed(),
            config,
            engine_lock_timeout_off: options.engine_lock_timeout_off,
            severities: severities.iter().map(|(id, l)| (id, l.as_str())).collect(),
            findings: report
                .findings
                .iter()
                .map(|f| {
                    let info = lint::rule(f.rule);
                    FindingView {
                        file: format!("{prefix}{}", f.file),
                        line: f.line,
                        rule: f.rule,
                        level: f.status(),
                        message: &f.message,
                        why: info.map(|i| i.why),
                        fix: info.map(|i| i.fix),
                        allowed_reason: f.allowed.as_deref(),
                    }
                })
                .collect(),
        };
        print_json(&view);
        return;
    }
    let mut stdout = std::io::stdout().lock();
    for f in &report.findings {
        let _ = writeln!(stdout, "{:<7} {}", f.status(), f.render(prefix));
    }
    let _ = writeln!(stdout, "{} (severities: {config})", report.summary());
}

/// Whether `migrations.lock_timeout` is zero in the configuration's layers, read for that key
/// alone ([`Settings::lock_timeout_alone`]: the same files, `ENVIRONMENT` and variables as a
/// full load), for when the whole configuration cannot load. When even that key cannot be
/// read, the engine's guard is taken as on.
pub fn lock_timeout_off_in_files(config_dir: &Path) -> bool {
    Settings::lock_timeout_alone(config_dir).is_ok_and(|d| d.is_zero())
}
