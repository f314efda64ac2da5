//! `server healthcheck`: the client side of the health endpoints, for a container's
//! `HEALTHCHECK` (the image has no curl). One HTTP/1.1 GET to the local port, answered by the
//! status line alone; anything but a 2xx within the timeout is unhealthy.
//!
//! Hand-written on purpose: one request, one status line, no TLS, no redirects. An HTTP client
//! crate would add more code to the image than this module has lines.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a health probe did not report healthy. `Display` is the one line the command prints.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer from {addr} within {}ms", timeout.as_millis())]
    Timeout { addr: String, timeout: Duration },
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}{path} answered something that is not HTTP: {line:?}")]
    NotHttp {
        addr: String,
        path: String,
        line: String,
    },
    #[error("{addr}{path} answered {status}")]
    Unhealthy {
        addr: String,
        path: String,
        status: u16,
    },
}

/// The address to probe for a server bound to `host:port`: a wildcard bind is reached on
/// loopback.
pub fn local_addr(host: &str, port: u16) -> String {
    match host {
        "0.0.0.0" | "" => format!("127.0.0.1:{port}"),
        "::" | "[::]" => format!("[::1]:{port}"),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{port}"),
        h => format!("{h}:{port}"),
    }
}

/// GETs `path` from `addr` and returns the status code when it is a 2xx.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<u16, ProbeError> {
    match tokio::time::timeout(timeout, get_inner(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout {
            addr: addr.to_string(),
            timeout,
        }),
    }
}

async fn get_inner(addr: &str, path: &str) -> Result<u16, ProbeError> {
    let io = |source| ProbeError::Io {
        addr: addr.to_string(),
        source,
    };
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: server-healthcheck\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;

    // The status line is all we need; read until its end (bounded) and ignore the rest.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream.read(&mut buf).await.map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let status = parse_status_line(&line).ok_or_else(|| ProbeError::NotHttp {
        addr: addr.to_string(),
        path: path.to_string(),
        line: line.clone(),
    })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Unhealthy {
            addr: addr.to_string(),
            path: path.to_string(),
            status,
        })
    }
}

/// `HTTP/1.1 200 OK` → 200.
fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(
            parse_status_line("HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line("HTTP/1.1 204"), Some(204));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line(""), None);
    }

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        assert_eq!(local_addr("0.0.0.0", 10000), "127.0.0.1:10000");
        assert_eq!(local_addr("::", 80), "[::1]:80");
        assert_eq!(local_addr("127.0.0.1", 8080), "127.0.0.1:8080");
        assert_eq!(local_addr("::1", 8080), "[::1]:8080");
    }
}
