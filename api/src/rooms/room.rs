//! One waiting room as the cache last read it, and the admission arithmetic over it: what a place's status is
//! (waiting with its position and wait estimate, active, completed or expired) and how many places are
//! waiting or active. Plain data with no locks: the cache holds one per concert.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use concert_core::admission::{
    admitted_status, waiting_status, Admission, DrawOrder, EndReason, PlaceFacts, PlaceStatus,
    Policy, Turnover, CLAIM_GRACE_MS,
};

use crate::db::rooms::Opening;

/// One room as last read.
#[derive(Debug, Clone)]
pub struct Room {
    pub policy: Policy,
    pub last_seq: i64,
    pub admitted_upto: i64,
    pub next_admit_at: Option<DateTime<Utc>>,
    pub abandoned_total: i64,
    /// Every place up to this line ended more than the retention ago and is pruned from Postgres: it reads
    /// EXPIRED (with no reason) and the sets below hold nothing up to it, so they grow with the retention's
    /// window, not with every on-sale ever held.
    pub pruned_upto: i64,
    /// Admission steps whose window may still be open, by `upto_seq`.
    pub(super) admissions: BTreeMap<i64, Admission>,
    /// Kept until pruned: a paid place reads COMPLETED even after its window closed.
    pub(super) completed: HashSet<i64>,
    /// Ended for want of a claim; kept until pruned like `completed`.
    pub(super) ended: HashSet<i64>,
    /// Claimed places of the open steps (forgotten with their step).
    pub(super) claimed: HashSet<i64>,
    /// When the ACTIVE places free their slots, for the wait estimate (capped rooms only).
    turnover: Option<Turnover>,
    /// The pre-queue's opening and draw, as last read.
    pub opening: Opening,
    /// The draw's order (the identity until there is one). Admission steps, the frontier and positions
    /// count in line numbers (`order.line(seq)`); claims, completions and ends are kept by seq.
    pub(super) order: Arc<DrawOrder>,
}

impl Room {
    pub(super) fn new(policy: Policy) -> Self {
        Self {
            policy,
            last_seq: 0,
            admitted_upto: 0,
            next_admit_at: None,
            abandoned_total: 0,
            pruned_upto: 0,
            admissions: BTreeMap::new(),
            completed: HashSet::new(),
            ended: HashSet::new(),
            claimed: HashSet::new(),
            turnover: None,
            opening: Opening::default(),
            order: Arc::new(DrawOrder::none()),
        }
    }

    /// A place's line number: its rank in the draw if it was pre-queued, its seq otherwise.
    pub(super) fn line(&self, seq: i64) -> i64 {
        self.order.line(seq)
    }

    /// The admission step that admitted this place, if its window may still be open.
    pub(super) fn step(&self, seq: i64) -> Option<&Admission> {
        let line = self.line(seq);
        self.admissions
            .range(line..)
            .next()
            .map(|(_, a)| a)
            .filter(|a| a.from_seq <= line)
    }

    fn facts(&self, seq: i64) -> PlaceFacts {
        PlaceFacts {
            completed: self.completed.contains(&seq),
            ended: self.ended.contains(&seq),
            claimed: self.claimed.contains(&seq),
        }
    }

    pub fn status(&self, seq: i64, now: DateTime<Utc>) -> PlaceStatus {
        // Before the draw nobody is admitted and no place has a position (its line number is not drawn).
        if self.opening.pre_queuing() && seq > self.admitted_upto {
            return PlaceStatus::PreQueued {
                opens_at: self.opening.opens_at,
            };
        }
        let line = self.line(seq);
        if line <= self.pruned_upto {
            return PlaceStatus::Expired {
                reason: EndReason::Pruned,
            };
        }
        if line > self.admitted_upto {
            return waiting_status(
                line - self.admitted_upto,
                &self.policy,
                self.next_admit_at,
                self.turnover.as_ref(),
                now,
            );
        }
        admitted_status(self.step(seq), self.facts(seq), now)
    }

    pub fn waiting(&self) -> i64 {
        self.last_seq - self.admitted_upto
    }

    /// ACTIVE places by this cache's reckoning (the ticker counts again in Postgres before admitting anyone).
    pub fn active(&self, now: DateTime<Utc>) -> i64 {
        self.admissions
            .values()
            .filter(|a| a.active_until > now)
            .map(|a| {
                (a.from_seq..=a.upto_seq)
                    .map(|line| self.order.seq(line))
                    .filter(|&s| matches!(self.status(s, now), PlaceStatus::Active { .. }))
                    .count() as i64
            })
            .sum()
    }

    /// When each ACTIVE place is expected to end: a claimed one at its window's end, an unclaimed one at
    /// its claim deadline (it ends then unless it is claimed).
    fn expected_ends(&self, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let grace = chrono::Duration::milliseconds(CLAIM_GRACE_MS);
        let mut ends = Vec::new();
        for a in self.admissions.values().filter(|a| a.active_until > now) {
            for line in a.from_seq..=a.upto_seq {
                let facts = self.facts(self.order.seq(line));
                if facts.completed || facts.ended {
                    continue;
                }
                if facts.claimed {
                    ends.push(a.active_until);
                } else if now < a.claim_until + grace {
                    ends.push((a.claim_until + grace).min(a.active_until));
                }
            }
        }
        ends
    }

    /// Moves the retention's watermark and forgets what it knew of the places at or below it.
    pub(super) fn prune_upto(&mut self, upto: i64) {
        if upto <= self.pruned_upto {
            return;
        }
        self.pruned_upto = upto;
        let order = self.order.clone();
        let kept = |s: &i64| order.line(*s) > upto;
        self.completed.retain(kept);
        self.ended.retain(kept);
        self.claimed.retain(kept);
        // Once every drawn place is below the watermark, the draw's order changes no status any more (a
        // drawn seq reads as pruned either way, a later one is its own line): drop its two vectors.
        if self.order.places() > 0 && self.order.places() <= upto {
            self.order = Arc::new(DrawOrder::none());
        }
    }

    pub(super) fn recompute_turnover(&mut self, now: DateTime<Utc>) {
        self.turnover = self
            .policy
            .max_active_users
            .map(|max| Turnover::new(i64::from(max), self.expected_ends(now)));
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // `t` and `room` are fixtures the cache's tests share.

    pub(crate) fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    pub(crate) fn room() -> Room {
        let mut room = Room::new(Policy {
            max_active_users: Some(2),
            claim_seconds: 10,
            ..concert_core::admission::DEFAULT_POLICY
        });
        room.last_seq = 5;
        room.admitted_upto = 2;
        room.admissions.insert(
            2,
            Admission {
                from_seq: 1,
                upto_seq: 2,
                admitted_at: t(0),
                active_until: t(600),
                claim_until: t(10),
            },
        );
        room
    }

    #[test]
    fn a_pre_queued_place_has_no_position_until_the_draw_then_its_drawn_one() {
        use concert_core::admission::Draw;
        let mut room = Room::new(Policy {
            max_active_users: Some(1),
            ..concert_core::admission::DEFAULT_POLICY
        });
        room.last_seq = 5;
        room.opening = Opening {
            opens_at: Some(t(60)),
            prequeue_upto: 5,
            ..Opening::default()
        };
        for seq in 1..=5 {
            assert_eq!(
                room.status(seq, t(0)),
                PlaceStatus::PreQueued {
                    opens_at: Some(t(60))
                }
            );
        }
        // The draw and its order arrive together (see `RoomCache::refresh`).
        let draw = Draw {
            seed: [7; 32],
            places: 5,
        };
        room.order = Arc::new(draw.order());
        room.opening.draw = Some(draw);
        room.last_seq = 6;
        let positions: Vec<i64> = (1..=6)
            .map(|seq| match room.status(seq, t(61)) {
                PlaceStatus::Waiting { position, .. } => position,
                other => panic!("seq {seq}: {other:?}"),
            })
            .collect();
        let mut sorted = positions.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=6).collect::<Vec<_>>(), "a permutation");
        assert_eq!(positions[5], 6, "the later joiner follows the draw");
        assert_eq!(
            positions,
            (1..=6).map(|s| room.order.line(s)).collect::<Vec<_>>()
        );
        // Line 1 admitted: its step covers the place drawn first, whatever its seq.
        let first = room.order.seq(1);
        room.admitted_upto = 1;
        room.admissions.insert(
            1,
            Admission {
                from_seq: 1,
                upto_seq: 1,
                admitted_at: t(61),
                active_until: t(600),
                claim_until: t(120),
            },
        );
        assert!(matches!(
            room.status(first, t(62)),
            PlaceStatus::Active { .. }
        ));
        assert_eq!(room.active(t(62)), 1);
    }

    #[test]
    fn places_below_the_watermark_read_expired_without_a_reason_and_are_forgotten() {
        let mut room = room();
        room.completed.insert(1);
        room.ended.insert(2);
        room.claimed.insert(2);
        assert_eq!(room.status(1, t(1)), PlaceStatus::Completed);
        room.admissions.clear();
        room.prune_upto(1);
        assert_eq!(
            room.status(1, t(700)),
            PlaceStatus::Expired {
                reason: EndReason::Pruned
            }
        );
        assert_eq!(
            room.status(2, t(700)),
            PlaceStatus::Expired {
                reason: EndReason::NotClaimed
            },
            "above the watermark a place keeps its own reason"
        );
        assert!(!room.completed.contains(&1));
        assert!(room.ended.contains(&2));
        room.prune_upto(0);
        assert_eq!(room.pruned_upto, 1, "the watermark never moves back");
        room.prune_upto(2);
        assert!(room.ended.is_empty() && room.claimed.is_empty());
        assert!(
            matches!(room.status(5, t(700)), PlaceStatus::Waiting { .. }),
            "waiting places are never below it"
        );
    }

    #[test]
    fn an_unclaimed_place_frees_its_slot_in_the_estimate() {
        let mut room = room();
        room.claimed.insert(1);
        room.recompute_turnover(t(1));
        assert_eq!(
            room.status(3, t(1)),
            PlaceStatus::Waiting {
                position: 1,
                eta_seconds: Some(10)
            },
            "seq 2 is expected to end at its claim deadline (plus the grace)"
        );
        assert_eq!(
            room.status(4, t(1)),
            PlaceStatus::Waiting {
                position: 2,
                eta_seconds: Some(599)
            },
            "the claimed place keeps its slot for its whole window"
        );
    }
}
