//! Users, balances, the ledger and reservations. A charge is one conditional UPDATE plus a ledger row in one
//! transaction: safe under any concurrency, no read-modify-write.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

pub async fn create(pool: &PgPool, user_id: Uuid, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO users (user_id, name) VALUES ($1, $2)",
        user_id,
        name,
    )
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn balance(pool: &PgPool, user_id: Uuid) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar!("SELECT balance FROM users WHERE user_id = $1", user_id)
        .fetch_optional(pool)
        .await
}

pub enum ChargeOutcome {
    Charged(i64),
    UnknownUser,
    OverLimit,
    /// The Idempotency-Key was used before for a charge of another amount.
    KeyReused,
}

/// Adds `amount` to the balance unless it would pass `max_balance`, and records it in the ledger.
///
/// With an Idempotency-Key the charge happens once per (user, key), however many copies race: the key's
/// row is inserted first, so a copy waits on it until the first transaction ends and then answers what
/// the first one did (the balance right after it), or charges itself if the first rolled back.
pub async fn charge(
    pool: &PgPool,
    user_id: Uuid,
    amount: i64,
    max_balance: i64,
    idempotency_key: Option<&str>,
) -> Result<ChargeOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(key) = idempotency_key {
        let first = sqlx::query_scalar!(
            "INSERT INTO charge_keys (user_id, idem_key, amount) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, idem_key) DO NOTHING RETURNING amount",
            user_id,
            key,
            amount,
        )
        .fetch_optional(&mut *tx)
        .await?;
        if first.is_none() {
            // A separate statement, so a fresh snapshot (READ COMMITTED) that holds the first charge's row.
            let earlier = sqlx::query!(
                r#"SELECT amount, balance_after AS "balance_after!" FROM charge_keys
                   WHERE user_id = $1 AND idem_key = $2"#,
                user_id,
                key,
            )
            .fetch_one(&mut *tx)
            .await?;
            return Ok(if earlier.amount == amount {
                ChargeOutcome::Charged(earlier.balance_after)
            } else {
                ChargeOutcome::KeyReused
            });
        }
    }
    let balance: Option<i64> = sqlx::query_scalar!(
        "UPDATE users SET balance = balance + $2 WHERE user_id = $1 AND balance <= $3::bigint - $2 RETURNING balance",
        user_id,
        amount,
        max_balance,
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(balance) = balance else {
        let exists: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM users WHERE user_id = $1) AS "exists!""#,
            user_id,
        )
        .fetch_one(&mut *tx)
        .await?;
        // Dropping the transaction rolls back the key's row too: a retry is charged afresh.
        return Ok(if exists {
            ChargeOutcome::OverLimit
        } else {
            ChargeOutcome::UnknownUser
        });
    };
    sqlx::query!(
        "INSERT INTO balance_ledger (user_id, kind, amount, balance_after) VALUES ($1, 'CHARGE', $2, $3)",
        user_id,
        amount,
        balance,
    )
    .execute(&mut *tx)
    .await?;
    if let Some(key) = idempotency_key {
        sqlx::query!(
            "UPDATE charge_keys SET balance_after = $3 WHERE user_id = $1 AND idem_key = $2",
            user_id,
            key,
            balance,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(ChargeOutcome::Charged(balance))
}

#[derive(sqlx::FromRow)]
pub struct LedgerRow {
    pub entry_id: i64,
    pub kind: String,
    pub amount: i64,
    pub balance_after: i64,
    pub at: DateTime<Utc>,
}

/// Ledger entries newest first, older than `before` when given.
pub async fn history(
    pool: &PgPool,
    user_id: Uuid,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LedgerRow>, sqlx::Error> {
    sqlx::query_as!(
        LedgerRow,
        "SELECT entry_id, kind, amount, balance_after, at FROM balance_ledger \
         WHERE user_id = $1 AND ($2::bigint IS NULL OR entry_id < $2) ORDER BY entry_id DESC LIMIT $3",
        user_id,
        before,
        limit,
    )
    .fetch_all(pool)
    .await
}

#[derive(sqlx::FromRow)]
pub struct ReservationRow {
    pub reservation_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
    pub paid_at: DateTime<Utc>,
    /// CONFIRMED or CANCELED.
    pub status: String,
    pub canceled_at: Option<DateTime<Utc>>,
    /// Until when it may be cancelled: its date's start less the room's `cancel_cutoff_hours`.
    pub cancel_deadline: DateTime<Utc>,
}

/// Up to `limit` of the user's reservations, cancelled ones too, newest first, after the reservation
/// `after` when given.
pub async fn reservations(
    pool: &PgPool,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ReservationRow>, sqlx::Error> {
    sqlx::query_as!(
        ReservationRow,
        r#"SELECT r.reservation_id, r.concert_id, r.date_id, r.seat_no, r.price, r.paid_at, r.status, r.canceled_at,
                  d.starts_at - make_interval(hours => w.cancel_cutoff_hours) AS "cancel_deadline!"
         FROM reservations r
         JOIN concert_dates d ON d.date_id = r.date_id
         JOIN waiting_rooms w ON w.concert_id = r.concert_id
         WHERE r.user_id = $1 AND ($2::uuid IS NULL OR (r.paid_at, r.reservation_id) <
             (SELECT paid_at, reservation_id FROM reservations WHERE reservation_id = $2 AND user_id = $1))
         ORDER BY r.paid_at DESC, r.reservation_id DESC LIMIT $3"#,
        user_id,
        after,
        limit,
    )
    .fetch_all(pool)
    .await
}

#[derive(sqlx::FromRow)]
pub struct LiveHoldRow {
    pub hold_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
    pub expires_at: DateTime<Utc>,
}

/// The user's holds that still keep their seat: HELD and not past their deadline.
pub async fn live_holds(pool: &PgPool, user_id: Uuid) -> Result<Vec<LiveHoldRow>, sqlx::Error> {
    sqlx::query_as!(
        LiveHoldRow,
        "SELECT hold_id, concert_id, date_id, seat_no, price, expires_at FROM holds \
         WHERE user_id = $1 AND state = 'HELD' AND expires_at > now() \
         ORDER BY expires_at, hold_id",
        user_id,
    )
    .fetch_all(pool)
    .await
}
