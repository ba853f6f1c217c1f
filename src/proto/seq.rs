//! Sequence-number gap tracking for one stream of messages.
//!
//! [`SeqTracker`] owns the "what came last" state of one connection's sequence numbers (read from
//! each message with `--seq-field`) and classifies every new number as in order, a gap, a
//! duplicate or a step backwards, counting gaps and missing messages as it goes. It is pure
//! arithmetic: no clock, no I/O, no allocation, and no input can make it panic or overflow.
//!
//! A step backwards is not an error to dwell on: a server restart or a new connection's numbering
//! starts lower, so the tracker re-bases on the new number and carries on.

/// How one observed sequence number relates to the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The first number seen: nothing to compare it with.
    First,
    /// Exactly one more than the previous number.
    InOrder,
    /// Numbers were skipped: `missing` of them (`seq - last - 1`).
    Gap {
        /// How many numbers lie strictly between the previous one and this one.
        missing: u64,
    },
    /// The same number as the previous one.
    Duplicate,
    /// Lower than the previous number; the tracker re-based on it.
    Backwards,
}

/// Classifies sequence numbers as they arrive and counts the gaps.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    /// The reference for the next number (`None` before the first).
    last: Option<u64>,
    gaps: u64,
    missing: u64,
    duplicates: u64,
    backwards: u64,
}

impl SeqTracker {
    /// Classify `seq` against the previous number and update the counters.
    pub fn observe(&mut self, seq: u64) -> SeqEvent {
        let Some(last) = self.last else {
            self.last = Some(seq);
            return SeqEvent::First;
        };
        if seq == last {
            self.duplicates += 1;
            return SeqEvent::Duplicate;
        }
        self.last = Some(seq);
        if seq < last {
            self.backwards += 1;
            return SeqEvent::Backwards;
        }
        // seq > last here, so seq - last - 1 cannot underflow (and last + 1 is never computed,
        // which would overflow at u64::MAX).
        let missing = seq - last - 1;
        if missing == 0 {
            SeqEvent::InOrder
        } else {
            self.gaps += 1;
            self.missing = self.missing.saturating_add(missing);
            SeqEvent::Gap { missing }
        }
    }

    /// How many gaps were seen.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// How many numbers the gaps skipped in total (saturating).
    pub fn missing(&self) -> u64 {
        self.missing
    }

    /// How many numbers repeated the previous one.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// How many times the numbering went backwards (and the tracker re-based).
    pub fn backwards(&self) -> u64 {
        self.backwards
    }

    /// The last number the tracker is comparing against, if any.
    pub fn last(&self) -> Option<u64> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::{SeqEvent, SeqTracker};

    #[test]
    fn first_then_in_order() {
        let mut t = SeqTracker::default();
        assert_eq!(t.last(), None);
        assert_eq!(t.observe(10), SeqEvent::First);
        assert_eq!(t.observe(11), SeqEvent::InOrder);
        assert_eq!(t.observe(12), SeqEvent::InOrder);
        assert_eq!(
            (t.gaps(), t.missing(), t.duplicates(), t.backwards()),
            (0, 0, 0, 0)
        );
        assert_eq!(t.last(), Some(12));
    }

    #[test]
    fn first_can_be_zero_or_max() {
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(0), SeqEvent::First);
        assert_eq!(t.observe(1), SeqEvent::InOrder);
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(u64::MAX), SeqEvent::First);
        assert_eq!(t.observe(u64::MAX), SeqEvent::Duplicate);
    }

    #[test]
    fn gaps_count_missing_numbers() {
        let mut t = SeqTracker::default();
        t.observe(1);
        assert_eq!(t.observe(3), SeqEvent::Gap { missing: 1 });
        assert_eq!(t.observe(4), SeqEvent::InOrder);
        assert_eq!(t.observe(10), SeqEvent::Gap { missing: 5 });
        assert_eq!((t.gaps(), t.missing()), (2, 6));
    }

    #[test]
    fn gap_across_the_whole_range_does_not_overflow() {
        let mut t = SeqTracker::default();
        t.observe(0);
        assert_eq!(
            t.observe(u64::MAX),
            SeqEvent::Gap {
                missing: u64::MAX - 1
            }
        );
        t.observe(0); // backwards, re-base
        assert_eq!(
            t.observe(u64::MAX),
            SeqEvent::Gap {
                missing: u64::MAX - 1
            }
        );
        assert_eq!(t.missing(), u64::MAX, "the total saturates");
        assert_eq!(t.gaps(), 2);
    }

    #[test]
    fn duplicate_keeps_the_reference() {
        let mut t = SeqTracker::default();
        t.observe(5);
        assert_eq!(t.observe(5), SeqEvent::Duplicate);
        assert_eq!(t.observe(5), SeqEvent::Duplicate);
        assert_eq!(t.observe(6), SeqEvent::InOrder);
        assert_eq!(t.duplicates(), 2);
        assert_eq!(t.gaps(), 0);
    }

    #[test]
    fn backwards_rebases_on_the_new_numbering() {
        let mut t = SeqTracker::default();
        t.observe(1000);
        t.observe(1001);
        // The server restarted (or this is a new connection): numbering starts again at 1.
        assert_eq!(t.observe(1), SeqEvent::Backwards);
        assert_eq!(t.last(), Some(1));
        assert_eq!(
            t.observe(2),
            SeqEvent::InOrder,
            "continues from the new base"
        );
        assert_eq!(t.observe(4), SeqEvent::Gap { missing: 1 });
        assert_eq!(
            t.observe(3),
            SeqEvent::Backwards,
            "a late message also re-bases"
        );
        assert_eq!(t.observe(4), SeqEvent::InOrder);
        assert_eq!((t.backwards(), t.gaps(), t.missing()), (2, 1, 1));
    }
}
