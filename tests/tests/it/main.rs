//! The integration and race suite: one binary, a module per feature. Each test starts its own stack (own
//! database, own topics, own consumer group) against the Postgres and broker named by `DATABASE_URL` and
//! `KAFKA_BROKERS`.

mod balance;
mod box_office;
mod cancellations;
mod catalog;
mod checkout;
mod claim_races;
mod claims;
mod dead_letters;
mod design_docs;
mod edges;
mod floods;
mod holds;
mod limits;
mod module_graph;
mod my_holds;
mod operations;
mod outbox;
mod payments;
mod plans;
mod pre_queue;
mod queue_events;
mod queue_proof;
mod races;
mod refusals;
mod requests;
mod resume;
mod retention;
mod seat_maps;
mod secrets;
mod shedding;
mod support;
mod tokens;
mod users;
mod waiting_room;
