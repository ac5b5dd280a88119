//! The thin HTTP front of the booking service. It authenticates, validates and publishes commands to the
//! log, answers from the reply topic (or the stored outcome), and serves reads straight from Postgres.
//!
//! Where things are: `routes/` handles requests (one module per area), `submit` publishes commands and waits
//! for outcomes, `queue_gate` decides who is admitted, `db/` holds every SQL statement, `rooms` and `replies`
//! are the in-memory caches fed by Postgres and the reply topic.

pub mod address_slots;
pub mod anonymous;
pub mod config;
pub mod db;
pub mod error;
pub mod event_streams;
pub mod extract;
pub mod http_metrics;
pub mod openapi;
pub mod paging;
pub mod queue_gate;
pub mod queue_proof;
pub mod rate_limits;
pub mod readiness;
pub mod replies;
pub mod rooms;
pub mod routes;
pub mod seat_maps;
pub mod shedding;
pub mod startup;
pub mod state;
pub mod submit;
pub mod validate;

pub use config::ApiConfig;
pub use startup::{app, Application};
