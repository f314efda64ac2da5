//! Request middleware: request ids and access logs, the request body's bounds (size, time,
//! well-formedness), single-valued query parameters, API-key auth. (405's `Allow` is
//! `routes::AllowHeader`.)

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::error::ReadBodyError;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tracing::Instrument;

use super::routes::RouteTable;
use crate::api::error::{PROBLEM_JSON, Problem};
use crate::config::ApiKey;
use crate::monitoring::RouteMetrics;

pub const REQUEST_ID: &str = "x-request-id";

/// Gives every request an id (the client's `X-Request-Id` when it is sane, else a new UUID),
/// runs it inside a span carrying that id and the trace id (from the client's W3C
/// `traceparent`, or the one OpenTelemetry starts) so every log line of the request shows both,
/// echoes the id in the response, logs one access line, and records the request's metrics
/// under its route template (the route that served it in `routes`; `unmatched` when none did).
pub struct RequestContext {
    pub routes: RouteTable,
    /// Whether metrics are recorded (`metrics.enabled`).
    pub metrics: bool,
}

impl<E: Endpoint> Middleware<E> for RequestContext {
    type Output = RequestContextEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        RequestContextEndpoint {
            inner: ep,
            routes: self.routes.clone(),
            metrics: self.metrics,
        }
    }
}

pub struct RequestContextEndpoint<E> {
    inner: E,
    routes: RouteTable,
    metrics: bool,
}

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_string())
}

/// A metric label for the method: the standard ones, `OTHER` for the rest (bounded).
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl<E: Endpoint> Endpoint for RequestContextEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(sane_request_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let method = method_label(req.method());
        let path = req.uri().path().to_string();
        let tracing_on = crate::telemetry::otel_enabled();
        let span = tracing::info_span!(
            "request",
            request_id = %id,
            method = %method,
            %path,
            trace_id = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
            http.route = tracing::field::Empty,
            http.response.status_code = tracing::field::Empty,
        );
        // The kind is set before the span joins the client's trace (the OpenTelemetry span
        // starts there); the name and route once the router has said which route served it.
        if tracing_on {
            span.record("otel.kind", "server");
        }
        crate::telemetry::join_trace(&span, req.headers());
        let _in_flight = self.metrics.then(crate::monitoring::InFlight::begin);
        async move {
            let started = Instant::now();
            let mut response = match self.inner.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => e.into_response(),
            };
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            let status = response.status().as_u16();
            let elapsed = started.elapsed();
            let elapsed_us = elapsed.as_micros() as u64;
            let route: &RouteMetrics = match self.routes.served(&response) {
                Some(info) => &info.metrics,
                None => crate::monitoring::unmatched(),
            };
            if tracing_on {
                let span = tracing::Span::current();
                crate::telemetry::name_request_span(&span, format!("{method} {}", route.route()));
                span.record("http.route", route.route());
                span.record("http.response.status_code", status);
            }
            if self.metrics {
                route.record(method, status, elapsed);
                let is_problem = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
                if is_problem {
                    crate::monitoring::problem(Problem::type_for(response.status()), status);
                }
            }
            if path.starts_with("/health") {
                tracing::debug!(status, elapsed_us, "request");
            } else {
                tracing::info!(status, elapsed_us, "request");
            }
            Ok(response)
        }
        .instrument(span)
        .await
    }
}

/// Reads the request body whole before the handler runs, within bounds: over `limit` bytes
/// is 413 (by `Content-Length` before reading, by counting for chunked bodies), a body that has
/// not arrived within `timeout` of the head is 408, and a malformed or cut-short body (bad
/// chunked encoding, fewer bytes than announced) is 400. Memory and time per request stay
/// bounded; a client that stalls mid-body does not hold its connection.
pub struct ReadBody {
    pub limit: usize,
    pub timeout: Duration,
}

impl<E: Endpoint> Middleware<E> for ReadBody {
    type Output = ReadBodyEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        ReadBodyEndpoint {
            inner: ep,
            limit: self.limit,
            timeout: self.timeout,
        }
    }
}

pub struct ReadBodyEndpoint<E> {
    inner: E,
    limit: usize,
    timeout: Duration,
}

impl<E: Endpoint> Endpoint for ReadBodyEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let limit = self.limit;
        let too_large = |size: &str| {
            poem::Error::from_string(
                format!("the request body is {size} bytes; the limit is {limit}"),
                StatusCode::PAYLOAD_TOO_LARGE,
            )
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = declared
            && len > limit as u64
        {
            return Err(too_large(&len.to_string()));
        }
        let has_body = declared.is_some_and(|len| len > 0)
            || req.headers().contains_key(header::TRANSFER_ENCODING);
        if has_body {
            let read = tokio::time::timeout(self.timeout, req.take_body().into_bytes_limit(limit));
            match read.await {
                Ok(Ok(body)) => req.set_body(body),
                Ok(Err(ReadBodyError::PayloadTooLarge)) => {
                    return Err(too_large(&format!("more than {limit}")));
                }
                Ok(Err(_)) => {
                    return Err(poem::Error::from_string(
                        "the request body is malformed or cut short (bad chunked encoding, or \
                         fewer bytes than Content-Length announced)",
                        StatusCode::BAD_REQUEST,
                    ));
                }
                Err(_) => {
                    return Err(poem::Error::from_string(
                        format!(
                            "the request body did not arrive within {} ms (server.body_read_timeout)",
                            self.timeout.as_millis()
                        ),
                        StatusCode::REQUEST_TIMEOUT,
                    ));
                }
            }
        }
        self.inner.call(req).await
    }
}

/// Refuses (400) a query string that names a parameter more than once: `?limit=5&limit=100`
/// has no single meaning, and taking either silently hides a client's bug.
pub struct SingleQuery;

impl<E: Endpoint> Middleware<E> for SingleQuery {
    type Output = SingleQueryEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        SingleQueryEndpoint(ep)
    }
}

pub struct SingleQueryEndpoint<E>(E);

impl<E: Endpoint> Endpoint for SingleQueryEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        if let Some(query) = req.uri().query() {
            let mut seen = HashSet::new();
            for (name, _) in form_urlencoded::parse(query.as_bytes()) {
                if !seen.insert(name.clone()) {
                    let name: String = name.chars().take(64).collect();
                    return Err(poem::Error::from_string(
                        format!("query parameter `{name}` is given more than once"),
                        StatusCode::BAD_REQUEST,
                    ));
                }
            }
        }
        self.0.call(req).await
    }
}

/// `Authorization: Bearer <key>` against the configured keys. Keys are compared as SHA-256
/// digests in constant time, so neither length nor content leaks through timing. No keys
/// configured: the API is open.
#[derive(Clone)]
pub struct BearerAuth {
    digests: Arc<Vec<[u8; 32]>>,
    /// What the token is called in refusals ("API key", "metrics token").
    what: &'static str,
}

impl BearerAuth {
    pub fn new(keys: &[ApiKey]) -> Self {
        Self::named(keys, "API key")
    }

    /// The same check for another kind of token, named so in refusals.
    pub fn named(keys: &[ApiKey], what: &'static str) -> Self {
        Self {
            digests: Arc::new(
                keys.iter()
                    .map(|k| Sha256::digest(k.expose().as_bytes()).into())
                    .collect(),
            ),
            what,
        }
    }

    fn accepts(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // No early exit: every key is compared.
        self.digests
            .iter()
            .fold(Choice::from(0), |found, key| found | key.ct_eq(&digest))
            .into()
    }
}

impl<E: Endpoint> Middleware<E> for BearerAuth {
    type Output = BearerAuthEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        BearerAuthEndpoint(ep, self.clone())
    }
}

pub struct BearerAuthEndpoint<E>(E, BearerAuth);

impl<E: Endpoint> Endpoint for BearerAuthEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        if !self.1.digests.is_empty() {
            let token = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match token {
                Some(t) if self.1.accepts(t) => {}
                Some(_) => {
                    return Err(poem::Error::from_string(
                        format!("unknown {}", self.1.what),
                        StatusCode::UNAUTHORIZED,
                    ));
                }
                None => {
                    return Err(poem::Error::from_string(
                        format!(
                            "missing {}: send Authorization: Bearer <{}>",
                            self.1.what,
                            self.1.what.rsplit(' ').next().unwrap_or("key")
                        ),
                        StatusCode::UNAUTHORIZED,
                    ));
                }
            }
        }
        self.0.call(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_accepts_only_configured_keys() {
        let auth = BearerAuth::new(&[ApiKey::new_for_tests("k1-0123456789abcdef")]);
        assert!(auth.accepts("k1-0123456789abcdef"));
        assert!(!auth.accepts("k1-0123456789abcdeF"));
        assert!(!auth.accepts(""));
    }

    #[test]
    fn request_ids_from_clients_are_bounded() {
        assert!(sane_request_id(&HeaderValue::from_static("abc-123")).is_some());
        assert!(sane_request_id(&HeaderValue::from_static("has space")).is_none());
        assert!(sane_request_id(&HeaderValue::from_str(&"a".repeat(129)).unwrap()).is_none());
    }
}
