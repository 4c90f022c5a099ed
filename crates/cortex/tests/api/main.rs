//! The integration suite: the real server on port 0, the same tests on SQLite and on PostgreSQL.
#![allow(
    clippy::disallowed_methods,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default
)]

mod helpers;

mod agents;
mod auth;
mod browser;
mod cache;
mod chat;
mod cli;
mod connections;
mod conventions;
mod crash;
mod health;
mod jwks;
mod knowledge;
mod limits;
mod memory;
mod metrics;
mod portal;
mod runs;
mod sandbox;
mod scaled_out;
mod sdk;
