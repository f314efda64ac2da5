//! `server migrate test`: every migration's down file must restore the schema its up file found,
//! and the whole set must produce the committed snapshot.
//!
//! On an empty database, for each migration in order: snapshot → up → (when it has a down file)
//! down → the snapshot must equal the one before up → up again. The first migration whose down
//! does not restore the schema stops the test with the differences; at the end the schema is
//! compared with the expected snapshot (the embedded one, for the binary).

use serde::Serialize;
use sqlx::PgConnection;

use crate::engine::Migrator;
use crate::error::MigrateError;
use crate::snapshot::{Difference, Snapshot};

/// What the round trip found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoundTrip {
    /// Migrations applied, in order.
    pub applied: Vec<i64>,
    /// Of those, the ones whose down file ran and restored the schema.
    pub reverted: Vec<i64>,
    /// The first migration whose down file did not restore the schema, with what differs
    /// (expected: before its up file ran; found: after its down file ran).
    pub down_mismatch: Option<(i64, Vec<Difference>)>,
    /// The final schema against the expected snapshot (`None` when none was given).
    pub final_differences: Option<Vec<Difference>>,
}

impl RoundTrip {
    pub fn passed(&self) -> bool {
        self.down_mismatch.is_none() && self.final_differences.as_ref().is_none_or(|d| d.is_empty())
    }
}

/// Runs the round trip on `conn`, which must be connected to an empty database (no
/// bookkeeping table, no objects): anything else is refused before a statement runs.
pub async fn round_trip(
    migrator: &Migrator<'_>,
    conn: &mut PgConnection,
    expected: Option<&Snapshot>,
) -> Result<RoundTrip, MigrateError> {
    let table = migrator.set().bookkeeping().table.clone();
    let start = Snapshot::take(conn, &table).await?;
    let status = migrator.status(conn).await?;
    let has_objects = start
        .objects
        .keys()
        .any(|k| !matches!(k.kind.as_str(), "schema" | "extension"));
    if status.table_exists || has_objects {
        return Err(MigrateError::NotEmptyDatabase);
    }
    let mut report = RoundTrip {
        applied: Vec::new(),
        reverted: Vec::new(),
        down_mismatch: None,
        final_differences: None,
    };
    let mut before = start;
    // A rollback target is `0` or a version that exists: the previous migration's.
    let mut previous = 0;
    for m in migrator.set().iter() {
        migrator.apply(conn, Some(m.version)).await?;
        report.applied.push(m.version);
        // A version of 0 or below cannot be reverted alone (`rollback 0` keeps it).
        if m.down.is_some() && m.version > previous {
            migrator.rollback(conn, previous).await?;
            let after_down = Snapshot::take(conn, &table).await?;
            let differences = before.diff(&after_down);
            if !differences.is_empty() {
                report.down_mismatch = Some((m.version, differences));
                return Ok(report);
            }
            report.reverted.push(m.version);
            migrator.apply(conn, Some(m.version)).await?;
        }
        before = Snapshot::take(conn, &table).await?;
        previous = m.version;
    }
    report.final_differences = expected.map(|e| e.diff(&before));
    Ok(report)
}
