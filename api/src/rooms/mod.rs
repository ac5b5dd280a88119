//! Per-instance cache of every waiting room's admission state, refreshed from Postgres several times a second.
//! Queue tokens carry their place (concert, seq), so with this cache a status poll, an event stream or an
//! admission check is answered from memory: the hot path of a flash crowd never touches the database.
//!
//! Besides the frontier and the open admission steps the cache holds what it knows of single places
//! (claimed, completed, ended for want of a claim), the claims this instance saw and has not written yet,
//! the places users were given (so a repeated join is answered without publishing), and one watch channel
//! per concert that wakes the event streams when the room changed.
//!
//! Where things are: `room` is one room's state and the arithmetic of a place's status, `cache` the
//! per-instance map of rooms with the claims and places it keeps, `refresher` the loop that refreshes it from
//! Postgres, `claim_writer` the loop that writes the claims it saw, and `claim` the claim itself (plain data
//! that the SQL in `db::rooms` imports too).

pub mod cache;
pub mod claim;
pub mod claim_writer;
pub mod refresher;
pub mod room;

pub use cache::{KnownPlace, RoomCache};
pub use claim_writer::run_claim_writer;
pub use refresher::run_refresher;
pub use room::Room;
