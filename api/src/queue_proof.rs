//! Proof of work for joining a waiting room (issue 20, "Making bots pay").
//!
//! A challenge is stateless: an HMAC-signed text (the queue tokens' secret, its own kind) naming the user, the
//! concert, the difficulty and an expiry, so any api instance checks it without a database round trip. A
//! join sends `X-Queue-Proof: <challenge>.<nonce>`; the proof holds when SHA-256 of that whole text begins
//! with `bits` zero bits (one hash to check, about 2^bits to find). Single use is the one thing that needs
//! shared state: the join it lets in records the challenge in `queue_proofs_used` (unique key), which every
//! instance sees.

use chrono::{DateTime, Duration, Utc};
use concert_core::token::ChallengeClaims;
use concert_core::ErrorCode;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// How long a challenge is good for: enough for a slow phone at 24 bits to have a fair chance.
pub const CHALLENGE_TTL: Duration = Duration::minutes(5);
/// The most `join_proof_bits` a room may ask for.
pub const MAX_BITS: i32 = 24;
/// Longest nonce accepted (a solver needs at most 2^24 tries; 64 characters is plenty).
const MAX_NONCE_LEN: usize = 64;

/// A fresh challenge for this user and concert.
pub fn issue(state: &AppState, user: Uuid, concert: Uuid, bits: u32) -> (String, DateTime<Utc>) {
    let expires_at = Utc::now() + CHALLENGE_TTL;
    let claims = ChallengeClaims {
        uid: user,
        cid: concert,
        bits,
        exp: expires_at.timestamp(),
        // 122 random bits: every challenge is distinct, so the text itself is its single-use key.
        n: Uuid::new_v4().simple().to_string(),
    };
    let expires_at = DateTime::from_timestamp(claims.exp, 0).unwrap_or(expires_at);
    (state.signer.sign_challenge(&claims), expires_at)
}

/// Does SHA-256 of `text` begin with `bits` zero bits?
pub fn has_leading_zero_bits(text: &str, bits: u32) -> bool {
    let digest = Sha256::digest(text.as_bytes());
    let mut left = bits;
    for byte in digest {
        if left == 0 {
            return true;
        }
        if left >= 8 {
            if byte != 0 {
                return false;
            }
            left -= 8;
        } else {
            return byte >> (8 - left) == 0;
        }
    }
    left == 0
}

/// A proof that passed every check but single use: the challenge to record and when it expires.
#[derive(Debug, Clone)]
pub struct CheckedProof {
    pub challenge: String,
    pub expires_at: DateTime<Utc>,
}

fn invalid(detail: &str) -> ApiError {
    ApiError::new(
        ErrorCode::QueueProofInvalid,
        format!("{detail}: get a challenge from GET /v1/concerts/{{concert_id}}/queue/challenge and send X-Queue-Proof: <challenge>.<nonce>"),
    )
}

/// Checks an `X-Queue-Proof` header for a join of `concert` by `user` in a room asking for `room_bits`:
/// well formed, signed by us, not expired, this user's and concert's, at least as hard as the room asks
/// now, and solved. Whether it was used already is checked when it is recorded.
pub fn check(
    state: &AppState,
    header: Option<&str>,
    user: Uuid,
    concert: Uuid,
    room_bits: u32,
    now: DateTime<Utc>,
) -> Result<CheckedProof, ApiError> {
    let proof = header.ok_or_else(|| invalid("this waiting room asks for a proof of work"))?;
    let (challenge, nonce) = proof
        .rsplit_once('.')
        .ok_or_else(|| invalid("the proof is not <challenge>.<nonce>"))?;
    if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
        return Err(invalid("the nonce is empty or too long"));
    }
    let claims = state
        .signer
        .verify_challenge(challenge, now.timestamp())
        .map_err(|e| match e {
            concert_core::token::TokenError::Expired => invalid("the challenge has expired"),
            _ => invalid("the challenge is not one of ours"),
        })?;
    if claims.uid != user || claims.cid != concert {
        return Err(invalid(
            "the challenge was issued to another user or concert",
        ));
    }
    if claims.bits < room_bits {
        return Err(invalid("the room asks for more work than this challenge"));
    }
    if !has_leading_zero_bits(proof, claims.bits) {
        return Err(invalid("the proof does not solve the challenge"));
    }
    Ok(CheckedProof {
        challenge: challenge.to_owned(),
        expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or(now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_are_counted_bit_by_bit() {
        // Find texts whose digests start with known bytes by brute force over a few nonces.
        let mut seen_zero_byte = false;
        for i in 0..5000 {
            let text = format!("c.{i}");
            let d = Sha256::digest(text.as_bytes());
            let zeros = d
                .iter()
                .map(|b| b.leading_zeros())
                .scan(true, |go, z| {
                    let take = if *go { z } else { 0 };
                    *go = *go && z == 8;
                    Some(take)
                })
                .sum::<u32>();
            assert!(has_leading_zero_bits(&text, zeros), "{text}: {zeros}");
            assert!(
                !has_leading_zero_bits(&text, zeros + 1),
                "{text}: {zeros}+1"
            );
            assert!(has_leading_zero_bits(&text, 0));
            seen_zero_byte |= zeros >= 8;
        }
        assert!(
            seen_zero_byte,
            "5,000 tries find a digest with a zero first byte"
        );
    }
}
