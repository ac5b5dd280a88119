//! HMAC-signed tokens: checking one needs no database round trip.
//!
//! Format: `base64url(json claims) "." base64url(HMAC-SHA256(secret, kind || "." || claims))`. The kind is
//! part of the signed message, so an access token can never be replayed as a queue token or vice versa.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Who the user is; issued at sign-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub uid: Uuid,
    /// Unix seconds after which the token is refused.
    pub exp: i64,
}

/// A place in one concert's waiting room: the entry `(cid, seq)` belonging to user `uid`.
/// Deterministic for a given entry, so joining again while the place is live returns the same token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueClaims {
    pub cid: Uuid,
    pub uid: Uuid,
    pub seq: u64,
}

/// A proof-of-work challenge for joining one concert's waiting room (issue 20): bound to the user and the
/// concert, good until `exp`, asking for `bits` leading zero bits. `n` makes every challenge distinct, so
/// that "used once" can be recorded by the challenge text itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeClaims {
    pub uid: Uuid,
    pub cid: Uuid,
    pub bits: u32,
    /// Unix seconds after which the challenge is refused.
    pub exp: i64,
    pub n: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token signature does not match")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

/// Signs and checks tokens with one server secret.
#[derive(Clone)]
pub struct TokenSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

const ACCESS: &str = "at1";
const QUEUE: &str = "qt1";
const CHALLENGE: &str = "pw1";

impl TokenSigner {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    pub fn sign_access(&self, claims: &AccessClaims) -> String {
        self.sign(ACCESS, claims)
    }

    pub fn verify_access(&self, token: &str, now_unix: i64) -> Result<AccessClaims, TokenError> {
        let claims: AccessClaims = self.verify(ACCESS, token)?;
        if claims.exp <= now_unix {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    pub fn sign_queue(&self, claims: &QueueClaims) -> String {
        self.sign(QUEUE, claims)
    }

    /// Checks the signature only; whether the place is still live is the waiting room's business.
    pub fn verify_queue(&self, token: &str) -> Result<QueueClaims, TokenError> {
        self.verify(QUEUE, token)
    }

    pub fn sign_challenge(&self, claims: &ChallengeClaims) -> String {
        self.sign(CHALLENGE, claims)
    }

    /// Checks the signature and the expiry of a proof-of-work challenge.
    pub fn verify_challenge(
        &self,
        token: &str,
        now_unix: i64,
    ) -> Result<ChallengeClaims, TokenError> {
        let claims: ChallengeClaims = self.verify(CHALLENGE, token)?;
        if claims.exp <= now_unix {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    fn mac(&self, kind: &str, body: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        mac
    }

    fn sign<T: Serialize>(&self, kind: &str, claims: &T) -> String {
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let sig = B64.encode(self.mac(kind, &body).finalize().into_bytes());
        format!("{body}.{sig}")
    }

    fn verify<T: DeserializeOwned>(&self, kind: &str, token: &str) -> Result<T, TokenError> {
        let (body, sig) = token.trim().split_once('.').ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        // verify_slice compares in constant time.
        self.mac(kind, body)
            .verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let json = B64.decode(body).map_err(|_| TokenError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::new(b"test-secret".to_vec())
    }

    #[test]
    fn access_token_round_trips() {
        let claims = AccessClaims {
            uid: Uuid::new_v4(),
            exp: 2_000,
        };
        let token = signer().sign_access(&claims);
        assert_eq!(signer().verify_access(&token, 1_000), Ok(claims));
    }

    #[test]
    fn expired_access_token_is_refused() {
        let token = signer().sign_access(&AccessClaims {
            uid: Uuid::new_v4(),
            exp: 1_000,
        });
        assert_eq!(
            signer().verify_access(&token, 1_000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampered_claims_are_refused() {
        let token = signer().sign_queue(&QueueClaims {
            cid: Uuid::new_v4(),
            uid: Uuid::new_v4(),
            seq: 5,
        });
        let (_, sig) = token.split_once('.').unwrap();
        let forged_body = B64.encode(
            serde_json::to_vec(&QueueClaims {
                cid: Uuid::nil(),
                uid: Uuid::nil(),
                seq: 1,
            })
            .unwrap(),
        );
        assert_eq!(
            signer().verify_queue(&format!("{forged_body}.{sig}")),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn other_secret_is_refused() {
        let token = TokenSigner::new(b"other".to_vec()).sign_queue(&QueueClaims {
            cid: Uuid::new_v4(),
            uid: Uuid::new_v4(),
            seq: 1,
        });
        assert_eq!(signer().verify_queue(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn access_token_is_not_a_queue_token() {
        let token = signer().sign_access(&AccessClaims {
            uid: Uuid::new_v4(),
            exp: i64::MAX,
        });
        assert_eq!(signer().verify_queue(&token), Err(TokenError::BadSignature));
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in ["", "abc", "a.b.c", "!!!.???", "e30.e30"] {
            assert!(signer().verify_queue(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn queue_token_is_deterministic_per_entry() {
        let claims = QueueClaims {
            cid: Uuid::new_v4(),
            uid: Uuid::new_v4(),
            seq: 42,
        };
        assert_eq!(signer().sign_queue(&claims), signer().sign_queue(&claims));
    }
}
