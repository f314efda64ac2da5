//! agent-backend: the library behind the `server` binary. `main.rs` only parses the command
//! line; everything else lives here so tests drive the same code the binary runs.

pub mod api;
pub mod app;
pub mod cli;
pub mod compat;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod migrate;
pub mod monitoring;
pub mod queries;
pub mod releases;
pub mod telemetry;
