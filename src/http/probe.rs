//! `server healthcheck`: the client side of the health endpoints, for a container's
//! `HEALTHCHECK` (the image has no curl). One HTTP/1.1 GET to the local port with the blocking
//! reqwest client the trace exporter already links (`otlp-reqwest`): no proxy, no redirects,
//! plain HTTP; anything but a 2xx within the timeout is unhealthy.

use std::sync::Arc;
use std::time::Duration;

use otlp_reqwest::blocking::Client;
use otlp_reqwest::redirect::Policy;

/// Why a health probe did not report healthy. `Display` is the one line the command prints.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer from {addr} within {}ms", timeout.as_millis())]
    Timeout { addr: String, timeout: Duration },
    #[error("cannot connect to {addr}: {}", root_cause(source))]
    Connect {
        addr: String,
        source: otlp_reqwest::Error,
    },
    #[error("{addr}{path}: {}", root_cause(source))]
    Http {
        addr: String,
        path: String,
        source: otlp_reqwest::Error,
    },
    #[error("{addr}{path} answered {status}")]
    Unhealthy {
        addr: String,
        path: String,
        status: u16,
    },
}

/// The innermost cause: reqwest's own message ("error sending request for url …") says less
/// than the I/O error under it ("Connection refused").
fn root_cause(e: &otlp_reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
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

/// GETs `path` from `addr` and returns the status code when it is a 2xx. Blocking: call it
/// outside an async runtime.
pub fn get(addr: &str, path: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let client = Client::builder()
        .timeout(timeout)
        .no_proxy()
        .redirect(Policy::none())
        .user_agent("server-healthcheck")
        .tls_backend_preconfigured(plain_http_only())
        .build()
        .map_err(|source| ProbeError::Http {
            addr: addr.to_string(),
            path: path.to_string(),
            source,
        })?;
    let answer = client
        .get(format!("http://{addr}{path}"))
        .send()
        .map_err(|source| {
            if source.is_timeout() {
                ProbeError::Timeout {
                    addr: addr.to_string(),
                    timeout,
                }
            } else if source.is_connect() {
                ProbeError::Connect {
                    addr: addr.to_string(),
                    source,
                }
            } else {
                ProbeError::Http {
                    addr: addr.to_string(),
                    path: path.to_string(),
                    source,
                }
            }
        })?;
    let status = answer.status().as_u16();
    if answer.status().is_success() {
        Ok(status)
    } else {
        Err(ProbeError::Unhealthy {
            addr: addr.to_string(),
            path: path.to_string(),
            status,
        })
    }
}

/// The TLS set-up reqwest wants built (it has no provider of its own here): ring, and no
/// trusted roots, since the probe speaks plain HTTP to its own server.
fn plain_http_only() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        assert_eq!(local_addr("0.0.0.0", 10000), "127.0.0.1:10000");
        assert_eq!(local_addr("::", 80), "[::1]:80");
        assert_eq!(local_addr("127.0.0.1", 8080), "127.0.0.1:8080");
        assert_eq!(local_addr("::1", 8080), "[::1]:8080");
    }
}
