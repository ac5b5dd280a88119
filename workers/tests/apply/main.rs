//! Drives `concert_workers::apply_batch` (and the database-only roles of `run`) against a real Postgres,
//! one fresh database per test.

mod background;
mod cancels;
mod helpers;
mod holds;
mod joins;
mod payments;
mod plans;
mod pre_queue;
mod redelivery;
mod retention;
