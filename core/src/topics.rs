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
    /// Payment events published by the outbox relay, keyed by payment.
    pub payment_events: String,
    /// Commands that could not be decoded, parked with the reason in a header.
    pub dead_letters: String,
    /// Partition counts of the command and reply topics, used when the topics are created.
    pub partitions: Partitions,
}

impl Topics {
    /// The topics with the default partition counts.
    pub fn new(prefix: &str) -> Self {
        Self::with_counts(prefix, Partitions::default())
    }

    pub fn with_counts(prefix: &str, partitions: Partitions) -> Self {
        Self {
            joins: format!("{prefix}commands.joins"),
            bookings: format!("{prefix}commands.bookings"),
            replies: format!("{prefix}replies"),
            payment_events: format!("{prefix}events.payments"),
            dead_letters: format!("{prefix}commands.dead-letters"),
            partitions,
        }
    }

    /// Each topic with its partition count. Partitions of the command topics are the unit of parallelism
    /// for workers; never change them on a live topic, since keys would move partitions mid-stream.
    pub fn with_partitions(&self) -> Vec<(&str, i32)> {
        vec![
            (self.joins.as_str(), self.partitions.joins),
            (self.bookings.as_str(), self.partitions.bookings),
            (self.replies.as_str(), self.partitions.replies),
            (self.payment_events.as_str(), 4),
            (self.dead_letters.as_str(), 1),
        ]
    }
}

/// How many partitions `concert-worker topics` gives the command and reply topics (existing topics keep
/// theirs).
///
/// A command partition is applied by one worker at a time, so the partitions of a command topic bound how
/// many workers apply that kind of command at once: run at most as many workers as there are partitions,
/// and raise the counts before the topics are created to scale out further (docs/DESIGN.md).
///
/// The defaults fit the stack `./dev up` runs (two workers, one api, one broker on two cores): one join and
/// one booking partition per worker, and one reply partition, which every api reads whole anyway. Each
/// partition costs the development brokers (tansu, nisshi) storage reads on every round of every held
/// fetch; with the earlier 4/8/4 nisshi spent a core on an idle stack and became the bottleneck under
/// load (docs/BROKER.md). Apache Kafka parks fetches, so there more partitions cost little.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partitions {
    /// `KAFKA_JOIN_PARTITIONS`: partitions of `commands.joins` (keyed by concert).
    pub joins: i32,
    /// `KAFKA_BOOKING_PARTITIONS`: partitions of `commands.bookings` (keyed by concert date).
    pub bookings: i32,
    /// `KAFKA_REPLY_PARTITIONS`: partitions of `replies`.
    pub replies: i32,
}

impl Default for Partitions {
    fn default() -> Self {
        Self {
            joins: 2,
            bookings: 2,
            replies: 1,
        }
    }
}

impl Partitions {
    pub fn from_env() -> anyhow::Result<Self> {
        use crate::env_vars::env_parse;
        let default = Self::default();
        let counts = Self {
            joins: env_parse("KAFKA_JOIN_PARTITIONS", default.joins)?,
            bookings: env_parse("KAFKA_BOOKING_PARTITIONS", default.bookings)?,
            replies: env_parse("KAFKA_REPLY_PARTITIONS", default.replies)?,
        };
        anyhow::ensure!(
            counts.joins >= 1 && counts.bookings >= 1 && counts.replies >= 1,
            "KAFKA_JOIN_PARTITIONS, KAFKA_BOOKING_PARTITIONS and KAFKA_REPLY_PARTITIONS must be at least 1"
        );
        Ok(counts)
    }
}
