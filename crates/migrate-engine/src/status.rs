//! What the bookkeeping table says, and what that means: [`Status`] compares the rows with the
//! set; [`Policy`] (the operator's `migrations.*` settings) turns a status into a [`Verdict`] and a
//! drift into a failure or not. The pre-serve stage, `migrate status`/`verify` and
//! `/health/ready` all ask here, so "up to date" has one definition.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::MigrateError;
use crate::history::{self, AppliedMigration};
use crate::lock;
use crate::set::MigrationSet;
use crate::snapshot::{Drift, Ignore, Snapshot};

/// What to do when the database has applied versions this binary does not embed
/// (`migrations.on_unknown_applied`; typically after rolling a deploy back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownAppliedPolicy {
    /// Log a warning, report it in status and health, and go on.
    Warn,
    /// Refuse to go on.
    Error,
}

/// What a schema that differs from the set's snapshot does (`migrations.on_drift`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftPolicy {
    /// Report it (the stage's log, status, health, `verify`'s `WARN`) and go on.
    Warn,
    /// Fail `migrate verify` and readiness.
    Error,
}

/// How the operator judges what the bookkeeping and the catalogs say (`migrations.on_unknown_applied`,
/// `on_drift`, `drift_ignore_schemas`, `drift_ignore`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub on_unknown_applied: UnknownAppliedPolicy,
    pub on_drift: DriftPolicy,
    /// Objects drift leaves out.
    pub drift_ignore: Ignore,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            on_unknown_applied: UnknownAppliedPolicy::Warn,
            on_drift: DriftPolicy::Warn,
            drift_ignore: Ignore::default(),
        }
    }
}

impl Policy {
    /// What `status` means for the service. Dirty rows with nobody holding the lock, edited
    /// files and (under the strict policy) unknown versions need a person; a dirty row beside a
    /// live lock holder is in progress; otherwise pending versions are just pending.
    pub fn verdict(&self, status: &Status) -> Verdict {
        if !status.stuck_dirty().is_empty()
            || !status.mismatched.is_empty()
            || self.refuses_unknown(status)
        {
            Verdict::NeedsAttention
        } else if !status.in_progress().is_empty() {
            Verdict::InProgress
        } else if !status.pending.is_empty() {
            Verdict::Pending
        } else {
            Verdict::UpToDate
        }
    }

    /// Applied versions this set does not embed, under `on_unknown_applied = "error"`.
    pub fn refuses_unknown(&self, status: &Status) -> bool {
        self.on_unknown_applied == UnknownAppliedPolicy::Error && !status.unknown.is_empty()
    }

    /// The live schema (`actual`) against the snapshot the set produces (`expected`), leaving
    /// out what the operator ignores; compared only when `status` is at the snapshot's version.
    /// Compares only when the bookkeeping says the database is exactly at the set's newest
    /// version; otherwise says why not.
    pub fn judge_drift(&self, status: &Status, expected: &Snapshot, actual: &Snapshot) -> Drift {
        let not = |reason: String| Drift::NotComparable { reason };
        let list = |v: &[i64]| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        if !status.dirty.is_empty() {
            return not(format!("migration(s) {} are dirty", list(&status.dirty)));
        }
        if !status.mismatched.is_empty() {
            return not(format!(
                "migration(s) {} were applied from other files",
                list(&status.mismatched)
            ));
        }
        if !status.pending.is_empty() {
            return not(format!(
                "the database is behind the snapshot: migration(s) {} of this binary are pending; \
                 check drift with the binary whose newest migration the database has (after a failed \
                 deploy: the serving release's, in a Render Shell), or apply them first",
                list(&status.pending)
            ));
        }
        if !status.unknown.is_empty() {
            return not(format!(
                "the database is ahead of the snapshot: it has applied migration(s) {} that this \
                 binary does not embed; check drift with the release that does",
                list(&status.unknown)
            ));
        }
        Drift::Checked {
            differences: expected
                .without(&self.drift_ignore)
                .diff(&actual.without(&self.drift_ignore)),
        }
    }

    /// Whether `drift` fails a check (`migrate verify`, readiness): only differences found, and
    /// only under `on_drift = "error"`.
    pub fn drift_fails(&self, drift: &Drift) -> bool {
        self.drift_can_fail() && !drift.is_clean()
    }

    /// Whether drift can fail a check at all (`on_drift = "error"`): readiness reads the
    /// catalogs only then.
    pub fn drift_can_fail(&self) -> bool {
        self.on_drift == DriftPolicy::Error
    }
}

/// A [`Status`] judged by a [`Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every embedded migration applied with its checksum, nothing dirty, nothing refused.
    UpToDate,
    /// Embedded migrations not applied yet, and nothing else wrong.
    Pending,
    /// A dirty row while a live session holds the migration lock: a runner is applying it.
    InProgress,
    /// Dirty with no runner, an edited file, or unknown versions under the strict policy.
    NeedsAttention,
}

impl Verdict {
    /// The words `migrate status` prints.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::UpToDate => "up to date",
            Verdict::Pending => "pending",
            Verdict::InProgress => "migration in progress",
            Verdict::NeedsAttention => "needs attention",
        }
    }
}

/// The embedded set compared with `_sqlx_migrations`.
#[derive(Debug, Clone)]
pub struct Status {
    /// Whether `_sqlx_migrations` exists.
    pub table_exists: bool,
    /// Every row, by version.
    pub applied: Vec<AppliedMigration>,
    /// Embedded versions with no row, in order.
    pub pending: Vec<i64>,
    /// Versions whose row checksum differs from the embedded file.
    pub mismatched: Vec<i64>,
    /// Versions recorded with `success = false`.
    pub dirty: Vec<i64>,
    /// Applied versions this binary does not embed.
    pub unknown: Vec<i64>,
    /// The session holding the migration lock, when asked ([`Migrator::inspect`]); `None` when
    /// free or not asked.
    pub holder: Option<lock::Holder>,
}

impl Status {
    pub fn compare(set: &MigrationSet, rows: Option<Vec<AppliedMigration>>) -> Self {
        let table_exists = rows.is_some();
        let applied = rows.unwrap_or_default();
        let by_version: BTreeMap<i64, &AppliedMigration> =
            applied.iter().map(|r| (r.version, r)).collect();
        let pending = set
            .iter()
            .filter(|m| !by_version.contains_key(&m.version))
            .map(|m| m.version)
            .collect();
        let mismatched = set
            .iter()
            .filter(|m| {
                by_version
                    .get(&m.version)
                    .is_some_and(|r| r.checksum != m.up.checksum)
            })
            .map(|m| m.version)
            .collect();
        let dirty = applied
            .iter()
            .filter(|r| r.is_dirty())
            .map(|r| r.version)
            .collect();
        let unknown = applied
            .iter()
            .filter(|r| set.get(r.version).is_none())
            .map(|r| r.version)
            .collect();
        Self {
            table_exists,
            applied,
            pending,
            mismatched,
            dirty,
            unknown,
            holder: None,
        }
    }

    /// Dirty rows while a live session holds the migration lock: most likely a
    /// `-- no-transaction` migration still running, not a failure. Runners wait for the lock
    /// and decide under it.
    pub fn in_progress(&self) -> &[i64] {
        if self.holder.is_some() {
            &self.dirty
        } else {
            &[]
        }
    }

    /// Dirty rows with nobody holding the migration lock: a migration that failed or was killed
    /// part-way, waiting for a person (`migrate repair`).
    pub fn stuck_dirty(&self) -> &[i64] {
        if self.holder.is_some() {
            &[]
        } else {
            &self.dirty
        }
    }

    /// Newest version recorded as successfully applied.
    pub fn newest_applied(&self) -> Option<i64> {
        self.applied
            .iter()
            .filter(|r| r.success)
            .map(|r| r.version)
            .max()
    }

    /// The oldest dirty row, or the row of `version` when it is dirty.
    pub fn dirty_row(&self, version: Option<i64>) -> Option<&AppliedMigration> {
        self.applied
            .iter()
            .find(|r| r.is_dirty() && version.is_none_or(|v| v == r.version))
    }

    /// The row of `version`, if applied (or dirty).
    pub fn row(&self, version: i64) -> Option<&AppliedMigration> {
        self.applied.iter().find(|r| r.version == version)
    }

    /// Dirty rows and edited files stop everything; unknown versions stop only under the strict
    /// policy. A dirty row is final only when read under the migration lock (see
    /// [`Migrator::apply`]); read beside a live lock holder ([`Migrator::inspect`]) it is in
    /// progress.
    pub(super) fn check_integrity(
        &self,
        set: &MigrationSet,
        on_unknown_applied: UnknownAppliedPolicy,
    ) -> Result<(), MigrateError> {
        if let Some(row) = self.dirty_row(None) {
            if let Some(holder) = &self.holder {
                return Err(MigrateError::InProgress {
                    version: row.version,
                    holder: holder.to_string(),
                });
            }
            return Err(MigrateError::Dirty {
                version: row.version,
                description: row.description.clone(),
            });
        }
        if let Some(&version) = self.mismatched.first() {
            let embedded = set.get(version).expect("mismatched versions are embedded");
            let applied = self.row(version).expect("mismatched versions are applied");
            return Err(MigrateError::ChecksumMismatch {
                version,
                file: embedded.up.file.clone(),
                applied: history::hex(&applied.checksum[..applied.checksum.len().min(8)]),
                embedded: history::hex(&embedded.up.checksum[..8]),
            });
        }
        if !self.unknown.is_empty() {
            match on_unknown_applied {
                UnknownAppliedPolicy::Error => {
                    return Err(MigrateError::UnknownApplied {
                        versions: self.unknown.clone(),
                    });
                }
                UnknownAppliedPolicy::Warn => {
                    tracing::warn!(target: "agent_backend::migrate::status",
                        versions = ?self.unknown,
                        "Database has applied migration(s) this binary does not embed (a newer release ran against it); serving anyway"
                    )
                }
            }
        }
        Ok(())
    }

    pub(super) fn check_order(&self, allow_out_of_order: bool) -> Result<(), MigrateError> {
        let Some(newest_applied) = self.newest_applied() else {
            return Ok(());
        };
        let older: Vec<i64> = self
            .pending
            .iter()
            .copied()
            .filter(|&v| v < newest_applied)
            .collect();
        if older.is_empty() || allow_out_of_order {
            return Ok(());
        }
        Err(MigrateError::OutOfOrder {
            pending: older,
            newest_applied,
        })
    }
}
