//! JOIN: a place in the concert's waiting room, in the order the log accepted the joins.
//!
//! A run of joins is decided together: the rooms are locked and the users' live places read in one
//! statement each, every join is decided in memory in log order, and the new places are written in two
//! statements. A flash crowd joining one concert is then a handful of round trips per batch.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use concert_core::commands::{Command, CommandEnvelope, JoinResult};
use concert_core::ErrorCode;
use sqlx::PgConnection;
use uuid::Uuid;

use super::decision::{Decision, Refusal};
use crate::store::queue::{self, NewPlace, Place};

/// What a JOIN asks for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JoinRequest {
    pub user_id: Uuid,
    pub concert_id: Uuid,
}

impl JoinRequest {
    pub(crate) fn from_envelope(envelope: &CommandEnvelope) -> Option<Self> {
        match envelope.command {
            Command::Join { concert_id } => Some(Self {
                user_id: envelope.user_id,
                concert_id,
            }),
            _ => None,
        }
    }
}

/// What the database says about the rooms and users of a run, read (and the rooms locked) up front.
#[derive(Debug, Default)]
pub(crate) struct JoinFacts {
    /// The last seq handed out, per concert with a waiting room.
    pub last_seq: HashMap<Uuid, i64>,
    /// The live place of each (concert, user) that has one.
    pub live: HashMap<(Uuid, Uuid), Place>,
    /// The opening of each room still pre-queuing: its places (new or repeated) have no position yet.
    pub pre_queue_until: HashMap<Uuid, DateTime<Utc>>,
}

/// Gives each user a place at the back of the line, or the live place they already have, in log order.
/// The rooms are locked first, so the admission ticker cannot move a frontier while this decides.
pub(crate) async fn join_run(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    requests: &[JoinRequest],
) -> anyhow::Result<Vec<Decision<JoinResult>>> {
    let mut concerts: Vec<Uuid> = requests.iter().map(|r| r.concert_id).collect();
    concerts.sort_unstable();
    concerts.dedup();
    let pairs: Vec<(Uuid, Uuid)> = requests.iter().map(|r| (r.concert_id, r.user_id)).collect();
    let rooms = queue::lock_rooms(conn, &concerts).await?;
    let live = queue::live_places(conn, &pairs).await?;
    let mut facts = JoinFacts {
        last_seq: rooms.iter().map(|(c, r)| (*c, r.last_seq)).collect(),
        live,
        pre_queue_until: rooms
            .iter()
            .filter_map(|(c, r)| Some((*c, r.pre_queue_until?)))
            .collect(),
    };
    let (decisions, places) = decide_joins(requests, &mut facts, now);
    queue::append_places(conn, &places, &facts.last_seq).await?;
    Ok(decisions)
}

/// Decides each join in order against `facts`, updating them as places are handed out, so a user joining
/// twice in one run gets one place. Returns the decisions and the places to write.
pub(crate) fn decide_joins(
    requests: &[JoinRequest],
    facts: &mut JoinFacts,
    now: DateTime<Utc>,
) -> (Vec<Decision<JoinResult>>, Vec<NewPlace>) {
    let mut places = Vec::new();
    let decisions = requests
        .iter()
        .map(|r| {
            let key = (r.concert_id, r.user_id);
            let opens_at = facts.pre_queue_until.get(&r.concert_id).copied();
            if let Some(place) = facts.live.get(&key) {
                return Ok(result(r, place, opens_at));
            }
            let Some(last) = facts.last_seq.get_mut(&r.concert_id) else {
                return Err(Refusal::new(
                    ErrorCode::ConcertNotFound,
                    format!("concert {} was not found", r.concert_id),
                ));
            };
            *last += 1;
            let place = Place {
                seq: *last,
                joined_at: now,
            };
            facts.live.insert(key, place);
            places.push(NewPlace {
                concert_id: r.concert_id,
                seq: place.seq,
                user_id: r.user_id,
            });
            Ok(result(r, &place, opens_at))
        })
        .collect();
    (decisions, places)
}

fn result(request: &JoinRequest, place: &Place, opens_at: Option<DateTime<Utc>>) -> JoinResult {
    JoinResult {
        concert_id: request.concert_id,
        seq: place.seq,
        joined_at: place.joined_at,
        opens_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn places_are_dense_in_log_order_and_a_repeat_keeps_its_place() {
        let concert = Uuid::new_v4();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut facts = JoinFacts::default();
        facts.last_seq.insert(concert, 7);
        let ask = |user_id| JoinRequest {
            user_id,
            concert_id: concert,
        };
        let (decisions, places) = decide_joins(&[ask(a), ask(b), ask(a)], &mut facts, t(0));
        let seqs: Vec<i64> = decisions.iter().map(|d| d.as_ref().unwrap().seq).collect();
        assert_eq!(seqs, [8, 9, 8]);
        assert_eq!(places.len(), 2);
        assert_eq!(facts.last_seq[&concert], 9);
    }

    #[test]
    fn a_live_place_is_returned_and_an_unknown_concert_refused() {
        let concert = Uuid::new_v4();
        let user = Uuid::new_v4();
        let mut facts = JoinFacts::default();
        facts.last_seq.insert(concert, 3);
        let place = Place {
            seq: 2,
            joined_at: t(-60),
        };
        facts.live.insert((concert, user), place);
        let asks = [
            JoinRequest {
                user_id: user,
                concert_id: concert,
            },
            JoinRequest {
                user_id: user,
                concert_id: Uuid::new_v4(),
            },
        ];
        let (decisions, places) = decide_joins(&asks, &mut facts, t(0));
        assert_eq!(decisions[0].as_ref().unwrap().seq, 2);
        assert_eq!(
            decisions[1].as_ref().unwrap_err().code,
            ErrorCode::ConcertNotFound
        );
        assert!(places.is_empty());
    }
}
