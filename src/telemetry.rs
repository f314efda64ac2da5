//! Logging and tracing: human-readable lines in development and test, JSON lines in
//! production, to stderr (stdout stays free for command output such as `server config`); and,
//! only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set,
//! the same spans exported as OpenTelemetry traces over OTLP/HTTP (protobuf).
//!
//! Level: `log.level` from config, `debug` when `DEBUG=true`, `RUST_LOG` over both. Nothing
//! here masks secrets: they never reach a log call (see `config::DatabaseUrl`).
//!
//! The exporter reads the standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`, `_TIMEOUT`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`); spans
//! leave in batches from the SDK's own thread, and [`Telemetry::shutdown`] flushes what is left
//! when the process ends.
//!
//! An `https://` endpoint is reached over rustls with the ring provider, trusting the system's
//! CA store (`rustls-native-certs`: the image's `/etc/ssl/certs`, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`), as the database connections do (no second crypto library, no OpenSSL, no
//! roots compiled in: an operator's CA added to the store is trusted, a removed one is not).
//! The HTTP client is built here rather than by the exporter because the exporter knows no TLS
//! variables: `OTEL_EXPORTER_OTLP_CERTIFICATE` (a PEM file of CAs trusted besides the system's,
//! for a collector behind a private CA) and `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` with
//! `OTEL_EXPORTER_OTLP_CLIENT_KEY` (mutual TLS), each with its `_TRACES_` form taking
//! precedence, as the OpenTelemetry specification defines them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings};

mod json_lines;

/// The service name traces carry unless `OTEL_SERVICE_NAME` says otherwise.
const SERVICE_NAME: &str = "agent-backend";

/// Longest the final flush of spans may delay the exit (shutdown stays bounded by its grace
/// plus about a second).
const FLUSH_BUDGET: Duration = Duration::from_millis(500);

static OTEL: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured and the exporter started).
pub fn otel_enabled() -> bool {
    OTEL.load(Ordering::Relaxed)
}

/// A span that only traces need (`db.acquire`, `db.query`, `migration`): built by `make` when
/// spans are exported, [`tracing::Span::none`] otherwise. Log lines name the request and the
/// migration by their own fields; creating and formatting such a span for nobody cost a few
/// thousand instructions per request and per migration (bench/profile.py).
pub fn traced(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if otel_enabled() {
        make()
    } else {
        tracing::Span::none()
    }
}

/// What [`init`] installed; [`Telemetry::shutdown`] flushes the spans not yet exported.
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still buffered (at most [`FLUSH_BUDGET`]) and stops the exporter. Call
    /// outside the async runtime: the flush blocks.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown_with_timeout(FLUSH_BUDGET)
        {
            tracing::warn!("Flushing traces at exit: {e}");
        }
    }
}

/// Why traces cannot be exported (logged; the service runs on without them).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot start the OTLP trace exporter: {0}")]
    Exporter(String),
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// The traces-specific variable when set, else the general one: `(name, value)`.
fn otlp_var(traces: &str, general: &str) -> Option<(String, String)> {
    [traces, general].into_iter().find_map(|name| {
        let value = std::env::var(name).ok()?;
        let value = value.trim();
        (!value.is_empty()).then(|| (name.to_string(), value.to_string()))
    })
}

/// The exporter's TLS configuration: ring, the system's CA store plus any CA the
/// `*_CERTIFICATE` variable names, and a client certificate when both client variables are set.
/// An `https://` endpoint with no CA at all to verify it is an error (no ca-certificates in the
/// image): every export would fail.
fn otlp_tls() -> Result<rustls::ClientConfig, TraceError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let bad = |name: &str, path: &str, e: &dyn std::fmt::Display| {
        TraceError::Exporter(format!("{name}={path}: {e}"))
    };
    let certs = |name: &str, path: &str| -> Result<Vec<CertificateDer<'static>>, TraceError> {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| bad(name, path, &e))?;
        if certs.is_empty() {
            return Err(bad(name, path, &"no PEM certificate in the file"));
        }
        Ok(certs)
    };

    let system = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(system.certs);
    if let Some((name, path)) = otlp_var(
        "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
    ) {
        for cert in certs(&name, &path)? {
            roots.add(cert).map_err(|e| bad(&name, &path, &e))?;
        }
    }
    if roots.is_empty()
        && let Some((name, endpoint)) = otlp_var(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        )
        && endpoint.to_ascii_lowercase().starts_with("https://")
    {
        let cause = system
            .errors
            .first()
            .map_or_else(|| "it is empty".to_string(), ToString::to_string);
        return Err(TraceError::Exporter(format!(
            "{name}={endpoint}: no CA certificate to verify it with: the system's CA store \
             (/etc/ssl/certs, SSL_CERT_FILE, SSL_CERT_DIR) gave none ({cause}); install \
             ca-certificates or name the collector's CA in OTEL_EXPORTER_OTLP_CERTIFICATE"
        )));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TraceError::Exporter(e.to_string()))?
        .with_root_certificates(roots);
    let client_cert = otlp_var(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    );
    let client_key = otlp_var(
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    );
    match (client_cert, client_key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some((cert_var, cert_path)), Some((key_var, key_path))) => {
            let chain = certs(&cert_var, &cert_path)?;
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .map_err(|e| bad(&key_var, &key_path, &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(&cert_var, &cert_path, &e))
        }
        (Some((name, _)), None) | (None, Some((name, _))) => Err(TraceError::Exporter(format!(
            "{name} is set without its pair: mutual TLS needs both \
             OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY"
        ))),
    }
}

/// The exporter's HTTP client, saying why a request failed: the SDK logs a failed export as
/// `network error` and no more, which hides the cause an operator can fix, above all a
/// collector certificate that the CA store does not vouch for. A cause is logged once, until
/// an export succeeds or the cause changes (a collector down for an hour is one line, not one
/// per batch).
#[derive(Debug)]
struct OtlpClient {
    http: otlp_reqwest::blocking::Client,
    logged: std::sync::Mutex<Option<String>>,
}

impl opentelemetry_http::HttpClient for OtlpClient {
    // `async_trait`'s form of `async fn send_bytes`, written out.
    fn send_bytes<'s, 'f>(
        &'s self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> std::pin::Pin<
        Box<
            dyn Future<
                    Output = Result<
                        opentelemetry_http::Response<opentelemetry_http::Bytes>,
                        opentelemetry_http::HttpError,
                    >,
                > + Send
                + 'f,
        >,
    >
    where
        's: 'f,
        Self: 'f,
    {
        Box::pin(async move {
            let result = self.http.send_bytes(request).await;
            let cause = result.as_ref().err().map(|e| export_failure(e.as_ref()));
            let mut logged = self
                .logged
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(cause) = &cause
                && logged.as_ref() != Some(cause)
            {
                tracing::warn!("Trace export failed: {cause}");
            }
            *logged = cause;
            result
        })
    }
}

/// A failed export request's causes, outermost first; an untrusted certificate with what to do.
fn export_failure(e: &(dyn std::error::Error + 'static)) -> String {
    let mut causes: Vec<String> = Vec::new();
    let mut untrusted = false;
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        if !causes.last().is_some_and(|last| last.contains(&text)) {
            causes.push(text);
        }
        untrusted |= matches!(
            rustls_verdict(e),
            Some(rustls::Error::InvalidCertificate(_))
        );
        next = e.source();
    }
    let hint = if untrusted {
        "; the collector's certificate is not trusted: add the CA that signed it to the system's \
         CA store (the image's /etc/ssl/certs, in a derived image) or name it in \
         OTEL_EXPORTER_OTLP_CERTIFICATE"
    } else {
        ""
    };
    format!("{}{hint}", causes.join(": "))
}

/// rustls's verdict on the handshake, which arrives as an I/O error wrapped in another
/// (tokio-rustls's, then hyper-rustls's): an error's `source` skips the inner ones.
fn rustls_verdict<'e>(mut e: &'e (dyn std::error::Error + 'static)) -> Option<&'e rustls::Error> {
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

/// The exporter's blocking HTTP client: plain HTTP or TLS by the endpoint's scheme, with the
/// timeout the exporter would have used (`OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, `…_TIMEOUT`,
/// 10 s). Built on a thread of its own: a blocking client may be neither built nor dropped
/// inside the async runtime.
fn otlp_http_client() -> Result<OtlpClient, TraceError> {
    let tls = otlp_tls()?;
    let timeout = otlp_var(
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT,
    )
    .and_then(|(_, ms)| ms.parse().ok())
    .map_or(
        opentelemetry_otlp::OTEL_EXPORTER_OTLP_TIMEOUT_DEFAULT,
        Duration::from_millis,
    );
    std::thread::spawn(move || {
        otlp_reqwest::blocking::Client::builder()
            .timeout(timeout)
            .tls_backend_preconfigured(tls)
            .build()
    })
    .join()
    .map_err(|_| TraceError::Exporter("building the HTTP client panicked".into()))?
    .map(|http| OtlpClient {
        http,
        logged: std::sync::Mutex::new(None),
    })
    .map_err(|e| TraceError::Exporter(format!("building the HTTP client: {e}")))
}

/// The tracer provider when an OTLP endpoint is configured and the SDK is not disabled.
fn otlp_provider() -> Result<Option<SdkTracerProvider>, TraceError> {
    let configured =
        env_set("OTEL_EXPORTER_OTLP_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim() == "true")
        || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim() == "none");
    if !configured || disabled {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(otlp_http_client()?)
        .build()
        .map_err(|e| TraceError::Exporter(e.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder().with_attribute(
        opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
    );
    if !env_set("OTEL_SERVICE_NAME") {
        resource = resource.with_service_name(SERVICE_NAME);
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}

/// Installs the global subscriber (once per process: a second call keeps the first) and, when
/// configured, the OpenTelemetry exporter.
pub fn init(settings: &Settings) -> Telemetry {
    let level = if settings.debug {
        "debug".to_string()
    } else {
        settings.log.level.clone()
    };
    // Our crate at the configured level; dependencies one notch quieter unless RUST_LOG says.
    // The OpenTelemetry crates (targets `opentelemetry*`) log their start-up at debug and info;
    // their failures (an export that did not reach the collector) are what an operator needs.
    let default = format!("{level},agent_backend={level},sqlx=warn,poem=info,opentelemetry=warn");
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match settings.log.format {
        LogFormat::Json => fmt
            .fmt_fields(json_lines::SpanMembers)
            .event_format(json_lines::JsonLines)
            .boxed(),
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
    };
    let (provider, trace_error) = match otlp_provider() {
        Ok(provider) => (provider, None),
        Err(e) => (None, Some(e)),
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(SERVICE_NAME)));
    let installed = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .with(filter)
        .try_init()
        .is_ok();
    if let Some(e) = trace_error {
        tracing::warn!("{e}; serving without traces");
    }
    // Already installed (tests calling in twice): keep the first, export nothing from here.
    let provider = provider.filter(|_| installed);
    OTEL.store(provider.is_some(), Ordering::Relaxed);
    Telemetry { provider }
}

/// Request headers as OpenTelemetry's propagators read them.
struct Headers<'a>(&'a poem::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Names the OpenTelemetry span of a request once its route is known (`GET /health`): the span
/// has started by then (it joined the client's trace), so the name goes to it directly.
pub fn name_request_span(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}

/// Makes `span` (a request's) continue the client's trace when it sent a W3C `traceparent`,
/// and records the trace id on it (`trace_id`), so every log line of the request carries it.
/// With traces off, the client's trace id is still logged; with neither, there is none.
pub fn join_trace(span: &tracing::Span, headers: &poem::http::HeaderMap) {
    let parent = headers
        .contains_key("traceparent")
        .then(|| TraceContextPropagator::new().extract(&Headers(headers)));
    let trace_id = if otel_enabled() {
        if let Some(parent) = parent {
            // An unusable parent leaves the span a root of its own trace: nothing to report.
            let _ = span.set_parent(parent);
        }
        span.context().span().span_context().trace_id()
    } else {
        parent.map_or(TraceId::INVALID, |cx| cx.span().span_context().trace_id())
    };
    if trace_id != TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}
