//! Cortex: a self-hosted, multi-tenant AI agent backend. See `ARCHITECTURE.md` for the map.

pub mod actions;
pub mod agents;
pub mod api;
pub mod auth;
pub mod config;
pub mod coord;
pub mod knowledge;
pub mod limits;
pub mod pipeline;
pub mod runs;
pub mod sandbox;
pub mod secrets;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
