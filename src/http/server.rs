//! Serving connections: the routes over hyper's HTTP/1.1, with the bounds poem's own `Server`
//! does not offer.
//!
//! - **Connection cap**: at most `server.max_connections` open connections; one more is answered
//!   503 problem+json with `Retry-After` and closed, so a flood costs a bounded amount of memory.
//!   These answers, and hyper's own 400/414/431 to a request head it cannot read, never reach
//!   the routes' middleware: they are counted here (`monitoring::over_capacity`, `unparsed`).
//! - **Health at the cap**: a busy instance is still alive, and a platform that restarts it on
//!   a failed probe would drop every connection it serves. [`RESERVE`] connections over the cap
//!   are kept for the listener's reserved paths (the health routes): one whose request line,
//!   within `header_read_timeout`, is `GET` or `HEAD` of one of them is served like any other
//!   (one request, then closed); any other request gets the cap's 503, and so does every
//!   connection once the reserve is full too.
//! - **Header and idle deadlines**, watched per connection: a new connection must deliver its
//!   first request head within `header_read_timeout` of being accepted; between requests a
//!   kept-alive connection may stay silent for `keep_alive_timeout`, and once the next head has
//!   begun it must complete within `header_read_timeout` of its first byte. A connection past
//!   its deadline is closed without an answer (there is no request to answer). While a request
//!   is in progress no deadline applies here: its body is bounded by `body_read_timeout` in the
//!   middleware, its handler by the database's own timeouts.
//! - **Responses not read**: once writing to a client has been blocked (its receive window full)
//!   for `send_timeout`, the connection is closed, whatever the request's state.
//! - **Shutdown bounded by its grace**: when `shutdown` resolves the listener closes, idle
//!   connections close at once and busy ones after their current response. When the grace is
//!   over, `cut` runs (the caller ends the database sessions still working for requests, so
//!   their transactions roll back), the connections get a moment to answer, and whatever is left
//!   is dropped. `run` never waits longer than the grace plus that short, fixed tail.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use poem::endpoint::BoxEndpoint;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::api::error::{PROBLEM_JSON, Problem, RETRY_AFTER_SECS};

/// The routes, type-erased, shared by every connection.
pub type App = Arc<BoxEndpoint<'static, Response>>;

/// How long, after `cut`, connections may still finish (typically answering 503 for a query
/// whose session was just ended) before they are dropped.
const AFTER_CUT: Duration = Duration::from_millis(200);

/// Longest a refused connection is kept to deliver its 503.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Connections over `max_connections` that may still ask for a reserved path.
pub const RESERVE: usize = 8;

/// The per-connection bounds (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    /// Paths still served over the cap, through the [`RESERVE`] (`GET` and `HEAD` only).
    pub reserved_paths: &'static [&'static str],
}

/// Serves `listener` until `shutdown` resolves, then drains for at most `grace`; past it, runs
/// `cut` and drops what is left.
pub async fn run(
    listener: TcpListener,
    app: App,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    cut: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let reserve = Arc::new(Semaphore::new(if limits.reserved_paths.is_empty() {
        0
    } else {
        RESERVE
    }));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let connection = |permit, keep_alive| Connection {
                        peer,
                        local,
                        app: app.clone(),
                        limits,
                        stop: stop_rx.clone(),
                        keep_alive,
                        _permit: permit,
                    };
                    if let Ok(permit) = permits.clone().try_acquire_owned() {
                        connections.spawn(connection(permit, true).serve(stream, Vec::new()));
                    } else if let Ok(permit) = reserve.clone().try_acquire_owned() {
                        connections.spawn(connection(permit, false).serve_reserved(stream));
                    } else {
                        crate::monitoring::over_capacity(Problem::type_for(
                    poem::http::StatusCode::SERVICE_UNAVAILABLE,
                ));
                        connections.spawn(refuse(stream));
                    }
                }
                Err(e) if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
                Err(e) => {
                    // Out of descriptors or memory: accepting again at once would spin.
                    tracing::warn!(error = %e, "accepting a connection failed; pausing 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);

    let drained = tokio::time::timeout(grace, drain(&mut connections)).await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "Shutdown grace of {}s is over with {} connection(s) still busy: cancelling their requests",
            grace.as_secs(),
            connections.len()
        );
        cut.await;
        let _ = tokio::time::timeout(AFTER_CUT, drain(&mut connections)).await;
        connections.abort_all();
        drain(&mut connections).await;
    }
    Ok(())
}

async fn drain(connections: &mut JoinSet<()>) {
    while connections.join_next().await.is_some() {}
}

/// A connection over the cap: one 503 problem document, then close. The client's request is
/// read and discarded until it closes (bounded), so that closing does not reset the connection
/// before the client has read the answer.
async fn refuse(mut stream: TcpStream) {
    let body = Problem::new(
        poem::http::StatusCode::SERVICE_UNAVAILABLE,
        "too many open connections; retry shortly",
    )
    .to_json_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\n\
         retry-after: {RETRY_AFTER_SECS}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// Whether a request line that starts with `head` asks for one of `paths` by `GET` or `HEAD`
/// (exactly the path, then a space or a query): `None` while `head` is too short to tell.
fn asks_for(head: &[u8], paths: &[&str]) -> Option<bool> {
    let mut undecided = false;
    for method in ["GET ", "HEAD "] {
        for path in paths {
            let (method, path) = (method.as_bytes(), path.as_bytes());
            let wanted = method.len() + path.len();
            let matches_so_far = |got: &[u8]| {
                got.iter()
                    .zip(method.iter().chain(path))
                    .all(|(a, b)| a == b)
            };
            match head.get(wanted) {
                Some(b' ' | b'?') if matches_so_far(head) => return Some(true),
                Some(_) => {}
                None if matches_so_far(head) => undecided = true,
                None => {}
            }
        }
    }
    (!undecided).then_some(false)
}

struct Connection {
    peer: SocketAddr,
    local: SocketAddr,
    app: App,
    limits: Limits,
    stop: watch::Receiver<bool>,
    /// Off for a connection in the reserve: one request, then closed.
    keep_alive: bool,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    /// A connection over the cap, in the reserve: served if its request line asks for a
    /// reserved path (the bytes read to tell are served first), else the cap's 503.
    async fn serve_reserved(self, mut stream: TcpStream) {
        let paths = self.limits.reserved_paths;
        let read = tokio::time::timeout(self.limits.header_read_timeout, async {
            // Longer than any `HEAD <path> `: enough to decide.
            let mut head = Vec::with_capacity(64);
            let mut buf = [0u8; 64];
            loop {
                let n = stream.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    return None;
                }
                head.extend_from_slice(&buf[..n]);
                if let Some(reserved) = asks_for(&head, paths) {
                    return Some((reserved, head));
                }
            }
        })
        .await;
        match read {
            // Closed before its request line said anything.
            Ok(None) => {}
            Ok(Some((true, head))) => self.serve(stream, head).await,
            Ok(Some((false, _))) | Err(_) => {
                crate::monitoring::over_capacity(Problem::type_for(
                    poem::http::StatusCode::SERVICE_UNAVAILABLE,
                ));
                refuse(stream).await;
            }
        }
    }

    /// Serves the connection; `read` are bytes of it already read, served first.
    async fn serve(mut self, stream: TcpStream, read: Vec<u8>) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Watched {
            inner: stream,
            read,
            activity: activity.clone(),
        });
        let (local, peer, app) = (self.local, self.peer, self.app.clone());
        let service = service_fn({
            let activity = activity.clone();
            move |req: hyper::Request<Incoming>| {
                let in_progress = activity.begin();
                let app = app.clone();
                async move {
                    let req = poem::Request::from((
                        req,
                        LocalAddr(Addr::SocketAddr(local)),
                        RemoteAddr(Addr::SocketAddr(peer)),
                        Scheme::HTTP,
                    ));
                    let resp: hyper::Response<_> = app.get_response(req).await.into();
                    // The request stays in progress until hyper is done with its response body.
                    Ok::<_, Infallible>(resp.map(|inner| Tracked {
                        inner,
                        _in_progress: in_progress,
                    }))
                }
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(self.keep_alive)
            .serve_connection(io, service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                served = conn.as_mut() => {
                    if let Err(e) = served
                        && let Some(status) = answered_by_hyper(&e)
                    {
                        crate::monitoring::unparsed(status);
                    }
                    return;
                }
                expiry = activity.expired(self.limits) => {
                    tracing::debug!(peer = %self.peer, "closing connection: {expiry}");
                    return;
                }
                _ = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if activity.is_idle() {
                        return;
                    }
                    // Answer the request in progress, then close.
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The status hyper answered with on its own when a connection ended on `e`: a request head it
/// could not read gets an empty 400, 414 (URI too long) or 431 (head too large) before the
/// connection closes (hyper's `on_error`); other errors, including an HTTP/2 preface, get no
/// answer.
fn answered_by_hyper(e: &hyper::Error) -> Option<u16> {
    if !e.is_parse() || e.is_parse_version_h2() || e.is_parse_status() {
        return None;
    }
    // hyper has no accessor for these two kinds; its messages name them.
    let message = e.to_string();
    if message.starts_with("internal error") {
        None
    } else if message.starts_with("URI too long") {
        Some(414)
    } else if e.is_parse_too_large() {
        Some(431)
    } else {
        Some(400)
    }
}

/// Why a connection was closed by its watchdog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Header,
    Idle,
    Send,
}

impl std::fmt::Display for Expiry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expiry::Header => "no complete request head within server.header_read_timeout",
            Expiry::Idle => "idle for server.keep_alive_timeout",
            Expiry::Send => "the client did not take the response for server.send_timeout",
        })
    }
}

/// What a connection's watchdog needs to know: requests in progress, when it last became idle,
/// and when the first byte of the next request head arrived.
struct Activity {
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    in_progress: usize,
    served: u64,
    /// Accepted, or the end of the last request.
    idle_since: Instant,
    /// The first byte read since `idle_since`.
    first_byte: Option<Instant>,
    /// Since when writing to the client has been blocked, if it is.
    write_blocked: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            state: Mutex::new(State {
                in_progress: 0,
                served: 0,
                idle_since: Instant::now(),
                first_byte: None,
                write_blocked: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(self: &Arc<Self>) -> InProgress {
        self.lock().in_progress += 1;
        self.changed.notify_waiters();
        InProgress(self.clone())
    }

    fn bytes_read(&self) {
        let mut state = self.lock();
        if state.in_progress == 0 && state.first_byte.is_none() {
            state.first_byte = Some(Instant::now());
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// A write to the client returned `Pending` (`blocked`) or made progress.
    fn write_polled(&self, blocked: bool) {
        let mut state = self.lock();
        match (blocked, state.write_blocked) {
            (true, None) => state.write_blocked = Some(Instant::now()),
            (false, Some(_)) => state.write_blocked = None,
            _ => return,
        }
        drop(state);
        self.changed.notify_waiters();
    }

    fn is_idle(&self) -> bool {
        self.lock().in_progress == 0
    }

    fn deadline(&self, limits: Limits) -> Option<(Instant, Expiry)> {
        let state = self.lock();
        let send = state
            .write_blocked
            .map(|since| (since + limits.send_timeout, Expiry::Send));
        let between_requests =
            (state.in_progress == 0).then(|| match (state.served, state.first_byte) {
                (0, _) => (
                    state.idle_since + limits.header_read_timeout,
                    Expiry::Header,
                ),
                (_, Some(first)) => (first + limits.header_read_timeout, Expiry::Header),
                (_, None) => (state.idle_since + limits.keep_alive_timeout, Expiry::Idle),
            });
        [send, between_requests]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    /// Resolves when the connection is past its deadline.
    async fn expired(&self, limits: Limits) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match self.deadline(limits) {
                None => changed.await,
                Some((at, _)) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {
                            if let Some((at, why)) = self.deadline(limits)
                                && at <= Instant::now()
                            {
                                return why;
                            }
                        }
                        () = changed => {}
                    }
                }
            }
        }
    }
}

/// A request in progress on a connection; its end makes the connection idle again.
struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_progress -= 1;
        state.served += 1;
        if state.in_progress == 0 {
            state.idle_since = Instant::now();
            state.first_byte = None;
        }
        drop(state);
        self.0.changed.notify_waiters();
    }
}

/// A response body carrying its request's [`InProgress`]: dropped with the body.
struct Tracked<B> {
    inner: B,
    _in_progress: InProgress,
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, telling [`Activity`] when bytes arrive; `read` is what was read from it before,
/// delivered first.
struct Watched {
    inner: TcpStream,
    read: Vec<u8>,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() && buf.remaining() > 0 {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.drain(..n);
            self.activity.bytes_read();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        polled
    }
}

impl Watched {
    fn watch_write<T>(&self, polled: Poll<T>) -> Poll<T> {
        self.activity.write_polled(polled.is_pending());
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch_write(polled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch_write(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch_write(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::asks_for;

    #[test]
    fn a_reserved_request_line_is_recognised_from_its_first_bytes() {
        let paths = ["/health", "/health/live", "/health/ready"];
        for yes in [
            "GET /health HTTP/1.1\r\n",
            "GET /health/live HTTP/1.1\r\n",
            "HEAD /health/ready HTTP/1.1\r\n",
            "GET /health/ready?verbose=1 HTTP/1.1\r\n",
        ] {
            assert_eq!(asks_for(yes.as_bytes(), &paths), Some(true), "{yes}");
        }
        for no in [
            "POST /health HTTP/1.1\r\n",
            "GET /healthz HTTP/1.1\r\n",
            "GET /health/livex HTTP/1.1\r\n",
            "GET /api/v1/conversations HTTP/1.1\r\n",
            "get /health HTTP/1.1\r\n",
            "GET http://x/health HTTP/1.1\r\n",
            "\r\nGET /health HTTP/1.1\r\n",
        ] {
            assert_eq!(asks_for(no.as_bytes(), &paths), Some(false), "{no}");
        }
        // Too short to tell: a prefix of a reserved line, up to its path's last byte.
        for partial in ["", "G", "GET /he", "HEAD /health", "GET /health/live"] {
            assert_eq!(asks_for(partial.as_bytes(), &paths), None, "{partial:?}");
        }
        assert_eq!(asks_for(b"GET /health", &[]), Some(false));
    }
}
