//! Request middleware: request ids and access logs, the request body's bounds (size, time,
//! well-formedness), single-valued query parameters, API-key auth, and the `Allow` header of 405
//! answers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::error::ReadBodyError;
use poem::http::{HeaderValue, StatusCode, header};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::config::ApiKey;

pub const REQUEST_ID: &str = "x-request-id";

/// Gives every request an id (the client's `X-Request-Id` when it is sane, else a new UUID),
/// runs it inside a span carrying that id so every log line of the request shows it, echoes it
/// in the response, and logs one access line.
pub struct RequestContext;

impl<E: Endpoint> Middleware<E> for RequestContext {
    type Output = RequestContextEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        RequestContextEndpoint(ep)
    }
}

pub struct RequestContextEndpoint<E>(E);

fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| s.to_string())
}

impl<E: Endpoint> Endpoint for RequestContextEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let id = req
            .headers()
            .get(REQUEST_ID)
            .and_then(sane_request_id)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let span = tracing::info_span!("request", request_id = %id, %method, %path);
        async move {
            let started = Instant::now();
            let mut response = match self.0.call(req).await {
                Ok(r) => r.into_response(),
                Err(e) => e.into_response(),
            };
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID, value);
            }
            let status = response.status().as_u16();
            let elapsed_us = started.elapsed().as_micros() as u64;
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

/// Adds `Allow` to every 405 answer (RFC 9110 §15.5.6: a 405 must list the methods the
/// resource supports). The table is built from the same route list the router serves: the API's
/// part from its OpenAPI document, so the header and the routes cannot disagree. GET implies
/// HEAD, as in poem's router.
#[derive(Clone)]
pub struct AllowHeader {
    routes: Arc<Vec<(Vec<Segment>, Vec<String>)>>,
}

enum Segment {
    Literal(String),
    Param,
}

impl AllowHeader {
    /// `routes`: path templates (`/api/v1/artifacts/{id}`) with their methods.
    pub fn new<'a>(routes: impl IntoIterator<Item = (String, Vec<&'a str>)>) -> Self {
        let routes = routes
            .into_iter()
            .map(|(path, methods)| {
                let segments = path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        if s.starts_with('{') && s.ends_with('}') {
                            Segment::Param
                        } else {
                            Segment::Literal(s.to_string())
                        }
                    })
                    .collect();
                let methods = methods.iter().map(|m| m.to_ascii_uppercase()).collect();
                (segments, methods)
            })
            .collect();
        Self {
            routes: Arc::new(routes),
        }
    }

    /// The `Allow` value for `path`, or `None` when no route matches it.
    fn allow(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut methods: Vec<&str> = Vec::new();
        for (segments, route_methods) in self.routes.iter() {
            let matches = segments.len() == parts.len()
                && segments.iter().zip(&parts).all(|(seg, part)| match seg {
                    Segment::Literal(lit) => lit == part,
                    Segment::Param => true,
                });
            if matches {
                for m in route_methods {
                    methods.push(m);
                    if m == "GET" {
                        methods.push("HEAD");
                    }
                }
            }
        }
        if methods.is_empty() {
            return None;
        }
        methods.sort_unstable();
        methods.dedup();
        Some(methods.join(", "))
    }
}

impl<E: Endpoint> Middleware<E> for AllowHeader {
    type Output = AllowHeaderEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        AllowHeaderEndpoint(ep, self.clone())
    }
}

pub struct AllowHeaderEndpoint<E>(E, AllowHeader);

impl<E: Endpoint> Endpoint for AllowHeaderEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_string();
        let mut resp = self.0.get_response(req).await;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = self.1.allow(&path)
            && let Ok(value) = HeaderValue::from_str(&allow)
        {
            resp.headers_mut().insert(header::ALLOW, value);
        }
        Ok(resp)
    }
}

/// `Authorization: Bearer <key>` against the configured keys. Keys are compared as SHA-256
/// digests in constant time, so neither length nor content leaks through timing. No keys
/// configured: the API is open.
#[derive(Clone)]
pub struct BearerAuth {
    digests: Arc<Vec<[u8; 32]>>,
}

impl BearerAuth {
    pub fn new(keys: &[ApiKey]) -> Self {
        Self {
            digests: Arc::new(
                keys.iter()
                    .map(|k| Sha256::digest(k.expose().as_bytes()).into())
                    .collect(),
            ),
        }
    }

    fn accepts(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // No early exit: every key is compared.
        self.digests
            .iter()
            .fold(false, |found, key| found | constant_time_eq(key, &digest))
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
                        "unknown API key",
                        StatusCode::UNAUTHORIZED,
                    ));
                }
                None => {
                    return Err(poem::Error::from_string(
                        "missing API key: send Authorization: Bearer <key>",
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
    fn allow_lists_the_methods_of_the_matching_route() {
        let table = AllowHeader::new([
            ("/api/v1/artifacts/{id}".to_string(), vec!["get", "patch"]),
            ("/api/v1/artifacts/{id}/versions".to_string(), vec!["get"]),
            ("/health/ready".to_string(), vec!["get"]),
        ]);
        assert_eq!(
            table.allow("/api/v1/artifacts/123").as_deref(),
            Some("GET, HEAD, PATCH")
        );
        assert_eq!(table.allow("/health/ready/").as_deref(), Some("GET, HEAD"));
        assert_eq!(table.allow("/api/v1/artifacts"), None);
        assert_eq!(table.allow("/nowhere"), None);
    }

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
