//! `GET /metrics`: the Prometheus text exposition (`crate::monitoring`), and who may read it.
//!
//! On the main port it is open in development and test, and whenever `server.host` is a
//! loopback address (nobody else can connect). In production on a public address it needs
//! `Authorization: Bearer <METRICS_TOKEN>` (its own token: an API key does not open it), and
//! without a token it is not served there at all. `server.metrics_port` adds a listener that
//! serves `/metrics` alone, open: for a private network, never a public one.

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Endpoint, EndpointExt, IntoResponse, Response, handler};

use super::AppState;
use super::middleware::BearerAuth;
use crate::config::{Environment, Settings};
use crate::monitoring;

/// The Prometheus text format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Who may read `/metrics` on the main port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone who can connect.
    Open,
    /// Only with the metrics token.
    Token,
    /// Not served on the main port.
    Hidden,
}

impl Access {
    /// The rule for the main port under `settings` (metrics enabled).
    pub fn main_port(settings: &Settings) -> Self {
        let loopback = settings
            .server
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        if settings.environment != Environment::Production || loopback {
            Access::Open
        } else if settings.metrics.token.is_some() {
            Access::Token
        } else {
            Access::Hidden
        }
    }
}

#[handler]
pub fn render(Data(state): Data<&AppState>) -> Response {
    match monitoring::exporter() {
        Some(exporter) => Response::builder()
            .content_type(CONTENT_TYPE)
            .body(exporter.render(&state.pool)),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The `/metrics` endpoint for the main port under `access`, `None` when hidden there.
pub fn endpoint(
    settings: &Settings,
    access: Access,
) -> Option<poem::endpoint::BoxEndpoint<'static, Response>> {
    let get = poem::get(render);
    match access {
        Access::Open => Some(get.map_to_response().boxed()),
        Access::Token => {
            let token = settings.metrics.token.clone()?;
            Some(
                get.with(BearerAuth::named(&[token], "metrics token"))
                    .map_to_response()
                    .boxed(),
            )
        }
        Access::Hidden => None,
    }
}

/// The app of the `server.metrics_port` listener: `/metrics` alone, open.
pub fn listener_app(state: AppState) -> impl Endpoint<Output = Response> {
    poem::Route::new()
        .at("/metrics", poem::get(render))
        .catch_all_error(crate::api::error::from_poem_error)
        .data(state)
}
