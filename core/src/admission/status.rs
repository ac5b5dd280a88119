//! The state of one place in line (WAITING, ACTIVE, EXPIRED, COMPLETED), and how an admitted place's state
//! follows from its admission step, its claim and its payment.

use chrono::{DateTime, Duration, Utc};

use super::step::Admission;

/// How long past a claim deadline an unclaimed place still counts as ACTIVE. Claims reach Postgres in
/// batches (every few hundred milliseconds) and other api instances learn them on their next refresh, so
/// the ticker and every instance wait this long before taking "no claim seen" as "never claimed".
pub const CLAIM_GRACE_MS: i64 = 1000;

/// Why a place ended without a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Admitted, but no request came with its queue token within `claim_seconds`.
    NotClaimed,
    /// The active window ran out.
    WindowEnded,
    /// Ended long ago and pruned by the retention: the place is no longer known, only that it ended. The
    /// contract gives no reason for it (`EndReason::shown`).
    Pruned,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotClaimed => "NOT_CLAIMED",
            Self::WindowEnded => "WINDOW_ENDED",
            Self::Pruned => "PRUNED",
        }
    }

    /// The `reason` a status shows: none for a pruned place (`{"status": "EXPIRED"}`).
    pub fn shown(self) -> Option<&'static str> {
        match self {
            Self::Pruned => None,
            other => Some(other.as_str()),
        }
    }
}

/// The state of one place in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceStatus {
    /// Joined before the room opened: waiting for the draw at `opens_at`, with no position yet (shown as
    /// WAITING). `opens_at` is `None` only when the admin removed it and the draw is moments away.
    PreQueued {
        opens_at: Option<DateTime<Utc>>,
    },
    Waiting {
        position: i64,
        eta_seconds: Option<i64>,
    },
    Active {
        active_until: DateTime<Utc>,
    },
    Expired {
        reason: EndReason,
    },
    Completed,
}

impl PlaceStatus {
    /// WAITING, ACTIVE, EXPIRED or COMPLETED, as the contract names them.
    pub fn name(&self) -> &'static str {
        match self {
            Self::PreQueued { .. } | Self::Waiting { .. } => "WAITING",
            Self::Active { .. } => "ACTIVE",
            Self::Expired { .. } => "EXPIRED",
            Self::Completed => "COMPLETED",
        }
    }

    /// EXPIRED and COMPLETED never change again.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Expired { .. } | Self::Completed)
    }
}

/// What is known about one admitted place besides its step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlaceFacts {
    pub completed: bool,
    /// Ended by the ticker for want of a claim.
    pub ended: bool,
    /// A request with its token was seen in time (here or, through Postgres, by another instance).
    pub claimed: bool,
}

/// Works out the status of an admitted place from its admission step (`None`: the step's window closed
/// long ago and was forgotten).
pub fn admitted_status(
    step: Option<&Admission>,
    facts: PlaceFacts,
    now: DateTime<Utc>,
) -> PlaceStatus {
    if facts.completed {
        return PlaceStatus::Completed;
    }
    if facts.ended {
        return PlaceStatus::Expired {
            reason: EndReason::NotClaimed,
        };
    }
    match step {
        Some(a) if now < a.active_until => {
            let grace = Duration::milliseconds(CLAIM_GRACE_MS);
            if !facts.claimed && now >= a.claim_until + grace {
                PlaceStatus::Expired {
                    reason: EndReason::NotClaimed,
                }
            } else {
                PlaceStatus::Active {
                    active_until: a.active_until,
                }
            }
        }
        _ => PlaceStatus::Expired {
            reason: EndReason::WindowEnded,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::testing::t;

    fn step(claim: i64, until: i64) -> Admission {
        Admission {
            from_seq: 1,
            upto_seq: 3,
            admitted_at: t(0),
            active_until: t(until),
            claim_until: t(claim),
        }
    }

    #[test]
    fn admitted_status_follows_window_claim_and_completion() {
        let s = step(10, 60);
        let unclaimed = PlaceFacts::default();
        let claimed = PlaceFacts {
            claimed: true,
            ..PlaceFacts::default()
        };
        let active = PlaceStatus::Active {
            active_until: t(60),
        };
        let not_claimed = PlaceStatus::Expired {
            reason: EndReason::NotClaimed,
        };
        let window = PlaceStatus::Expired {
            reason: EndReason::WindowEnded,
        };
        assert_eq!(admitted_status(Some(&s), unclaimed, t(5)), active);
        assert_eq!(
            admitted_status(Some(&s), unclaimed, t(10)),
            active,
            "a claim may still be on its way"
        );
        assert_eq!(admitted_status(Some(&s), unclaimed, t(12)), not_claimed);
        assert_eq!(admitted_status(Some(&s), claimed, t(59)), active);
        assert_eq!(admitted_status(Some(&s), claimed, t(60)), window);
        assert_eq!(admitted_status(None, claimed, t(1)), window);
        let ended = PlaceFacts {
            ended: true,
            ..PlaceFacts::default()
        };
        assert_eq!(admitted_status(Some(&s), ended, t(1)), not_claimed);
        let paid = PlaceFacts {
            completed: true,
            ..claimed
        };
        assert_eq!(
            admitted_status(Some(&s), paid, t(1)),
            PlaceStatus::Completed
        );
        assert_eq!(not_claimed.name(), "EXPIRED");
        assert!(window.is_final() && !active.is_final());
    }
}
