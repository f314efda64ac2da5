//! `migrate lint [DIR] [--config FILE] [--json]`: the build's migration safety lint, on demand.
//! No database: it reads the embedded set (judged by the severity file baked in at build time),
//! or the `.sql` files of DIR (judged by `--config`, else `DIR/../migration-lint.toml` when
//! present, else the defaults).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use super::output::{Output, Text, View};
use crate::config::{ConfigError, Settings};
use crate::error::{AppError, Exit};
use crate::migrate::lint::{self, Options, Report, Severities};
use crate::migrate::{MigrationSet, SourceError, embedded};

#[derive(Debug, Args)]
pub struct LintArgs {
    /// A migration directory to lint instead of the embedded set.
    dir: Option<PathBuf>,
    /// Severity file (default: the one embedded at build time; for DIR,
    /// DIR/../migration-lint.toml when present, else the defaults).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Exit 0 without a deny finding, 10 with one (or when DIR is not a valid migration set, which
/// the build would refuse too), 2 when DIR is not a directory, 3 when the severity file is
/// unreadable or invalid.
///
/// Needs no database and no secrets: when the whole configuration does not load (say,
/// production without DATABASE_URL in a build step), `migrations.lock_timeout` comes from the
/// `[migrations]` section alone ([`Settings::migrations_alone`]); when even that fails, the
/// engine's guard is taken as on.
pub fn exec(
    settings: Result<Settings, ConfigError>,
    config_dir: &Path,
    args: LintArgs,
    out: Output,
) -> Exit {
    let engine_lock_timeout_off = match settings {
        Ok(settings) => settings.migrations.lock_timeout.is_zero(),
        Err(e) => {
            eprintln!(
                "server: note: {}; linting with migrations.lock_timeout from the files in {}",
                AppError::from(e),
                config_dir.display()
            );
            Settings::migrations_alone(config_dir).is_ok_and(|m| m.lock_timeout.is_zero())
        }
    };
    let options = Options {
        engine_lock_timeout_off,
    };
    match lint(&args, options, out) {
        Ok(exit) | Err(exit) => exit,
    }
}

/// The set to lint, as it is shown (`migrations/` or DIR), and the severity file beside DIR.
struct Target {
    set: MigrationSet,
    prefix: String,
    beside: Option<PathBuf>,
}

fn lint(args: &LintArgs, options: Options, out: Output) -> Result<Exit, Exit> {
    let target = match &args.dir {
        None => Target {
            set: embedded::migrations().clone(),
            prefix: "migrations/".to_string(),
            beside: None,
        },
        Some(dir) => read_dir(dir, out)?,
    };
    let (severities, config) = severities(args, target.beside.as_deref())?;
    let sources = lint::sources(target.set.iter());
    let report = lint::lint_set(&sources, &severities, options);
    out.emit(&LintView::new(
        &report,
        &target.prefix,
        &config,
        &severities,
        options,
    ));
    Ok(if report.denies() > 0 {
        Exit::LintDenied
    } else {
        Exit::Success
    })
}

fn read_dir(dir: &Path, out: Output) -> Result<Target, Exit> {
    if !dir.is_dir() {
        eprintln!("server: {} is not a directory of migrations", dir.display());
        return Err(Exit::Usage);
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
            if out.is_json() {
                out.emit(&LintView::invalid(&errors));
            } else {
                for e in &errors {
                    eprintln!("server: {}: {}", e.file, e.message);
                }
                eprintln!("server: not a valid migration set; nothing was linted");
            }
            return Err(Exit::LintDenied);
        }
        Err(e) => {
            eprintln!("server: {e}");
            return Err(Exit::Usage);
        }
    };
    let beside = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.parent().map(|p| p.join(lint::CONFIG_FILE)))
        .filter(|p| p.is_file());
    Ok(Target {
        set,
        prefix,
        beside,
    })
}

/// The severities and how the report names them: `--config`, the file beside DIR, the one
/// embedded at build time (for the embedded set), or the defaults.
fn severities(args: &LintArgs, beside: Option<&Path>) -> Result<(Severities, String), Exit> {
    let fail = |e: String| {
        eprintln!("server: {e}");
        Exit::Config
    };
    match args.config.as_deref().or(beside) {
        Some(path) => read_severities(path)
            .map(|s| (s, path.display().to_string()))
            .map_err(fail),
        None if args.dir.is_none() => Severities::parse(
            &format!("{} (embedded)", lint::CONFIG_FILE),
            embedded::lint_config(),
        )
        .map(|s| (s, format!("{} (embedded at build time)", lint::CONFIG_FILE)))
        .map_err(|e| fail(e.to_string())),
        None => Ok((Severities::default(), "defaults".to_string())),
    }
}

fn read_severities(path: &Path) -> Result<Severities, String> {
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
    /// The report for people: a line a finding, then the summary.
    #[serde(skip)]
    text: Vec<String>,
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

impl<'a> LintView<'a> {
    fn new(
        report: &'a Report,
        prefix: &str,
        config: &'a str,
        severities: &Severities,
        options: Options,
    ) -> Self {
        let mut text: Vec<String> = report
            .findings
            .iter()
            .map(|f| format!("{:<7} {}", f.status(), f.render(prefix)))
            .collect();
        text.push(format!("{} (severities: {config})", report.summary()));
        Self {
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
            text,
        }
    }

    /// DIR is not a valid set: its errors, nothing linted.
    fn invalid(errors: &'a [ErrorView]) -> Self {
        Self {
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
            text: Vec::new(),
        }
    }
}

impl View for LintView<'_> {
    fn text(&self, out: &mut Text) {
        for line in &self.text {
            out.line(line);
        }
    }
}
