//! The HTTP server: routes, shared state, binding and graceful shutdown.
//!
//! The port opens only after the pre-serve stage succeeded (`app::serve`). On SIGTERM/SIGINT
//! the server marks itself as shutting down (readiness turns 503 at once), stops accepting,
//! lets in-flight requests finish within `server.shutdown_grace`, then returns.

pub mod health;
pub mod middleware;
pub mod probe;
mod shutdown;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::middleware::CatchPanic;
use poem::{EndpointExt, Route, Server, get};
use sqlx::PgPool;

use crate::config::Settings;
use crate::migrate::{MigrationSet, UnknownPolicy};
use middleware::{AllowHeader, BearerAuth, BodyLimit, RequestContext};

pub use shutdown::Signals;

/// What every handler may read.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub migrations: &'static MigrationSet,
    pub started: Instant,
    pub environment: &'static str,
    pub health_timeout: Duration,
    pub on_unknown_applied: UnknownPolicy,
    pub on_drift: UnknownPolicy,
    pub drift_ignore: crate::migrate::snapshot::Ignore,
    drift_cache: Arc<std::sync::Mutex<Option<(Instant, health::DriftCheck)>>>,
    shutting_down: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(settings: &Settings, pool: PgPool, migrations: &'static MigrationSet) -> Self {
        Self {
            pool,
            migrations,
            started: Instant::now(),
            environment: settings.environment.as_str(),
            health_timeout: settings.database.health_timeout,
            on_unknown_applied: settings.migrations.on_unknown_applied,
            on_drift: settings.migrations.on_drift,
            drift_ignore: settings.migrations.drift_ignore(),
            drift_cache: Arc::default(),
            shutting_down: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Marks the start of shutdown: readiness answers 503 from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }
}

/// The application's routes. Health checks and the API documents are open; the API needs a
/// key when keys are configured. Every error leaves as a problem document.
pub fn routes(settings: &Settings, state: AppState) -> impl poem::Endpoint + use<> {
    let api = crate::api::service(state.pool.clone());
    let allow = allow_table(&api.spec());
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    Route::new()
        .nest(
            "/api/v1",
            api.with(BodyLimit(settings.server.body_limit_bytes))
                .with(BearerAuth::new(&settings.auth.api_keys)),
        )
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .at("/health", get(health::summary))
        .at("/health/live", get(health::live))
        .at("/health/ready", get(health::ready))
        .with(CatchPanic::new())
        .catch_all_error(crate::api::error::from_poem_error)
        .with(allow)
        .with(RequestContext)
        .data(state)
}

/// The routes and their methods for 405's `Allow`: the API's from its OpenAPI document, the
/// rest as mounted in [`routes`].
fn allow_table(spec: &str) -> AllowHeader {
    let document: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
    let api = document["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(path, operations)| {
            let methods = operations
                .as_object()
                .map(|ops| ops.keys().map(String::as_str).collect())
                .unwrap_or_default();
            (format!("/api/v1{path}"), methods)
        });
    let open = ["/openapi.json", "/health", "/health/live", "/health/ready"]
        .into_iter()
        .map(|path| (path.to_string(), vec!["get"]));
    AllowHeader::new(api.chain(open).collect::<Vec<_>>())
}

/// Installs the signal handlers, binds `server.host:server.port`, logs the bound address,
/// serves until SIGTERM/SIGINT, then drains in-flight requests for at most
/// `server.shutdown_grace`.
pub async fn serve(settings: &Settings, state: AppState) -> std::io::Result<()> {
    let signals = Signals::install()?;
    serve_until(settings, state, signals.recv()).await
}

/// [`serve`] with any shutdown trigger.
pub async fn serve_until(
    settings: &Settings,
    state: AppState,
    shutdown: impl Future<Output = &'static str> + Send,
) -> std::io::Result<()> {
    let addr = format!("{}:{}", settings.server.host, settings.server.port);
    let acceptor = TcpListener::bind(addr.clone())
        .into_acceptor()
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    if let Some(bound) = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
    {
        let bound: SocketAddr = bound;
        tracing::info!(addr = %bound, "Listening on http://{bound}");
    }
    let grace = settings.server.shutdown_grace;
    let flagged = state.clone();
    let signal = async move {
        let name = shutdown.await;
        flagged.begin_shutdown();
        tracing::info!(
            signal = name,
            "Shutdown signal received ({name}): readiness is now 503; draining in-flight requests for up to {}s",
            grace.as_secs()
        );
    };
    Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(routes(settings, state), signal, Some(grace))
        .await
}
