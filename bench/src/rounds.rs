//! What one round measured, taken from its per-operation summaries and its phases' CPU costs, and the same
//! figures over all rounds.

use serde::Serialize;

use crate::cpu::{API, BROKER, POSTGRES, SERVICE, TOTAL};
use crate::figures::PhaseFigures;
use crate::spread::Spread;
use crate::stats::OpSummary;

/// Operation names the figures are read from (the phases record under these).
pub mod ops {
    pub const ONSALE_JOIN: &str = "crowd/join";
    pub const RACE_HOLD: &str = "race/hold";
    pub const RACE_PAY: &str = "race/pay";
    pub const MAX_HOLD: &str = "tp@max/hold";
    pub const C64_HOLD: &str = "c64/hold";
    pub const C64_JOIN: &str = "c64/join";
    pub const SCALE_JOIN: &str = "scale/join";
    pub const POLL_STATUS: &str = "poll/status";
    /// The phase of the crowd at scale (its operation is [`SCALE_JOIN`]).
    pub const SCALE_PHASE: &str = "scale";

    /// The rated hold phase's operation at `rate` holds per second.
    pub fn rated_hold(rate: u64) -> String {
        format!("tp@{rate}/hold")
    }
}

/// The offered rate at or below which a slow command counts as a stall (the rated phase above it is an
/// overload test, where queueing is expected).
pub const STALL_RATE_LIMIT: u64 = 1000;

/// Figures of one round; `None` where the phase that measures it did not run (or decided nothing).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RoundFigures {
    /// On-sale crowd joins decided per second.
    pub joins_per_s: Option<f64>,
    /// Holds decided per second, unthrottled (or at the offered rate, or in the race, whichever ran).
    pub holds_per_s: Option<f64>,
    /// Race payments decided per second.
    pub pays_per_s: Option<f64>,
    /// p99 submit-to-outcome of holds at the offered rate (or of the race's holds).
    pub p99_hold_ms: Option<f64>,
    /// Closed-loop holds decided per second, and their p50 and p99.
    pub c64_holds_per_s: Option<f64>,
    pub c64_p50_ms: Option<f64>,
    pub c64_p99_ms: Option<f64>,
    /// Closed-loop joins decided per second.
    pub c64_joins_per_s: Option<f64>,
    /// Crowd at scale: joins placed per second, from the first submit to the last placed.
    pub crowd_joins_per_s: Option<f64>,
    /// Crowd at scale: milliseconds from the first submit until the last join was placed.
    pub crowd_last_placed_ms: Option<f64>,
    /// CPU microseconds per hold of the unthrottled hold phase (`tp@max/hold`): the api, the api and workers,
    /// PostgreSQL's backends, the broker, and all of them.
    pub api_us_per_hold: Option<f64>,
    pub service_us_per_hold: Option<f64>,
    pub db_us_per_hold: Option<f64>,
    pub broker_us_per_hold: Option<f64>,
    pub total_us_per_hold: Option<f64>,
    /// CPU microseconds of the api and workers per join of the crowd at scale.
    pub service_us_per_join: Option<f64>,
    /// CPU microseconds of the api per status poll.
    pub api_us_per_poll: Option<f64>,
    /// Produce and fetch requests the api and the workers sent the broker per 100 holds of the unthrottled
    /// hold phase (`tp@max/hold`), from librdkafka's counts ([`crate::kafka_requests`]); per 100 so that the
    /// line's whole units keep two digits of a figure that is often below one per hold.
    pub produce_per_100_holds: Option<f64>,
    pub fetch_per_100_holds: Option<f64>,
    /// Commands slower than the stall limit while at most [`STALL_RATE_LIMIT`] per second were offered.
    pub stalled: u64,
}

impl RoundFigures {
    /// Reads a round's figures from its operation summaries; `hold_rate` is the rated phase's offered rate.
    pub fn from_ops(ops: &[OpSummary], hold_rate: u64) -> Self {
        let get = |name: &str| ops.iter().find(|o| o.name == name && o.count > 0);
        let rated = ops::rated_hold(hold_rate);
        let per_s = |o: &OpSummary| o.per_s;
        let scale = get(ops::SCALE_JOIN).filter(|o| o.ok > 0);
        let stalled = if hold_rate <= STALL_RATE_LIMIT {
            get(&rated).map_or(0, |o| o.slower_than_stall)
        } else {
            0
        };
        RoundFigures {
            joins_per_s: get(ops::ONSALE_JOIN).map(per_s),
            holds_per_s: get(ops::MAX_HOLD)
                .or_else(|| get(&rated))
                .or_else(|| get(ops::RACE_HOLD))
                .map(per_s),
            pays_per_s: get(ops::RACE_PAY).map(per_s),
            p99_hold_ms: get(&rated)
                .or_else(|| get(ops::RACE_HOLD))
                .map(|o| o.p99_ms),
            c64_holds_per_s: get(ops::C64_HOLD).map(per_s),
            c64_p50_ms: get(ops::C64_HOLD).map(|o| o.p50_ms),
            c64_p99_ms: get(ops::C64_HOLD).map(|o| o.p99_ms),
            c64_joins_per_s: get(ops::C64_JOIN).map(per_s),
            // Placed joins only: a crowd is in line when its joins succeed, not when they fail.
            crowd_joins_per_s: scale.map(|o| {
                if o.span_s > 0.0 {
                    o.ok as f64 / o.span_s
                } else {
                    0.0
                }
            }),
            crowd_last_placed_ms: scale.map(|o| o.span_s * 1000.0),
            stalled,
            ..RoundFigures::default()
        }
    }

    /// Adds the CPU costs per operation read from the round's phases (those not measured stay `None`).
    pub fn with_costs(self, phases: &[PhaseFigures]) -> Self {
        let cost = |phase: &str, key: &str| {
            phases
                .iter()
                .find(|p| p.name == phase)
                .and_then(|p| p.cpu_us_per_op.get(key).copied())
        };
        let hold = |key: &str| cost(ops::MAX_HOLD, key);
        let requests = |phase: &str, key: &str| {
            phases.iter().find(|p| p.name == phase).and_then(|p| {
                p.kafka_requests_per_op
                    .get(key)
                    .map(|per_op| per_op * 100.0)
            })
        };
        RoundFigures {
            api_us_per_hold: hold(API),
            service_us_per_hold: hold(SERVICE),
            db_us_per_hold: hold(POSTGRES),
            broker_us_per_hold: hold(BROKER),
            total_us_per_hold: hold(TOTAL),
            service_us_per_join: cost(ops::SCALE_PHASE, SERVICE),
            api_us_per_poll: cost(ops::POLL_STATUS, API),
            produce_per_100_holds: requests(ops::MAX_HOLD, "produce"),
            fetch_per_100_holds: requests(ops::MAX_HOLD, "fetch"),
            ..self
        }
    }

    /// The figures with their line keys, in the order of the last line.
    pub fn keyed(&self) -> [(&'static str, Option<f64>); 19] {
        [
            ("joins_per_s", self.joins_per_s),
            ("holds_per_s", self.holds_per_s),
            ("pays_per_s", self.pays_per_s),
            ("p99_hold_ms", self.p99_hold_ms),
            ("c64_holds_per_s", self.c64_holds_per_s),
            ("c64_p50_ms", self.c64_p50_ms),
            ("c64_p99_ms", self.c64_p99_ms),
            ("c64_joins_per_s", self.c64_joins_per_s),
            ("crowd_joins_per_s", self.crowd_joins_per_s),
            ("crowd_last_placed_ms", self.crowd_last_placed_ms),
            ("api_us_per_hold", self.api_us_per_hold),
            ("service_us_per_hold", self.service_us_per_hold),
            ("db_us_per_hold", self.db_us_per_hold),
            ("broker_us_per_hold", self.broker_us_per_hold),
            ("total_us_per_hold", self.total_us_per_hold),
            ("service_us_per_join", self.service_us_per_join),
            ("api_us_per_poll", self.api_us_per_poll),
            ("produce_per_100_holds", self.produce_per_100_holds),
            ("fetch_per_100_holds", self.fetch_per_100_holds),
        ]
    }
}

/// Each figure's median and range over the rounds, by line key, in line order.
pub fn spreads(rounds: &[RoundFigures]) -> Vec<(&'static str, Option<Spread>)> {
    let keys = RoundFigures::default().keyed().map(|(k, _)| k);
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            let values: Vec<f64> = rounds.iter().filter_map(|r| r.keyed()[i].1).collect();
            (*key, Spread::of(&values))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn op(name: &str, count: u64, per_s: f64, p50: f64, p99: f64, slow: u64) -> OpSummary {
        OpSummary {
            name: name.into(),
            count,
            ok: count,
            decided: count,
            span_s: if per_s > 0.0 {
                count as f64 / per_s
            } else {
                0.0
            },
            per_s,
            p50_ms: p50,
            p95_ms: p99,
            p99_ms: p99,
            max_ms: p99,
            mean_ms: p50,
            slower_than_stall: slow,
            errors: BTreeMap::new(),
        }
    }

    #[test]
    fn reads_each_figure_from_its_operation() {
        let ops = vec![
            op("crowd/join", 2000, 800.0, 50.0, 90.0, 0),
            op("race/hold", 3000, 5000.0, 40.0, 101.0, 0),
            op("race/pay", 1000, 270.0, 40.0, 100.0, 0),
            op("tp@1000/hold", 10_000, 997.0, 38.0, 84.0, 7),
            op("tp@max/hold", 50_000, 5132.0, 194.0, 325.0, 40),
            op("c64/hold", 30_000, 3000.0, 14.0, 30.0, 0),
            op("c64/join", 20_000, 2000.0, 25.0, 60.0, 0),
            op("scale/join", 20_000, 9000.0, 900.0, 1900.0, 0),
        ];
        let r = RoundFigures::from_ops(&ops, 1000);
        assert_eq!(r.joins_per_s, Some(800.0));
        assert_eq!(r.holds_per_s, Some(5132.0));
        assert_eq!(r.pays_per_s, Some(270.0));
        assert_eq!(r.p99_hold_ms, Some(84.0));
        assert_eq!(
            (r.c64_holds_per_s, r.c64_p50_ms),
            (Some(3000.0), Some(14.0))
        );
        assert_eq!(r.c64_joins_per_s, Some(2000.0));
        let crowd = r.crowd_joins_per_s.unwrap();
        assert!((crowd - 9000.0).abs() < 1e-6, "{crowd}");
        let last = r.crowd_last_placed_ms.unwrap();
        assert!((last - 20_000.0 / 9000.0 * 1000.0).abs() < 1e-6, "{last}");
        // Only the rated phase at <= 1,000/s counts stalls; the unthrottled one is an overload test.
        assert_eq!(r.stalled, 7);
        assert_eq!(RoundFigures::from_ops(&ops, 2000).stalled, 0);
    }

    #[test]
    fn falls_back_when_phases_did_not_run_and_leaves_the_rest_unmeasured() {
        let ops = vec![
            op("race/hold", 3000, 5730.0, 40.0, 101.0, 0),
            op("tp@max/hold", 0, 0.0, 0.0, 0.0, 0),
        ];
        let r = RoundFigures::from_ops(&ops, 1000);
        assert_eq!(r.holds_per_s, Some(5730.0));
        assert_eq!(r.p99_hold_ms, Some(101.0));
        assert_eq!(r.joins_per_s, None);
        assert_eq!(r.c64_holds_per_s, None);
        assert_eq!(r.crowd_last_placed_ms, None);
        assert_eq!(r.stalled, 0);
    }

    #[test]
    fn reads_the_costs_from_their_phases() {
        let phase = |name: &str, costs: &[(&str, f64)]| PhaseFigures {
            name: name.into(),
            seconds: 10.0,
            offered: 100,
            sent: 100,
            shed: 0,
            cpu_us_per_op: costs.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            kafka_requests_per_op: [("produce".to_string(), 0.5)].into(),
        };
        let phases = vec![
            phase("c64/hold", &[("api", 1.0), ("service", 2.0)]),
            phase(
                "tp@max/hold",
                &[
                    ("api", 300.0),
                    ("service", 500.0),
                    ("postgres", 200.0),
                    ("total", 760.0),
                ],
            ),
            phase("poll/status", &[("api", 40.0)]),
            phase("scale", &[("service", 900.0)]),
        ];
        let r = RoundFigures::from_ops(&[], 1000).with_costs(&phases);
        assert_eq!(r.api_us_per_hold, Some(300.0));
        assert_eq!(r.service_us_per_hold, Some(500.0));
        assert_eq!(r.db_us_per_hold, Some(200.0));
        assert_eq!(r.broker_us_per_hold, None);
        assert_eq!(r.total_us_per_hold, Some(760.0));
        assert_eq!(r.service_us_per_join, Some(900.0));
        assert_eq!(r.api_us_per_poll, Some(40.0));
        assert_eq!(r.produce_per_100_holds, Some(50.0));
        assert_eq!(r.fetch_per_100_holds, None);
        assert_eq!(
            RoundFigures::from_ops(&[], 1000).with_costs(&[]),
            RoundFigures::default()
        );
    }

    #[test]
    fn spreads_take_the_median_and_range_of_each_figure() {
        let rounds: Vec<RoundFigures> = [4000.0, 5200.0, 3600.0]
            .iter()
            .map(|&h| RoundFigures {
                holds_per_s: Some(h),
                c64_p50_ms: if h > 4000.0 { Some(12.0) } else { None },
                ..RoundFigures::default()
            })
            .collect();
        let s = spreads(&rounds);
        assert_eq!(s.len(), 19);
        let get = |k: &str| s.iter().find(|(key, _)| *key == k).unwrap().1;
        let holds = get("holds_per_s").unwrap();
        assert_eq!(
            (holds.median, holds.min, holds.max, holds.rounds),
            (4000.0, 3600.0, 5200.0, 3)
        );
        assert_eq!(get("c64_p50_ms").unwrap().rounds, 1);
        assert_eq!(get("joins_per_s"), None);
    }
}
