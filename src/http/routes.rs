//! The routes this service serves, listed once ([`Served`]), and what is known of a request
//! by the route that served it: its metrics' handles and 405's `Allow`.
//!
//! The router is poem's, built from the list; poem records the template it matched as
//! [`PathPattern`] (its own syntax, `/api/v1/conversations/:id`). Every route is mounted at the
//! outermost router, so the pattern is the whole template even when a middleware inside
//! (the API key check, the body bounds) answers before an inner router runs, and
//! [`Labelled`] makes that outer pattern the one the answer carries. [`RouteTable`] maps it to
//! the template in the document's syntax (`/api/v1/conversations/{id}`), the metric label.

use std::collections::HashMap;
use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::uri::PathAndQuery;
use poem::http::{HeaderValue, Method, StatusCode, Uri, header};
use poem::middleware::CatchPanic;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Middleware, PathPattern, Request, Response, Route,
};

use crate::monitoring::RouteMetrics;

/// One route: its template in OpenAPI's syntax, its methods, its endpoint, and the prefix the
/// endpoint expects stripped from the path (a service with routes of its own, like the API
/// under `/api/v1`).
pub struct Served {
    pub template: String,
    pub methods: Vec<Method>,
    pub strip: Option<&'static str>,
    pub endpoint: Arc<BoxEndpoint<'static, Response>>,
    /// Other paths poem serves it at, under the same label (`/docs/` beside `/docs`).
    pub also_at: Vec<&'static str>,
}

impl Served {
    /// A GET route answered by `endpoint`.
    pub fn get(template: &str, endpoint: Arc<BoxEndpoint<'static, Response>>) -> Self {
        Self {
            template: template.to_string(),
            methods: vec![Method::GET],
            strip: None,
            endpoint,
            also_at: Vec::new(),
        }
    }

    /// The same route, also at `path`.
    pub fn also_at(mut self, path: &'static str) -> Self {
        self.also_at.push(path);
        self
    }

    /// The same route, its endpoint seeing the path without `prefix`.
    pub fn stripping(self, prefix: &'static str) -> Self {
        Self {
            strip: Some(prefix),
            ..self
        }
    }
}

/// What is known of each served route, by poem's pattern for it.
#[derive(Clone)]
pub struct RouteTable(Arc<HashMap<String, Arc<RouteInfo>>>);

/// One route's metrics handles and its `Allow` value.
pub struct RouteInfo {
    pub metrics: RouteMetrics,
    allow: String,
}

impl RouteTable {
    /// Mounts every route of `served` on `route` and returns the table of what they are.
    pub fn mount(served: Vec<Served>, mut route: Route) -> (Self, Route) {
        let mut table = HashMap::new();
        for s in served {
            let pattern = poem_pattern(&s.template);
            let mut methods: Vec<&str> = s.methods.iter().map(Method::as_str).collect();
            if s.methods.contains(&Method::GET) {
                methods.push("HEAD");
            }
            methods.sort_unstable();
            methods.dedup();
            let info = Arc::new(RouteInfo {
                allow: methods.join(", "),
                metrics: RouteMetrics::new(s.template),
            });
            // Caught here, a panic's 500 still carries its route.
            let endpoint = Labelled(
                Strip {
                    prefix: s.strip,
                    inner: s.endpoint,
                }
                .with(CatchPanic::new()),
            );
            let endpoint = Arc::new(boxed(endpoint));
            for path in s.also_at {
                route = route.at(path, endpoint.clone());
                table.insert(path.to_string(), info.clone());
            }
            route = route.at(&pattern, endpoint);
            table.insert(pattern, info);
        }
        (Self(Arc::new(table)), route)
    }

    /// The route that served an answer (by the [`PathPattern`] it carries); `None` when no
    /// route of the table did.
    pub fn served(&self, response: &Response) -> Option<&RouteInfo> {
        self.0
            .get(&*response.data::<PathPattern>()?.0)
            .map(|info| &**info)
    }
}

/// `/conversations/{id}` in poem's syntax: `/conversations/:id`.
fn poem_pattern(template: &str) -> String {
    template
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => segment.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// Makes the pattern of the route that matched here the one the answer carries (poem keeps
/// the innermost router's, which knows only its part of the path).
pub struct Labelled<E>(pub E);

impl<E: Endpoint> Endpoint for Labelled<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let pattern = req.data::<PathPattern>().cloned();
        let answer = self.0.call(req).await.map(IntoResponse::into_response);
        Ok(match (answer, pattern) {
            (Ok(mut response), Some(pattern)) => {
                response.set_data(pattern);
                response
            }
            (Err(mut error), Some(pattern)) => {
                error.set_data(pattern);
                return Err(error);
            }
            (answer, None) => answer?,
        })
    }
}

/// The endpoint of a route, with its prefix stripped from the path when it has one.
struct Strip {
    prefix: Option<&'static str>,
    inner: Arc<BoxEndpoint<'static, Response>>,
}

impl Endpoint for Strip {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if let Some(prefix) = self.prefix {
            let mut parts = std::mem::take(req.uri_mut()).into_parts();
            let rest = parts
                .path_and_query
                .as_ref()
                .map_or("/", |pq| pq.as_str())
                .strip_prefix(prefix)
                .unwrap_or("/");
            let rest = if rest.starts_with('/') {
                rest.to_string()
            } else {
                format!("/{rest}")
            };
            parts.path_and_query = PathAndQuery::try_from(rest).ok();
            *req.uri_mut() = Uri::from_parts(parts).map_err(poem::error::BadRequest)?;
        }
        self.inner.call(req).await
    }
}

/// Keeps the pattern an error carries on the answer made from it (poem's `catch_all_error`
/// builds a new response).
pub async fn keep_pattern<F, Fut>(error: poem::Error, answer: F) -> Response
where
    F: FnOnce(poem::Error) -> Fut,
    Fut: Future<Output = Response>,
{
    let pattern = error.data::<PathPattern>().cloned();
    let mut response = answer(error).await;
    if let Some(pattern) = pattern {
        response.set_data(pattern);
    }
    response
}

/// Adds `Allow` to every 405 answer (RFC 9110 §15.5.6: a 405 must list the methods the
/// resource supports), from the table the router was built from. GET implies HEAD, as in
/// poem's router.
pub struct AllowHeader(pub RouteTable);

impl<E: Endpoint> Middleware<E> for AllowHeader {
    type Output = AllowHeaderEndpoint<E>;
    fn transform(&self, ep: E) -> Self::Output {
        AllowHeaderEndpoint(ep, self.0.clone())
    }
}

pub struct AllowHeaderEndpoint<E>(E, RouteTable);

impl<E: Endpoint> Endpoint for AllowHeaderEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let mut resp = self.0.get_response(req).await;
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(info) = self.1.served(&resp)
            && let Ok(value) = HeaderValue::from_str(&info.allow)
        {
            resp.headers_mut().insert(header::ALLOW, value);
        }
        Ok(resp)
    }
}

/// An endpoint as [`Served`] holds it.
pub fn shared(ep: impl Endpoint + 'static) -> Arc<BoxEndpoint<'static, Response>> {
    Arc::new(boxed(ep))
}

/// An endpoint boxed, answering responses.
pub fn boxed(ep: impl Endpoint + 'static) -> BoxEndpoint<'static, Response> {
    ep.map_to_response().boxed()
}

#[cfg(test)]
mod tests {
    use super::poem_pattern;

    #[test]
    fn templates_read_in_poems_syntax() {
        assert_eq!(
            poem_pattern("/api/v1/conversations/{id}/messages/{message_id}"),
            "/api/v1/conversations/:id/messages/:message_id"
        );
        assert_eq!(poem_pattern("/health/live"), "/health/live");
    }
}
