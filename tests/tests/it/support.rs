//! Small helpers shared by the test modules: database reads and common set-ups.

use std::time::Duration;

use concert_tests::{wait_until, Api, Concert, Deadline, User};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

/// `SELECT count(*) ...` with one uuid bind (`$1`), or none if the query has no parameter.
pub async fn count(db: &PgPool, sql: &str, id: Option<Uuid>) -> i64 {
    let query = sqlx::query_scalar::<_, i64>(sql);
    let query = match id {
        Some(id) => query.bind(id),
        None => query,
    };
    query
        .fetch_one(db)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

/// A user with `money` won and an ACTIVE queue token for `concert`.
pub async fn buyer(api: &Api, name: &str, concert: &Concert, money: i64) -> (User, String) {
    let user = api.sign_up(name).await;
    if money > 0 {
        api.charge(&user, money).await;
    }
    let token = api.enter(&user, concert.concert_id).await;
    (user, token)
}

/// A policy with only `max_active_users`.
pub fn max_active(max: i64, active_seconds: i64, hold_seconds: i64) -> Value {
    json!({ "max_active_users": max, "active_seconds": active_seconds, "hold_seconds": hold_seconds })
}

pub fn uuid(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a UUID string, got {value}"))
}

pub fn time(value: &Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| panic!("an RFC 3339 time, got {value}"))
}

/// Waits up to `secs` for the relays to publish every outbox row (a deadline, not a sleep).
pub async fn outbox_published(db: &PgPool, what: &str, secs: u64) {
    wait_until(
        what,
        Deadline::secs(secs),
        Duration::from_millis(100),
        || async {
            let unpublished = count(
                db,
                "SELECT count(*) FROM outbox WHERE published_at IS NULL",
                None,
            )
            .await;
            (unpublished == 0).then_some(())
        },
    )
    .await;
}
