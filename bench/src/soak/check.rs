//! The soak's invariants besides those of [`crate::verify`] (no seat sold twice, nothing lost): the admin's
//! box office of every concert the soak made agrees with what its buyers hold. Every buyer of those concerts
//! is a user of the soak, so each date's `sold` must equal the confirmed reservations found in their
//! `GET /v1/me/reservations`, and `sold + held + available` must be its `total_seats`.

use std::collections::HashMap;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Api, Caller};
use crate::setup::Concert;
use crate::user::User;

/// Reads in flight at once.
const READS: usize = 32;

/// What the box office check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BoxOffice {
    pub dates: u64,
    /// Seats sold over all dates, as the box office says.
    pub sold: i64,
    /// Confirmed reservations found over all users.
    pub confirmed: i64,
    /// Dates whose figures do not add up or disagree with the reservations, plus concerts not readable.
    pub mismatches: u64,
    pub details: Vec<String>,
}

pub async fn box_office(api: &Api, concerts: &[Concert], users: &[User]) -> BoxOffice {
    let mut b = BoxOffice::default();
    let mut confirmed: HashMap<String, i64> = HashMap::new();
    let mut reads = futures::stream::iter(users)
        .map(|u| async move {
            api.reservations(Caller {
                token: &u.token,
                queue: None,
            })
            .await
        })
        .buffer_unordered(READS);
    while let Some(out) = reads.next().await {
        let list = out
            .done()
            .and_then(|v| v.get("reservations"))
            .and_then(Value::as_array);
        let Some(list) = list else {
            b.mismatches += 1;
            note(&mut b, format!("a user's reservations unreadable: {out:?}"));
            continue;
        };
        for r in list {
            if r.get("status").and_then(Value::as_str) != Some("CANCELED") {
                let date = r.get("date_id").and_then(Value::as_str).unwrap_or_default();
                *confirmed.entry(date.to_owned()).or_default() += 1;
            }
        }
    }
    b.confirmed = confirmed.values().sum();

    for concert in concerts {
        let out = api.sales(&concert.concert_id).await;
        let Some(dates) = out
            .done()
            .and_then(|v| v.get("dates"))
            .and_then(Value::as_array)
        else {
            b.mismatches += 1;
            note(
                &mut b,
                format!("sales of {} unreadable: {out:?}", concert.concert_id),
            );
            continue;
        };
        for d in dates {
            let n = |k: &str| d.get(k).and_then(Value::as_i64).unwrap_or(-1);
            let id = d.get("date_id").and_then(Value::as_str).unwrap_or_default();
            let (total, sold, held, available) =
                (n("total_seats"), n("sold"), n("held"), n("available"));
            let reserved = confirmed.get(id).copied().unwrap_or(0);
            b.dates += 1;
            b.sold += sold.max(0);
            if sold + held + available != total || sold != reserved || sold > total {
                b.mismatches += 1;
                note(
                    &mut b,
                    format!(
                        "date {id}: sold {sold} + held {held} + available {available} vs total {total}; \
                         {reserved} confirmed reservations"
                    ),
                );
            }
        }
    }
    b
}

fn note(b: &mut BoxOffice, what: String) {
    if b.details.len() < 20 {
        b.details.push(what);
    }
}
