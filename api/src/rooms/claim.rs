//! A claim, as plain data: the cache queues the claims it sees and `db::rooms::write_claims` writes them. It
//! sits below both so that the SQL does not import the cache that calls it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A claim seen by this instance, to be written with the next batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub concert_id: Uuid,
    pub seq: i64,
    pub at: DateTime<Utc>,
}
