//! Every SQL statement the api runs, grouped by what it touches.

pub mod box_office;
pub mod cancellations;
pub mod catalog;
pub mod idempotency;
pub mod requests;
pub mod rooms;
pub mod users;
