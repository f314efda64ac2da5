//! Configuration: `config/default.toml`, then `config/<ENVIRONMENT>.toml`, then the environment.
//!
//! Environment variables: `DATABASE_URL`, `DATABASE_MIGRATION_URL`, `HOST`, `PORT`, `ENVIRONMENT`,
//! `DEBUG`, and any key as `APP_<SECTION>__<KEY>` (e.g. `APP_DATABASE__MAX_CONNECTIONS=20`).
//! Unknown keys and bad values stop start-up with the key's name. The database URLs are
//! [`DatabaseUrl`]s (`config/database_url.rs`): they print masked. Durations are read by the
//! one grammar of [`crate::migrate::duration`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::migrate::{DriftPolicy, UnknownAppliedPolicy, duration};

mod database_url;
mod source;

pub use database_url::{DatabaseUrl, mask_url};
use source::Named;

/// Where the service runs; picks `config/<name>.toml` and a few behaviours (log format,
/// creating a missing database in development).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Development,
    Test,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Test => "test",
            Environment::Production => "production",
        }
    }
}

impl FromStr for Environment {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Environment::Development),
            "test" => Ok(Environment::Test),
            "production" | "prod" => Ok(Environment::Production),
            _ => Err(ConfigError::Invalid(format!(
                "ENVIRONMENT={s:?} is not one of development, test, production"
            ))),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub environment: Environment,
    #[serde(deserialize_with = "lenient_bool")]
    pub debug: bool,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub migrations: MigrationSettings,
    pub log: LogSettings,
    pub auth: AuthSettings,
    pub metrics: MetricsSettings,
    pub events: EventSettings,
    pub idempotency: IdempotencySettings,
}

/// The conversation event streams (`GET /api/v1/conversations/{id}/events`, `crate::events`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// Open streams on this instance at most; one more is answered 503 with `Retry-After`.
    pub max_streams: usize,
    /// A comment line is sent on an idle stream this often, so that proxies keep it open.
    #[serde(with = "duration_str")]
    pub heartbeat: Duration,
    /// The reconnection delay a stream announces (`retry:`): at its start, and when the
    /// instance shuts down and ends it.
    #[serde(with = "duration_str")]
    pub retry: Duration,
}

/// `Idempotency-Key` on the creating POSTs (`crate::api::idempotency` owns the rule).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySettings {
    /// How long a key is kept after its first use: its answer is replayed to retries until
    /// then, and afterwards the key is new again.
    #[serde(with = "duration_str")]
    pub ttl: Duration,
    /// A key whose first request has neither finished nor failed after this long is presumed
    /// abandoned (its instance died): a retry takes it over. Until then retries get 409.
    #[serde(with = "duration_str")]
    pub claim_timeout: Duration,
    /// How often each serving instance deletes expired keys.
    #[serde(with = "duration_str")]
    pub sweep_every: Duration,
}

/// `GET /metrics` (Prometheus text format); who may read it is decided in
/// `crate::http::metrics_access`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Record and serve metrics at all (`false`: nothing recorded, `/metrics` is 404).
    pub enabled: bool,
    /// Bearer token for `/metrics` on the main port in production (env `METRICS_TOKEN`, 16+
    /// characters, never one of the API keys). Printed masked.
    #[serde(
        default,
        deserialize_with = "metrics_token",
        serialize_with = "masked_token",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<ApiKey>,
}

fn metrics_token<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ApiKey>, D::Error> {
    let token = String::deserialize(d)?.trim().to_string();
    if token.is_empty() {
        return Ok(None);
    }
    if token.len() < 16 {
        return Err(serde::de::Error::custom(format!(
            "a metrics token of {} characters is too short (at least 16)",
            token.len()
        )));
    }
    Ok(Some(ApiKey(token.into())))
}

fn masked_token<S: Serializer>(token: &Option<ApiKey>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if token.is_some() { "***" } else { "" })
}

/// API authentication: `Authorization: Bearer <key>` against these keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Accepted API keys (env `API_KEYS`, comma-separated). Required in production; when empty
    /// (development, test) the API is open.
    #[serde(deserialize_with = "api_keys", serialize_with = "masked_keys")]
    pub api_keys: Vec<ApiKey>,
}

/// An API key (or the metrics token): compared in constant time, never printed
/// (`secrecy`: shown only through [`ApiKey::expose`], zeroed when dropped).
#[derive(Clone)]
pub struct ApiKey(secrecy::SecretString);

impl ApiKey {
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }

    #[cfg(test)]
    pub fn new_for_tests(key: &str) -> Self {
        Self(key.into())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

fn api_keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ApiKey>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    let raw = Raw::deserialize(d).map_err(|_| {
        serde::de::Error::custom("must be a list of keys, or one text of comma-separated keys")
    })?;
    let keys = match raw {
        Raw::List(list) => list,
        Raw::One(s) => s.split(',').map(str::to_string).collect(),
    };
    let keys: Vec<ApiKey> = keys
        .into_iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .map(|k| ApiKey(k.into()))
        .collect();
    if let Some(short) = keys.iter().find(|k| k.expose().len() < 16) {
        return Err(serde::de::Error::custom(format!(
            "an API key of {} characters is too short (at least 16)",
            short.expose().len()
        )));
    }
    Ok(keys)
}

fn masked_keys<S: Serializer>(keys: &[ApiKey], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(keys.iter().map(|_| "***"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// 0 lets the OS pick a free port (tests); the bound address is logged.
    pub port: u16,
    /// How long in-flight requests may run on after SIGTERM/SIGINT.
    #[serde(with = "duration_str")]
    pub shutdown_grace: Duration,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit_bytes: usize,
    /// A new connection must deliver its first request head within this long, and a kept-alive
    /// one each later head within this long of its first byte; otherwise it is closed.
    #[serde(with = "duration_str")]
    pub header_read_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed after this long.
    #[serde(with = "duration_str")]
    pub keep_alive_timeout: Duration,
    /// A request body must arrive whole within this long of its head; otherwise 408.
    #[serde(with = "duration_str")]
    pub body_read_timeout: Duration,
    /// A connection whose client has not taken any of its response for this long (writes
    /// blocked) is closed.
    #[serde(with = "duration_str")]
    pub send_timeout: Duration,
    /// Open client connections at most; one more is answered 503 (with `Retry-After`) and
    /// closed.
    pub max_connections: usize,
    /// Instances of the service sharing the database (Render's `numInstances`; Render sets no
    /// variable with the count, so render.yaml sets `APP_SERVER__INSTANCES` to match). Only the
    /// connection budget uses it.
    pub instances: u32,
    /// A second listener (on `host`) serving only `/metrics`, open, for a private network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// The request pool's database (`DATABASE_URL`): may go through a transaction-mode pooler.
    pub url: DatabaseUrl,
    /// The migration session's database (`DATABASE_MIGRATION_URL`): the pre-serve stage and
    /// every `server migrate` command connect here, directly to PostgreSQL (the migration lock
    /// is a session advisory lock). Unset: `url`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "database_url::migration_url"
    )]
    pub migration_url: Option<DatabaseUrl>,
    pub max_connections: u32,
    pub min_connections: u32,
    /// Longest wait for a pooled connection before a request gets a 503.
    #[serde(with = "duration_str")]
    pub acquire_timeout: Duration,
    /// A pooled connection idle at least this long is checked with a round trip before a
    /// request uses it (sqlx's ping); one used more recently is trusted: it answered its last
    /// query moments ago. `0s`: check every time (sqlx's default).
    #[serde(with = "duration_str")]
    pub idle_check_after: Duration,
    /// Longest wait for one connection attempt.
    #[serde(with = "duration_str")]
    pub connect_timeout: Duration,
    /// Attempts before start-up gives up on an unreachable database.
    pub connect_attempts: u32,
    #[serde(with = "duration_str")]
    pub connect_retry_delay: Duration,
    /// Longest a readiness probe waits on the database.
    #[serde(with = "duration_str")]
    pub health_timeout: Duration,
}

impl DatabaseSettings {
    /// Whether requests go through another URL than migrations (a connection pooler, as the
    /// operations guide sets it up).
    pub fn is_pooled(&self) -> bool {
        self.migration_url.is_some() && self.migration_url().masked() != self.url.masked()
    }

    /// Where the migration session connects: `migration_url`, else `url`.
    pub fn migration_url(&self) -> &DatabaseUrl {
        self.migration_url.as_ref().unwrap_or(&self.url)
    }

    /// The variable to check when the migration session cannot connect.
    pub fn migration_url_var(&self) -> &'static str {
        if self.migration_url.is_some() {
            "DATABASE_MIGRATION_URL"
        } else {
            "DATABASE_URL"
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrationSettings {
    /// Longest wait for another runner's migration lock.
    #[serde(with = "duration_str")]
    pub lock_wait_timeout: Duration,
    /// Session `lock_timeout` while migrating, so a migration waiting on a busy table gives up
    /// instead of queueing all traffic behind it ("0s" = no limit).
    #[serde(with = "duration_str")]
    pub lock_timeout: Duration,
    /// Session `statement_timeout` while migrating ("0s" = no limit).
    #[serde(with = "duration_str")]
    pub statement_timeout: Duration,
    /// Applied versions this binary does not embed: "warn" (serve) or "error" (refuse).
    pub on_unknown_applied: UnknownAppliedPolicy,
    /// Apply pending versions older than the newest applied one.
    pub allow_out_of_order: bool,
    /// Drift from the embedded schema snapshot: "warn" (report in /health, logs and verify's
    /// output, keep serving) or "error" (readiness and `migrate verify` fail).
    pub on_drift: DriftPolicy,
    /// Schemas whose objects belong to someone else: left out of drift.
    pub drift_ignore_schemas: Vec<String>,
    /// Object names left out of drift; `*` matches any run of characters (`public.audit_*`).
    pub drift_ignore: Vec<String>,
    /// Extra attempts of a transactional migration that failed because its `lock_timeout`
    /// expired (SQLSTATE 55P03), with backoff; 0 = fail at once.
    pub lock_retries: u32,
    /// Pending migrations that break a release still serving (`crate::compat::gate`):
    /// "error" applies nothing (exit 14), "warn" logs the breaks and applies.
    pub on_incompatible: OnIncompatible,
    /// A database of its own for the compat check when the migration user cannot create one
    /// (no CREATEDB): emptied before each check. Unset: a scratch database is created and dropped.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "database_url::compat_scratch_url"
    )]
    pub compat_scratch_url: Option<DatabaseUrl>,
    /// A serving release whose heartbeat is older than this no longer counts (`crate::releases`).
    #[serde(with = "duration_str")]
    pub serving_window: Duration,
}

/// `migrations.on_incompatible`: what the pre-deploy does when the pending migrations break a
/// release still serving (or when that cannot be checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnIncompatible {
    /// Apply nothing, exit 14 naming the queries.
    Error,
    /// Log every break and apply anyway.
    Warn,
}

impl MigrationSettings {
    /// How statuses and drift are judged: the engine, `migrate verify` and `/health` use this.
    pub fn policy(&self) -> crate::migrate::Policy {
        crate::migrate::Policy {
            on_unknown_applied: self.on_unknown_applied,
            on_drift: self.on_drift,
            drift_ignore: crate::migrate::snapshot::Ignore {
                schemas: self.drift_ignore_schemas.clone(),
                patterns: self.drift_ignore.clone(),
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// "text" (human-readable) or "json" (one object per line).
    pub format: LogFormat,
    /// Default level filter; `DEBUG=true` raises it to debug; `RUST_LOG` overrides both.
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Why configuration could not be loaded. `Display` is one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} not found (run from the project root, or set CONFIG_DIR)")]
    MissingFile(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

/// An environment variable that sets one key ([`Settings::NAMED_ENV`]).
struct NamedVar {
    var: &'static str,
    key: &'static str,
    secret: bool,
}

impl NamedVar {
    const fn value(var: &'static str, key: &'static str) -> Self {
        Self {
            var,
            key,
            secret: false,
        }
    }

    const fn secret(var: &'static str, key: &'static str) -> Self {
        Self {
            var,
            key,
            secret: true,
        }
    }
}

impl Settings {
    /// Environment variables that set one key each, by name (any key is also
    /// `APP_<SECTION>__<KEY>`), and whether the key is a secret. A secret is read as written,
    /// under either name: figment's value parsing would turn an all-digit key into a number
    /// (and refuse it) and unwrap one written in quotes or brackets.
    const NAMED_ENV: [NamedVar; 7] = [
        NamedVar::secret("DATABASE_URL", "database.url"),
        NamedVar::secret("DATABASE_MIGRATION_URL", "database.migration_url"),
        NamedVar::value("HOST", "server.host"),
        NamedVar::value("PORT", "server.port"),
        NamedVar::value("DEBUG", "debug"),
        NamedVar::secret("API_KEYS", "auth.api_keys"),
        NamedVar::secret("METRICS_TOKEN", "metrics.token"),
    ];

    /// The keys read as written ([`Self::NAMED_ENV`]).
    fn secret_keys() -> impl Iterator<Item = &'static str> {
        Self::NAMED_ENV.iter().filter(|v| v.secret).map(|v| v.key)
    }

    /// Whether the configuration (or, for `RUST_LOG`, the log filter, and for `OTEL_*`, the
    /// trace exporter) reads the environment variable `name`.
    pub fn reads_env_var(name: &str) -> bool {
        matches!(name, "ENVIRONMENT" | "CONFIG_DIR" | "RUST_LOG")
            || name.starts_with("APP_")
            || name.starts_with("OTEL_")
            || Self::NAMED_ENV.iter().any(|v| v.var == name)
    }

    /// Loads the layers from `config_dir` and the process environment.
    pub fn load(config_dir: &Path) -> Result<Self, ConfigError> {
        let (figment, environment) = Self::layers(config_dir)?;
        let settings: Settings = figment
            .extract()
            .map_err(|e| Self::invalid(e, environment))?;
        settings.validate()?;
        Ok(settings)
    }

    /// The `[migrations]` section alone, from the same layers and through the same
    /// deserializer as [`Settings::load`] (so each key, `lock_timeout` among them, has one
    /// reader): for a command that needs nothing else when the whole configuration does not
    /// load (production without `DATABASE_URL` in a build step, say).
    pub fn migrations_alone(config_dir: &Path) -> Result<MigrationSettings, ConfigError> {
        let (figment, environment) = Self::layers(config_dir)?;
        figment
            .extract_inner("migrations")
            .map_err(|e| Self::invalid(e, environment))
    }

    /// The layers, later wins: `default.toml`, `<ENVIRONMENT>.toml`, the environment. The one
    /// place `ENVIRONMENT` is read.
    fn layers(config_dir: &Path) -> Result<(Figment, Environment), ConfigError> {
        let environment: Environment = std::env::var("ENVIRONMENT")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .map_or(Ok(Environment::Development), |s| s.parse())?;
        let default = config_dir.join("default.toml");
        if !default.is_file() {
            return Err(ConfigError::MissingFile(default));
        }
        let mut figment = Figment::new()
            .merge(Toml::file_exact(default))
            .merge(Toml::file(
                config_dir.join(format!("{}.toml", environment.as_str())),
            ))
            .merge(Named::app_vars(
                Env::prefixed("APP_")
                    .split("__")
                    .ignore(&Self::secret_keys().collect::<Vec<_>>()),
            ));
        let literal = |figment: Figment, var: &str, key: &str| match std::env::var_os(var) {
            Some(v) => figment.merge(Named::variable(
                Serialized::default(key, v.to_string_lossy().into_owned()),
                var,
            )),
            None => figment,
        };
        // The `APP_` spellings of the secrets first: the named variable wins.
        for key in Self::secret_keys() {
            let var = format!("APP_{}", key.replace('.', "__").to_ascii_uppercase());
            figment = literal(figment, &var, key);
        }
        for v in Self::NAMED_ENV {
            figment = if v.secret {
                literal(figment, v.var, v.key)
            } else {
                let key = v.key;
                figment.merge(Named::variable(
                    Env::raw().only(&[v.var]).map(move |_| key.into()),
                    v.var,
                ))
            };
        }
        Ok((figment.merge(("environment", environment)), environment))
    }

    fn invalid(e: figment::Error, environment: Environment) -> ConfigError {
        let lines: Vec<String> = e
            .into_iter()
            .map(|e| Self::describe_error(&e, environment))
            .collect();
        ConfigError::Invalid(format!("invalid configuration: {}", lines.join("; ")))
    }

    /// The key, what is wrong in plain words and where the value came from
    /// ([`source::describe`]); a missing key that an environment variable sets says so, since
    /// figment would name the last file it read, which is right as it is.
    fn describe_error(e: &figment::Error, environment: Environment) -> String {
        if let figment::error::Kind::MissingField(field) = &e.kind {
            let key = e
                .path
                .iter()
                .map(String::as_str)
                .chain([field.as_ref()])
                .collect::<Vec<_>>()
                .join(".");
            if let Some(NamedVar { var, .. }) = Self::NAMED_ENV.iter().find(|v| v.key == key) {
                return format!(
                    "{var} is not set: {key} has no value in default.toml or {}.toml, so it must come \
                     from the environment variable {var}",
                    environment.as_str()
                );
            }
        }
        source::describe(e, |key| Self::secret_keys().any(|secret| secret == key))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("{key}: {why}")));
        let db = &self.database;
        if db.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        if db.min_connections > db.max_connections {
            return bad(
                "database.min_connections",
                "must not exceed database.max_connections",
            );
        }
        if self.server.instances == 0 {
            return bad("server.instances", "must be at least 1");
        }
        if db.connect_attempts == 0 {
            return bad("database.connect_attempts", "must be at least 1");
        }
        if db.connect_timeout.is_zero()
            || db.acquire_timeout.is_zero()
            || db.health_timeout.is_zero()
        {
            return bad("database.*_timeout", "must be greater than 0");
        }
        if self.environment == Environment::Production && self.auth.api_keys.is_empty() {
            return bad(
                "auth.api_keys",
                "required in production: set API_KEYS to one or more comma-separated keys",
            );
        }
        if let Some(token) = &self.metrics.token
            && self
                .auth
                .api_keys
                .iter()
                .any(|k| k.expose() == token.expose())
        {
            return bad(
                "metrics.token",
                "must not be one of the API keys: a scraper's token must not open the API",
            );
        }
        if self.server.body_limit_bytes == 0 {
            return bad("server.body_limit_bytes", "must be greater than 0");
        }
        let server = &self.server;
        for (key, value) in [
            ("server.header_read_timeout", server.header_read_timeout),
            ("server.keep_alive_timeout", server.keep_alive_timeout),
            ("server.body_read_timeout", server.body_read_timeout),
            ("server.send_timeout", server.send_timeout),
        ] {
            if value.is_zero() {
                return bad(key, "must be greater than 0");
            }
        }
        if server.max_connections == 0 {
            return bad("server.max_connections", "must be at least 1");
        }
        // Sent to PostgreSQL as session settings, which take at most INT_MAX milliseconds.
        let m = &self.migrations;
        for (key, value) in [
            ("migrations.lock_timeout", m.lock_timeout),
            ("migrations.statement_timeout", m.statement_timeout),
        ] {
            if value.as_millis() > duration::POSTGRES_MAX_MILLIS {
                return bad(
                    key,
                    "must be at most 2147483647ms (PostgreSQL's limit, about 24 days)",
                );
            }
        }
        if m.serving_window < Duration::from_secs(5) {
            return bad("migrations.serving_window", "must be at least 5s");
        }
        let events = &self.events;
        if events.max_streams == 0 {
            return bad("events.max_streams", "must be at least 1");
        }
        if events.heartbeat < Duration::from_secs(1) {
            return bad("events.heartbeat", "must be at least 1s");
        }
        if events.retry.is_zero() {
            return bad("events.retry", "must be greater than 0");
        }
        let idem = &self.idempotency;
        for (key, value) in [
            ("idempotency.ttl", idem.ttl),
            ("idempotency.claim_timeout", idem.claim_timeout),
            ("idempotency.sweep_every", idem.sweep_every),
        ] {
            if value.is_zero() {
                return bad(key, "must be greater than 0");
            }
        }
        if idem.claim_timeout >= idem.ttl {
            return bad(
                "idempotency.claim_timeout",
                "must be shorter than idempotency.ttl",
            );
        }
        if self.server.host.parse::<std::net::IpAddr>().is_err() {
            return bad(
                "server.host",
                "must be an IP address such as 0.0.0.0 or 127.0.0.1",
            );
        }
        Ok(())
    }

    /// TOML of the effective configuration, secrets masked (for `server config`).
    pub fn to_masked_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// `true`/`false`, and the `1`/`0`/`yes`/`no`/`on`/`off` forms people put in env vars.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Int(i64),
        Str(String),
    }
    let raw = Raw::deserialize(d)
        .map_err(|_| serde::de::Error::custom("must be true or false (or 1/0, yes/no, on/off)"))?;
    match raw {
        Raw::Bool(b) => Ok(b),
        Raw::Int(0) => Ok(false),
        Raw::Int(1) => Ok(true),
        Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" | "" => Ok(false),
            _ => Err(serde::de::Error::custom(format!("{s:?} is not a boolean"))),
        },
        Raw::Int(i) => Err(serde::de::Error::custom(format!("{i} is not a boolean"))),
    }
}

/// A duration of the one grammar ([`crate::migrate::duration`]): a number and a unit, `"250ms"`,
/// `"10s"`, `"5m"` or `"5min"`, `"1h"`, `"1d"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

/// serde for duration keys: [`parse_duration`] in, [`duration::render`] out.
mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    use crate::migrate::duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&duration::render(*d))
    }

    /// A bare number (`APP_…_TIMEOUT=5` reads as one) is refused by the grammar for its missing
    /// unit, in the grammar's words.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(u64),
        }
        let raw = match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("must be a duration such as \"10s\" or \"250ms\"")
        })? {
            Raw::Text(s) => s,
            Raw::Number(n) => n.to_string(),
        };
        duration::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("5min"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten s").is_err());
        assert!(parse_duration("3 days").is_err());
    }
}
