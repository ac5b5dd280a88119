//! What the api and the workers share: the messages on the log, the domain rules and the configuration.

pub mod admission;
pub mod cancellation;
pub mod commands;
pub mod config;
pub mod db;
pub mod env_vars;
pub mod kafka;
pub mod kafka_stats;
pub mod problem;
pub mod request_id;
pub mod seats;
pub mod telemetry;
pub mod token;
pub mod topics;

pub use problem::{ErrorCode, Problem};
