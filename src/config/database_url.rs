//! The database URLs (`database.url`, `database.migration_url`): validated at load time and
//! masked wherever they are shown; only [`DatabaseUrl::connect_options`] sees the password.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::postgres::PgConnectOptions;

/// `DATABASE_URL`, validated at load time. `Display`, `Debug` and `Serialize` mask the password;
/// only [`DatabaseUrl::connect_options`] sees it.
#[derive(Clone)]
pub struct DatabaseUrl {
    /// As given, password included: read only to mask it.
    raw: SecretString,
    options: PgConnectOptions,
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::parse_as("database.url", raw)
    }

    /// [`DatabaseUrl::parse`] for the key `key` (named in the error).
    pub fn parse_as(key: &str, raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let scheme_ok = raw.starts_with("postgres://") || raw.starts_with("postgresql://");
        if !scheme_ok {
            return Err(format!(
                "{key} ({}): must start with postgres:// or postgresql://",
                unparsed(raw)
            ));
        }
        // sqlx's message never echoes the URL; ours shows only its scheme, since in a URL that
        // does not parse no other part can be told apart from a password.
        // sqlx's `error with configuration: ` (once per layer) adds nothing here. A password
        // with a character URLs reserve reads as another part (`#` starts a fragment, so
        // `user:pa#ss@host` has the port `pa`): the usual cause, said as such.
        let options = PgConnectOptions::from_str(raw).map_err(|e| {
            let why = e.to_string().replace("error with configuration: ", "");
            let userinfo = raw
                .split_once("://")
                .is_some_and(|(_, rest)| rest.contains('@') || rest.contains('#'));
            let hint = if userinfo {
                "; a password (or user name) holding @ : / ? # [ ] or % must be percent-encoded \
                 (# as %23, @ as %40, / as %2F)"
            } else {
                ""
            };
            format!("{key} ({}): {why}{hint}", unparsed(raw))
        })?;
        Ok(Self {
            raw: raw.into(),
            options,
        })
    }

    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// The database name the URL names (PostgreSQL defaults it to the user name).
    pub fn database_name(&self) -> String {
        self.options
            .get_database()
            .unwrap_or(self.options.get_username())
            .to_string()
    }

    pub fn masked(&self) -> String {
        mask_url(self.raw.expose_secret())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.masked())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.masked())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DatabaseUrl::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What may be shown of a URL that does not parse: its scheme, when it has a plausible one.
fn unparsed(raw: &str) -> String {
    let scheme = raw.split_once("://").map(|(scheme, _)| scheme).filter(|s| {
        !s.is_empty()
            && s.len() <= 16
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    match scheme {
        Some(scheme) => format!("{scheme}://… not shown: it does not parse"),
        None => "not shown: it does not parse".to_string(),
    }
}

/// Replaces the password of `scheme://user:password@host…` with `***`, working on the text so
/// that even a URL that does not parse is shown masked. A `password=` query parameter is masked
/// too.
pub fn mask_url(raw: &str) -> String {
    let mut out = raw.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        // The password may itself hold '@', '/', '?' or ':', so take the LAST '@' and the FIRST
        // ':' before it: in odd URLs this masks too much, never too little.
        if let Some(at) = out[rest..].rfind('@')
            && let Some(colon) = out[rest..rest + at].find(':')
        {
            out.replace_range(rest + colon + 1..rest + at, "***");
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out = format!("{head}{}", masked.join("&"));
    }
    out
}

/// `database.migration_url`, named as such in its errors.
pub(super) fn migration_url<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DatabaseUrl>, D::Error> {
    let raw = String::deserialize(d)?;
    DatabaseUrl::parse_as("database.migration_url", &raw)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `migrations.compat_scratch_url`, named as such in its errors.
pub(super) fn compat_scratch_url<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DatabaseUrl>, D::Error> {
    let raw = String::deserialize(d)?;
    DatabaseUrl::parse_as("migrations.compat_scratch_url", &raw)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_password_in_userinfo_and_query() {
        assert_eq!(
            mask_url("postgres://app:s3cr3t@db.example:5432/app?sslmode=require"),
            "postgres://app:***@db.example:5432/app?sslmode=require"
        );
        assert_eq!(
            mask_url("postgresql://app@h/db?password=s3cr3t&sslmode=require"),
            "postgresql://app@h/db?password=***&sslmode=require"
        );
        assert_eq!(mask_url("postgres://h/db"), "postgres://h/db");
        // A password holding '@' and '/' characters, unparsable as a URL, is still hidden.
        for raw in [
            "postgres://app:p@ss@host/db",
            "postgres://app:pa/ss?x@host/db",
        ] {
            let masked = mask_url(raw);
            assert!(!masked.contains("ss"), "{masked}");
        }
    }

    #[test]
    fn bad_urls_are_errors_without_the_password() {
        for raw in [
            "mysql://u:pw123@h/db",
            "postgres://u:pw123@h:notaport/db",
            "postgres://u:pw123",
            "mysql://u:pw123",
            "pw123",
        ] {
            let err = DatabaseUrl::parse(raw).expect_err(raw);
            assert!(!err.contains("pw123"), "{err}");
            assert!(err.contains("database.url"), "{err}");
        }
        let err = DatabaseUrl::parse_as("database.migration_url", "mysql://u:pw123@h/db")
            .expect_err("not postgres");
        assert!(err.starts_with("database.migration_url ("), "{err}");
        assert!(!err.contains("pw123"), "{err}");
        let url = DatabaseUrl::parse("postgresql://u:pw123@h/db?sslmode=require").expect("valid");
        assert_eq!(format!("{url} {url:?}").matches("pw123").count(), 0);
        assert_eq!(url.database_name(), "db");
    }

    #[test]
    fn a_password_with_a_reserved_character_is_named_as_the_likely_cause() {
        let err = DatabaseUrl::parse("postgres://u:pa#ss@h/db").expect_err("# starts a fragment");
        assert!(err.contains("must be percent-encoded (# as %23"), "{err}");
        assert!(!err.contains("pa#ss"), "{err}");
        let err = DatabaseUrl::parse("postgres://h:port/db").expect_err("no userinfo");
        assert!(!err.contains("percent-encoded"), "{err}");
    }
}
