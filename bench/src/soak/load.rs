//! The soak's steady mixed load, at a fixed modest rate: a new concert every [`CONCERT_EVERY`] and fans
//! started at `--soak-rate` a second, each on its own task. A fan signs up (or, for [`RETURNING`] of them,
//! comes back as a user whose last journey ended a while ago), then goes through [`super::fan`]: charge,
//! join the newest concert, poll until ACTIVE, hold, then pay, release or let lapse, and sometimes cancel.
//! The policy's windows are short, so places and holds end well inside the run and the retention has
//! something to prune.
//!
//! Every call is recorded per kind in a [`Window`] the sampler empties each minute, and in the verifier's
//! [`Ledger`] (pending commands, paid seats, answers that break the contract).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::client::Api;
use crate::setup::{create_concert, Concert, Policy};
use crate::stats::OpStats;
use crate::user::User;
use crate::verify::Ledger;

/// A new concert this often; fans join the newest.
pub const CONCERT_EVERY: Duration = Duration::from_secs(30);
/// Dates per concert.
pub const DATES: usize = 2;
/// How long an admitted place stays ACTIVE.
pub const ACTIVE_SECONDS: u32 = 30;
/// How long a hold keeps its seat.
pub const HOLD_SECONDS: u32 = 10;
/// Places active at once per concert.
const MAX_ACTIVE: usize = 50;
/// Share of fans who are returning users rather than new sign-ups.
const RETURNING: f64 = 0.3;
/// A user comes back only this long after their last journey ended (their place has ended by then).
const RETURN_AFTER: Duration = Duration::from_secs(ACTIVE_SECONDS as u64 + 10);

/// The operation kinds, in the order the minute lines show them.
pub const OPS: [&str; 8] = [
    "signup", "charge", "join", "status", "hold", "pay", "release", "cancel",
];

/// Calls per kind since the sampler last emptied it.
#[derive(Default)]
pub struct Window {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
}

impl Window {
    /// One call of `op` that went out at `start` and was answered now.
    pub fn record(&self, op: &'static str, start: Instant, code: Option<&str>) {
        let end = Instant::now();
        let mut ops = self.ops.lock().expect("window lock");
        ops.entry(op).or_default().record(start, end, code);
    }

    /// Everything recorded since the last call.
    pub fn take(&self) -> BTreeMap<&'static str, OpStats> {
        std::mem::take(&mut *self.ops.lock().expect("window lock"))
    }
}

/// The load and what it has made so far.
pub struct Load {
    api: Api,
    price: i64,
    seats: i32,
    pub window: Window,
    pub ledger: Arc<Ledger>,
    /// Every user signed up, at their `idx`.
    users: Mutex<Vec<User>>,
    /// Users whose journey ended, and when: the returning fans come from its front.
    rested: Mutex<VecDeque<(usize, Instant)>>,
    concerts: Mutex<Vec<Concert>>,
    /// Fans who gave up waiting, or whose place ended before they were admitted.
    pub gave_up: AtomicU64,
    /// Fans who let their holds lapse.
    pub lapsed: AtomicU64,
    stop: AtomicBool,
}

impl Load {
    pub fn new(api: Api, price: i64, seats: i32) -> Arc<Self> {
        Arc::new(Self {
            api,
            price,
            seats,
            window: Window::default(),
            ledger: Arc::new(Ledger::default()),
            users: Mutex::new(Vec::new()),
            rested: Mutex::new(VecDeque::new()),
            concerts: Mutex::new(Vec::new()),
            gave_up: AtomicU64::new(0),
            lapsed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// Users and concerts made so far.
    pub fn users(&self) -> Vec<User> {
        self.users.lock().expect("users").clone()
    }
    pub fn concerts(&self) -> Vec<Concert> {
        self.concerts.lock().expect("concerts").clone()
    }

    /// Stops making concerts and starting fans (fans under way finish their journey).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Creates one concert now, then another every [`CONCERT_EVERY`] until stopped.
    pub async fn make_concerts(self: Arc<Self>) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(CONCERT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let policy = Policy {
            max_active_users: MAX_ACTIVE,
            admit_per_interval: MAX_ACTIVE,
            interval_seconds: 1,
            active_seconds: ACTIVE_SECONDS,
            hold_seconds: HOLD_SECONDS,
            claim_seconds: Some(10),
        };
        for n in 1.. {
            tick.tick().await;
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let title = format!("Soak {n}");
            match create_concert(&self.api, &title, DATES, self.seats, self.price, policy).await {
                Ok(c) => self.concerts.lock().expect("concerts").push(c),
                // The previous concert stays the newest; the soak notes it and goes on.
                Err(e) => eprintln!("soak: {e:#}"),
            }
        }
        Ok(())
    }

    /// Starts `rate` fans a second until stopped; returns once every fan started has finished.
    pub async fn run_fans(self: Arc<Self>, rate: f64, seed: u64) {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut fans = tokio::task::JoinSet::new();
        for n in 0u64.. {
            tick.tick().await;
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let rng = StdRng::seed_from_u64(seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            fans.spawn(self.clone().fan(rng));
            while fans.try_join_next().is_some() {}
        }
        while fans.join_next().await.is_some() {}
    }

    fn newest(&self) -> Option<Concert> {
        self.concerts.lock().expect("concerts").last().cloned()
    }

    /// A returning user, if one rested long enough and the dice say so.
    fn returning(&self, rng: &mut StdRng) -> Option<User> {
        if !rng.gen_bool(RETURNING) {
            return None;
        }
        let mut rested = self.rested.lock().expect("rested");
        match rested.front() {
            Some((_, at)) if at.elapsed() >= RETURN_AFTER => {
                let (idx, _) = rested.pop_front()?;
                self.users.lock().expect("users").get(idx).cloned()
            }
            _ => None,
        }
    }

    /// Fans who gave up waiting, or whose place ended before they were admitted.
    pub(super) fn note_gave_up(&self) {
        self.gave_up.fetch_add(1, Ordering::Relaxed);
    }

    /// Fans who let their holds lapse.
    pub(super) fn note_lapsed(&self) {
        self.lapsed.fetch_add(1, Ordering::Relaxed);
    }

    async fn sign_up(&self) -> Option<User> {
        let (out, t) = self
            .api
            .sign_up(&format!("soak-{}", uuid::Uuid::now_v7().simple()))
            .await;
        self.window.record("signup", t, out.code());
        let token = out.done()?.get("access_token")?.as_str()?.to_owned();
        let mut users = self.users.lock().expect("users");
        let user = User {
            idx: users.len(),
            token,
            funded: true,
        };
        users.push(user.clone());
        Some(user)
    }

    /// One fan's journey; the user rests afterwards, ready to come back.
    async fn fan(self: Arc<Self>, mut rng: StdRng) {
        let Some(concert) = self.newest() else { return };
        let user = match self.returning(&mut rng) {
            Some(u) => u,
            None => match self.sign_up().await {
                Some(u) => u,
                None => return,
            },
        };
        self.journey(&self.api, self.price, &user, &concert, &mut rng)
            .await;
        self.rested
            .lock()
            .expect("rested")
            .push_back((user.idx, Instant::now()));
    }
}
