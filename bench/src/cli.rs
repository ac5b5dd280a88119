//! Command-line flags and the parameters they resolve to.

use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

/// Flash-crowd load generator for the concert booking service: an on-sale over real HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "concert-bench", version)]
pub struct Args {
    /// Base URL of a running service.
    #[arg(long, env = "BENCH_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Admin bearer token of the service.
    #[arg(
        long,
        env = "ADMIN_TOKEN",
        default_value = "dev-admin-token",
        hide_env_values = true
    )]
    pub admin_token: String,
    /// Smoke run: 300 users, 3-second timed phases, a crowd of 1,000, 2 rounds.
    #[arg(long)]
    pub quick: bool,
    /// Times the measured phases are repeated, each round on concerts of its own; figures are reported as the
    /// median and range over the rounds [default: 3, --quick 2].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Users in the crowd [default: 2000, --quick 300].
    #[arg(long, short = 'u')]
    pub users: Option<usize>,
    /// Dates of the on-sale concert.
    #[arg(long, default_value_t = 4)]
    pub dates: usize,
    /// Seats per date of the on-sale concert.
    #[arg(long, default_value_t = 50)]
    pub seats: i32,
    /// Price of a seat, in won.
    #[arg(long, default_value_t = 50_000)]
    pub price: i64,
    /// Share of users charged only half a seat's price (their payments fail with INSUFFICIENT_BALANCE).
    #[arg(long, default_value_t = 0.10)]
    pub underfunded: f64,
    /// Most requests in flight at once during setup, crowd, race and verification.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Hot seats: seats 1..=N of the first date, which a share of users all go for first.
    #[arg(long, default_value_t = 5)]
    pub hot_seats: i32,
    /// Share of first hold attempts that go for a hot seat.
    #[arg(long, default_value_t = 0.5)]
    pub hot_fraction: f64,
    /// Further attempts, on another random seat, after SEAT_UNAVAILABLE.
    #[arg(long, default_value_t = 3)]
    pub retries: u32,
    /// Share of successful holds left to lapse.
    #[arg(long, default_value_t = 0.15)]
    pub lapse: f64,
    /// Share of successful holds released.
    #[arg(long, default_value_t = 0.05)]
    pub release: f64,
    /// Share of lapsed holds paid after their deadline (expecting 410 HOLD_EXPIRED).
    #[arg(long, default_value_t = 0.3)]
    pub late_pay: f64,
    /// hold_seconds of the on-sale concert's policy (short, so lapsed holds are exercised).
    #[arg(long, default_value_t = 5)]
    pub hold_seconds: u32,
    /// `Prefer: wait` seconds on every command.
    #[arg(long, default_value_t = 10)]
    pub wait: u64,
    /// Longest pause between queue-status polls, whatever Retry-After says (seconds).
    #[arg(long, default_value_t = 1.0)]
    pub retry_after_cap: f64,
    /// Holds per second offered in the rated hold phase; 0 skips that phase.
    #[arg(long, default_value_t = 1000)]
    pub hold_rate: u64,
    /// Skip the unthrottled hold phase.
    #[arg(long)]
    pub no_unthrottled: bool,
    /// Closed-loop workers of the unthrottled hold phase (each waits for its outcome, so throughput is at most
    /// workers / latency: enough of them to saturate the service).
    #[arg(long, default_value_t = 1024)]
    pub hold_workers: usize,
    /// Most holds outstanding in the rated phase; beyond it scheduled holds are shed (and counted).
    #[arg(long, default_value_t = 4096)]
    pub max_inflight: usize,
    /// Hold rate the unthrottled phase's seats are sized for (holds per second).
    #[arg(long, default_value_t = 8000)]
    pub expect_max_rate: u64,
    /// Seconds of each timed phase (rated holds, unthrottled holds, status polls) [default: 10, --quick 3].
    #[arg(long)]
    pub phase_seconds: Option<f64>,
    /// Users admitted to the hold-phase concert [default: min(users, 1000)].
    #[arg(long)]
    pub tp_users: Option<usize>,
    /// Clients of the closed-loop phases (each submits a hold, or a join, with `Prefer: wait` and waits for its
    /// answer before the next, as a real crowd's clients do); 0 skips those phases.
    #[arg(long, default_value_t = 64)]
    pub closed_loop_clients: usize,
    /// Users of the crowd at scale: all join one concert at once (signed up beforehand, not timed), their places
    /// are checked gap-free; 0 skips that phase [default: 20000, --quick 1000].
    #[arg(long)]
    pub crowd: Option<usize>,
    /// Most joins of the crowd at scale in flight at once (each is one connection to the service).
    #[arg(long, default_value_t = 2048)]
    pub crowd_concurrency: usize,
    /// A command decided later than this (milliseconds) while at most 1,000 per second were offered is a stall.
    #[arg(long, default_value_t = 2000)]
    pub stall_ms: u64,
    /// Closed-loop workers of the status-poll phase; 0 skips that phase.
    #[arg(long, default_value_t = 256)]
    pub poll_workers: usize,
    /// Give up on a user not admitted within this many seconds.
    #[arg(long, default_value_t = 120)]
    pub admit_deadline: u64,
    /// Seconds to chase requests still pending at the end before counting them lost.
    #[arg(long, default_value_t = 30)]
    pub lost_deadline: u64,
    /// Seed of the seat choices [default: random].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Instead of the on-sale: hold this many live-update streams open on one api, admit them in one
    /// step, and report push latency and memory per stream (writes streams.json).
    #[arg(long)]
    pub streams: Option<usize>,
    /// Instead of the on-sale: N fans join a room before its opening, which is then set 4 s ahead; reports
    /// the time from the opening to the draw and to the last place having a position, and how long joins
    /// paused around it (writes prequeue.json).
    #[arg(long)]
    pub prequeue: Option<usize>,
    /// Instead of the on-sale: a steady mixed load for this many minutes (joins, polls, holds, checkouts,
    /// releases, lapses, cancellations; a new concert every 30 s), with every minute the api's and workers'
    /// memory (`BENCH_PROCS`), every table's rows (`DATABASE_URL`), p99 per kind of call and a fresh api's
    /// time to ready; ends with the slope of each and whether it stayed flat (writes soak.json; exit 2 if
    /// not flat or an invariant broke). Give the workers a short retention (`RETENTION_SECONDS`).
    #[arg(long, value_name = "MINUTES")]
    pub soak: Option<usize>,
    /// Fans started per second by `--soak` (each signs up or comes back, charges, joins, polls, holds...).
    #[arg(long, default_value_t = 3.0)]
    pub soak_rate: f64,
    /// The api process whose memory `--streams` reads [default: the one concert-api process].
    #[arg(long)]
    pub api_pid: Option<u32>,
    /// Where report.json and latency.svg go.
    #[arg(long, default_value = "target/bench")]
    pub out_dir: PathBuf,
}

/// The parameters of a run, resolved from the flags (quick-mode defaults applied); recorded in the report.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub quick: bool,
    pub rounds: usize,
    pub users: usize,
    pub dates: usize,
    pub seats: i32,
    pub price: i64,
    pub underfunded: f64,
    pub concurrency: usize,
    pub hot_seats: i32,
    pub hot_fraction: f64,
    pub retries: u32,
    pub lapse: f64,
    pub release: f64,
    pub late_pay: f64,
    pub hold_seconds: u32,
    pub wait: u64,
    pub retry_after_cap: f64,
    pub hold_rate: u64,
    pub unthrottled: bool,
    pub hold_workers: usize,
    pub max_inflight: usize,
    pub expect_max_rate: u64,
    pub phase_seconds: f64,
    pub tp_users: usize,
    pub poll_workers: usize,
    pub closed_loop_clients: usize,
    pub crowd: usize,
    pub crowd_concurrency: usize,
    pub stall_ms: u64,
    pub admit_deadline: u64,
    pub lost_deadline: u64,
    pub seed: u64,
}

impl Args {
    /// The run's parameters.
    pub fn params(&self) -> Params {
        let users = self
            .users
            .unwrap_or(if self.quick { 300 } else { 2000 })
            .max(1);
        Params {
            quick: self.quick,
            rounds: self.rounds.unwrap_or(if self.quick { 2 } else { 3 }).max(1),
            users,
            dates: self.dates.max(1),
            seats: self.seats.max(1),
            price: self.price.max(0),
            underfunded: self.underfunded.clamp(0.0, 1.0),
            concurrency: self.concurrency.max(1),
            hot_seats: self.hot_seats.max(1),
            hot_fraction: self.hot_fraction.clamp(0.0, 1.0),
            retries: self.retries,
            lapse: self.lapse.clamp(0.0, 1.0),
            release: self.release.clamp(0.0, 1.0),
            late_pay: self.late_pay.clamp(0.0, 1.0),
            hold_seconds: self.hold_seconds.max(1),
            wait: self.wait.clamp(1, 30),
            retry_after_cap: self.retry_after_cap.max(0.05),
            hold_rate: self.hold_rate,
            unthrottled: !self.no_unthrottled,
            hold_workers: self.hold_workers.max(1),
            max_inflight: self.max_inflight.max(1),
            expect_max_rate: self.expect_max_rate.max(1),
            phase_seconds: self
                .phase_seconds
                .unwrap_or(if self.quick { 3.0 } else { 10.0 })
                .max(0.5),
            tp_users: self.tp_users.unwrap_or(users.min(1000)).clamp(1, users),
            poll_workers: self.poll_workers,
            closed_loop_clients: self.closed_loop_clients,
            crowd: self.crowd.unwrap_or(if self.quick { 1000 } else { 20_000 }),
            crowd_concurrency: self.crowd_concurrency.max(1),
            stall_ms: self.stall_ms.max(1),
            admit_deadline: self.admit_deadline,
            lost_deadline: self.lost_deadline,
            seed: self.seed.unwrap_or_else(rand::random),
        }
    }
}
