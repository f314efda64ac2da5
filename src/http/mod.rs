//! The HTTP server: routes, shared state, binding and graceful shutdown.
//!
//! The port opens only after the pre-serve stage succeeded (`app::serve`). On SIGTERM/SIGINT
//! the server marks itself as shutting down (readiness turns 503 at once), stops accepting,
//! lets in-flight requests finish within `server.shutdown_grace`, then ends the database
//! sessions of the requests still running (their transactions roll back), drops their
//! connections and returns: never later than the grace plus about half a second.
//! Connections are served by [`server`] (timeouts, connection cap).

pub mod health;
pub mod metrics;
pub mod middleware;
pub mod probe;
pub mod routes;
pub mod server;
mod shutdown;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use poem::middleware::CatchPanic;
use poem::{EndpointExt, Route, get};
use sqlx::PgPool;

use crate::config::Settings;
use crate::db::{self, Sessions};
use crate::migrate::{MigrationSet, Policy};
use middleware::{BearerAuth, ReadBody, RequestContext, SingleQuery};
use routes::{AllowHeader, RouteTable, Served};

/// The part of the shutdown tail spent ending the database sessions of cut requests.
const END_SESSIONS_BUDGET: Duration = Duration::from_millis(400);

pub use shutdown::Signals;

/// What every handler may read.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub migrations: &'static MigrationSet,
    pub started: Instant,
    pub environment: &'static str,
    pub health_timeout: Duration,
    /// How the health checks judge the schema (the engine's verdicts).
    pub policy: Policy,
    drift_cache: Arc<std::sync::Mutex<Option<(Instant, health::DriftCheck)>>>,
    /// The pool's server sessions, ended when shutdown's grace is over.
    pub sessions: Sessions,
    shutting_down: Arc<AtomicBool>,
    /// The instance's own queries against the live schema (`crate::queries::readiness`).
    pub queries: crate::queries::readiness::QueryHealth,
    /// The open event streams; fed by `crate::events::listener` when `app::serve` runs it.
    pub events: crate::events::Hub,
}

impl AppState {
    pub fn new(settings: &Settings, pool: PgPool, migrations: &'static MigrationSet) -> Self {
        Self {
            pool,
            migrations,
            started: Instant::now(),
            environment: settings.environment.as_str(),
            health_timeout: settings.database.health_timeout,
            policy: settings.migrations.policy(),
            drift_cache: Arc::default(),
            sessions: Sessions::default(),
            shutting_down: Arc::new(AtomicBool::new(false)),
            queries: Default::default(),
            events: crate::events::Hub::new(&settings.events),
        }
    }

    /// The verdict over the instance's own queries, kept by the start-up check and the
    /// heartbeat.
    pub fn with_queries(self, queries: crate::queries::readiness::QueryHealth) -> Self {
        Self { queries, ..self }
    }

    /// The registry of `pool`'s sessions (see [`db::pool_with_sessions`]).
    pub fn with_sessions(self, sessions: Sessions) -> Self {
        Self { sessions, ..self }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Marks the start of shutdown: readiness answers 503 from now on, and the event streams
    /// end with a `retry:` hint (their clients resume on another instance).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.events.shutdown();
    }
}

/// The application's routes, listed once ([`routes::Served`]): the API's from its operations,
/// the open ones below. Health checks and the API documents are open; the API needs a key
/// when keys are configured; `/metrics` follows [`metrics::Access`]. Every error leaves as a
/// problem document.
pub fn routes(settings: &Settings, state: AppState) -> impl poem::Endpoint + use<> {
    let api = crate::api::service(
        state.pool.clone(),
        &settings.idempotency,
        state.events.clone(),
    );
    let recording = settings.metrics.enabled && crate::monitoring::exporter().is_some();
    let metrics = recording
        .then(|| metrics::endpoint(settings, metrics::Access::main_port(settings)))
        .flatten();
    let spec = api.spec_endpoint();
    let docs = Arc::new(routes::boxed(get(api.swagger_ui())));
    let api = Arc::new(routes::boxed(
        api.with(ReadBody {
            limit: settings.server.body_limit_bytes,
            timeout: settings.server.body_read_timeout,
        })
        .with(SingleQuery)
        .with(BearerAuth::new(&settings.auth.api_keys)),
    ));
    let prefix = crate::api::PREFIX;
    let mut served: Vec<Served> = crate::api::paths()
        .into_iter()
        .map(|(path, methods)| Served {
            template: format!("{prefix}{path}"),
            methods,
            strip: Some(prefix),
            endpoint: api.clone(),
            also_at: Vec::new(),
        })
        .collect();
    served.push(
        Served::get("/docs", docs.clone())
            .also_at("/docs/")
            .stripping("/docs"),
    );
    served.push(Served::get("/docs/{file}", docs).stripping("/docs"));
    served.push(Served::get("/openapi.json", routes::shared(get(spec))));
    // In the order of `health::PATHS`.
    let health = [
        routes::shared(get(health::summary)),
        routes::shared(get(health::live)),
        routes::shared(get(health::ready)),
    ];
    served.extend(
        health::PATHS
            .into_iter()
            .zip(health)
            .map(|(path, ep)| Served::get(path, ep)),
    );
    served.extend(metrics.map(|ep| Served::get("/metrics", Arc::new(ep))));
    // A path under the API's prefix that no operation serves still passes the key check (401
    // before 404), under no route's label.
    let (table, route) =
        RouteTable::mount(served, Route::new().nest(prefix, routes::Labelled(api)));
    route
        .with(CatchPanic::new())
        .catch_all_error(|e| routes::keep_pattern(e, crate::api::error::from_poem_error))
        .with(AllowHeader(table.clone()))
        .with(RequestContext {
            routes: table,
            metrics: recording,
        })
        .data(state)
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
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let bound: SocketAddr = listener.local_addr()?;
    tracing::info!(addr = %bound, "Listening on http://{bound}");
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
    let sessions = state.sessions.clone();
    let cut = async move {
        match db::end_busy_sessions(&settings.database, &sessions, END_SESSIONS_BUDGET).await {
            Ok(n) => tracing::warn!(
                sessions = n,
                "Ended {n} database session(s) of cut requests: their transactions rolled back"
            ),
            Err(e) => tracing::warn!(
                "Could not end the database sessions of cut requests ({e}); exiting anyway"
            ),
        }
    };
    let limits = server::Limits {
        header_read_timeout: settings.server.header_read_timeout,
        keep_alive_timeout: settings.server.keep_alive_timeout,
        send_timeout: settings.server.send_timeout,
        max_connections: settings.server.max_connections,
        reserved_paths: &health::PATHS,
    };
    // The metrics listener stops with the main one.
    let (stopped_tx, stopped_rx) = tokio::sync::watch::channel(false);
    let metrics = match settings.server.metrics_port {
        Some(port) if crate::monitoring::exporter().is_some() => {
            let addr = format!("{}:{port}", settings.server.host);
            let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr} (metrics): {e}"))
            })?;
            let bound = listener.local_addr()?;
            tracing::info!(addr = %bound, "Metrics on http://{bound}/metrics");
            let app: server::App = Arc::new(
                metrics::listener_app(state.clone())
                    .map_to_response()
                    .boxed(),
            );
            let mut stopped = stopped_rx;
            let stop = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            Some(tokio::spawn(server::run(
                listener,
                app,
                server::Limits {
                    reserved_paths: &[],
                    ..limits
                },
                stop,
                METRICS_GRACE,
                std::future::ready(()),
            )))
        }
        _ => None,
    };
    let app: server::App = Arc::new(routes(settings, state).map_to_response().boxed());
    let served = server::run(listener, app, limits, signal, grace, cut).await;
    let _ = stopped_tx.send(true);
    if let Some(metrics) = metrics {
        let _ = tokio::time::timeout(METRICS_GRACE * 2, metrics).await;
    }
    served
}

/// How long a scrape in progress may finish once the server stops.
const METRICS_GRACE: Duration = Duration::from_millis(200);
