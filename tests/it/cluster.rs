//! A PostgreSQL cluster of the test's own (initdb into a temporary directory, a free loopback
//! port), for faults the shared cluster must not suffer: a restart under a running server.
//! Built from the machine's PostgreSQL binaries (`pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`); as root, the cluster runs as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl Cluster {
    /// A new cluster, started, trust auth for `postgres`.
    pub fn start() -> Self {
        let bin = bindir();
        let dir = std::env::temp_dir().join(format!("agent-backend-pg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(Command::new("chown").args(["postgres:postgres"]).arg(&dir));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Self { dir, bin, port };
        cluster.pg(
            "initdb",
            &["-A", "trust", "-U", "postgres", "--no-sync", "-D"],
            true,
        );
        cluster.ctl("start");
        cluster
    }

    /// An admin URL of `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// `pg_ctl restart -m fast`: every session is ended, the server comes back on the same
    /// port; returns once it accepts connections again.
    pub fn restart(&self) {
        self.ctl("restart");
    }

    fn ctl(&self, action: &str) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        let log = log.to_str().unwrap();
        self.pg(
            "pg_ctl",
            &["-w", "-m", "fast", "-l", log, "-o", &options, action, "-D"],
            true,
        );
    }

    /// `tool` of the cluster's PostgreSQL, as the user that owns the cluster.
    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        }
    }

    fn pg(&self, tool: &str, args: &[&str], with_dir: bool) {
        let mut cmd = self.command(tool);
        cmd.args(args);
        if with_dir {
            cmd.arg(&self.dir);
        }
        run(&mut cmd);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "stop", "-D"])
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}

fn bindir() -> PathBuf {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return dir;
        }
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(root)
        .expect("PostgreSQL's binaries (/usr/lib/postgresql/*/bin)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .collect();
    versions.sort_unstable();
    let version = versions.last().expect("a PostgreSQL version installed");
    root.join(version.to_string()).join("bin")
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
