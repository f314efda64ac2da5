//! What a run tells its caller while it runs. The engine knows nothing of metrics or trace
//! export: the binary implements [`Observer`] (`app::StageObserver`) and records the lock wait
//! as a gauge and each migration as a span when traces are exported.

use std::fmt;
use std::time::Duration;

use migrate_source::manifest::Migration;

/// Hooks called by [`crate::Migrator`]; every one does nothing unless implemented.
pub trait Observer: Send + Sync {
    /// The migration lock was taken (or the wait for it gave up) after `waited`: zero when it
    /// was free.
    fn lock_waited(&self, waited: Duration) {
        let _ = waited;
    }

    /// The span `migration`'s apply runs in; [`tracing::Span::none`] when nobody wants one.
    fn migration_span(&self, migration: &Migration) -> tracing::Span {
        let _ = migration;
        tracing::Span::none()
    }
}

/// The observer of tests, tools and benchmarks: records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {}

impl fmt::Debug for dyn Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}
