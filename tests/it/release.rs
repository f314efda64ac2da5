//! Releases that are not this build: the `server` command line over a generated migration
//! directory, as a process.
//!
//! `server` embeds its set at build time, so a scenario that needs another set (a broken file, a
//! long `-- no-transaction` index build, the fixed file of the next release) runs
//! [`agent_backend::cli::run_with`], the code `server`'s `main` calls, in this test binary
//! re-executed (`entry_point`). Same command line, configuration, logs, output and exit codes;
//! only the set differs.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use agent_backend::cli::{Cli, run_with};
use agent_backend::migrate::MigrationSet;
use agent_backend::migrate::snapshot::Snapshot;
use clap::Parser;
use tokio::process::Command;

use crate::support::Output;

/// Marks where the release's own stdout starts (libtest prints its header before).
const STDOUT_START: &str = "\u{1e}release stdout\n";
/// Separates the arguments in `RELEASE_ARGS`.
const ARG_SEP: char = '\u{1f}';

/// The snapshot of the release this process runs, when its directory has one.
static SNAPSHOT: std::sync::OnceLock<Snapshot> = std::sync::OnceLock::new();

/// Entry point of a release process (not a test of its own): `server RELEASE_ARGS…` over the set
/// in `RELEASE_DIR` (with its `schema.snapshot`, if there is one), exiting with its code.
#[test]
#[ignore = "entry point of a release process"]
fn entry_point() {
    use std::io::Write;
    let dir = std::env::var("RELEASE_DIR").expect("RELEASE_DIR");
    let args = std::env::var("RELEASE_ARGS").unwrap_or_default();
    let mut set = MigrationSet::from_dir(Path::new(&dir)).expect("a valid migration set");
    // A release carries its snapshot as the project does, `schema.snapshot` beside its files.
    let snapshot = Path::new(&dir).join("schema.snapshot");
    if snapshot.is_file() {
        let text = std::fs::read_to_string(&snapshot).unwrap();
        let parsed = Snapshot::parse(&text).expect("the release's schema.snapshot parses");
        SNAPSHOT.set(parsed).expect("one release per process");
        set = set.with_snapshot(|| SNAPSHOT.get().unwrap());
    }
    let set: &'static MigrationSet = Box::leak(Box::new(set));
    let argv = std::iter::once("server").chain(args.split(ARG_SEP).filter(|a| !a.is_empty()));
    print!("{STDOUT_START}");
    let code = match Cli::try_parse_from(argv) {
        Ok(cli) => run_with(cli, set) as i32,
        Err(e) => {
            let _ = e.print();
            e.exit_code()
        }
    };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}

/// A release: a migration directory and the `server` command line over it.
pub struct Release<'a> {
    pub dir: &'a Path,
}

impl Release<'_> {
    /// `server ARGS` of this release, with the same clean environment as
    /// [`crate::support::server_cmd`].
    pub fn cmd(&self, database_url: &str, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "release::entry_point",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ]);
        crate::support::clean_env(&mut cmd, database_url, env);
        cmd.env("RELEASE_DIR", self.dir)
            .env("RELEASE_ARGS", args.join(&ARG_SEP.to_string()));
        cmd
    }

    /// Runs `server ARGS` of this release to completion (bounded).
    pub async fn run(&self, database_url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
        let out = tokio::time::timeout(
            Duration::from_secs(120),
            self.cmd(database_url, env, args).output(),
        )
        .await
        .expect("release did not finish within 120 s")
        .expect("spawn release");
        output(out)
    }

    /// Starts `server ARGS` of this release in the background; [`finish`] collects it.
    pub fn spawn(
        &self,
        database_url: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> tokio::process::Child {
        let mut cmd = self.cmd(database_url, env, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.spawn().expect("spawn release")
    }
}

/// Waits (bounded) for a process started by [`Release::spawn`].
pub async fn finish(child: tokio::process::Child) -> Output {
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("release did not finish within 120 s")
        .expect("wait for release");
    output(out)
}

fn output(out: std::process::Output) -> Output {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stdout = stdout
        .split_once(STDOUT_START)
        .map_or(stdout.as_ref(), |(_, rest)| rest)
        .to_string();
    Output {
        code: out.status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
