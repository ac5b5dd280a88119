//! The integration and race suite: one binary, a module per feature. Each test starts its own stack (own
//! database, own topics, own consumer group) against the Postgres and broker named by `DATABASE_URL` and
//! `KAFKA_BROKERS`.

mod balance;
mod catalog;
mod design_docs;
mod holds;
mod operations;
mod outbox;
mod payments;
mod races;
mod requests;
mod support;
mod tokens;
mod users;
mod waiting_room;
