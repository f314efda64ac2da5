//! A TCP proxy of the test's own between `server` and PostgreSQL, for faults the shared cluster
//! must not suffer: it reads the client's PostgreSQL messages and, on the query its plan names,
//! cuts the connection right before forwarding it, or right after PostgreSQL answered it (the
//! commit landed, the client never hears so); or it refuses every new connection (the database
//! kept away). Plain TCP only: URLs through it say `sslmode=disable`, so the messages are
//! readable.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where a cut falls, relative to the query it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The query never reaches PostgreSQL.
    Before,
    /// PostgreSQL runs the query to its end (`ReadyForQuery`: an implicit transaction
    /// committed); the client gets none of the answer.
    AfterAnswer,
}

/// What the proxy does, in order: cut the next `times` connections (`None`: every one) at the
/// first simple query or Parse message containing `needle`, then `afterwards`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub needle: String,
    pub cut: Cut,
    pub times: Option<usize>,
    pub afterwards: Afterwards,
}

/// What the proxy does once a plan's cuts are spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Afterwards {
    Pass,
    /// New connections are accepted and closed at once, before PostgreSQL's start-up.
    Refuse,
}

#[derive(Default)]
struct State {
    plan: Option<Plan>,
    cuts: usize,
    refusing: bool,
}

impl State {
    /// Takes one cut of the plan for a message whose body is `body`.
    fn take_cut(&mut self, body: &[u8]) -> Option<Cut> {
        let plan = self.plan.as_ref()?;
        if !contains(body, plan.needle.as_bytes()) {
            return None;
        }
        let cut = plan.cut;
        self.cuts += 1;
        if plan.times.is_some_and(|times| self.cuts >= times) {
            self.refusing = plan.afterwards == Afterwards::Refuse;
            self.plan = None;
        }
        Some(cut)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to the PostgreSQL of `database_url`.
    pub async fn start(database_url: &str, plan: Plan) -> Self {
        let upstream = host_port(database_url);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            plan: Some(plan),
            ..State::default()
        }));
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let _ = client.set_nodelay(true);
                    let refusing = lock(&state).refusing;
                    if refusing {
                        drop(client);
                        continue;
                    }
                    tokio::spawn(relay(client, upstream.clone(), state.clone()));
                }
            }
        });
        Self { addr, state, task }
    }

    /// `database_url` through this proxy, without TLS.
    pub fn url(&self, database_url: &str) -> String {
        let upstream = host_port(database_url);
        let url = database_url.replacen(&upstream, &self.addr.to_string(), 1);
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}sslmode=disable")
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> usize {
        lock(&self.state).cuts
    }

    /// From now on, closes every new connection at once (`true`) or forwards them again
    /// (`false`); connections already open are left as they are.
    pub fn set_refusing(&self, refusing: bool) {
        lock(&self.state).refusing = refusing;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `host:port` of a `postgres://user@host:port/db` URL (port 5432 when absent).
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    }
}

/// One client connection: client → server message by message (where the plan may cut),
/// server → client frame by frame (swallowed after an `AfterAnswer` cut's query went through,
/// up to its `ReadyForQuery`). Either side closing, or a cut, closes both.
async fn relay(client: TcpStream, upstream: String, state: Arc<Mutex<State>>) {
    let Ok(server) = TcpStream::connect(&upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let swallow = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let upward = tokio::spawn(client_to_server(
        client_read,
        server_write,
        state,
        swallow.clone(),
    ));
    let downward = tokio::spawn(server_to_client(
        server_read,
        client_write,
        swallow,
        done_tx,
    ));
    let upward_abort = upward.abort_handle();
    tokio::select! {
        _ = upward => {}
        _ = done_rx => upward_abort.abort(),
    }
    // Dropping both tasks' halves closes both sockets.
    downward.abort();
    upward_abort.abort();
}

async fn read_frame(read: &mut OwnedReadHalf, typed: bool) -> Option<Vec<u8>> {
    let head = if typed { 5 } else { 4 };
    let mut frame = vec![0u8; head];
    read.read_exact(&mut frame).await.ok()?;
    let len = u32::from_be_bytes(frame[head - 4..head].try_into().unwrap()) as usize;
    let body = len.checked_sub(4)?;
    frame.resize(head + body, 0);
    read.read_exact(&mut frame[head..]).await.ok()?;
    Some(frame)
}

async fn client_to_server(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    state: Arc<Mutex<State>>,
    swallow: Arc<AtomicBool>,
) {
    // The start-up message has no type byte (`sslmode=disable`: no SSLRequest first).
    let Some(startup) = read_frame(&mut from, false).await else {
        return;
    };
    if to.write_all(&startup).await.is_err() {
        return;
    }
    while let Some(frame) = read_frame(&mut from, true).await {
        if matches!(frame[0], b'Q' | b'P') {
            let cut = lock(&state).take_cut(&frame[5..]);
            match cut {
                Some(Cut::Before) => return,
                Some(Cut::AfterAnswer) => swallow.store(true, Ordering::SeqCst),
                None => {}
            }
        }
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn server_to_client(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    swallow: Arc<AtomicBool>,
    done: oneshot::Sender<()>,
) {
    while let Some(frame) = read_frame(&mut from, true).await {
        if swallow.load(Ordering::SeqCst) {
            if frame[0] == b'Z' {
                break;
            }
            continue;
        }
        if to.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = done.send(());
}
