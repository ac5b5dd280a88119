//! A fresh, migrated database per test, fixture rows in plain SQL, and short-hands for commands.

use concert_core::commands::{Command, CommandEnvelope, Outcome, Reply};
use concert_core::ErrorCode;
use concert_workers::{ApplyContext, LogCommand};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

pub const PRICE: i64 = 50_000;

/// A database of its own, dropped by [`TestDb::drop_database`] at the end of a passing test.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
    admin: PgConnectOptions,
    name: String,
}

fn admin_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    url.parse().expect("DATABASE_URL is a Postgres URL")
}

impl TestDb {
    pub async fn new() -> Self {
        let admin = admin_options();
        let name = format!("workers_test_{}", Uuid::new_v4().simple());
        let mut conn = admin.connect().await.expect("connect as admin");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
        // The settings the services connect with, so plans here are the plans in production.
        let options = admin
            .clone()
            .database(&name)
            .options(concert_core::db::SESSION_SETTINGS);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("connect");
        concert_core::db::migrate(&pool).await.expect("migrate");
        Self {
            pool,
            url,
            admin,
            name,
        }
    }

    /// Connect options for this database, with the services' session settings.
    pub fn options(&self) -> PgConnectOptions {
        self.admin
            .clone()
            .database(&self.name)
            .options(concert_core::db::SESSION_SETTINGS)
    }

    pub fn ctx(&self) -> ApplyContext {
        ApplyContext::new(self.pool.clone(), 4)
    }

    pub async fn drop_database(self) {
        self.pool.close().await;
        if let Ok(mut conn) = self.admin.connect().await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }

    pub async fn user(&self, balance: i64) -> Uuid {
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO users (user_id, name, balance) VALUES ($1, 'test user', $2)")
            .bind(id)
            .bind(balance)
            .execute(&self.pool)
            .await
            .unwrap();
        id
    }

    /// A concert with one date of `seats` seats at [`PRICE`] and a waiting room admitting `max_active`.
    pub async fn concert(&self, seats: i32, max_active: i32) -> Show {
        let (concert_id, date_id) = (Uuid::new_v4(), Uuid::new_v4());
        sqlx::query("INSERT INTO concerts (concert_id, title, venue) VALUES ($1, 'Test', 'Hall')")
            .bind(concert_id)
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO concert_dates (date_id, concert_id, starts_at, total_seats)
             VALUES ($1, $2, now() + interval '30 days', $3)",
        )
        .bind(date_id)
        .bind(concert_id)
        .bind(seats)
        .execute(&self.pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO seats (date_id, seat_no, price) SELECT $1, n, $2 FROM generate_series(1, $3) AS n")
            .bind(date_id)
            .bind(PRICE)
            .bind(seats)
            .execute(&self.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO waiting_rooms (concert_id, max_active_users, active_seconds, hold_seconds)
             VALUES ($1, $2, 600, 300)",
        )
        .bind(concert_id)
        .bind(max_active)
        .execute(&self.pool)
        .await
        .unwrap();
        Show {
            concert_id,
            date_id,
        }
    }

    pub async fn balance(&self, user: Uuid) -> i64 {
        sqlx::query_scalar("SELECT balance FROM users WHERE user_id = $1")
            .bind(user)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// (hold_id, held_by, reservation_id) of a seat.
    pub async fn seat(
        &self,
        date_id: Uuid,
        seat_no: i32,
    ) -> (Option<Uuid>, Option<Uuid>, Option<Uuid>) {
        sqlx::query_as("SELECT hold_id, held_by, reservation_id FROM seats WHERE date_id = $1 AND seat_no = $2")
            .bind(date_id)
            .bind(seat_no)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn hold_state(&self, hold_id: Uuid) -> String {
        sqlx::query_scalar("SELECT state FROM holds WHERE hold_id = $1")
            .bind(hold_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Show {
    pub concert_id: Uuid,
    pub date_id: Uuid,
}

/// Builds commands at consecutive offsets of one partition, as the log would hand them over.
#[derive(Default)]
pub struct Log {
    next_offset: i64,
}

impl Log {
    pub fn at(&mut self, user: Uuid, command: Command) -> LogCommand {
        self.again(CommandEnvelope::new(Uuid::new_v4(), user, command))
    }

    /// The same envelope delivered again, at a later offset.
    pub fn again(&mut self, envelope: CommandEnvelope) -> LogCommand {
        self.next_offset += 1;
        LogCommand {
            partition: 0,
            offset: self.next_offset,
            envelope,
        }
    }
}

pub fn join(show: Show) -> Command {
    Command::Join {
        concert_id: show.concert_id,
    }
}

pub fn hold(show: Show, seat_no: i32) -> Command {
    Command::Hold {
        concert_id: show.concert_id,
        date_id: show.date_id,
        seat_no,
        queue_seq: 1,
    }
}

/// A checkout of one hold.
pub fn pay(show: Show, hold_id: Uuid, queue_seq: i64) -> Command {
    checkout(show, &[hold_id], queue_seq)
}

/// A checkout of these holds, all paid or none.
pub fn checkout(show: Show, hold_ids: &[Uuid], queue_seq: i64) -> Command {
    Command::Pay {
        concert_id: show.concert_id,
        date_id: show.date_id,
        hold_ids: hold_ids.to_vec(),
        queue_seq,
    }
}

pub fn release(show: Show, hold_id: Uuid) -> Command {
    Command::Release {
        concert_id: show.concert_id,
        date_id: show.date_id,
        hold_id,
    }
}

/// The `result` of a successful reply; panics with the reply otherwise.
pub fn result(reply: &Reply) -> &serde_json::Value {
    match &reply.outcome {
        Outcome::Succeeded { result } => result,
        Outcome::Failed { error } => panic!("expected success, got {error}"),
    }
}

/// The error code of a failed reply; panics with the reply otherwise.
pub fn code(reply: &Reply) -> ErrorCode {
    match &reply.outcome {
        Outcome::Failed { error } => {
            assert_eq!(
                error.request_id,
                Some(reply.request_id),
                "a failure names its request"
            );
            error.code
        }
        Outcome::Succeeded { result } => panic!("expected failure, got {result}"),
    }
}

pub fn uuid_of(value: &serde_json::Value, field: &str) -> Uuid {
    value[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} in {value}"))
}
