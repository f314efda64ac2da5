//! The image the Dockerfile builds, run as Render runs it: `.ci/image.sh` builds it with buildah
//! and runs these tests against it (`AGENT_BACKEND_IMAGE`), so they are `#[ignore]`d in a plain
//! `cargo test`. This machine has no OCI runtime: each process runs through `buildah run`
//! (chroot isolation, the host's network) in a working container of the image, as the image's
//! user, in its working directory, with its environment, its entrypoint and its `HEALTHCHECK`
//! read from the image's own configuration; the environment Render adds is render.yaml's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_backend::config::Settings;
use serde_json::Value;
use tokio::process::Command;

use crate::deploy::{render_env, render_yaml};
use crate::observability::otlp_receiver_behind_a_private_ca;
use crate::support::{Output, TestDb, project_dir, spawn_serving};

fn image() -> String {
    std::env::var("AGENT_BACKEND_IMAGE")
        .expect("AGENT_BACKEND_IMAGE names the image under test: run `bash .ci/image.sh`")
}

fn buildah(args: &[&str]) -> String {
    let out = std::process::Command::new("buildah")
        .args(args)
        .output()
        .expect("buildah (bash .ci/image.sh installs it)");
    assert!(
        out.status.success(),
        "buildah {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// What the image says about how it runs (`buildah inspect`, Docker's schema: Render builds
/// with Docker, which keeps `HEALTHCHECK`).
struct ImageConfig {
    user: String,
    workdir: String,
    argv: Vec<String>,
    healthcheck: Vec<String>,
}

impl ImageConfig {
    fn read(image: &str) -> Self {
        let inspect: Value = serde_json::from_str(&buildah(&["inspect", "--type", "image", image]))
            .expect("buildah inspect prints JSON");
        let config = &inspect["Docker"]["config"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                .unwrap_or_default()
        };
        let mut argv = strings(&config["Entrypoint"]);
        argv.extend(strings(&config["Cmd"]));
        let test = strings(&config["Healthcheck"]["Test"]);
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD"),
            "a HEALTHCHECK in exec form (built with --format docker?): {test:?}"
        );
        Self {
            user: config["User"].as_str().unwrap_or_default().to_string(),
            workdir: config["WorkingDir"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            argv,
            healthcheck: test[1..].to_vec(),
        }
    }
}

/// A working container of the image, removed when dropped.
struct Container {
    name: String,
}

impl Container {
    fn of(image: &str) -> Self {
        let name = format!("ab-image-test-{}", uuid::Uuid::new_v4().simple());
        buildah(&["from", "--pull=never", "--name", &name, image]);
        Self { name }
    }

    /// `buildah run` of ARGV as the image's user (or `user`), with `env` over the image's.
    fn command(&self, user: Option<&str>, env: &[(String, String)], argv: &[String]) -> Command {
        let mut cmd = Command::new("buildah");
        cmd.arg("run");
        if let Some(user) = user {
            cmd.args(["--user", user]);
        }
        for (k, v) in env {
            cmd.arg("--env").arg(format!("{k}={v}"));
        }
        cmd.arg(&self.name)
            .arg("--")
            .args(argv)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs ARGV to completion. buildah re-executes itself from a sealed memfd copy of its
    /// binary, and the kernel may refuse the seal for a moment (`sealing memfd copy: Device or
    /// resource busy`, seen once in some hundred runs here): then ARGV never started, and the
    /// run is tried again, at most twice.
    async fn run(&self, user: Option<&str>, env: &[(String, String)], argv: &[String]) -> Output {
        for attempt in 1.. {
            let out = tokio::time::timeout(
                Duration::from_secs(120),
                self.command(user, env, argv).output(),
            )
            .await
            .expect("no exit within 120 s")
            .unwrap();
            let out = Output {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            if attempt == 3 || !out.stderr.contains("sealing memfd copy") {
                return out;
            }
        }
        unreachable!()
    }

    fn root(&self) -> PathBuf {
        PathBuf::from(buildah(&["mount", &self.name]))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("buildah")
            .args(["rm", &self.name])
            .output();
    }
}

/// The descendant of `pid` named `comm`: the image's process under `buildah run`'s own.
fn descendant(pid: u32, comm: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
            let name = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if name.trim() == comm {
                return Some(child);
            }
            if let Some(found) = descendant(child, comm) {
                return Some(found);
            }
        }
    }
    None
}

/// `Uid:` and `Gid:` of /proc/PID/status (real, effective, saved, filesystem).
fn ids(pid: u32) -> (String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (field("Uid:"), field("Gid:"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP proxy in front of PostgreSQL that the test can close (every connection cut, new ones
/// refused at once) and open again: the database becomes unreachable for the image's process
/// without touching the shared cluster.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (is_open, kept) = (open.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let upstream = upstream.clone();
                kept.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { port, open, links }
    }

    fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn reopen(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// `url` with its `host:port` replaced by `authority`; and the `host:port` it had.
fn via(url: &str, authority: &str) -> (String, String) {
    let start = url
        .find('@')
        .map_or(url.find("://").unwrap() + 3, |at| at + 1);
    let end = start + url[start..].find('/').unwrap();
    let upstream = url[start..end].to_string();
    (
        format!("{}{authority}{}", &url[..start], &url[end..]),
        upstream,
    )
}

/// render.yaml's pre-deploy command as argv (exec'd without a shell, so it must need none).
fn pre_deploy(service: &yaml_rust2::Yaml) -> (String, Vec<String>) {
    let command = service["preDeployCommand"].as_str().unwrap().to_string();
    assert!(
        !command.contains(['|', '&', ';', '$', '>', '<', '"', '\'']),
        "{command}: a plain command line"
    );
    let argv = command.split_whitespace().map(String::from).collect();
    (command, argv)
}

fn say(what: impl std::fmt::Display) {
    println!("image: {what}");
}

/// Render's deploy, step by step, in the image: the pre-deploy command against a fresh database,
/// the service started as the image starts it, its health check path, the `HEALTHCHECK` (0 with
/// the database, 1 without it, 0 again once it is back), the uid, and SIGTERM within the grace.
#[tokio::test]
#[ignore = "needs the image: run by .ci/image.sh"]
async fn the_image_deploys_as_render_deploys_it() {
    let image = image();
    let config = ImageConfig::read(&image);
    say(format!(
        "{image}: user {}, workdir {}, entrypoint+cmd {:?}, HEALTHCHECK {:?}",
        config.user, config.workdir, config.argv, config.healthcheck
    ));
    let doc = render_yaml();
    let service = &doc["services"][0];
    let db = TestDb::empty().await;
    let (_, upstream) = via(&db.url, "");
    let proxy = Proxy::start(upstream).await;
    let (url, _) = via(&db.url, &format!("127.0.0.1:{}", proxy.port));
    let port = free_port();
    let mut env = render_env(service, &url);
    env.push(("PORT".into(), port.to_string()));
    let container = Container::of(&image);

    // 1. The pre-deploy command, verbatim, on a database with nothing in it.
    let (command, argv) = pre_deploy(service);
    let out = container.run(None, &env, &argv).await;
    assert_eq!(out.code, Some(0), "{command}: {}", out.stderr);
    crate::support::assert_shows(&out.stderr, "Migrations completed successfully");
    say(format!(
        "pre-deploy `{command}` on a fresh database: exit 0, {}",
        out.stderr
            .lines()
            .find(|l| l.contains("Migrations completed successfully"))
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|l| l["message"].as_str().map(String::from))
            .unwrap_or_default()
    ));

    // 2. The service, as the image starts it, with render.yaml's environment.
    let mut running = spawn_serving(container.command(None, &env, &config.argv)).await;
    let pid = descendant(running.child.id().unwrap(), "server").expect("the server process");
    let (uid, gid) = ids(pid);
    let (user, group) = config.user.split_once(':').unwrap();
    assert_eq!(uid, [user; 4].join(" "), "uid of the image's process");
    assert_eq!(gid, [group; 4].join(" "), "gid of the image's process");
    assert_ne!(user, "0");
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
    assert!(
        cwd.ends_with(config.workdir.trim_start_matches('/')),
        "{cwd:?}"
    );
    say(format!("serving: pid {pid}, Uid {uid}, Gid {gid}"));
    let path = service["healthCheckPath"].as_str().unwrap();
    let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    say(format!(
        "GET {path} from the image's process: {status} {body}"
    ));

    // 3. The HEALTHCHECK, run in the container beside it (as Docker runs it).
    let check = async || container.run(None, &env, &config.healthcheck).await;
    let healthy = check().await;
    assert_eq!(healthy.code, Some(0), "{}", healthy.stderr);
    say(format!(
        "HEALTHCHECK with the database: exit 0 ({})",
        healthy.stdout.trim()
    ));
    proxy.close();
    let deadline = Instant::now() + Duration::from_secs(30);
    let unhealthy = loop {
        let out = check().await;
        if out.code != Some(0) || Instant::now() > deadline {
            break out;
        }
    };
    assert_eq!(unhealthy.code, Some(1), "{}", unhealthy.stderr);
    say(format!(
        "HEALTHCHECK with the database unreachable: exit 1 ({})",
        unhealthy.stderr.lines().next().unwrap_or_default()
    ));
    proxy.reopen();
    let deadline = Instant::now() + Duration::from_secs(30);
    let back = loop {
        let out = check().await;
        if out.code == Some(0) || Instant::now() > deadline {
            break out;
        }
    };
    assert_eq!(back.code, Some(0), "{}", back.stderr);
    say("HEALTHCHECK once the database is back: exit 0");

    // 4. The deploy's SIGTERM: exit 0 within the grace.
    let grace = Settings::load(&project_dir().join("config"))
        .unwrap()
        .server
        .shutdown_grace;
    let started = Instant::now();
    kill(pid, "TERM");
    let code = running.wait().await;
    let took = started.elapsed();
    assert_eq!(code, Some(0));
    assert!(took < grace + Duration::from_secs(1), "{took:?}");
    say(format!("SIGTERM: exit 0 after {} ms", took.as_millis()));
}

fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The image's CA bundle is the trust store: it holds the public CAs (Debian's ca-certificates,
/// for managed PostgreSQL and vendors' endpoints); a collector behind a private CA and a database
/// whose certificate the bundle does not vouch for are refused as built, and trusted once their
/// CA is added the way an operator adds one to a derived image (`/usr/local/share/
/// ca-certificates` + `update-ca-certificates`; no OTEL certificate variable, no
/// `sslrootcert`): the pre-deploy command connects with `sslmode=verify-full` and its spans reach
/// the collector over `https://`.
#[tokio::test]
#[ignore = "needs the image: run by .ci/image.sh"]
async fn the_image_trusts_what_its_ca_bundle_holds() {
    let image = image();
    let doc = render_yaml();
    let service = &doc["services"][0];
    let (collector_ca, endpoint, spans) = otlp_receiver_behind_a_private_ca().await;
    let db = TestDb::empty().await;
    // The local cluster's own certificate (Debian's, for `localhost`) stands for the database's CA.
    let mut conn = db.connect().await;
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        ssl, "on",
        "PostgreSQL without TLS: Debian's cluster has it on"
    );
    let cert_file: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let database_ca = std::fs::read_to_string(&cert_file).unwrap();
    let (_, upstream) = via(&db.url, "");
    let port = upstream.rsplit(':').next().unwrap();
    let (verified, _) = via(&db.url, &format!("localhost:{port}"));
    let verified = format!("{verified}?sslmode=verify-full");
    let (command, argv) = pre_deploy(service);
    let with = |url: &str, extra: &[(&str, &str)]| {
        let mut env = render_env(service, url);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    };
    let collector = with(&db.url, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let database = with(&verified, &[("APP_DATABASE__CONNECT_ATTEMPTS", "1")]);

    let built = Container::of(&image);
    let bundle = built.root().join("etc/ssl/certs/ca-certificates.crt");
    let public = std::fs::read_to_string(&bundle)
        .map(|b| b.matches("BEGIN CERTIFICATE").count())
        .unwrap_or(0);
    assert!(
        public > 100,
        "the image's /etc/ssl/certs/ca-certificates.crt holds {public} CA certificates \
         (the runtime stage must install ca-certificates)"
    );
    say(format!(
        "/etc/ssl/certs/ca-certificates.crt: {public} CA certificates"
    ));
    let out = built.run(None, &collector, &argv).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        spans.lock().unwrap().is_empty(),
        "spans reached a collector whose CA the image does not trust"
    );
    // The binary read the bundle (an empty store is a start-up warning of its own) and refused
    // the collector's certificate for its issuer, saying so.
    let refused = out
        .stderr
        .lines()
        .find(|l| l.contains("Trace export failed"))
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|l| l["message"].as_str().map(String::from))
        .unwrap_or_default();
    assert!(
        refused.contains("UnknownIssuer") && refused.contains("certificate is not trusted"),
        "{}",
        out.stderr
    );
    say(format!(
        "{command} exporting to {endpoint} (private CA): exit 0, no span arrives; {refused}"
    ));
    let out = built.run(None, &database, &argv).await;
    assert_eq!(
        out.code,
        Some(4),
        "verify-full to an unknown CA: {}",
        out.stderr
    );
    say(format!(
        "{command} with sslmode=verify-full (certificate not in the bundle): exit 4"
    ));

    let derived = Container::of(&image);
    let anchors = derived.root().join("usr/local/share/ca-certificates");
    std::fs::write(anchors.join("test-collector-ca.crt"), &collector_ca).unwrap();
    std::fs::write(anchors.join("test-database-ca.crt"), &database_ca).unwrap();
    let update = ["update-ca-certificates".to_string()];
    let out = derived.run(Some("0:0"), &[], &update).await;
    assert_eq!(out.code, Some(0), "update-ca-certificates: {}", out.stderr);
    say(format!(
        "derived: update-ca-certificates: {}",
        out.stdout.trim().replace('\n', "; ")
    ));
    let both = with(&verified, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let out = derived.run(None, &both, &argv).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let names: Vec<String> = spans
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert!(
        names.iter().any(|n| n == "migrate.pre_serve"),
        "no migrate.pre_serve span in {names:?}\n{}",
        out.stderr
    );
    say(format!(
        "derived: {command} with sslmode=verify-full: exit 0; {} span(s) arrived over https ({})",
        names.len(),
        names.join(", ")
    ));
}
