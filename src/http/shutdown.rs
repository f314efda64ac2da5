//! The shutdown trigger: the first SIGTERM (what Render and Docker send) or SIGINT (Ctrl-C).
//!
//! Handlers are installed by [`Signals::install`], before the port opens: a signal that arrives
//! between "Listening on" and the server's first poll must not take the default action (kill).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Installed handlers for SIGTERM and SIGINT.
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves with the signal's name when the process is asked to stop.
    pub async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
