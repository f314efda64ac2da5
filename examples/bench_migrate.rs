//! Benchmark driver, not shipped: runs the production pre-serve stage
//! ([`agent_backend::app::pre_serve_with`]: connect, status, lock, apply, verify) over the
//! migration directory given as the only argument. `bench/run.py` uses it for the generated
//! sets of 500 and 200 migrations; the `server` binary itself only ever runs its embedded set.
//!
//! Configuration as for `server` (DATABASE_URL, ENVIRONMENT, CONFIG_DIR, ...).

use std::path::PathBuf;
use std::process::ExitCode;

use agent_backend::app::pre_serve_with;
use agent_backend::config::Settings;
use agent_backend::error::AppError;
use agent_backend::error::Exit;
use agent_backend::migrate::MigrationSet;
use agent_backend::telemetry;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: bench_migrate <migrations dir>");
        return Exit::Usage.into();
    };
    let config_dir = std::env::var_os("CONFIG_DIR").map_or_else(|| "config".into(), PathBuf::from);
    let settings = match Settings::load(&config_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench_migrate: {}", AppError::from(e));
            return Exit::Config.into();
        }
    };
    let set = match MigrationSet::from_dir(&dir) {
        Ok(set) => set,
        Err(e) => {
            eprintln!("bench_migrate: {e}");
            return Exit::Usage.into();
        }
    };
    let _telemetry = telemetry::init(&settings);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_migrate: {e}");
            return Exit::Failure.into();
        }
    };
    match runtime.block_on(pre_serve_with(&settings, &set)) {
        Ok(_) => Exit::Success.into(),
        Err(e) => Exit::from(&e).into(),
    }
}
