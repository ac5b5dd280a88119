//! Messages on the log: the commands the api publishes, the replies the workers send back, and the
//! payment events the outbox relay publishes. Both sides build against these types, so a field cannot drift.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::{ErrorCode, Problem};

/// What a request asks for; also its `kind` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandKind {
    Join,
    Hold,
    Release,
    Pay,
    Cancel,
    CancelDate,
}

impl CommandKind {
    pub const ALL: [CommandKind; 6] = [
        Self::Join,
        Self::Hold,
        Self::Release,
        Self::Pay,
        Self::Cancel,
        Self::CancelDate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Join => "JOIN",
            Self::Hold => "HOLD",
            Self::Release => "RELEASE",
            Self::Pay => "PAY",
            Self::Cancel => "CANCEL",
            Self::CancelDate => "CANCEL_DATE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The body of a command. Ids that decide the partition (concert for joins, date for the rest) are carried
/// so the worker never has to look them up to know where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Command {
    Join {
        concert_id: Uuid,
    },
    Hold {
        concert_id: Uuid,
        date_id: Uuid,
        seat_no: i32,
        queue_seq: i64,
    },
    Release {
        concert_id: Uuid,
        date_id: Uuid,
        hold_id: Uuid,
    },
    /// A checkout: every hold in `hold_ids` (all on `date_id`) is paid, or none is.
    Pay {
        concert_id: Uuid,
        date_id: Uuid,
        /// In the order the client named them; the first is the checkout's "first seat". A v2 PAY on the log
        /// names one `hold_id`, read as a checkout of one.
        #[serde(alias = "hold_id", deserialize_with = "one_or_many")]
        hold_ids: Vec<Uuid>,
        queue_seq: i64,
    },
    /// A user cancels one of their reservations: refunded, its seat free again.
    Cancel {
        concert_id: Uuid,
        date_id: Uuid,
        reservation_id: Uuid,
    },
    /// The organizer cancels a date: its holds released, its reservations refunded, the date closed.
    /// Submitted under [`ADMIN_USER_ID`].
    CancelDate {
        concert_id: Uuid,
        date_id: Uuid,
    },
}

/// The user id the admin's commands are submitted under (and their request ids are issued to): no user has it.
pub const ADMIN_USER_ID: Uuid = Uuid::nil();

/// A list of ids, or a single id read as a list of one (a PAY's `hold_ids`, or a v2 PAY's `hold_id`).
fn one_or_many<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<Uuid>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(Uuid),
        Many(Vec<Uuid>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(id) => vec![id],
        OneOrMany::Many(ids) => ids,
    })
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Self::Join { .. } => CommandKind::Join,
            Self::Hold { .. } => CommandKind::Hold,
            Self::Release { .. } => CommandKind::Release,
            Self::Pay { .. } => CommandKind::Pay,
            Self::Cancel { .. } => CommandKind::Cancel,
            Self::CancelDate { .. } => CommandKind::CancelDate,
        }
    }

    /// Everything that competes for the same rows lands on one partition: a concert's waiting room for
    /// joins, a concert date's seats for holds, releases, payments and cancellations.
    pub fn partition_key(&self) -> Uuid {
        match self {
            Self::Join { concert_id } => *concert_id,
            Self::Hold { date_id, .. }
            | Self::Release { date_id, .. }
            | Self::Pay { date_id, .. }
            | Self::Cancel { date_id, .. }
            | Self::CancelDate { date_id, .. } => *date_id,
        }
    }

    /// The place in line this command ends when it succeeds: a payment completes the payer's place.
    pub fn completes_place(&self) -> Option<PlaceRef> {
        match self {
            Self::Pay {
                concert_id,
                queue_seq,
                ..
            } => Some(PlaceRef {
                concert_id: *concert_id,
                seq: *queue_seq,
            }),
            _ => None,
        }
    }

    /// A digest of what was asked, to tell a retry from an idempotency key reused for something else.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_vec(self).expect("commands serialise");
        let digest = Sha256::digest(json);
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// A command as it sits on the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub submitted_at: DateTime<Utc>,
    pub fingerprint: String,
    pub command: Command,
}

impl CommandEnvelope {
    pub fn new(request_id: Uuid, user_id: Uuid, command: Command) -> Self {
        Self {
            request_id,
            user_id,
            submitted_at: Utc::now(),
            fingerprint: command.fingerprint(),
            command,
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Outcome {
    Succeeded { result: serde_json::Value },
    Failed { error: Problem },
}

impl Outcome {
    /// SUCCEEDED or FAILED, as a request's `status` says it.
    pub fn status_name(&self) -> &'static str {
        match self {
            Self::Succeeded { .. } => "SUCCEEDED",
            Self::Failed { .. } => "FAILED",
        }
    }
}

/// A place in line: the concert and the seq the queue token names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceRef {
    pub concert_id: Uuid,
    pub seq: i64,
}

/// A command's outcome on the reply topic; the same thing is stored in the `requests` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub kind: CommandKind,
    pub fingerprint: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// The place this outcome ended, so every api instance shows it COMPLETED at once instead of on its
    /// next cache refresh. Set on replies sent as the command is applied, not on replayed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_place: Option<PlaceRef>,
}

impl Reply {
    /// A worker's replay of a [`REFUSED`] request: not an outcome, the client was answered 503.
    pub fn is_refusal(&self) -> bool {
        matches!(&self.outcome, Outcome::Failed { error } if error.code == ErrorCode::Unavailable)
    }

    /// The reply to `envelope` decided now.
    pub fn decided(envelope: &CommandEnvelope, outcome: Outcome) -> Self {
        let completed_place = match outcome {
            Outcome::Succeeded { .. } => envelope.command.completes_place(),
            Outcome::Failed { .. } => None,
        };
        Self {
            request_id: envelope.request_id,
            user_id: envelope.user_id,
            kind: envelope.command.kind(),
            fingerprint: envelope.fingerprint.clone(),
            outcome,
            completed_place,
        }
    }
}

/// `requests.status` of a command the api refused (503) after publishing it could not be confirmed: the
/// broker may still have put it on the log. A worker that takes such a copy finds the request recorded and
/// applies nothing; its replay is [`refusal`], which the api never shows as an outcome.
pub const REFUSED: &str = "REFUSED";

/// The replayed "outcome" of a [`REFUSED`] request. No command a worker applies fails with `UNAVAILABLE`
/// (its refusals are domain codes or `INTERNAL`), so the code alone marks a refusal ([`Reply::is_refusal`]).
pub fn refusal() -> Problem {
    Problem::new(
        ErrorCode::Unavailable,
        "the command was refused before it was accepted: the broker did not confirm it in time",
    )
}

/// A row of the `requests` table: a command's outcome as the worker stored it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredRequest {
    pub request_id: Uuid,
    pub user_id: Uuid,
    pub kind: String,
    pub fingerprint: String,
    pub status: String,
    pub result: Option<serde_json::Value>,
    pub error: Option<serde_json::Value>,
}

impl StoredRequest {
    /// The reply exactly as first decided. A row still PENDING (only ever seen inside the worker's own
    /// transaction) or one that lost its outcome is an error.
    pub fn into_reply(self) -> anyhow::Result<Reply> {
        let kind = CommandKind::parse(&self.kind)
            .ok_or_else(|| anyhow::anyhow!("stored request has kind {:?}", self.kind))?;
        let outcome = match (self.status.as_str(), self.result, self.error) {
            ("SUCCEEDED", result, _) => Outcome::Succeeded {
                result: result.unwrap_or_default(),
            },
            ("FAILED", _, Some(error)) => Outcome::Failed {
                error: serde_json::from_value(error)?,
            },
            (REFUSED, _, _) => Outcome::Failed { error: refusal() },
            (status, _, _) => anyhow::bail!(
                "request {} is stored as {status} without its outcome",
                self.request_id
            ),
        };
        Ok(Reply {
            request_id: self.request_id,
            user_id: self.user_id,
            kind,
            fingerprint: self.fingerprint,
            outcome,
            completed_place: None,
        })
    }
}

/// `result` of a JOIN: the place in line. The api turns it into a signed queue token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResult {
    pub concert_id: Uuid,
    pub seq: i64,
    pub joined_at: DateTime<Utc>,
    /// Set when the place joined before the room's opening (pre-queued, no position until the draw), so
    /// the api answers it so even before its cache has read the room's `opens_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opens_at: Option<DateTime<Utc>>,
}

/// `result` of a HOLD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HoldResult {
    pub hold_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
    pub expires_at: DateTime<Utc>,
}

/// `result` of a RELEASE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReleaseResult {
    pub hold_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub released_at: DateTime<Utc>,
}

/// One seat of a checkout, as its result and its payment event list it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaidSeat {
    pub reservation_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
}

/// `result` of a PAY (a checkout): one payment of `amount`, the sum of its seats' prices, and one
/// reservation per seat. A checkout of one seat also carries that seat's `reservation_id`, `date_id` and
/// `seat_no`, as v1 answered them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentResult {
    pub payment_id: Uuid,
    pub amount: i64,
    pub paid_at: DateTime<Utc>,
    pub reservations: Vec<PaidSeat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat_no: Option<i32>,
}

impl PaymentResult {
    /// The result of a checkout of `seats`, with the v1 fields when there is exactly one.
    pub fn new(payment_id: Uuid, paid_at: DateTime<Utc>, seats: Vec<PaidSeat>) -> Self {
        let single = match seats.as_slice() {
            [seat] => Some(seat.clone()),
            _ => None,
        };
        Self {
            payment_id,
            amount: seats.iter().map(|s| s.price).sum(),
            paid_at,
            reservation_id: single.as_ref().map(|s| s.reservation_id),
            date_id: single.as_ref().map(|s| s.date_id),
            seat_no: single.as_ref().map(|s| s.seat_no),
            reservations: seats,
        }
    }
}

/// Published on the payment events topic once per checkout, keyed by `payment_id` (so the refunds of its
/// seats follow it in order). Delivery is at least once: consumers drop repeats by `event_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PaymentEvent {
    pub event_id: Uuid,
    /// Always `payment.completed`.
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub payment_id: Uuid,
    /// The first seat's reservation, hold, date and number: the v1 fields of a one-seat payment.
    pub reservation_id: Uuid,
    pub hold_id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    /// The sum of the seats' prices.
    pub amount: i64,
    /// Every seat of the checkout, first seat first.
    #[serde(default)]
    pub reservations: Vec<PaidSeat>,
}

impl PaymentEvent {
    pub const TYPE: &'static str = "payment.completed";
}

/// `result` of a CANCEL: the reservation is CANCELED and `amount` is back on the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CancelResult {
    pub reservation_id: Uuid,
    pub refund_id: Uuid,
    pub amount: i64,
    pub canceled_at: DateTime<Utc>,
}

/// `result` of a CANCEL_DATE, the same for every repeat: the counts are those of the cancel that closed
/// the date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DateCancelResult {
    pub date_id: Uuid,
    pub canceled_at: DateTime<Utc>,
    pub reservations_refunded: i64,
    pub holds_released: i64,
}

/// Published on the payment events topic when a reservation is refunded, keyed by `payment_id` (so it
/// follows its payment's event). One per refund; consumers drop repeats by `event_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefundEvent {
    pub event_id: Uuid,
    /// Always `payment.refunded`.
    pub event_type: String,
    pub occurred_at: DateTime<Utc>,
    pub payment_id: Uuid,
    pub refund_id: Uuid,
    pub reservation_id: Uuid,
    pub user_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub amount: i64,
}

impl RefundEvent {
    pub const TYPE: &'static str = "payment.refunded";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_wire_form_is_tagged_by_kind() {
        let c = Command::Hold {
            concert_id: Uuid::nil(),
            date_id: Uuid::nil(),
            seat_no: 7,
            queue_seq: 3,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["kind"], "HOLD");
        assert_eq!(v["seat_no"], 7);
        assert_eq!(serde_json::from_value::<Command>(v).unwrap(), c);
    }

    #[test]
    fn fingerprint_tells_bodies_apart() {
        let a = Command::Hold {
            concert_id: Uuid::nil(),
            date_id: Uuid::nil(),
            seat_no: 7,
            queue_seq: 3,
        };
        let b = Command::Hold {
            concert_id: Uuid::nil(),
            date_id: Uuid::nil(),
            seat_no: 8,
            queue_seq: 3,
        };
        assert_eq!(a.fingerprint(), a.clone().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn reply_flattens_outcome() {
        let r = Reply {
            request_id: Uuid::nil(),
            user_id: Uuid::nil(),
            kind: CommandKind::Pay,
            fingerprint: "f".into(),
            outcome: Outcome::Succeeded {
                result: serde_json::json!({"x": 1}),
            },
            completed_place: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "SUCCEEDED");
        assert_eq!(v["result"]["x"], 1);
        assert_eq!(serde_json::from_value::<Reply>(v).unwrap(), r);
    }

    #[test]
    fn only_a_successful_payment_completes_a_place() {
        let (c, d) = (Uuid::new_v4(), Uuid::new_v4());
        let pay = CommandEnvelope::new(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Command::Pay {
                concert_id: c,
                date_id: d,
                hold_ids: vec![Uuid::new_v4()],
                queue_seq: 9,
            },
        );
        let ok = Outcome::Succeeded {
            result: serde_json::json!({}),
        };
        assert_eq!(
            Reply::decided(&pay, ok.clone()).completed_place,
            Some(PlaceRef {
                concert_id: c,
                seq: 9
            })
        );
        let failed = Outcome::Failed {
            error: Problem::new(crate::ErrorCode::HoldExpired, "late"),
        };
        assert_eq!(Reply::decided(&pay, failed).completed_place, None);
        let hold = CommandEnvelope::new(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Command::Hold {
                concert_id: c,
                date_id: d,
                seat_no: 1,
                queue_seq: 9,
            },
        );
        assert_eq!(Reply::decided(&hold, ok).completed_place, None);
    }

    #[test]
    fn a_v2_pay_of_one_hold_reads_as_a_checkout_of_one() {
        let (c, d, h) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let v2 = serde_json::json!({"kind": "PAY", "concert_id": c, "date_id": d, "hold_id": h, "queue_seq": 3});
        let pay = Command::Pay {
            concert_id: c,
            date_id: d,
            hold_ids: vec![h],
            queue_seq: 3,
        };
        assert_eq!(serde_json::from_value::<Command>(v2).unwrap(), pay);
        let v3 = serde_json::to_value(&pay).unwrap();
        assert_eq!(v3["hold_ids"], serde_json::json!([h]));
        assert_eq!(serde_json::from_value::<Command>(v3).unwrap(), pay);
    }

    #[test]
    fn a_checkout_result_sums_its_seats_and_names_a_single_one_as_v1_did() {
        let seat = |seat_no, price| PaidSeat {
            reservation_id: Uuid::new_v4(),
            date_id: Uuid::nil(),
            seat_no,
            price,
        };
        let one = PaymentResult::new(Uuid::new_v4(), Utc::now(), vec![seat(4, 100)]);
        let v = serde_json::to_value(&one).unwrap();
        assert_eq!(
            (v["amount"].as_i64(), v["seat_no"].as_i64()),
            (Some(100), Some(4))
        );
        assert_eq!(v["reservation_id"], v["reservations"][0]["reservation_id"]);
        let two = PaymentResult::new(Uuid::new_v4(), Utc::now(), vec![seat(4, 100), seat(5, 250)]);
        let v = serde_json::to_value(&two).unwrap();
        assert_eq!(v["amount"], 350);
        assert_eq!(v["reservations"].as_array().map(Vec::len), Some(2));
        for v1_field in ["reservation_id", "date_id", "seat_no"] {
            assert!(v.get(v1_field).is_none(), "{v1_field} in {v}");
        }
    }

    #[test]
    fn partition_key_is_concert_for_joins_and_date_for_seats() {
        let (c, d) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(Command::Join { concert_id: c }.partition_key(), c);
        let hold = Command::Hold {
            concert_id: c,
            date_id: d,
            seat_no: 1,
            queue_seq: 1,
        };
        assert_eq!(hold.partition_key(), d);
    }
}
