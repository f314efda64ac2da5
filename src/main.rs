//! `server`: parse the command line, hand it to the library, exit with its code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    agent_backend::cli::run(agent_backend::cli::Cli::parse())
}
