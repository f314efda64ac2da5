# syntax=docker/dockerfile:1
# agent-backend: one image, one binary. `server` carries its migrations (embedded at build time),
# so the runtime stage holds the binary and config/ only; no migrations/, no shell scripts.
#
#   docker build -t agent-backend .
#   docker run -e DATABASE_URL=postgres://... -e API_KEYS=... -p 10000:10000 agent-backend
#
# Stages: chef (toolchain + cargo-chef) → planner (dependency recipe) → builder (dependencies
# cooked in their own layer, then the sources, built offline against .sqlx/) → runtime.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --version 0.1.78 --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Dependencies only: this layer is rebuilt when Cargo.toml or Cargo.lock change, not on every
# source edit.
COPY --from=planner /src/recipe.json recipe.json
# vendor/ holds a patched dependency ([patch.crates-io] in Cargo.toml): it belongs to this layer.
COPY vendor vendor
RUN cargo chef cook --release --locked --bin server --recipe-path recipe.json
COPY Cargo.toml Cargo.lock build.rs migration-lint.toml sqlx.toml schema.snapshot ./
COPY .sqlx .sqlx
COPY config config
COPY migrations migrations
COPY crates crates
COPY src src
# Queries are checked against the committed .sqlx/ data: no database during the build.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin server

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# Debian's CA bundle: the one trust store of the binary's TLS (PostgreSQL with
# sslmode=verify-ca/verify-full, an https:// OTLP collector); docs/operations.md says how to add
# a private CA in a derived image.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /src/target/release/server /app/server
COPY config /app/config
USER 10001:10001
ENV ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=10000 \
    CONFIG_DIR=/app/config
EXPOSE 10000
# Through the binary itself (no curl in the image); it reads PORT like the server does.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/server", "healthcheck", "--ready", "--timeout", "4s"]
# The pre-serve stage is the start-up script: connect with retries → status → apply pending
# migrations under the lock → verify → serve. `docker run IMAGE --migrate-only` runs the stage
# and exits; `docker run IMAGE migrate status` and the other commands work the same way.
ENTRYPOINT ["/app/server"]
