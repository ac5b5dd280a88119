//! Self-certifying request ids.
//!
//! The api writes nothing to Postgres when it accepts a command: the worker records it. So that any api
//! instance can still tell "pending, yours" from "unknown or someone else's" without a lookup, a request id
//! carries a MAC over (user, kind, nonce): bytes 0..8 are the nonce, bytes 8..16 the truncated MAC (a UUIDv8,
//! with the version and variant bits set). A forged id or another user's id fails the check, which is a 404.
//!
//! With an `Idempotency-Key` the nonce is itself derived from (user, kind, key), so the same key from the same
//! user always names the same request, on every instance, and the worker's dedupe applies it once.
//!
//! A fresh id's nonce begins with the second it was issued (4 bytes, big-endian Unix time) and has the low
//! bit of its byte 7 set; a keyed id has that bit clear. The retention deletes decided requests after a day
//! or more, so a fresh id issued more than [`RequestIds::FORGOTTEN_AFTER_SECS`] ago that has no stored
//! outcome is pruned (or was never applied): the api answers 404 rather than PENDING for good.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use uuid::Uuid;

use crate::commands::CommandKind;

type HmacSha256 = Hmac<Sha256>;

/// The bit of nonce byte 7 that marks a fresh id, whose nonce begins with its issue time.
const TIMED: u8 = 0x01;

#[derive(Clone)]
pub struct RequestIds {
    secret: Vec<u8>,
}

impl std::fmt::Debug for RequestIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestIds(..)")
    }
}

impl RequestIds {
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        Self {
            secret: secret.into(),
        }
    }

    /// The shortest retention of decided requests (`RETENTION_HOURS` is at least 24).
    pub const FORGOTTEN_AFTER_SECS: i64 = 24 * 3600;

    /// A fresh id for a request without an idempotency key.
    pub fn fresh(&self, user: Uuid, kind: CommandKind) -> Uuid {
        self.fresh_at(user, kind, chrono::Utc::now().timestamp())
    }

    /// A fresh id issued at `unix_secs` (tests make old ones with it). 27 random bits remain, and an id
    /// also carries its user and kind in the MAC, so two ids collide only for one user's requests of one
    /// kind in the same second.
    pub fn fresh_at(&self, user: Uuid, kind: CommandKind, unix_secs: i64) -> Uuid {
        let mut nonce = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut nonce[4..]);
        let secs = u32::try_from(unix_secs.max(0)).unwrap_or(u32::MAX);
        nonce[..4].copy_from_slice(&secs.to_be_bytes());
        nonce[7] |= TIMED;
        self.build(user, kind, nonce)
    }

    /// When a fresh id was issued (Unix seconds); `None` for a keyed id. Meaningful only for an id that
    /// [`verify`](Self::verify) accepted.
    pub fn issued_at(id: Uuid) -> Option<i64> {
        let bytes = id.as_bytes();
        (bytes[7] & TIMED != 0)
            .then(|| i64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])))
    }

    /// The one id for (user, kind, idempotency key).
    pub fn for_idempotency_key(&self, user: Uuid, kind: CommandKind, key: &str) -> Uuid {
        let mut mac = self.mac(b"idem");
        mac.update(user.as_bytes());
        mac.update(kind.as_str().as_bytes());
        mac.update(key.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&digest[..8]);
        nonce[7] &= !TIMED;
        self.build(user, kind, nonce)
    }

    /// The kind of request `id` names if it was issued to `user`, else `None`.
    pub fn verify(&self, user: Uuid, id: Uuid) -> Option<CommandKind> {
        let bytes = id.as_bytes();
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&bytes[..8]);
        CommandKind::ALL
            .into_iter()
            .find(|kind| self.build(user, *kind, nonce) == id)
    }

    fn mac(&self, domain: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(domain);
        mac
    }

    fn build(&self, user: Uuid, kind: CommandKind, mut nonce: [u8; 8]) -> Uuid {
        nonce[6] = (nonce[6] & 0x0f) | 0x80; // version 8, fixed before the MAC so verify sees the same bytes
        let mut mac = self.mac(b"req");
        mac.update(user.as_bytes());
        mac.update(kind.as_str().as_bytes());
        mac.update(&nonce);
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&nonce);
        bytes[8..].copy_from_slice(&digest[..8]);
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
        Uuid::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_verify_for_their_user_and_kind_only() {
        let ids = RequestIds::new(b"s".to_vec());
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let id = ids.fresh(alice, CommandKind::Hold);
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(ids.verify(alice, id), Some(CommandKind::Hold));
        assert_eq!(ids.verify(bob, id), None);
        assert_eq!(ids.verify(alice, Uuid::new_v4()), None);
        assert_ne!(ids.fresh(alice, CommandKind::Hold), id);
    }

    #[test]
    fn fresh_ids_carry_their_issue_time_and_keyed_ids_none() {
        let ids = RequestIds::new(b"s".to_vec());
        let user = Uuid::new_v4();
        let old = ids.fresh_at(user, CommandKind::Join, 1_800_000_000);
        assert_eq!(ids.verify(user, old), Some(CommandKind::Join));
        assert_eq!(RequestIds::issued_at(old), Some(1_800_000_000));
        let now = chrono::Utc::now().timestamp();
        let fresh = RequestIds::issued_at(ids.fresh(user, CommandKind::Hold)).unwrap();
        assert!((now - fresh).abs() <= 1);
        for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            let keyed = ids.for_idempotency_key(user, CommandKind::Pay, key);
            assert_eq!(RequestIds::issued_at(keyed), None, "key {key}");
            assert_eq!(ids.verify(user, keyed), Some(CommandKind::Pay));
        }
    }

    #[test]
    fn idempotency_key_names_one_request() {
        let ids = RequestIds::new(b"s".to_vec());
        let user = Uuid::new_v4();
        let a = ids.for_idempotency_key(user, CommandKind::Pay, "k1");
        assert_eq!(a, ids.for_idempotency_key(user, CommandKind::Pay, "k1"));
        assert_ne!(a, ids.for_idempotency_key(user, CommandKind::Pay, "k2"));
        assert_ne!(
            a,
            ids.for_idempotency_key(Uuid::new_v4(), CommandKind::Pay, "k1")
        );
        assert_eq!(ids.verify(user, a), Some(CommandKind::Pay));
    }

    #[test]
    fn other_secret_does_not_verify() {
        let user = Uuid::new_v4();
        let id = RequestIds::new(b"a".to_vec()).fresh(user, CommandKind::Join);
        assert_eq!(RequestIds::new(b"b".to_vec()).verify(user, id), None);
    }
}
