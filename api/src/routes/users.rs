//! Sign-up, balance, charges, history and reservations.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use concert_core::seats::check_charge_amount;
use concert_core::token::AccessClaims;
use concert_core::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::config::MAX_BALANCE;
use crate::db::users::{self as store, ChargeOutcome};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, AuthUser, ClientAddr, IdempotencyKey};
use crate::paging::{Page, PageQuery};
use crate::state::AppState;
use crate::validate::text_field;

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignUp {
    /// 1 to 200 characters, no control characters.
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedUp {
    pub user_id: Uuid,
    pub access_token: String,
}

/// Creates a user and issues a signed access token.
#[utoipa::path(post, path = "/v1/users", request_body = SignUp, tag = "users",
    responses((status = 201, body = SignedUp), (status = 400, body = concert_core::Problem), (status = 429, body = concert_core::Problem)))]
pub async fn sign_up(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(body): ApiJson<SignUp>,
) -> ApiResult<(StatusCode, Json<SignedUp>)> {
    let name = text_field("name", &body.name)?;
    // Only sign-ups that would create a user count against the address's allowance.
    state.limits.check_signup(addr)?;
    let user_id = Uuid::now_v7();
    store::create(&state.pool, user_id, &name).await?;
    let exp = Utc::now().timestamp() + state.config.access_token_ttl.as_secs() as i64;
    let access_token = state
        .signer
        .sign_access(&AccessClaims { uid: user_id, exp });
    Ok((
        StatusCode::CREATED,
        Json(SignedUp {
            user_id,
            access_token,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    pub balance: i64,
}

fn unknown_user() -> ApiError {
    ApiError::new(
        ErrorCode::UserNotFound,
        "the user of this access token does not exist",
    )
}

/// The caller's balance in won.
#[utoipa::path(get, path = "/v1/me/balance", tag = "balance", security(("bearer" = [])),
    responses((status = 200, body = Balance), (status = 401, body = concert_core::Problem)))]
pub async fn balance(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<Balance>> {
    let balance = store::balance(&state.pool, user)
        .await?
        .ok_or_else(unknown_user)?;
    Ok(Json(Balance { balance }))
}

/// `amount` is read as any JSON value so that every wrong amount, whatever its type, is `INVALID_AMOUNT`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Charge {
    /// Whole won, 1 to the configured maximum.
    #[schema(value_type = i64)]
    pub amount: serde_json::Value,
}

/// Adds to the caller's prepaid balance. With `Idempotency-Key`, a repeat of the same key with the same
/// amount credits nothing more and answers the balance right after the first charge; with another amount
/// it is refused (422 `IDEMPOTENCY_KEY_REUSED`).
#[utoipa::path(post, path = "/v1/me/balance/charges", request_body = Charge, tag = "balance", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Balance), (status = 422, body = concert_core::Problem)))]
pub async fn charge(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    IdempotencyKey(key): IdempotencyKey,
    ApiJson(body): ApiJson<Charge>,
) -> ApiResult<Json<Balance>> {
    let max = state.config.max_charge;
    let amount = body
        .amount
        .as_i64()
        .ok_or_else(|| format!("amount must be a whole number of won between 1 and {max}"))
        .and_then(|a| check_charge_amount(a, max))
        .map_err(|detail| ApiError::new(ErrorCode::InvalidAmount, detail))?;
    match store::charge(&state.pool, user, amount, MAX_BALANCE, key.as_deref()).await? {
        ChargeOutcome::Charged(balance) => Ok(Json(Balance { balance })),
        ChargeOutcome::KeyReused => Err(ApiError::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was used for a charge of another amount",
        )),
        ChargeOutcome::UnknownUser => Err(unknown_user()),
        ChargeOutcome::OverLimit => Err(ApiError::new(
            ErrorCode::InvalidAmount,
            format!("a balance may not exceed {MAX_BALANCE} won"),
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct HistoryQuery {
    /// Entries per page, 1 to 100 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryEntry {
    /// CHARGE, PAYMENT or REFUND.
    pub kind: String,
    /// Always positive; `kind` gives the direction.
    pub amount: i64,
    pub balance_after: i64,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct History {
    pub entries: Vec<HistoryEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The caller's balance changes, newest first.
#[utoipa::path(get, path = "/v1/me/balance/history", params(HistoryQuery), tag = "balance", security(("bearer" = [])),
    responses((status = 200, body = History)))]
pub async fn history(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<History>> {
    let Query(query) = query.map_err(|e| ApiError::validation(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit must be between 1 and 100"));
    }
    let before = query
        .cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::validation("cursor is not one this server issued"))
        })
        .transpose()?;
    let mut rows = store::history(&state.pool, user, before, limit + 1).await?;
    let next_cursor = (rows.len() as i64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| r.entry_id.to_string())
            .unwrap_or_default()
    });
    let entries = rows
        .into_iter()
        .map(|r| HistoryEntry {
            kind: r.kind,
            amount: r.amount,
            balance_after: r.balance_after,
            at: r.at,
        })
        .collect();
    Ok(Json(History {
        entries,
        next_cursor,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reservation {
    pub reservation_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
    pub paid_at: DateTime<Utc>,
    /// CONFIRMED, or CANCELED (by its holder or with its date) and refunded.
    #[schema(example = "CONFIRMED")]
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canceled_at: Option<DateTime<Utc>>,
    /// A confirmed reservation's last moment to be cancelled (`cancel_cutoff_hours` before its date starts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelable_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Reservations {
    pub reservations: Vec<Reservation>,
    /// Present when more reservations follow: pass it as `cursor` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The seats the caller has bought, cancelled ones too, newest first, a page at a time.
#[utoipa::path(get, path = "/v1/me/reservations", params(PageQuery), tag = "balance", security(("bearer" = [])),
    responses((status = 200, body = Reservations), (status = 400, body = concert_core::Problem)))]
pub async fn reservations(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Reservations>> {
    let page = Page::from_query(query)?;
    let mut rows = store::reservations(&state.pool, user, page.after, page.fetch()).await?;
    let next_cursor = page.cut(&mut rows, |r| r.reservation_id);
    let reservations = rows
        .into_iter()
        .map(|r| Reservation {
            reservation_id: r.reservation_id,
            concert_id: r.concert_id,
            date_id: r.date_id,
            seat_no: r.seat_no,
            price: r.price,
            paid_at: r.paid_at,
            cancelable_until: r.canceled_at.is_none().then_some(r.cancel_deadline),
            status: r.status,
            canceled_at: r.canceled_at,
        })
        .collect();
    Ok(Json(Reservations {
        reservations,
        next_cursor,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveHold {
    pub hold_id: Uuid,
    pub concert_id: Uuid,
    pub date_id: Uuid,
    pub seat_no: i32,
    pub price: i64,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveHolds {
    pub holds: Vec<LiveHold>,
}

/// The caller's live holds (held and not past `expires_at`), soonest deadline first. Needs no queue token:
/// a user can always see, and give back, the seats they hold.
#[utoipa::path(get, path = "/v1/me/holds", tag = "bookings", security(("bearer" = [])),
    responses((status = 200, body = LiveHolds), (status = 401, body = concert_core::Problem)))]
pub async fn holds(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> ApiResult<Json<LiveHolds>> {
    let holds = store::live_holds(&state.pool, user)
        .await?
        .into_iter()
        .map(|h| LiveHold {
            hold_id: h.hold_id,
            concert_id: h.concert_id,
            date_id: h.date_id,
            seat_no: h.seat_no,
            price: h.price,
            expires_at: h.expires_at,
        })
        .collect();
    Ok(Json(LiveHolds { holds }))
}
