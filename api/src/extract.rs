//! Request extractors whose rejections are problem documents: JSON bodies, path ids, the user's access token,
//! the admin token, and the `Prefer` and `Idempotency-Key` headers; and the client's address, which the
//! sign-up limit is keyed by.

use std::net::{IpAddr, SocketAddr};

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use concert_core::commands::ADMIN_USER_ID;
use concert_core::ErrorCode;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::config::MAX_WAIT_SECONDS;
use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body; malformed or mistyped bodies are 400 `VALIDATION_FAILED` with serde's reason.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let read = axum::Json::<T>::from_request(req, state);
        match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
            Ok(Ok(axum::Json(value))) => Ok(Self(value)),
            Ok(Err(rejection)) => Err(json_rejection(rejection)),
            Err(_) => Err(ApiError::validation(format!(
                "the request body did not arrive within {} s",
                BODY_READ_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// How long a client may take to send a request's body (bodies are at most 64 KiB): a body sent a byte
/// every few seconds would otherwise hold its request slot until the request timeout.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the body as application/json",
        ),
        JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::PayloadTooLarge, "the body is too large")
        }
        JsonRejection::JsonDataError(e) => {
            ApiError::validation(format!("invalid body: {}", e.body_text()))
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::validation("the body is not valid JSON"),
        other => ApiError::validation(format!("invalid body: {}", other.body_text())),
    }
}

/// A path of ids; an id that is not a UUID is 400 `VALIDATION_FAILED`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => {
                Err(ApiError::validation("ids in the path must be UUIDs"))
            }
            Err(other) => Err(ApiError::validation(other.body_text())),
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The user an access token names. The token is checked by its signature alone: no database round trip.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Uuid);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "send Authorization: Bearer <access_token>",
            )
        })?;
        let claims = state
            .signer
            .verify_access(token, chrono::Utc::now().timestamp())
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::Unauthorized,
                    format!("access token refused: {e}"),
                )
            })?;
        Ok(Self(claims.uid))
    }
}

/// The user, when an access token was sent; an invalid one is still refused.
#[derive(Debug, Clone, Copy)]
pub struct MaybeUser(pub Option<Uuid>);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.get(header::AUTHORIZATION).is_none() {
            return Ok(Self(None));
        }
        Ok(Self(Some(
            AuthUser::from_request_parts(parts, state).await?.0,
        )))
    }
}

/// Proof of the admin token from configuration.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).unwrap_or_default();
        if same_secret(token, &state.config.admin_token) {
            Ok(Self)
        } else {
            Err(ApiError::new(
                ErrorCode::Unauthorized,
                "admin token required",
            ))
        }
    }
}

/// Who reads a request's outcome: a user by their access token, or the admin by the admin token (the
/// admin's commands are submitted under [`ADMIN_USER_ID`], so their request ids verify for it alone).
#[derive(Debug, Clone, Copy)]
pub struct RequestReader(pub Uuid);

impl FromRequestParts<AppState> for RequestReader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if bearer(parts).is_some_and(|token| same_secret(token, &state.config.admin_token)) {
            return Ok(Self(ADMIN_USER_ID));
        }
        let AuthUser(user) = AuthUser::from_request_parts(parts, state).await?;
        Ok(Self(user))
    }
}

/// Whether `given` equals `expected`, in time that depends on neither value nor on either length: both are
/// hashed to 32 bytes first, and the digests compared in constant time.
pub fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    given.ct_eq(&expected).into()
}

/// The raw `X-Queue-Token` header, if sent.
pub struct QueueTokenHeader(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for QueueTokenHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get("x-queue-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Self(value))
    }
}

/// `Prefer: wait=N` (RFC 7240), capped at 30 seconds; absent or unreadable means no preference.
#[derive(Debug, Clone, Copy, Default)]
pub struct PreferWait(pub Option<u64>);

impl<S: Send + Sync> FromRequestParts<S> for PreferWait {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let wait = parts
            .headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split([',', ';']))
            .filter_map(|pref| {
                let (name, value) = pref.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("wait")
                    .then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
            })
            .next()
            .map(|n| n.min(MAX_WAIT_SECONDS));
        Ok(Self(wait))
    }
}

/// `Idempotency-Key`: 1 to 200 printable ASCII characters.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        let key = value
            .to_str()
            .map_err(|_| ApiError::validation("Idempotency-Key must be printable ASCII"))?;
        if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(ApiError::validation(
                "Idempotency-Key must be 1 to 200 printable ASCII characters",
            ));
        }
        Ok(Self(Some(key.to_owned())))
    }
}

/// The client's address: the connection's peer, or with `TRUST_FORWARDED_FOR=1` the last address of
/// `X-Forwarded-For` (the one the trusted proxy in front of us appended; earlier ones are the client's own
/// claims). `None` when neither is known (a router driven without a socket).
pub struct ClientAddr(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_addr(
            &parts.headers,
            &parts.extensions,
            state.config.trust_forwarded_for,
        )))
    }
}

/// The client's address: the connection's peer, or with `trust_forwarded_for` the last `X-Forwarded-For`
/// entry (the one the trusted proxy appended).
pub fn client_addr(
    headers: &HeaderMap,
    extensions: &axum::http::Extensions,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if !trust_forwarded_for {
        return peer;
    }
    // The last entry only: if the proxy's own entry is unreadable, an earlier (client-written) one must
    // not stand in for it.
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|a| a.trim().parse::<IpAddr>().ok());
    forwarded.or(peer)
}
