//! Deploy: `server healthcheck`, shutdown under a deploy (SIGTERM with a request in flight,
//! readiness during shutdown), and the deploy files checked against the binary: the Dockerfile's
//! rules and render.yaml's commands, health path, variables and field names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use agent_backend::config::Settings;
use agent_backend::http::{AppState, routes};
use agent_backend::migrate::embedded;
use poem::Endpoint;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::{TestDb, project_dir, run_ok, run_server, spawn_server, until};

fn port_of(base: &str) -> String {
    base.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string()
}

#[tokio::test]
async fn healthcheck_probes_live_and_ready_through_the_binary() {
    let db = TestDb::migrated().await;
    let mut server = spawn_server(&db.url, &[]).await;
    let port = port_of(&server.base);
    let env = [("PORT", port.as_str())];

    for args in [&["healthcheck"][..], &["healthcheck", "--ready"]] {
        let out = run_server(&db.url, &env, args).await;
        assert_eq!(out.code, Some(0), "{args:?}: {}", out.stderr);
        assert!(out.stdout.starts_with("healthy: "), "{}", out.stdout);
    }

    // The database goes: still alive, no longer ready.
    db.drop_now().await;
    let out = run_server(&db.url, &env, &["healthcheck", "--ready"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert!(out.stderr.contains("answered 503"), "{}", out.stderr);
    run_ok(&db.url, &env, &["healthcheck"]).await;

    // Nothing listening: unhealthy, one line naming the address.
    server.signal("TERM");
    assert_eq!(server.wait().await, Some(0));
    let out = run_server(&db.url, &env, &["healthcheck"]).await;
    assert_eq!(out.code, Some(1));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    crate::support::assert_shows(&out.stderr, &format!("127.0.0.1:{port}"));

    // A bad configuration is unhealthy too (Docker reads only 0 and 1).
    let out = run_server(&db.url, &[("PORT", "not-a-port")], &["healthcheck"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
}

/// A deploy's SIGTERM arrives while a request waits on the database, which answers within the
/// grace: the server stops accepting, the request completes and is stored, and the process
/// exits 0. (Past the grace the request is cancelled instead:
/// `faults::sigterm_past_the_grace_cancels_a_blocked_request_and_writes_nothing`.)
#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_0() {
    let db = TestDb::migrated().await;
    let mut server = spawn_server(&db.url, &[]).await;
    let http = reqwest::Client::new();
    let conversation: Value = crate::support::json_body(
        http.post(format!("{}/api/v1/conversations", server.base))
            .json(&json!({ "title": "deploy" })),
    )
    .await;
    let id = conversation["id"].as_str().unwrap().to_string();

    // Hold the conversation's row: the append below waits on it inside the server.
    let mut blocker = db.connect().await;
    sqlx::raw_sql("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query("SELECT 1 FROM conversations WHERE id = $1::uuid FOR UPDATE")
        .bind(&id)
        .execute(&mut blocker)
        .await
        .unwrap();
    let append = tokio::spawn({
        let url = format!("{}/api/v1/conversations/{id}/messages", server.base);
        async move {
            http.post(url)
                .json(&json!({ "role": "user", "content": "in flight" }))
                .send()
                .await
        }
    });

    let mut observer = db.connect().await;
    until("the append to wait on the row lock", async || {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'agent-backend'
               AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut observer)
        .await
        .unwrap()
            == 1
    })
    .await;

    server.signal("TERM");
    let addr = server.base.trim_start_matches("http://").to_string();
    until("the listener to close", async || {
        tokio::net::TcpStream::connect(&addr).await.is_err()
    })
    .await;
    assert!(!append.is_finished(), "the request must still be in flight");

    sqlx::raw_sql("COMMIT").execute(&mut blocker).await.unwrap();
    let resp = append
        .await
        .unwrap()
        .expect("the in-flight request gets its answer");
    assert_eq!(resp.status().as_u16(), 201);
    let message: Value = resp.json().await.unwrap();
    assert_eq!(message["seq"], 1);
    assert_eq!(server.wait().await, Some(0));

    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM messages WHERE conversation_id = $1::uuid")
            .bind(&id)
            .fetch_one(&mut observer)
            .await
            .unwrap();
    assert_eq!(stored, 1);
}

#[tokio::test]
async fn readiness_turns_503_once_shutdown_begins() {
    let db = TestDb::migrated().await;
    let settings = Settings::load(&project_dir().join("config")).unwrap();
    let pool = PgPoolOptions::new().connect_lazy(&db.url).unwrap();
    let state = AppState::new(&settings, pool, embedded::migrations());
    let app = routes(&settings, state.clone());
    let ready = || async {
        let resp = app
            .get_response(poem::Request::builder().uri_str("/health/ready").finish())
            .await;
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_slice(&resp.into_body().into_vec().await.unwrap())
            .unwrap_or(Value::Null);
        (status, body)
    };

    let (status, body) = ready().await;
    assert_eq!(status, 200, "{body}");
    state.begin_shutdown();
    let (status, body) = ready().await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["failed"], json!(["shutdown"]), "{body}");
    let live = app
        .get_response(poem::Request::builder().uri_str("/health/live").finish())
        .await;
    assert_eq!(live.status().as_u16(), 200, "liveness is not readiness");
}

// --- Dockerfile -------------------------------------------------------------------------------

struct Instruction {
    stage: usize,
    keyword: String,
    args: String,
}

/// Instructions with continuation lines joined and comments dropped; `stage` counts FROMs.
fn dockerfile() -> Vec<Instruction> {
    let text = std::fs::read_to_string(project_dir().join("Dockerfile")).unwrap();
    let mut logical = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                logical.push(std::mem::take(&mut current));
            }
        }
    }
    let mut stage = 0;
    logical
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (keyword, args) = l.trim().split_once(char::is_whitespace).unwrap();
            let keyword = keyword.to_uppercase();
            if keyword == "FROM" {
                stage += 1;
            }
            let args = args.split_whitespace().collect::<Vec<_>>().join(" ");
            Instruction {
                stage,
                keyword,
                args,
            }
        })
        .collect()
}

#[test]
fn dockerfile_follows_the_deploy_rules() {
    let all = dockerfile();
    let last = all.iter().map(|i| i.stage).max().unwrap();
    assert!(last >= 3, "multi-stage: planner, builder, runtime");
    let find = |keyword: &str, needle: &str| {
        all.iter()
            .position(|i| i.keyword == keyword && i.args.contains(needle))
            .unwrap_or_else(|| panic!("no {keyword} containing {needle:?}"))
    };

    // Dependencies cooked in their own layer, before the sources arrive.
    let cook = find("RUN", "cargo chef cook");
    let sources = find("COPY", "src src");
    assert!(
        cook < sources,
        "dependencies must be cached apart from sources"
    );
    assert!(all[cook].args.contains("--locked") && all[cook].args.contains("--release"));
    // A patched dependency under vendor/ must be there when dependencies are cooked.
    let manifest = std::fs::read_to_string(project_dir().join("Cargo.toml")).unwrap();
    if manifest.contains("path = \"vendor/") {
        assert!(
            find("COPY", "vendor vendor") < cook,
            "COPY vendor/ before cooking"
        );
    }

    // The build: offline against .sqlx/, locked, release.
    let build = find("RUN", "cargo build");
    let offline = find("ENV", "SQLX_OFFLINE=true");
    assert!(offline < build && all[offline].stage == all[build].stage);
    assert!(find("COPY", ".sqlx") < build);
    let command = all[build].args.clone();
    assert!(command.contains("--locked") && command.contains("--release"));
    // CI builds this Dockerfile itself, unchanged, and runs the image's tests (tests/it/image.rs).
    let ci = std::fs::read_to_string(project_dir().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "bash .ci/image.sh"),
        ".ci/run must build and run the image: bash .ci/image.sh"
    );
    let image_ci = std::fs::read_to_string(project_dir().join(".ci/image.sh")).unwrap();
    for needle in [
        "buildah bud --format docker",
        "--pull=never",
        "image:: -- --ignored",
    ] {
        assert!(image_ci.contains(needle), ".ci/image.sh: {needle}");
    }

    // Everything build.rs reads (its rerun-if-changed inputs) reaches the builder: a file left
    // out would not fail the build, it would silently build something else.
    let copied: Vec<&str> = all
        .iter()
        .filter(|i| {
            i.keyword == "COPY" && i.stage == all[build].stage && !i.args.starts_with("--from=")
        })
        .flat_map(|i| {
            let words: Vec<&str> = i.args.split_whitespace().collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    let ignored = std::fs::read_to_string(project_dir().join(".dockerignore")).unwrap();
    for input in build_script_inputs() {
        let first = input.split('/').next().unwrap();
        assert!(
            copied.contains(&input.as_str()) || copied.contains(&first),
            "build.rs reads {input}, which the builder stage does not COPY"
        );
        assert!(
            !ignored.lines().any(|l| l.trim_end_matches('/') == first),
            "build.rs reads {input}, which .dockerignore leaves out of the context"
        );
    }

    // The runtime stage: slim, CA certificates, non-root, only the binary and config/.
    let runtime: Vec<&Instruction> = all.iter().filter(|i| i.stage == last).collect();
    let base = &runtime[0].args;
    assert!(
        base.contains("-slim") || base.contains("distroless"),
        "slim final image: {base}"
    );
    assert!(
        runtime
            .iter()
            .any(|i| i.keyword == "RUN" && i.args.contains("ca-certificates"))
            || base.contains("distroless"),
        "CA certificates for TLS to managed PostgreSQL"
    );
    let user = runtime
        .iter()
        .rfind(|i| i.keyword == "USER")
        .expect("a USER in the final stage");
    let name = user.args.split(':').next().unwrap();
    assert!(
        name != "root" && name != "0",
        "runs as non-root: {}",
        user.args
    );
    let copies: Vec<&str> = runtime
        .iter()
        .filter(|i| i.keyword == "COPY")
        .map(|i| i.args.as_str())
        .collect();
    assert_eq!(
        copies,
        [
            "--from=builder /src/target/release/server /app/server",
            "config /app/config"
        ],
        "only the binary and its config; the binary carries the migrations"
    );

    let entrypoint = runtime
        .iter()
        .find(|i| i.keyword == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    assert_eq!(entrypoint.args, r#"["/app/server"]"#);
    let healthcheck = runtime
        .iter()
        .find(|i| i.keyword == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let exec = healthcheck
        .args
        .split_once("CMD ")
        .expect("HEALTHCHECK ... CMD [...]")
        .1;
    let argv: Vec<String> = serde_json::from_str(exec).expect("exec form: no shell, no curl");
    assert_eq!(argv[0], "/app/server");
    assert_eq!(argv[1], "healthcheck");
    assert_cli_accepts(&argv[1..]);
}

/// The project files build.rs declared as inputs (`cargo:rerun-if-changed`), relative to the
/// project root, from this build's build-script output.
fn build_script_inputs() -> Vec<String> {
    let output = Path::new(env!("OUT_DIR")).parent().unwrap().join("output");
    let text = std::fs::read_to_string(&output).unwrap();
    let root = project_dir();
    let inputs: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:rerun-if-changed="))
        .filter_map(|p| {
            Path::new(p)
                .strip_prefix(&root)
                .ok()
                .map(|rel| rel.display().to_string())
        })
        .collect();
    assert!(
        inputs.iter().any(|i| i == "migrations"),
        "{output:?}: {inputs:?}"
    );
    inputs
}

/// The binary's parser accepts ARGS (checked with `--help` appended: no side effects).
fn assert_cli_accepts(args: &[String]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
        .args(args)
        .arg("--help")
        .env("CONFIG_DIR", project_dir().join("config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "server {args:?} is not a command of the binary: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- render.yaml ------------------------------------------------------------------------------

/// Field names of Render's Blueprint reference that this project may use
/// (../shared/render/blueprint-notes.md).
const ROOT_KEYS: &[&str] = &[
    "services",
    "databases",
    "envVarGroups",
    "previews",
    "projects",
    "ungrouped",
];
const SERVICE_KEYS: &[&str] = &[
    "type",
    "name",
    "runtime",
    "plan",
    "region",
    "branch",
    "buildCommand",
    "startCommand",
    "preDeployCommand",
    "healthCheckPath",
    "numInstances",
    "scaling",
    "maxShutdownDelaySeconds",
    "dockerfilePath",
    "dockerContext",
    "dockerCommand",
    "rootDir",
    "autoDeployTrigger",
    "envVars",
];
const ENV_VAR_KEYS: &[&str] = &["key", "value", "generateValue", "sync", "fromDatabase"];
const DATABASE_KEYS: &[&str] = &[
    "name",
    "databaseName",
    "user",
    "plan",
    "postgresMajorVersion",
    "diskSizeGB",
    "ipAllowList",
    "readReplicas",
    "highAvailability",
];

fn keys(y: &Yaml) -> BTreeSet<String> {
    y.as_hash()
        .expect("a mapping")
        .keys()
        .map(|k| k.as_str().expect("string keys").to_string())
        .collect()
}

fn assert_known(what: &str, y: &Yaml, allowed: &[&str]) {
    for key in keys(y) {
        assert!(
            allowed.contains(&key.as_str()),
            "{what}: {key:?} is not a Blueprint field"
        );
    }
}

pub(crate) fn render_yaml() -> Yaml {
    let text = std::fs::read_to_string(project_dir().join("render.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

#[test]
fn render_yaml_uses_blueprint_field_names_and_the_required_settings() {
    let doc = render_yaml();
    assert_known("root", &doc, ROOT_KEYS);
    for service in doc["services"].as_vec().unwrap() {
        assert_known("service", service, SERVICE_KEYS);
        for var in service["envVars"].as_vec().unwrap() {
            assert_known("envVars entry", var, ENV_VAR_KEYS);
        }
    }
    let service = &doc["services"][0];
    let database = &doc["databases"][0];
    assert_known("database", database, DATABASE_KEYS);

    assert_eq!(service["type"].as_str(), Some("web"));
    assert_eq!(service["runtime"].as_str(), Some("docker"));
    assert_eq!(service["healthCheckPath"].as_str(), Some("/health/ready"));
    let delay = service["maxShutdownDelaySeconds"].as_i64().unwrap();
    let grace = Settings::load(&project_dir().join("config"))
        .unwrap()
        .server
        .shutdown_grace;
    assert!(
        (grace.as_secs() as i64) + 2 <= delay && delay <= 300,
        "the platform must wait longer ({delay}s) than the server drains and cuts ({}s + 1s)",
        grace.as_secs()
    );

    let vars: BTreeMap<String, &Yaml> = service["envVars"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|v| (v["key"].as_str().unwrap().to_string(), v))
        .collect();
    assert_eq!(vars["ENVIRONMENT"]["value"].as_str(), Some("production"));
    assert_eq!(vars["DEBUG"]["value"].as_str(), Some("false"));
    let from = &vars["DATABASE_URL"]["fromDatabase"];
    assert_eq!(from["property"].as_str(), Some("connectionString"));
    assert_eq!(from["name"].as_str(), database["name"].as_str());
    // Migrations connect to the database itself, whatever DATABASE_URL points at.
    let migration = &vars["DATABASE_MIGRATION_URL"]["fromDatabase"];
    assert_eq!(migration["property"].as_str(), Some("connectionString"));
    assert_eq!(migration["name"].as_str(), database["name"].as_str());
    // The connection budget counts the instances Render runs.
    assert_eq!(
        vars["APP_SERVER__INSTANCES"]["value"]
            .as_str()
            .and_then(|v| v.parse::<i64>().ok()),
        service["numInstances"].as_i64(),
        "APP_SERVER__INSTANCES must equal numInstances"
    );
    assert_eq!(vars["API_KEYS"]["sync"].as_bool(), Some(false));
    assert!(
        vars["API_KEYS"]["value"].is_badvalue(),
        "secrets stay out of git"
    );
}

/// The environment render.yaml gives the service: its values, a made-up secret for each
/// `sync: false` entry (one per variable, as in the dashboard: a metrics token may not be an API
/// key) and `database_url` for each `fromDatabase` one. Every key is one the configuration reads.
pub(crate) fn render_env(service: &Yaml, database_url: &str) -> Vec<(String, String)> {
    service["envVars"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|var| {
            let key = var["key"].as_str().unwrap();
            assert!(
                Settings::reads_env_var(key),
                "{key} is not read by the configuration"
            );
            let value = match (var["value"].as_str(), var["sync"].as_bool()) {
                (Some(v), _) => v.to_string(),
                (None, Some(false)) => format!("render-dashboard-secret-{key}-0123456789"),
                _ if !var["fromDatabase"].is_badvalue() => database_url.to_string(),
                _ => panic!("{key}: no value, no sync: false, not fromDatabase"),
            };
            (key.to_string(), value)
        })
        .collect()
}

/// The commands render.yaml names run in the binary, the health path it checks answers 200,
/// and every variable it sets is one the configuration reads, with the value taking effect.
#[tokio::test]
async fn render_yaml_commands_path_and_variables_work_with_the_binary() {
    let doc = render_yaml();
    let service = &doc["services"][0];
    let db = TestDb::empty().await;

    let mut env = render_env(service, &db.url);
    // Locally the port is free-for-all; Render sets PORT itself.
    env.push(("PORT".to_string(), "0".to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();

    // Each variable takes effect (a misspelt APP_ key would stop start-up, exit 3).
    let out = run_ok(&db.url, &env, &["config"]).await;
    assert!(out.stdout.contains(r#"environment = "production""#));
    crate::support::assert_shows(&out.stdout, "max_connections = 10");
    assert!(!out.stdout.contains("render-dashboard-secret"), "masked");
    assert!(out.stdout.contains("instances = 2"), "{}", out.stdout);

    let pre_deploy = service["preDeployCommand"].as_str().unwrap();
    let args: Vec<&str> = pre_deploy
        .strip_prefix("/app/server")
        .expect("the pre-deploy command runs the image's binary")
        .split_whitespace()
        .collect();
    let out = run_server(&db.url, &env, &args).await;
    assert_eq!(out.code, Some(0), "{pre_deploy}: {}", out.stderr);
    assert!(out.stderr.contains("Migrations completed successfully"));

    let server = spawn_server(&db.url, &env).await;
    let path = service["healthCheckPath"].as_str().unwrap();
    let resp = reqwest::get(format!("{}{path}", server.base))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
}
