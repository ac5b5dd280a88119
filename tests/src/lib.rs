//! Test harness of the concert booking service: a fresh database and topic set per test, the api and the
//! workers run in-process or as real OS processes, a small HTTP client that speaks `docs/API.md`, and readers
//! of the Kafka topics.
//!
//! ```no_run
//! # async fn demo() {
//! use concert_tests::TestStack;
//! let stack = TestStack::start().await;
//! let api = stack.api();
//! let user = api.sign_up("ada").await;
//! assert_eq!(api.charge(&user, 1_000).await, 1_000);
//! # }
//! ```

pub mod broker;
pub mod browser;
pub mod client;
pub mod env;
pub mod kafka;
pub mod logs;
pub mod pg_server;
pub mod procs;
pub mod stack;
pub mod wait;

pub use client::{Api, Concert, Joined, Outcome, Resp, User};
pub use env::{TestEnv, ADMIN_TOKEN};
pub use logs::init_tracing;
pub use stack::TestStack;
pub use wait::{wait_until, Deadline};
