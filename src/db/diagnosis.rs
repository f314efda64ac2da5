//! What a connection failure means: permanent or worth a retry, a lost session, something
//! other than PostgreSQL answering; and the one line (with what to check) that says so.

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;

use crate::migrate::duration;

/// Errors not worth retrying: bad credentials, unknown database, bad TLS set-up, a pooler
/// refusing the migration session's start-up options.
pub(super) fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.code()
                .is_some_and(|c| c.starts_with("28") || c == "3D000")
                || db.message().contains("unsupported startup parameter")
        }
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => true,
        e => tls_refusal(e).is_some(),
    }
}

/// The TLS handshake's verdict on the server (an untrusted or mismatched certificate), which
/// sqlx reports as an I/O error: no retry changes it.
fn tls_refusal(e: &sqlx::Error) -> Option<&rustls::Error> {
    match e {
        sqlx::Error::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

pub(super) fn is_missing_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000"))
}

/// One line, no URL (sqlx's messages do not include it), and what to check in `var` for the
/// refusals that have one usual cause.
pub(super) fn cause(e: &sqlx::Error, var: &str) -> String {
    let text = crate::migrate::error_text(e);
    let hint = match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => format!("; check the user name and password in {var}"),
            Some("28000") => format!("; check the user name in {var} (and pg_hba.conf)"),
            Some("3D000") => format!("; check the database name (the path) in {var}"),
            // PgBouncer's refusal of the start-up packet's `options` (the migration guards).
            _ if text.contains("unsupported startup parameter") => format!(
                "; {var} points at a connection pooler: migrations need a direct connection to \
                 PostgreSQL (set DATABASE_MIGRATION_URL to it)"
            ),
            _ => String::new(),
        },
        e if tls_refusal(e).is_some() => format!(
            "; the server's certificate is not trusted for this host: check the host in {var} and \
             its sslmode, and that the CA that signed it is in the system's CA store (the \
             image's /etc/ssl/certs, or SSL_CERT_FILE)"
        ),
        _ => String::new(),
    };
    format!("{text}{hint}")
}

/// What to check when `options`' server could not be reached: by the last attempt's failure
/// (`None`: no answer within `timeout`). Only a server on this machine gets the local hint.
pub(super) fn unreachable_hint(
    failure: Option<&sqlx::Error>,
    options: &PgConnectOptions,
    var: &str,
    timeout: Duration,
) -> String {
    let (host, port) = (options.get_host(), options.get_port());
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let Some(failure) = failure else {
        return format!(
            "no answer from {host}:{port} within {}: a wrong host or port, a firewall or the \
             database's IP access list (Render's external URL admits only the addresses on it), \
             or a server that is not PostgreSQL and waits for more; check {var}",
            duration::render(timeout)
        );
    };
    if let Some(answered) = not_postgres(failure) {
        return format!(
            "something other than PostgreSQL answers on {host}:{port}{answered}: check {var} (its \
             host and port: PostgreSQL's is usually 5432, PgBouncer's 6432)"
        );
    }
    match failure {
        e if crate::migrate::error_text(e).contains("failed to lookup address information") => {
            format!(
                "the host name {host} does not resolve (DNS): check {var} (its host); a Render \
                 database's internal host name resolves only inside Render, in its region: from \
                 elsewhere use the database's external URL"
            )
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused && local => {
            format!(
                "nothing listens on {host}:{port}: check {var} (its port) and that PostgreSQL runs \
                 on this machine (pg_ctlcluster <version> main start)"
            )
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "nothing listens on {host}:{port}: check {var} (its port) and the database's status \
             (Render dashboard: the database's page)"
        ),
        _ => format!("check {var} and the database's status"),
    }
}

/// `Some(what it answered)` for a start-up answer no PostgreSQL (or PgBouncer) gives: a first
/// byte that is neither `S` nor `N` to the TLS request, or a message whose length field is
/// text (`HTTP/1.1 400` read as the type `H` and a length of `TTP/`, over a gigabyte).
fn not_postgres(e: &sqlx::Error) -> Option<String> {
    const HTTP: &str = " (it answered like an HTTP server: a web service's port, or a proxy?)";
    match e {
        sqlx::Error::Protocol(message) => {
            let first = message.split("from SSLRequest: 0x").nth(1)?;
            let byte = u8::from_str_radix(first.get(..2)?, 16).ok()?;
            Some(match byte {
                b'H' => HTTP.to_string(),
                b if b.is_ascii_graphic() => format!(" (it answered {:?})", b as char),
                _ => String::new(),
            })
        }
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            let text = io.to_string();
            let length: u32 = text
                .strip_prefix("expected to read ")?
                .split(' ')
                .next()?
                .parse()
                .ok()?;
            // sqlx reports the length give or take its own framing: its first bytes are `TTP`.
            match &length.to_be_bytes()[..3] {
                b"TTP" => Some(HTTP.to_string()),
                _ if length > 1 << 20 => Some(String::new()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A connect that got no answer within its timeout ([`super::connect`]): what it says
/// ("timed out connecting to db.example:5432 after 5s").
pub(super) fn timed_out(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => Some(io.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::postgres::PgConnectOptions;

    use super::unreachable_hint;

    /// The hint for a refused connection: the local cluster's command only for this machine.
    #[test]
    fn a_refused_remote_host_gets_no_local_hint() {
        let refused =
            || sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let hint = |url: &str| {
            let options = PgConnectOptions::from_str(url).unwrap();
            unreachable_hint(
                Some(&refused()),
                &options,
                "DATABASE_URL",
                Duration::from_secs(5),
            )
        };
        for remote in [
            "postgres://u@dpg-abc-a.oregon-postgres.render.com/db",
            "postgres://u@10.0.0.7:5433/db",
        ] {
            let hint = hint(remote);
            assert!(!hint.contains("pg_ctlcluster"), "{remote}: {hint}");
            assert!(hint.contains("database's status"), "{remote}: {hint}");
        }
        for local in [
            "postgres://u@localhost/db",
            "postgres://u@127.0.0.1:1/db",
            "postgres://u@[::1]/db",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/db",
        ] {
            let hint = hint(local);
            assert!(hint.contains("pg_ctlcluster"), "{local}: {hint}");
        }
    }
}
