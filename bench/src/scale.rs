//! The crowd at scale: tens of thousands of users (signed up beforehand) join one concert at once. Measured:
//! joins placed per second and the time from the first submit until the last join is placed. Checked: the
//! places are gap-free, every position 1..W held exactly once, read back through the public status call.
//!
//! The concert admits one place a week, so the line does not move while it is read: every place but the
//! first (or a first that went unclaimed, and its successor) is WAITING, and their positions must be exactly
//! 1..W. If an admission happens during the read anyway (the admin figures say so), the read is repeated.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use crate::client::{Api, Caller, Outcome};
use crate::stats::Recorder;
use crate::user::User;
use crate::verify::{expected_codes, Kind, Ledger};
use crate::workers::for_each;

/// Most times the places are read when a read finds them misplaced.
const READ_ATTEMPTS: usize = 3;
/// How long to let the api's waiting-room cache catch up before reading again: it refreshes several
/// times a second, so a place admitted just before a read may still be reported WAITING for a moment.
const CATCH_UP: Duration = Duration::from_secs(1);

/// What one place looked like when read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceSeen {
    Waiting(i64),
    Active,
    Expired,
    /// COMPLETED, a WAITING without a position, or an answer that is not a status.
    Other(String),
    /// The user never got a place (the join failed or was never decided).
    NoPlace,
}

/// The gap-free check of a crowd's places.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PlaceCheck {
    pub users: u64,
    /// Places in line by the room's own figures (the admin view), if they could be read.
    pub room_waiting: Option<i64>,
    /// Of the crowd's places: WAITING, ACTIVE, EXPIRED.
    pub waiting: u64,
    pub active: u64,
    pub expired: u64,
    /// Users whose join got no place in its answer (failed or never decided). Their join may still have been
    /// placed (an answer lost after publishing), so as many positions may be held by places the bench cannot see.
    pub unplaced: u64,
    /// Positions 1..=W (W: the room's figure, or the WAITING count) that no place of the crowd holds, beyond
    /// those the unplaced users may hold.
    pub gaps: u64,
    /// Positions held by more than one place (each extra holder counts once).
    pub duplicates: u64,
    /// Positions outside 1..=W.
    pub out_of_range: u64,
    /// Places in another state: COMPLETED, or an answer that is not a status.
    pub unexpected: u64,
    /// Reads made (more than one when the line moved during a read).
    pub reads: u64,
    /// Examples of what was wrong.
    pub details: Vec<String>,
}

impl PlaceCheck {
    /// Everything that is not a gap-free line.
    pub fn misplaced(&self) -> u64 {
        self.gaps + self.duplicates + self.out_of_range + self.unexpected
    }

    fn detail(&mut self, what: String) {
        if self.details.len() < 10 {
            self.details.push(what);
        }
    }
}

/// Checks that the WAITING places hold positions 1..=W exactly once each and that every other place is
/// ACTIVE or EXPIRED (the few the room admitted before the read). W is the room's own count of places in line
/// when known (`room_waiting`), else the number of WAITING places seen; positions the crowd's places do not
/// hold count as gaps only beyond the number of users left without a place.
pub fn check_places(seen: &[PlaceSeen], room_waiting: Option<i64>) -> PlaceCheck {
    let mut c = PlaceCheck {
        users: seen.len() as u64,
        room_waiting,
        ..PlaceCheck::default()
    };
    let mut positions = Vec::new();
    for s in seen {
        match s {
            PlaceSeen::Waiting(p) => positions.push(*p),
            PlaceSeen::Active => c.active += 1,
            PlaceSeen::Expired => c.expired += 1,
            PlaceSeen::Other(what) => {
                c.unexpected += 1;
                c.detail(format!("a place read back as {what}"));
            }
            PlaceSeen::NoPlace => c.unplaced += 1,
        }
    }
    c.waiting = positions.len() as u64;
    let w = room_waiting.map_or(positions.len(), |n| usize::try_from(n).unwrap_or(0));
    let mut held = vec![0u32; w + 1];
    for p in positions {
        match usize::try_from(p) {
            Ok(i) if (1..=w).contains(&i) => held[i] += 1,
            _ => {
                c.out_of_range += 1;
                c.detail(format!("position {p} outside 1..={w}"));
            }
        }
    }
    let mut free = 0u64;
    for (pos, n) in held.iter().enumerate().skip(1) {
        match n {
            0 => {
                free += 1;
                if free > c.unplaced {
                    c.detail(format!("position {pos} held by nobody"));
                }
            }
            1 => {}
            n => {
                c.duplicates += u64::from(n - 1);
                c.detail(format!("position {pos} held {n} times"));
            }
        }
    }
    c.gaps = free.saturating_sub(c.unplaced);
    c
}

/// What a status answer says about a place.
fn seen_of(out: &Outcome) -> PlaceSeen {
    let Some(body) = out.done() else {
        return PlaceSeen::Other(format!("{:?}", out.code()));
    };
    match (
        body["status"].as_str(),
        body.get("position").and_then(Value::as_i64),
    ) {
        (Some("WAITING"), Some(p)) => PlaceSeen::Waiting(p),
        (Some("ACTIVE"), _) => PlaceSeen::Active,
        (Some("EXPIRED"), _) => PlaceSeen::Expired,
        (s, _) => PlaceSeen::Other(s.unwrap_or("no status").to_owned()),
    }
}

/// Which concert the crowd joins and how each join is followed.
#[derive(Debug, Clone)]
pub struct JoinPlan {
    pub concert_id: String,
    /// The operation the joins are recorded under.
    pub op: String,
    /// `Prefer: wait` on the submit and on each follow-up poll.
    pub wait: u64,
    /// A join not placed this long after its submit is left to the verifier.
    pub deadline: Duration,
}

/// Joins every user to the plan's concert at once (at most `api`'s bound in flight), following each join
/// until it is placed or the deadline passes; returns each user's queue token. Records the plan's `op` from
/// each submit to the answer that placed it, so the operation's span is from the first submit to the last
/// placed.
pub async fn join_all(
    api: &Api,
    rec: &Arc<Recorder>,
    ledger: &Arc<Ledger>,
    users: &Arc<Vec<User>>,
    plan: &JoinPlan,
    bar: &indicatif::ProgressBar,
) -> Vec<Option<String>> {
    let (api, rec, ledger, users, bar, plan) = (
        api.clone(),
        rec.clone(),
        ledger.clone(),
        users.clone(),
        bar.clone(),
        Arc::new(plan.clone()),
    );
    for_each(users.len(), users.len(), move |i| {
        let (api, rec, ledger, users, bar, plan) = (
            api.clone(),
            rec.clone(),
            ledger.clone(),
            users.clone(),
            bar.clone(),
            plan.clone(),
        );
        async move {
            let (op, wait, deadline) = (&plan.op, plan.wait, plan.deadline);
            let user = &users[i];
            let caller = Caller {
                token: &user.token,
                queue: None,
            };
            let (mut out, sent) = api.join(caller, &plan.concert_id, wait).await;
            // Follow a join the wait did not cover until it is placed: its answer time is when it was.
            while let Outcome::Pending(id) = out {
                if sent.elapsed() >= deadline {
                    break;
                }
                out = api.poll_request(caller, id, wait).await;
                if matches!(out, Outcome::Transport(_)) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    out = Outcome::Pending(id);
                }
            }
            rec.record(op, sent, out.code());
            ledger.observe(
                op,
                user.idx,
                Some(Kind::Join),
                &out,
                expected_codes(Kind::Join),
            );
            bar.inc(1);
            out.done()
                .and_then(|b| b["queue_token"].as_str())
                .map(str::to_owned)
        }
    })
    .await
}

/// Reads every place back through `GET /v1/queue/status` and checks the line is gap-free; reads again (up to
/// [`READ_ATTEMPTS`] times, [`CATCH_UP`] apart) while a read finds places misplaced, since the room may
/// have admitted someone during or just before the read.
pub async fn check(
    api: &Api,
    admin: &Api,
    concert_id: &str,
    tokens: &[Option<String>],
) -> PlaceCheck {
    let tokens: Arc<Vec<Option<String>>> = Arc::new(tokens.to_vec());
    let mut last = PlaceCheck::default();
    for attempt in 1..=READ_ATTEMPTS {
        let before = room_figures(admin, concert_id).await;
        let started = Instant::now();
        let (api2, tokens2) = (api.clone(), tokens.clone());
        let seen = for_each(tokens.len(), tokens.len(), move |i| {
            let (api, tokens) = (api2.clone(), tokens2.clone());
            async move {
                match &tokens[i] {
                    None => PlaceSeen::NoPlace,
                    Some(t) => seen_of(&api.queue_status(t).await.0),
                }
            }
        })
        .await;
        let after = room_figures(admin, concert_id).await;
        last = check_places(&seen, after.map(|f| f.waiting));
        last.reads = attempt as u64;
        if last.misplaced() == 0 || attempt == READ_ATTEMPTS {
            return last;
        }
        // Either the room admitted someone during the read, or just before it and the api's cache had
        // not caught up; a real misplacement stays misplaced on every read.
        let moved = before.is_none() || before != after;
        eprintln!(
            "{} misplaced (the line {} while it was read: {before:?} -> {after:?}, {:.1}s): reading it again",
            last.misplaced(),
            if moved { "moved" } else { "did not move" },
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(CATCH_UP).await;
    }
    last
}

/// The room's own figures that say whether the line moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RoomFigures {
    admitted_total: i64,
    joined_total: i64,
    waiting: i64,
}

/// The room's figures from the admin view, if readable.
async fn room_figures(admin: &Api, concert_id: &str) -> Option<RoomFigures> {
    let out = admin.waiting_room(concert_id).await;
    let body = out.done()?;
    Some(RoomFigures {
        admitted_total: body["admitted_total"].as_i64()?,
        joined_total: body["joined_total"].as_i64()?,
        waiting: body["waiting"].as_i64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(ps: &[i64]) -> Vec<PlaceSeen> {
        ps.iter().map(|p| PlaceSeen::Waiting(*p)).collect()
    }

    #[test]
    fn a_gap_free_line_passes() {
        let mut seen = waiting(&[3, 1, 2, 5, 4]);
        seen.push(PlaceSeen::Active);
        seen.push(PlaceSeen::Expired);
        for room in [None, Some(5)] {
            let c = check_places(&seen, room);
            assert_eq!(
                (c.users, c.waiting, c.active, c.expired, c.misplaced()),
                (7, 5, 1, 1, 0)
            );
            assert!(c.details.is_empty());
        }
    }

    #[test]
    fn a_doubled_position_leaves_a_gap_too() {
        let c = check_places(&waiting(&[1, 2, 2, 4]), None);
        assert_eq!((c.gaps, c.duplicates), (1, 1));
        assert!(c
            .details
            .iter()
            .any(|d| d.contains("position 3 held by nobody")));
        assert!(c
            .details
            .iter()
            .any(|d| d.contains("position 2 held 2 times")));
    }

    #[test]
    fn positions_out_of_range_and_odd_states_are_misplaced() {
        let mut seen = waiting(&[0, 1, 9]);
        seen.push(PlaceSeen::Other("COMPLETED".into()));
        let c = check_places(&seen, None);
        // 0 and 9 are outside 1..=3, so positions 2 and 3 are gaps.
        assert_eq!((c.out_of_range, c.gaps, c.unexpected), (2, 2, 1));
        assert_eq!(c.misplaced(), 5);
    }

    #[test]
    fn places_of_users_whose_answer_was_lost_may_fill_the_gaps() {
        // The room has 5 in line; the crowd sees 3 of them and 2 users got no place in their answers.
        let mut seen = waiting(&[1, 4, 5]);
        seen.extend([PlaceSeen::NoPlace, PlaceSeen::NoPlace]);
        let c = check_places(&seen, Some(5));
        assert_eq!((c.unplaced, c.gaps, c.misplaced()), (2, 0, 0));
        // One unplaced user cannot explain two free positions.
        let mut seen = waiting(&[1, 4, 5]);
        seen.push(PlaceSeen::NoPlace);
        let c = check_places(&seen, Some(5));
        assert_eq!((c.gaps, c.misplaced()), (1, 1));
        // The room counting fewer than the crowd holds puts the extra positions out of range.
        let c = check_places(&waiting(&[1, 2, 3]), Some(2));
        assert_eq!((c.out_of_range, c.misplaced()), (1, 1));
    }

    #[test]
    fn reads_status_answers() {
        let body = |v: Value| Outcome::Done(v);
        assert_eq!(
            seen_of(&body(
                serde_json::json!({"status": "WAITING", "position": 7})
            )),
            PlaceSeen::Waiting(7)
        );
        assert_eq!(
            seen_of(&body(serde_json::json!({"status": "ACTIVE"}))),
            PlaceSeen::Active
        );
        assert!(matches!(
            seen_of(&body(serde_json::json!({"status": "WAITING"}))),
            PlaceSeen::Other(_)
        ));
        assert!(matches!(
            seen_of(&Outcome::Failed {
                status: 401,
                code: "QUEUE_TOKEN_INVALID".into()
            }),
            PlaceSeen::Other(_)
        ));
        assert_eq!(check_places(&[], None).misplaced(), 0);
    }
}
