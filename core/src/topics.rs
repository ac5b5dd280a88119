//! Topic names and partition counts. A prefix keeps deployments (and test runs) apart on one broker.

/// The topics this service uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// JOIN commands, keyed by concert.
    pub joins: String,
    /// HOLD, RELEASE and PAY commands, keyed by concert date.
    pub bookings: String,
    /// Outcomes of every command, keyed by request id; read whole by every api instance.
    pub replies: String,
    /// Payment events published by the outbox relay, keyed by reservation.
    pub payment_events: String,
    /// Commands that could not be decoded, parked with the reason in a header.
    pub dead_letters: String,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        Self {
            joins: format!("{prefix}commands.joins"),
            bookings: format!("{prefix}commands.bookings"),
            replies: format!("{prefix}replies"),
            payment_events: format!("{prefix}events.payments"),
            dead_letters: format!("{prefix}commands.dead-letters"),
        }
    }

    /// Each topic with its partition count. Partitions of the command topics are the unit of parallelism
    /// for workers; never change them on a live topic, since keys would move partitions mid-stream.
    pub fn with_partitions(&self) -> Vec<(&str, i32)> {
        vec![
            (self.joins.as_str(), 4),
            (self.bookings.as_str(), 8),
            (self.replies.as_str(), 4),
            (self.payment_events.as_str(), 4),
            (self.dead_letters.as_str(), 1),
        ]
    }
}
