//! `migrate status` and `migrate verify`: what the bookkeeping table says, judged by the
//! engine's [`Verdict`](crate::migrate::Verdict).

use serde::Serialize;

use super::migrate::Ctx;
use super::output::{Text, View, list_or};
use crate::error::{AppError, Exit};
use crate::migrate::{MigrationSet, Status, Verdict, lock};

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
    ok: bool,
    checks: Vec<Check>,
}

#[derive(Serialize)]
struct Check {
    check: &'static str,
    ok: bool,
    detail: String,
}

impl View for VerifyView {
    fn text(&self, out: &mut Text) {
        for c in &self.checks {
            let mark = if c.ok { "ok" } else { "FAIL" };
            out.line(format_args!("{mark:<5} {:<13} {}", c.check, c.detail));
        }
    }
}

fn check(check: &'static str, ok: bool, detail: String) -> Check {
    Check { check, ok, detail }
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
        check(
            "unknown",
            !policy.refuses_unknown(&status),
            list_or("every applied version is embedded", &status.unknown),
        ),
        check("drift", !policy.drift_fails(&drift), drift.summary()),
    ];
    ctx.out.emit(&VerifyView {
        ok: checks.iter().all(|c| c.ok),
        checks,
    });
    Ok(match Exit::from(policy.verdict(&status)) {
        Exit::Success if policy.drift_fails(&drift) => Exit::SchemaDiffers,
        exit => exit,
    })
}
