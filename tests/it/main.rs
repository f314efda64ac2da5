//! Integration tests: one crate (one link step), a module per area. Every test gets its own
//! PostgreSQL database, dropped afterwards; the server is driven as a library (`engine`), its
//! routes in process (`api`) and as a process (`process`).
//!
//! PostgreSQL: `TEST_DATABASE_URL` (an admin connection; default
//! `postgres://postgres@127.0.0.1:5432/postgres`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod cluster;
mod compat;
mod crash;
mod deploy;
mod engine;
mod events;
mod exact_json;
mod faults;
mod guide;
mod idempotency;
mod image;
mod inflight;
mod lint;
mod observability;
mod ops;
mod pooler;
mod process;
mod proxy;
mod release;
mod schema;
mod sqlx_parity;
mod stage_retry;
mod support;
