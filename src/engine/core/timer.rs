//! The timer table: every deadline of a worker — connect and request timeouts, reconnect
//! backoff, heartbeats, staleness, pong deadlines, the probe's settle window — in one min-heap, so the loop sleeps exactly
//! until the earliest one and never sweeps its slots (quinn-proto's `connection/timer.rs` keeps
//! one deadline per kind per connection; this is the same table for a worker's thousands of
//! slots, with the heap to find the earliest).
//!
//! Rules:
//! 1. A slot holds at most one deadline per [`TimerKind`]: `armed[slot][kind]`. Setting it
//!    again replaces it; [`TimerTable::stop`] and [`TimerTable::clear_slot`] forget it.
//! 2. The heap may hold stale entries (replaced or stopped deadlines): an entry fires only if
//!    the table still holds exactly its deadline. Stale entries are dropped when they reach the
//!    top, and a replaced connection's timers (after `clear_slot`) never fire for its
//!    successor. Rule 3 keeps the stale entries few: one per deadline that was moved earlier
//!    or stopped, none per request.
//! 3. Deadlines that move later on every event (a request timeout that follows the oldest
//!    request in flight) are set with [`TimerTable::set_at_most`]: the earlier deadline stays,
//!    fires, and the owner re-arms from the true deadline then. One heap push per timeout
//!    period instead of one per request.
//! 4. Time is an argument; nothing here reads a clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// What a deadline is for. Each kind has one deadline per slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// `connect()` (and then the TLS handshake) must finish by now.
    Connect,
    /// The oldest outstanding request (or the upgrade) must be answered by now.
    Request,
    /// The slot reconnects at this instant (after a failure's backoff, or connect pacing).
    Reopen,
    /// The next heartbeat is due.
    Heartbeat,
    /// No data message since this long: the connection is stale.
    Stale,
    /// A ping of ours is unanswered by now.
    Pong,
    /// The slot's next scheduled send (echo at a constant rate).
    Send,
    /// The connection has been up long enough to count as admitted (the probe's settle
    /// window): a loss before this instant says the server refused it, a loss after it is a
    /// drop of a connection it had accepted.
    Settle,
}

impl TimerKind {
    /// Number of kinds.
    pub const COUNT: usize = 8;

    #[inline]
    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    slot: u32,
    kind: TimerKind,
}

/// Deadlines of `slots` slots, each with one per [`TimerKind`].
#[derive(Debug)]
pub struct TimerTable {
    heap: BinaryHeap<Reverse<Entry>>,
    armed: Vec<[Option<Instant>; TimerKind::COUNT]>,
}

impl TimerTable {
    /// A table for `slots` slots, with room for one deadline of each kind per slot before the
    /// heap grows.
    pub fn new(slots: usize) -> TimerTable {
        TimerTable {
            heap: BinaryHeap::with_capacity(slots * 2 + 16),
            armed: vec![[None; TimerKind::COUNT]; slots],
        }
    }

    /// Room for one more slot (index = the previous slot count).
    pub fn add_slot(&mut self) {
        self.armed.push([None; TimerKind::COUNT]);
    }

    /// Set the slot's deadline of this kind, replacing any other (rule 1).
    #[inline]
    pub fn set(&mut self, slot: usize, kind: TimerKind, at: Instant) {
        let cell = &mut self.armed[slot][kind.index()];
        if *cell == Some(at) {
            return;
        }
        *cell = Some(at);
        self.heap.push(Reverse(Entry {
            at,
            slot: slot as u32,
            kind,
        }));
    }

    /// Set the deadline unless an earlier one of the same kind is already armed (rule 3).
    #[inline]
    pub fn set_at_most(&mut self, slot: usize, kind: TimerKind, at: Instant) {
        match self.armed[slot][kind.index()] {
            Some(cur) if cur <= at => {}
            _ => self.set(slot, kind, at),
        }
    }

    /// Forget the slot's deadline of this kind.
    #[inline]
    pub fn stop(&mut self, slot: usize, kind: TimerKind) {
        self.armed[slot][kind.index()] = None;
    }

    /// Forget every deadline of the slot (its connection is gone).
    #[inline]
    pub fn clear_slot(&mut self, slot: usize) {
        self.armed[slot] = [None; TimerKind::COUNT];
    }

    /// The slot's deadline of this kind, if armed.
    #[inline]
    pub fn get(&self, slot: usize, kind: TimerKind) -> Option<Instant> {
        self.armed[slot][kind.index()]
    }

    /// The earliest live deadline (dropping stale entries on the way).
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse(e)) = self.heap.peek() {
            if self.is_live(e) {
                return Some(e.at);
            }
            self.heap.pop();
        }
        None
    }

    /// The next deadline at or before `now`, disarmed and returned as `(slot, kind)`; None
    /// when nothing is due. Call until None.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(usize, TimerKind)> {
        while let Some(Reverse(e)) = self.heap.peek().copied() {
            if e.at > now {
                return None;
            }
            self.heap.pop();
            if self.is_live(&e) {
                self.armed[e.slot as usize][e.kind.index()] = None;
                return Some((e.slot as usize, e.kind));
            }
        }
        None
    }

    /// Entries in the heap, live or stale (for tests of rule 2's bound).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    #[inline]
    fn is_live(&self, e: &Entry) -> bool {
        self.armed[e.slot as usize][e.kind.index()] == Some(e.at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    fn drain(t: &mut TimerTable, now: Instant) -> Vec<(usize, TimerKind)> {
        std::iter::from_fn(|| t.pop_expired(now)).collect()
    }

    #[test]
    fn deadlines_fire_in_time_order_and_only_once() {
        let t0 = Instant::now();
        let mut t = TimerTable::new(4);
        t.set(2, TimerKind::Connect, ms(t0, 30));
        t.set(0, TimerKind::Request, ms(t0, 10));
        t.set(1, TimerKind::Reopen, ms(t0, 20));
        assert_eq!(t.next_deadline(), Some(ms(t0, 10)));
        assert_eq!(drain(&mut t, ms(t0, 5)), vec![]);
        assert_eq!(
            drain(&mut t, ms(t0, 20)),
            vec![(0, TimerKind::Request), (1, TimerKind::Reopen)]
        );
        assert_eq!(t.next_deadline(), Some(ms(t0, 30)));
        assert_eq!(drain(&mut t, ms(t0, 100)), vec![(2, TimerKind::Connect)]);
        assert_eq!(drain(&mut t, ms(t0, 1000)), vec![]);
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_replaced_deadline_fires_at_its_new_time_only() {
        let t0 = Instant::now();
        let mut t = TimerTable::new(1);
        t.set(0, TimerKind::Heartbeat, ms(t0, 10));
        t.set(0, TimerKind::Heartbeat, ms(t0, 50));
        assert_eq!(
            t.next_deadline(),
            Some(ms(t0, 50)),
            "the stale 10 ms entry is skipped"
        );
        assert_eq!(drain(&mut t, ms(t0, 49)), vec![]);
        assert_eq!(drain(&mut t, ms(t0, 50)), vec![(0, TimerKind::Heartbeat)]);
        // Moving earlier works too.
        t.set(0, TimerKind::Heartbeat, ms(t0, 90));
        t.set(0, TimerKind::Heartbeat, ms(t0, 60));
        assert_eq!(drain(&mut t, ms(t0, 70)), vec![(0, TimerKind::Heartbeat)]);
        assert_eq!(drain(&mut t, ms(t0, 100)), vec![], "90 ms was replaced");
    }

    #[test]
    fn stopped_and_cleared_deadlines_never_fire() {
        let t0 = Instant::now();
        let mut t = TimerTable::new(2);
        t.set(0, TimerKind::Stale, ms(t0, 10));
        t.set(0, TimerKind::Pong, ms(t0, 10));
        t.set(1, TimerKind::Stale, ms(t0, 10));
        t.stop(1, TimerKind::Stale);
        t.clear_slot(0);
        assert_eq!(t.next_deadline(), None);
        assert_eq!(drain(&mut t, ms(t0, 100)), vec![]);
        assert_eq!(t.heap_len(), 0, "stale entries are dropped as they surface");
    }

    #[test]
    fn a_new_connections_timer_is_not_fired_by_its_predecessors_entry() {
        let t0 = Instant::now();
        let mut t = TimerTable::new(1);
        t.set(0, TimerKind::Request, ms(t0, 10));
        t.clear_slot(0); // the connection failed and was replaced
        t.set(0, TimerKind::Request, ms(t0, 40));
        assert_eq!(drain(&mut t, ms(t0, 20)), vec![]);
        assert_eq!(drain(&mut t, ms(t0, 40)), vec![(0, TimerKind::Request)]);
    }

    #[test]
    fn set_at_most_keeps_the_earlier_deadline_and_pushes_once_per_period() {
        let t0 = Instant::now();
        let mut t = TimerTable::new(1);
        // 1000 requests a millisecond apart, each with a 100 ms timeout: the first deadline
        // stays armed, so the heap holds one entry, not a thousand.
        for i in 0..1000 {
            t.set_at_most(0, TimerKind::Request, ms(t0, 100 + i));
        }
        assert_eq!(t.heap_len(), 1);
        assert_eq!(t.get(0, TimerKind::Request), Some(ms(t0, 100)));
        // An earlier deadline does replace it.
        t.set_at_most(0, TimerKind::Request, ms(t0, 50));
        assert_eq!(t.get(0, TimerKind::Request), Some(ms(t0, 50)));
        assert_eq!(drain(&mut t, ms(t0, 60)), vec![(0, TimerKind::Request)]);
        assert_eq!(drain(&mut t, ms(t0, 200)), vec![], "100 ms entry is stale");
    }

    #[test]
    fn kinds_of_one_slot_are_independent() {
        let t0 = Instant::now();
        let mut t = TimerTable::new(1);
        t.set(0, TimerKind::Heartbeat, ms(t0, 10));
        t.set(0, TimerKind::Stale, ms(t0, 20));
        t.stop(0, TimerKind::Heartbeat);
        assert_eq!(drain(&mut t, ms(t0, 30)), vec![(0, TimerKind::Stale)]);
    }

    #[test]
    fn random_operations_match_a_brute_force_model() {
        // The model: one Option<Instant> per (slot, kind); what fires by `now` is every armed
        // deadline ≤ now, earliest first.
        let t0 = Instant::now();
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let kinds = [
            TimerKind::Connect,
            TimerKind::Request,
            TimerKind::Reopen,
            TimerKind::Heartbeat,
            TimerKind::Stale,
            TimerKind::Pong,
            TimerKind::Send,
            TimerKind::Settle,
        ];
        assert_eq!(kinds.len(), TimerKind::COUNT, "every kind is in the model");
        let slots = 8;
        let mut t = TimerTable::new(slots);
        let mut model = vec![[None::<Instant>; TimerKind::COUNT]; slots];
        let mut now = 0u64;
        for _ in 0..20_000 {
            let slot = rnd(slots as u64) as usize;
            let kind = kinds[rnd(kinds.len() as u64) as usize];
            let at = ms(t0, now + rnd(50));
            match rnd(6) {
                0 | 1 => {
                    t.set(slot, kind, at);
                    model[slot][kind.index()] = Some(at);
                }
                2 => {
                    t.set_at_most(slot, kind, at);
                    let m = &mut model[slot][kind.index()];
                    if m.is_none_or(|cur| cur > at) {
                        *m = Some(at);
                    }
                }
                3 => {
                    t.stop(slot, kind);
                    model[slot][kind.index()] = None;
                }
                4 => {
                    t.clear_slot(slot);
                    model[slot] = [None; TimerKind::COUNT];
                }
                _ => {
                    now += rnd(20);
                    let at_now = ms(t0, now);
                    let mut want: Vec<(Instant, usize, TimerKind)> = Vec::new();
                    for (s, row) in model.iter_mut().enumerate() {
                        for k in kinds {
                            if let Some(d) = row[k.index()] {
                                if d <= at_now {
                                    want.push((d, s, k));
                                    row[k.index()] = None;
                                }
                            }
                        }
                    }
                    want.sort();
                    let got: Vec<(Instant, usize, TimerKind)> =
                        std::iter::from_fn(|| t.pop_expired(at_now))
                            .map(|(s, k)| {
                                let d = want
                                    .iter()
                                    .find(|w| w.1 == s && w.2 == k)
                                    .map_or(at_now, |w| w.0);
                                (d, s, k)
                            })
                            .collect();
                    assert_eq!(got, want);
                    let next = model
                        .iter()
                        .flat_map(|row| row.iter().flatten().copied())
                        .min();
                    assert_eq!(t.next_deadline(), next);
                }
            }
        }
    }
}
