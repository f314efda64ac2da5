//! `migrate status` and `migrate verify`: what the bookkeeping table says, judged by the
//! engine's [`Verdict`](crate::migrate::Verdict).

use serde::Serialize;

use super::ctx::Ctx;
use super::output::{Text, View, list_or};
use crate::error::{AppError, Exit};
use crate::migrate::snapshot::Drift;
use crate::migrate::{MigrationSet, Policy, Status, Verdict, lock};

#[derive(Serialize)]
struct StatusView {
    database: String,
    state: &'static str,
    up_to_date: bool,
    applied_newest: Option<i64>,
    applied_count: usize,
    embedded_newest: Option<i64>,
    embedded_count: usize,
    pending: Vec<PendingView>,
    dirty: Vec<i64>,
    in_progress: Vec<i64>,
    checksum_mismatch: Vec<i64>,
    unknown_applied: Vec<i64>,
    lock_holder: Option<lock::Holder>,
}

#[derive(Serialize)]
struct PendingView {
    version: i64,
    description: String,
}

impl StatusView {
    fn new(database: String, set: &MigrationSet, status: &Status, verdict: Verdict) -> Self {
        Self {
            database,
            state: verdict.label(),
            up_to_date: verdict == Verdict::UpToDate,
            applied_newest: status.newest_applied(),
            applied_count: status.applied.len(),
            embedded_newest: set.newest(),
            embedded_count: set.len(),
            pending: status
                .pending
                .iter()
                .filter_map(|&v| set.get(v))
                .map(|m| PendingView {
                    version: m.version,
                    description: m.description.clone(),
                })
                .collect(),
            dirty: status.stuck_dirty().to_vec(),
            in_progress: status.in_progress().to_vec(),
            checksum_mismatch: status.mismatched.clone(),
            unknown_applied: status.unknown.clone(),
            lock_holder: status.holder.clone(),
        }
    }
}

impl View for StatusView {
    fn text(&self, out: &mut Text) {
        const W: usize = 19;
        let none = |v: &[i64]| list_or("none", v);
        let or_none = |v: Option<i64>| v.map_or("none".into(), |v| v.to_string());
        out.field("Database:", W, &self.database);
        out.field(
            "Applied:",
            W,
            format_args!(
                "{} ({} row(s))",
                or_none(self.applied_newest),
                self.applied_count
            ),
        );
        out.field(
            "Embedded:",
            W,
            format_args!(
                "{} ({} migration(s))",
                or_none(self.embedded_newest),
                self.embedded_count
            ),
        );
        let pending: Vec<i64> = self.pending.iter().map(|p| p.version).collect();
        out.field("Pending:", W, none(&pending));
        for p in &self.pending {
            out.line(format_args!("  {} {}", p.version, p.description));
        }
        out.field("Dirty:", W, none(&self.dirty));
        if !self.in_progress.is_empty() {
            out.field(
                "In progress:",
                W,
                format_args!(
                    "{} (success = false while the lock holder runs it)",
                    none(&self.in_progress)
                ),
            );
        }
        out.field("Checksum mismatch:", W, none(&self.checksum_mismatch));
        out.field("Applied, unknown:", W, none(&self.unknown_applied));
        match &self.lock_holder {
            Some(h) => out.field("Migration lock:", W, format_args!("held by {h}")),
            None => out.field("Migration lock:", W, "free"),
        }
        out.field("State:", W, self.state);
    }
}

/// `migrate status`: exit 0 up to date, 8 pending or in progress, 6 needs a person.
pub async fn status(ctx: &mut Ctx<'_>) -> Result<Exit, AppError> {
    let status = ctx.migrator.inspect(&mut ctx.conn).await?;
    let verdict = ctx.migrator.policy().verdict(&status);
    let database = ctx.settings.database.migration_url().masked();
    ctx.out.emit(&StatusView::new(
        database,
        ctx.migrator.set(),
        &status,
        verdict,
    ));
    Ok(verdict.into())
}

#[derive(Serialize)]
struct VerifyView {
    /// No check fails: exit 0.
    ok: bool,
    checks: Vec<Check>,
}

/// One check. `level`: `ok` (nothing found), `warn` (found, reported, not failing verify:
/// drift under `on_drift = "warn"`, unknown versions under `on_unknown_applied = "warn"`),
/// `skipped` (not compared) or `fail`; `ok` is `level == ok`, so a finding is never `ok`.
#[derive(Serialize)]
struct Check {
    check: &'static str,
    ok: bool,
    level: Level,
    detail: String,
    /// In text, the check's line says `head` (when set) instead of `detail`, and `lines` follow
    /// it, one each (the differences, which JSON has in `detail`).
    #[serde(skip)]
    head: Option<String>,
    #[serde(skip)]
    lines: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Level {
    Ok,
    Warn,
    Skipped,
    Fail,
}

impl View for VerifyView {
    fn text(&self, out: &mut Text) {
        for c in &self.checks {
            let mark = match c.level {
                Level::Ok => "ok",
                Level::Warn => "WARN",
                Level::Skipped => "-",
                Level::Fail => "FAIL",
            };
            let detail = c.head.as_ref().unwrap_or(&c.detail);
            out.line(format_args!("{mark:<5} {:<13} {detail}", c.check));
            for line in &c.lines {
                out.line(format_args!("{:<19} {line}", ""));
            }
        }
    }
}

impl Check {
    fn new(check: &'static str, level: Level, detail: String) -> Self {
        Check {
            check,
            ok: level == Level::Ok,
            level,
            detail,
            head: None,
            lines: Vec::new(),
        }
    }
}

/// A check that passes or fails.
fn check(check: &'static str, ok: bool, detail: String) -> Check {
    Check::new(check, if ok { Level::Ok } else { Level::Fail }, detail)
}

/// Applied versions this binary does not embed (a newer release ran): a warning, or a failure
/// under `on_unknown_applied = "error"`.
fn unknown_check(policy: &Policy, status: &Status) -> Check {
    let listed = list_or("every applied version is embedded", &status.unknown);
    if status.unknown.is_empty() {
        return Check::new("unknown", Level::Ok, listed);
    }
    let (level, consequence) = if policy.refuses_unknown(status) {
        (Level::Fail, "fails verify (on_unknown_applied = \"error\")")
    } else {
        (
            Level::Warn,
            "reported, not failed (on_unknown_applied = \"warn\")",
        )
    };
    let detail = format!(
        "{listed}: applied, not embedded in this binary (a newer release ran); {consequence}"
    );
    Check::new("unknown", level, detail)
}

/// The drift line: what `migrate drift` says, and what the policy makes of it.
fn drift_check(policy: &Policy, drift: &Drift) -> Check {
    let fails = policy.drift_fails(drift);
    match drift {
        Drift::Checked { differences } if differences.is_empty() => {
            Check::new("drift", Level::Ok, drift.summary())
        }
        Drift::Checked { differences } => {
            let (level, consequence) = if fails {
                (Level::Fail, "fails verify (on_drift = \"error\")")
            } else {
                (Level::Warn, "reported, not failed (on_drift = \"warn\")")
            };
            let mut check = Check::new(
                "drift",
                level,
                format!("{}; {consequence}", drift.summary()),
            );
            check.head = Some(format!(
                "{} difference(s) from the embedded snapshot; {consequence}:",
                differences.len()
            ));
            check.lines = differences.iter().map(ToString::to_string).collect();
            check
        }
        Drift::NotComparable { .. } => Check::new(
            "drift",
            if fails { Level::Fail } else { Level::Skipped },
            drift.summary(),
        ),
    }
}

/// `migrate verify`: every check named; exit as `status`, or 11 when drift fails under
/// `on_drift = "error"` and nothing else does.
pub async fn verify(ctx: &mut Ctx<'_>) -> Result<Exit, AppError> {
    let status = ctx.migrator.inspect(&mut ctx.conn).await?;
    let drift = ctx.migrator.drift(&mut ctx.conn).await?;
    let policy = ctx.migrator.policy();
    let in_progress = match &status.holder {
        Some(h) if !status.in_progress().is_empty() => format!(
            "{} running while {h} holds the migration lock",
            list_or("", status.in_progress())
        ),
        _ => "no migration running".to_string(),
    };
    let checks = vec![
        check("connectivity", true, "database answered".to_string()),
        check(
            "checksums",
            status.mismatched.is_empty(),
            list_or("all match", &status.mismatched),
        ),
        check(
            "pending",
            status.pending.is_empty(),
            list_or("nothing pending", &status.pending),
        ),
        check(
            "dirty",
            status.stuck_dirty().is_empty(),
            list_or("nothing dirty", status.stuck_dirty()),
        ),
        check("in_progress", status.in_progress().is_empty(), in_progress),
        unknown_check(policy, &status),
        drift_check(policy, &drift),
    ];
    ctx.out.emit(&VerifyView {
        ok: checks.iter().all(|c| c.level != Level::Fail),
        checks,
    });
    Ok(match Exit::from(policy.verdict(&status)) {
        Exit::Success if policy.drift_fails(&drift) => Exit::SchemaDiffers,
        exit => exit,
    })
}
