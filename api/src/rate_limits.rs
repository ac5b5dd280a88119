//! Abuse limits, answered before anything is published or written: per-user command submissions (join, hold,
//! release, pay), per-address sign-ups and per-address anonymous calls, each a keyed GCRA limiter from
//! `governor`.
//!
//! The limiters live in this instance's memory: with N api instances behind a balancer a user gets up to N
//! times the rate in the worst case, which is still a bound (and sticky routing makes it exact). Keeping
//! them here costs no database or broker round trip on the hot path.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::ApiConfig;

/// How often keys whose bucket is full again are dropped, so memory follows recent users, not all users.
const FORGET_IDLE_EVERY: Duration = Duration::from_secs(30);

/// A request over a rate limit, answered `RATE_LIMITED` (see `error::ApiError::RateLimited`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    /// When the next attempt can pass.
    pub retry_after: Duration,
}

/// The limiters of one api instance; `None` where the configuration turns a limit off.
pub struct RateLimiters {
    commands: Option<DefaultKeyedRateLimiter<Uuid>>,
    signups: Option<DefaultKeyedRateLimiter<IpAddr>>,
    anonymous: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimiters {
    pub fn new(config: &ApiConfig) -> Self {
        let commands = NonZeroU32::new(config.rate_limit_per_user).map(|rate| {
            // A burst below the rate would throttle a steady client under its own rate.
            let burst = NonZeroU32::new(config.rate_limit_burst.max(rate.get())).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        let signups = NonZeroU32::new(config.signups_per_ip_per_minute)
            .map(|per_minute| RateLimiter::keyed(Quota::per_minute(per_minute)));
        let anonymous =
            NonZeroU32::new(config.limits.anonymous_per_address_per_second).map(|rate| {
                let burst = rate
                    .checked_mul(NonZeroU32::new(2).expect("2"))
                    .unwrap_or(rate);
                RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
            });
        Self {
            commands,
            signups,
            anonymous,
        }
    }

    /// One anonymous request from `addr`, counted per [`client_network`].
    pub fn check_anonymous(&self, addr: IpAddr) -> Result<(), RateLimited> {
        check(self.anonymous.as_ref(), &client_network(addr), "anonymous")
    }

    /// One command submission by `user`: `RATE_LIMITED` with the wait when over the limit.
    pub fn check_command(&self, user: Uuid) -> Result<(), RateLimited> {
        check(self.commands.as_ref(), &user, "commands")
    }

    /// One sign-up from `addr` (no address known: not limited), counted per [`client_network`].
    pub fn check_signup(&self, addr: Option<IpAddr>) -> Result<(), RateLimited> {
        match addr {
            Some(addr) => check(self.signups.as_ref(), &client_network(addr), "signups"),
            None => Ok(()),
        }
    }

    /// Drops the keys whose limit is fully replenished (they behave exactly like an unseen key) and gives
    /// the memory back.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.commands {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in [&self.signups, &self.anonymous].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// How many keys the limiters hold now (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.commands.as_ref().map_or(0, |l| l.len())
            + self.signups.as_ref().map_or(0, |l| l.len())
            + self.anonymous.as_ref().map_or(0, |l| l.len())
    }
}

fn check<K>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
    limit: &'static str,
) -> Result<(), RateLimited>
where
    K: std::hash::Hash + Eq + Clone,
{
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        metrics::counter!("rate_limited_total", "limit" => limit).increment(1);
        RateLimited {
            retry_after: not_until.wait_time_from(limiter.clock().now()),
        }
    })
}

/// Forgets idle keys every [`FORGET_IDLE_EVERY`] until `shutdown`.
pub async fn run_forgetter(limits: Arc<RateLimiters>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(FORGET_IDLE_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                limits.forget_idle();
                metrics::gauge!("rate_limiter_keys").set(limits.tracked_keys() as f64);
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The key an address is limited by. An IPv6 client is handed a whole /64 (2^64 addresses to rotate
/// through), so it counts as its /64; an IPv4 address mapped into IPv6 counts as that IPv4 address.
pub fn client_network(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concert_core::config::Settings;

    fn config(per_user: u32, burst: u32) -> ApiConfig {
        ApiConfig {
            rate_limit_per_user: per_user,
            rate_limit_burst: burst,
            signups_per_ip_per_minute: 3,
            ..ApiConfig::for_tests(Settings {
                database_url: String::new(),
                kafka_brokers: String::new(),
                topic_prefix: String::new(),
                token_secret: "x".repeat(32),
                db_max_connections: 1,
                kafka_fetch: Default::default(),
                partitions: Default::default(),
            })
        }
    }

    #[test]
    fn a_user_gets_the_burst_then_waits_while_others_are_untouched() {
        let limits = RateLimiters::new(&config(10, 20));
        let (flooder, other) = (Uuid::new_v4(), Uuid::new_v4());
        for _ in 0..20 {
            limits.check_command(flooder).expect("within the burst");
        }
        match limits.check_command(flooder) {
            Err(RateLimited { retry_after }) => {
                assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}")
            }
            other => panic!("expected RateLimited, got {other:?}"),
        }
        limits
            .check_command(other)
            .expect("another user is not limited");
    }

    #[test]
    fn zero_turns_the_limits_off() {
        let mut config = config(0, 20);
        config.signups_per_ip_per_minute = 0;
        let limits = RateLimiters::new(&config);
        let user = Uuid::new_v4();
        let addr: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..1000 {
            limits.check_command(user).expect("off");
            limits.check_signup(Some(addr)).expect("off");
        }
    }

    #[test]
    fn sign_ups_are_limited_per_address() {
        let limits = RateLimiters::new(&config(10, 20));
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            limits
                .check_signup(Some(a))
                .expect("within the minute's allowance");
        }
        assert!(limits.check_signup(Some(a)).is_err());
        limits.check_signup(Some(b)).expect("another address");
        limits.check_signup(None).expect("no address, no limit");
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address_and_mapped_ipv4_is_its_ipv4() {
        let limits = RateLimiters::new(&config(10, 20));
        for host in 1..=3 {
            let addr: IpAddr = format!("2001:db8:1:2::{host:x}").parse().unwrap();
            limits
                .check_signup(Some(addr))
                .expect("within the allowance");
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(limits.check_signup(Some(same_64)).is_err(), "one /64");
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limits.check_signup(Some(other_64)).expect("another /64");

        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(
            client_network(mapped),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
    }

    /// What the per-user check costs: `cargo test -p concert-api --lib rate_limits::tests::cost --
    /// --ignored --nocapture`. Many threads at once on many users, as under a crowd; prints nanoseconds per
    /// check.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn cost_of_the_per_user_check() {
        let limits = Arc::new(RateLimiters::new(&config(10, 20)));
        let users: Arc<Vec<Uuid>> = Arc::new((0..100_000).map(|_| Uuid::new_v4()).collect());
        let threads = 4;
        let per_thread = 1_000_000;
        let started = std::time::Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (limits, users) = (limits.clone(), users.clone());
                std::thread::spawn(move || {
                    let mut limited = 0u64;
                    for i in 0..per_thread {
                        let user = users[(i * 7 + t * 13) % users.len()];
                        limited += u64::from(limits.check_command(user).is_err());
                    }
                    limited
                })
            })
            .collect();
        let limited: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let elapsed = started.elapsed();
        let checks = (threads * per_thread) as f64;
        println!(
            "{checks} checks on {} users with {threads} threads in {elapsed:?}: {:.0} ns per check \
             (wall time per thread), {:.1} M checks/s in total; {limited} limited; {} keys tracked",
            users.len(),
            elapsed.as_nanos() as f64 * threads as f64 / checks,
            checks / elapsed.as_secs_f64() / 1e6,
            limits.tracked_keys(),
        );
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let limits = RateLimiters::new(&config(1000, 1000));
        for _ in 0..100 {
            limits.check_command(Uuid::new_v4()).unwrap();
        }
        assert_eq!(limits.tracked_keys(), 100);
        std::thread::sleep(Duration::from_millis(5));
        limits.forget_idle();
        assert_eq!(limits.tracked_keys(), 0);
    }
}
