//! The HTTP/1.1 session: keep-alive requests on every slot of a worker, driven by the core
//! ([`super::core`]). Closed loop by default (the next request goes out the moment a response
//! completes); with `-R`, an open-loop schedule ([`super::pace`]) hands each due request to an
//! idle connection; with `--stages`, the number of active slots follows the ramp. New
//! connections as a workload: with `--requests-per-conn N` (`--no-keepalive`: 1) connbench
//! closes a connection itself once it carried N requests and every response came back, and
//! opens the next one in its slot; with `--conn-rate R`, an open-loop schedule of new
//! connections (connection k due at start + k/R, as `pace` rule 1) decides when a free slot
//! opens its next one.
//!
//! Hot-path rules:
//! 1. The next request is written right after a response completes, in the same event.
//! 2. Nothing allocates per request: the request bytes are pre-serialized (K copies for
//!    pipelining), the in-flight queues are sized at start.
//! 3. Request timeouts cost one timer per timeout period per slot, not one per request: the
//!    deadline follows the oldest request in flight lazily (`TimerTable::set_at_most`; when it
//!    fires early it is re-armed from the true oldest request).
//! 4. A failure is counted once, by the step the connection was in, and the slot reopens at once
//!    if its connection had answered anything, else after a backoff that doubles up to
//!    [`MAX_BACKOFF`] (a dead server is not hammered). In connection-rate mode there is no
//!    backoff: the slot is free again and the schedule says when the next connection opens.
//! 5. A connection with a request quota (`--requests-per-conn`) claims its requests from the
//!    `-n` budget when it opens, and gives back what it did not send when it closes, so a run of
//!    `-n R` opens exactly ⌈R / N⌉ connections per worker (it never opens one that then finds
//!    the budget spent by another). Invariant: budget = unclaimed + Σ (quota − carried).
//! 6. The connection-rate schedule lives in the core's timer table: the slot that will carry
//!    the next due connection holds a [`TimerKind::Reopen`] at its due time; every loop turn
//!    opens whatever is due on free slots. When every slot is busy the due connections wait
//!    (their open lag grows: `connect()` called − due time, phase `open_lag`) and the backlog
//!    drains as slots free up; what is still due at the end is counted as `unopened`.
//! 7. Reuse stays true: a request counts as reused only when the connection it went out on
//!    had already carried one (a new connection's first request never does).
//! 8. A request's send instant is the clock read right before its `send`; the bookkeeping
//!    (in-flight entry, timeout, counters) follows the syscall, so none of the client's own
//!    work between the two counts in the latencies.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::buf::RecvBuf;
use super::core::verbose::{self, Verbose};
use super::core::{Close, Failure, Lost, Net, Opened, Refusal, Session, TimerKind, Transport};
use super::pace::{Arrival, Schedule};
use super::stage::Stager;
use crate::metrics::{ErrorClass, Phase, Recorder};
use crate::proto::http1::{Progress, ProtoError, ResponseDecoder};

/// Longest a failing slot waits before it reconnects.
pub const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// Most due requests kept waiting for a free connection; past it they are counted as unsent.
const MAX_BACKLOG: usize = 1 << 20;

/// What the HTTP session of one worker does.
pub struct HttpConfig {
    /// Worker index (seeds Poisson arrivals).
    pub id: usize,
    /// Number of workers (to take this worker's share of a stage's connections).
    pub workers: usize,
    /// One serialized request.
    pub request: Arc<[u8]>,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// The request method is HEAD (responses have no body).
    pub head_request: bool,
    /// Requests this worker must send (`-n`), or None.
    pub budget: Option<u64>,
    /// Request timeout.
    pub timeout: Duration,
    /// Constant-rate mode: this worker's requests per second and their spacing.
    pub rate: Option<(f64, Arrival)>,
    /// Ramp profile of the whole run.
    pub stages: Vec<crate::plan::Stage>,
    /// Requests each connection carries before connbench closes it and opens the next (None:
    /// keep-alive for the whole run).
    pub per_conn: Option<u64>,
    /// Connection-rate mode: this worker's new connections per second.
    pub conn_rate: Option<f64>,
    /// How connbench closes a connection it is done with (quota carried, ramp-down, run end).
    pub close: Close,
}

/// Where a slot is, as far as HTTP is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection, and none until its Reopen timer (or a stage) opens one.
    Idle,
    /// A connection is being made or carries requests.
    Live,
    /// No connection and none will be opened (budget spent, run stopping, parked by a stage).
    Done,
    /// Connection-rate mode: no connection; the opener's schedule gives the slot its next one.
    Free,
}

/// One request on the wire.
#[derive(Clone, Copy, Debug)]
struct Sent {
    /// When its first byte was written.
    at: Instant,
    /// When it was meant to be written (rate mode; `at` otherwise).
    intended: Instant,
    /// TTFB already recorded.
    ttfb_seen: bool,
    /// Recording epoch it was sent in (requests from the warm-up are not recorded).
    epoch: u32,
}

/// What the framer saw in one read.
#[derive(Default, Clone, Copy)]
struct Framed {
    completed: usize,
    closing: bool,
}

struct Conn {
    /// Reads shown by `-v` on this slot.
    shown: u32,
    state: State,
    decoder: ResponseDecoder,
    inflight: VecDeque<Sent>,
    /// Requests this connection has carried.
    carried: u64,
    /// A response arrived on this connection.
    answered: bool,
    /// Consecutive connections of this slot that failed before any response.
    failures: u32,
    framed: Framed,
    /// Requests this connection may carry (rule 5): `--requests-per-conn`, less when the `-n`
    /// budget has fewer left; `u64::MAX` with keep-alive; 0 while the slot has no claim.
    quota: u64,
    /// Connection-rate mode: the due time of the connection this slot is opening (its open lag
    /// is recorded when `connect()` is called).
    due: Option<Instant>,
}

/// Connection-rate mode: the schedule of new connections and the slots free to carry them
/// (rule 6).
struct Opener {
    /// This worker's new connections per second.
    rate: f64,
    schedule: Schedule,
    /// Slots without a connection, waiting for the schedule.
    free: Vec<usize>,
}

/// Constant-rate mode state (the timing model is `engine::pace`).
struct Pacer {
    rate: f64,
    arrival: Arrival,
    schedule: Schedule,
    /// Up connections with nothing in flight, as (slot, generation): checked when popped.
    idle: Vec<(usize, u32)>,
    /// Intended send times of due requests waiting for a free connection.
    backlog: VecDeque<Instant>,
}

/// The HTTP session of one worker.
pub struct Http {
    cfg: HttpConfig,
    conns: Vec<Conn>,
    /// `pipeline` copies of the request, so K requests go out in one write.
    batch: Vec<u8>,
    budget: Option<u64>,
    inflight_total: u64,
    epoch: u32,
    stopping: bool,
    pacer: Option<Pacer>,
    /// Slots `0..active` should hold a connection; the rest are parked (staged runs).
    active: usize,
    stager: Option<Stager>,
    /// Requests of the `-n` budget no connection has claimed yet (rule 5): only with a
    /// per-connection quota and a budget.
    unclaimed: Option<u64>,
    /// Connection-rate mode.
    opener: Option<Opener>,
    /// `-v`, and the global index of the first slot's connection.
    verbose: Option<(Arc<Verbose>, usize)>,
}

impl Http {
    /// A session for `net`'s slots.
    pub fn new<T: Transport>(cfg: HttpConfig, net: &Net<T>) -> Http {
        let pipeline = cfg.pipeline.max(1);
        let slots = net.slots();
        let conns = (0..slots)
            .map(|_| Conn {
                shown: 0,
                state: State::Done,
                decoder: ResponseDecoder::new(),
                inflight: VecDeque::with_capacity(pipeline),
                carried: 0,
                answered: false,
                failures: 0,
                framed: Framed::default(),
                quota: 0,
                due: None,
            })
            .collect();
        let now = Instant::now();
        let pacer = match cfg.rate {
            Some((rate, arrival)) => Some(Pacer {
                rate,
                arrival,
                schedule: Schedule::new(rate, now, arrival, cfg.id as u64 + 1),
                idle: Vec::with_capacity(slots),
                backlog: VecDeque::with_capacity(4096),
            }),
            None => None,
        };
        let opener = cfg.conn_rate.map(|rate| Opener {
            rate,
            schedule: Schedule::new(rate, now, Arrival::Uniform, 0),
            free: Vec::with_capacity(slots),
        });
        Http {
            batch: cfg.request.repeat(pipeline),
            budget: cfg.budget,
            unclaimed: cfg.per_conn.and(cfg.budget),
            opener,
            active: if cfg.stages.is_empty() { usize::MAX } else { 0 },
            cfg,
            conns,
            inflight_total: 0,
            epoch: 0,
            stopping: false,
            pacer,
            stager: None,
            verbose: None,
        }
    }

    /// Show what the first connections receive in `v` (`-v`); `first_conn` is the global index
    /// of this worker's first slot.
    pub fn set_verbose(&mut self, v: Arc<Verbose>, first_conn: usize) {
        self.verbose = Some((v, first_conn));
    }

    /// The run is over at `at` (the end of the measured window): count the requests that were
    /// due before it and never written (rule 3 of `pace`) and the connections due before it and
    /// never opened (rule 6), and hand back the stage windows (the run is then the sum of its
    /// windows). The connections still open are closed the `--close` way.
    pub fn finish<T: Transport>(&mut self, net: &mut Net<T>, at: Instant) -> Vec<(Recorder, u64)> {
        self.stopping = true;
        if let Some(p) = &mut self.pacer {
            while p.schedule.next_due() < at {
                p.schedule.advance();
                net.rec.counters.unsent += 1;
            }
            net.rec.counters.unsent += p.backlog.len() as u64;
        }
        if let Some(o) = &mut self.opener {
            // Rule 6: due and never opened; with `-n`, only while requests were left to carry.
            if self.unclaimed != Some(0) {
                while o.schedule.next_due() < at {
                    o.schedule.advance();
                    net.rec.counters.unopened += 1;
                }
            }
            // Taken from the schedule, but connect pacing had deferred them.
            net.rec.counters.unopened +=
                self.conns.iter().filter(|c| c.due.is_some()).count() as u64;
        }
        let windows = match self.stager.take() {
            Some(mut st) => {
                st.done
                    .push((std::mem::take(&mut net.rec), net.open_count()));
                for (w, _) in &st.done {
                    net.rec.merge(w);
                }
                st.done
            }
            None => Vec::new(),
        };
        for slot in 0..self.conns.len() {
            if net.link(slot) != super::core::Link::Closed {
                net.close(slot, self.cfg.close);
            }
        }
        windows
    }

    /// Open a connection in `slot` (it has none). A new connection claims its quota first
    /// (rule 5); one deferred by connect pacing keeps the claim it has.
    fn open<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        let c = &mut self.conns[slot];
        if self.stopping || self.budget == Some(0) || slot >= self.active {
            c.state = State::Done;
            if c.due.take().is_some() {
                net.rec.counters.unopened += 1;
            }
            return;
        }
        if c.quota == 0 {
            c.quota = match (self.cfg.per_conn, &mut self.unclaimed) {
                (None, _) => u64::MAX,
                (Some(n), None) => n,
                (Some(n), Some(left)) => {
                    let q = n.min(*left);
                    *left -= q;
                    q
                }
            };
            if c.quota == 0 {
                c.state = State::Done;
                if c.due.take().is_some() {
                    net.rec.counters.unopened += 1;
                }
                return;
            }
        }
        c.state = State::Live;
        let opened = net.open(slot, now);
        if !matches!(opened, Opened::Deferred(_)) {
            if let Some(due) = self.conns[slot].due.take() {
                let lag = net.connect_started(slot).saturating_duration_since(due);
                net.rec.record(Phase::OpenLag, lag.as_nanos() as u64);
            }
        }
        match opened {
            Opened::Connecting => {}
            Opened::Deferred(_) => self.conns[slot].state = State::Idle,
            Opened::Failed(class) => self.fail(net, slot, class, now),
        }
    }

    /// Connection-rate mode (rule 6): open every connection that is due on a free slot, then
    /// let a free slot's Reopen deadline hold the next due time.
    fn open_due<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) {
        if self.stopping {
            return;
        }
        loop {
            let Some(o) = &mut self.opener else {
                return;
            };
            if o.schedule.next_due() > now || self.unclaimed == Some(0) || self.budget == Some(0) {
                break;
            }
            // Every slot busy: the due connections wait, their open lag running.
            let Some(slot) = o.free.pop() else {
                return;
            };
            let due = o.schedule.advance();
            self.conns[slot].due = Some(due);
            // A connect that fails at once frees the slot again (`fail`), for the next one due.
            self.open(net, slot, now);
        }
        if let Some(o) = &self.opener {
            if let Some(&slot) = o.free.last() {
                net.timers
                    .set(slot, TimerKind::Reopen, o.schedule.next_due());
            }
        }
    }

    /// The slot's connection is gone: open the next one at once, or, in connection-rate mode,
    /// free the slot for the schedule.
    fn next_connection<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        match &mut self.opener {
            Some(o) => {
                self.conns[slot].state = State::Free;
                o.free.push(slot);
            }
            None => self.open(net, slot, now),
        }
    }

    /// Rule 5: the connection carried its quota and every response came back.
    fn spent(&self, slot: usize) -> bool {
        let c = &self.conns[slot];
        c.carried >= c.quota && c.inflight.is_empty()
    }

    /// Close a connection that carried its quota the `--close` way, and start the next one.
    fn retire<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        self.close(net, slot, self.cfg.close);
        self.next_connection(net, slot, now);
    }

    /// Rate mode: a connection can take a request. It takes the oldest waiting one, or waits in
    /// the idle list for the schedule.
    fn available<T: Transport>(&mut self, net: &mut Net<T>, slot: usize) {
        let Some(p) = &mut self.pacer else {
            return;
        };
        match p.backlog.pop_front() {
            Some(intended) => self.send(net, slot, 1, Some(intended)),
            None => p.idle.push((slot, net.gen(slot))),
        }
    }

    /// Rate mode: hand every request that is due to an idle connection (or the backlog); the
    /// next one's instant is `wake_at`'s.
    fn dispatch<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) {
        if self.stopping {
            return;
        }
        let Some(mut p) = self.pacer.take() else {
            return;
        };
        while p.schedule.next_due() <= now {
            let intended = p.schedule.advance();
            // The send lag is the client's own lateness: how late its loop released the
            // request, sent at once or queued for a busy connection (that wait is the server's,
            // or the pool's, and shows in `corrected`). `pace` rule 5.
            let released = Instant::now();
            net.rec
                .record(Phase::SendLag, (released - intended).as_nanos() as u64);
            let mut sent = false;
            while let Some((slot, gen)) = p.idle.pop() {
                let c = &self.conns[slot];
                if net.gen(slot) == gen
                    && net.link(slot) == super::core::Link::Up
                    && c.inflight.is_empty()
                {
                    self.send(net, slot, 1, Some(intended));
                    sent = true;
                    break;
                }
            }
            if !sent {
                if p.backlog.len() < MAX_BACKLOG {
                    p.backlog.push_back(intended);
                } else {
                    net.rec.counters.unsent += 1;
                }
            }
        }
        self.pacer = Some(p);
    }

    /// Write up to `k` requests on `slot` (fewer when the `-n` budget runs out). In rate mode
    /// `intended` is the request's scheduled send time (k is then 1).
    fn send<T: Transport>(
        &mut self,
        net: &mut Net<T>,
        slot: usize,
        k: usize,
        intended: Option<Instant>,
    ) {
        let k = match self.budget {
            Some(b) => (b as usize).min(k),
            None => k,
        };
        let c = &mut self.conns[slot];
        let k = k.min(usize::try_from(c.quota.saturating_sub(c.carried)).unwrap_or(usize::MAX));
        if k == 0 || self.stopping {
            return;
        }
        // The send instant is read right before the request goes to the kernel, and the
        // bookkeeping that needs it follows the send: what sits between the clock read and the
        // syscall would count in every latency (rule 8). Nothing can be answered before it is done.
        let len = self.cfg.request.len() * k;
        let at = net.now();
        let sent = net.send(slot, &self.batch[..len]);
        let c = &mut self.conns[slot];
        if c.inflight.is_empty() {
            net.timers
                .set_at_most(slot, TimerKind::Request, at + self.cfg.timeout);
        }
        for _ in 0..k {
            c.inflight.push_back(Sent {
                at,
                intended: intended.unwrap_or(at),
                ttfb_seen: false,
                epoch: self.epoch,
            });
            if c.carried > 0 {
                net.rec.counters.reused_requests += 1;
            }
            c.carried += 1;
        }
        net.rec.counters.requests += k as u64;
        self.inflight_total += k as u64;
        if let Some(b) = &mut self.budget {
            *b -= k as u64;
        }
        if let Err(e) = sent {
            self.fail(net, slot, ErrorClass::from_io_error(&e), at);
        }
    }

    /// Count a failure, drop the connection, and reconnect (rule 4).
    fn fail<T: Transport>(
        &mut self,
        net: &mut Net<T>,
        slot: usize,
        class: ErrorClass,
        now: Instant,
    ) {
        net.rec.error(class);
        let c = &mut self.conns[slot];
        if c.carried == 0 {
            // The request this connection was opened for never went out: under `-n` it counts
            // as sent and failed, so a run against a dead server still ends. It was one of the
            // connection's claim (rule 5).
            if let Some(b) = &mut self.budget {
                *b = b.saturating_sub(1);
                c.quota = c.quota.saturating_sub(1);
            }
        }
        let failures = if c.answered { 0 } else { c.failures + 1 };
        self.close(net, slot, Close::Fin);
        self.conns[slot].failures = failures;
        if self.opener.is_some() {
            // Rule 4: no backoff in connection-rate mode; the schedule opens the next one.
            return self.next_connection(net, slot, now);
        }
        if failures == 0 {
            self.open(net, slot, now);
        } else {
            let wait = backoff(failures);
            self.conns[slot].state = State::Idle;
            net.timers.set(slot, TimerKind::Reopen, now + wait);
        }
    }

    /// Close the slot's connection (the server ended it) and start the next one.
    fn replace<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        let failures = self.conns[slot].failures;
        self.close(net, slot, Close::Fin);
        self.conns[slot].failures = failures;
        self.next_connection(net, slot, now);
    }

    /// Close the slot's connection `how`, give back the requests it claimed and did not send
    /// (rule 5), and forget its state.
    fn close<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, how: Close) {
        net.close(slot, how);
        let c = &mut self.conns[slot];
        if let Some(left) = &mut self.unclaimed {
            *left += c.quota.saturating_sub(c.carried);
        }
        c.quota = 0;
        c.due = None;
        self.inflight_total -= c.inflight.len() as u64;
        c.inflight.clear();
        c.decoder.reset();
        c.carried = 0;
        c.answered = false;
        c.failures = 0;
        c.framed = Framed::default();
        c.state = State::Done;
    }

    /// The server closed (FIN or close_notify): a close-delimited body may end here.
    fn on_eof<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        let epoch = self.epoch;
        let c = &mut self.conns[slot];
        match c.decoder.finish_eof(net.pending(slot)) {
            Ok(Some(info)) => {
                if let Some(s) = c.inflight.pop_front() {
                    self.inflight_total -= 1;
                    if s.epoch == epoch {
                        net.rec.record(Phase::Total, (now - s.at).as_nanos() as u64);
                        net.rec.response(info.status);
                    }
                }
                net.rec.counters.server_closes += 1;
                if self.conns[slot].inflight.is_empty() {
                    self.replace(net, slot, now);
                } else {
                    self.fail(net, slot, ErrorClass::EofMidResponse, now);
                }
            }
            Ok(None) if c.inflight.is_empty() => {
                // An idle keep-alive connection closed by the server: not a failure.
                net.rec.counters.server_closes += 1;
                self.replace(net, slot, now);
            }
            // Bytes that could never have become a response are a protocol error, however
            // they were split; a response cut short is an EOF.
            Err(e) if e != ProtoError::Truncated => {
                net.rec.reason(ErrorClass::Protocol, &e);
                self.fail(net, slot, ErrorClass::Protocol, now)
            }
            Ok(None) | Err(_) => self.fail(net, slot, ErrorClass::EofMidResponse, now),
        }
    }

    /// Staged runs: move to the next window when due, and open or close connections so this
    /// worker holds its share of the stage's current target.
    fn stage_tick<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) {
        let Some(st) = &mut self.stager else {
            return;
        };
        let open = net.open_count();
        let Some(t) = st.check(now, &mut net.rec, open) else {
            return;
        };
        let (id, workers) = (self.cfg.id, self.cfg.workers);
        let want = super::stage::wanted(&self.cfg.stages, t, id, workers, self.conns.len());
        let have = self.active.min(self.conns.len());
        if want > have {
            self.active = want;
            for slot in have..want {
                if net.link(slot) == super::core::Link::Closed
                    && self.conns[slot].state != State::Idle
                {
                    self.open(net, slot, now);
                }
            }
        } else if want < have {
            self.active = want;
            // Ramping down: these connections close now (what they had in flight is dropped on
            // purpose, not counted as a failure).
            for slot in want..have {
                self.close(net, slot, self.cfg.close);
            }
        }
    }
}

impl<T: Transport> Session<T> for Http {
    fn on_start(&mut self, net: &mut Net<T>, now: Instant) {
        if !self.cfg.stages.is_empty() {
            self.stager = Some(Stager {
                windows: crate::plan::stage_windows(&self.cfg.stages),
                window: 0,
                start: now,
                next_check: now,
                done: Vec::new(),
            });
            self.stage_tick(net, now);
        } else if let Some(o) = &mut self.opener {
            o.schedule = Schedule::new(o.rate, now, Arrival::Uniform, 0);
            for slot in (0..self.conns.len()).rev() {
                self.conns[slot].state = State::Free;
                o.free.push(slot);
            }
            self.open_due(net, now);
        } else {
            for slot in 0..self.conns.len() {
                self.open(net, slot, now);
            }
        }
        if let Some(p) = &mut self.pacer {
            let seed = self.cfg.id as u64 + 1;
            p.schedule = match crate::plan::rate_steps(&self.cfg.stages) {
                // Stage rates (`pace` rule 6): this worker's share of each stage's rate.
                Some(steps) => {
                    let workers = self.cfg.workers.max(1) as f64;
                    let share: Vec<_> = steps.iter().map(|&(at, r)| (at, r / workers)).collect();
                    Schedule::stepped(now, &share, p.arrival, seed)
                }
                None => Schedule::new(p.rate, now, p.arrival, seed),
            };
        }
        self.dispatch(net, now);
    }

    fn on_warm(&mut self, _now: Instant) {
        self.epoch += 1;
    }

    fn finished(&self) -> bool {
        self.budget == Some(0) && self.inflight_total == 0
    }

    fn on_ready(&mut self, net: &mut Net<T>, slot: usize, _now: Instant) {
        if self.pacer.is_some() {
            self.available(net, slot);
        } else {
            let k = self.cfg.pipeline.max(1);
            self.send(net, slot, k, None);
        }
    }

    fn on_data(
        &mut self,
        slot: usize,
        rb: &mut RecvBuf,
        now: Instant,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let c = &mut self.conns[slot];
        if let Some((v, first)) = &self.verbose {
            if c.shown < verbose::FIRST_READS {
                v.received(now, first + slot, c.shown, rb.pending());
                c.shown += 1;
            }
        }
        frame(
            &mut c.decoder,
            &mut c.inflight,
            rec,
            self.cfg.head_request,
            self.epoch,
            self.pacer.is_some(),
            rb,
            now,
            &mut c.framed,
        )
    }

    fn wants_more(&self, slot: usize) -> bool {
        // `frame` stops at the response that said `Connection: close`: nothing after it counts.
        !self.conns[slot].framed.closing
    }

    fn after_read(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        let c = &mut self.conns[slot];
        let framed = std::mem::take(&mut c.framed);
        if framed.completed > 0 {
            c.answered = true;
            c.failures = 0;
            self.inflight_total -= framed.completed as u64;
        }
        if framed.closing {
            // The server said this connection carries nothing more.
            net.rec.counters.server_closes += 1;
            if self.conns[slot].inflight.is_empty() {
                self.replace(net, slot, now);
            } else {
                self.fail(net, slot, ErrorClass::EofMidResponse, now);
            }
            return;
        }
        if framed.completed > 0 {
            if self.spent(slot) {
                self.retire(net, slot, now);
            } else if self.pacer.is_some() {
                self.available(net, slot);
            } else {
                self.send(net, slot, framed.completed, None);
            }
        }
    }

    fn on_lost(&mut self, net: &mut Net<T>, slot: usize, lost: Lost, now: Instant) {
        // What the framer completed in the read that ended the connection still counts.
        let framed = std::mem::take(&mut self.conns[slot].framed);
        if framed.completed > 0 {
            let c = &mut self.conns[slot];
            c.answered = true;
            c.failures = 0;
            self.inflight_total -= framed.completed as u64;
        }
        let idle = self.conns[slot].inflight.is_empty();
        let class = match lost {
            Lost::Connect(class) | Lost::Handshake(class) | Lost::Tls(class) => class,
            Lost::HandshakeReset => ErrorClass::TlsHandshake,
            Lost::Protocol(why) => {
                net.rec.reason(ErrorClass::Protocol, &why);
                ErrorClass::Protocol
            }
            Lost::Eof if framed.closing => {
                // `Connection: close` and the FIN in one event: the server said it first.
                net.rec.counters.server_closes += 1;
                if idle {
                    return self.replace(net, slot, now);
                }
                ErrorClass::EofMidResponse
            }
            Lost::Eof => return self.on_eof(net, slot, now),
            Lost::Io(e) => {
                let class = ErrorClass::from_io_error(&e);
                if idle && class == ErrorClass::ResetMidResponse {
                    // A reset on an idle keep-alive connection loses no request.
                    net.rec.counters.server_closes += 1;
                    return self.replace(net, slot, now);
                }
                class
            }
        };
        self.fail(net, slot, class, now);
    }

    fn on_timer(&mut self, net: &mut Net<T>, slot: usize, kind: TimerKind, now: Instant) {
        match kind {
            // A free slot's deadline only woke the loop: `on_turn` opens what is due (rule 6).
            TimerKind::Reopen
                if net.link(slot) == super::core::Link::Closed
                    && self.conns[slot].state != State::Free =>
            {
                self.open(net, slot, now);
            }
            TimerKind::Request => {
                // Rule 3: the deadline may be older than the oldest request in flight.
                let Some(front) = self.conns[slot].inflight.front() else {
                    return;
                };
                let due = front.at + self.cfg.timeout;
                if now >= due {
                    self.fail(net, slot, ErrorClass::ReadTimeout, now);
                } else {
                    net.timers.set(slot, TimerKind::Request, due);
                }
            }
            _ => {}
        }
    }

    fn on_turn(&mut self, net: &mut Net<T>, now: Instant) {
        self.dispatch(net, now);
        self.open_due(net, now);
        self.stage_tick(net, now);
    }

    fn wake_at(&self) -> Option<Instant> {
        // The next request due (the loop's alarm wakes it then, core rule 7); none once
        // stopping, when nothing more is released.
        let due = self.pacer.as_ref().filter(|_| !self.stopping);
        let due = due.map(|p| p.schedule.next_due());
        let stage = self.stager.as_ref().map(|st| st.next_check);
        match (due, stage) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Rule 4: the wait before reconnecting after `failures` failed connections in a row (≥ 1).
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(1u64 << failures.min(8).saturating_sub(1)).min(MAX_BACKOFF)
}

/// Frame every response the buffer completes, recording TTFB and total per request.
#[allow(clippy::too_many_arguments)]
#[inline]
fn frame(
    decoder: &mut ResponseDecoder,
    inflight: &mut VecDeque<Sent>,
    rec: &mut Recorder,
    head: bool,
    epoch: u32,
    paced: bool,
    rb: &mut RecvBuf,
    now: Instant,
    framed: &mut Framed,
) -> Result<(), Failure> {
    while !rb.is_empty() && !framed.closing {
        let Some(front) = inflight.front_mut() else {
            // Bytes nobody asked for.
            return Err(Failure::Protocol(Refusal::Unsolicited));
        };
        if !front.ttfb_seen {
            front.ttfb_seen = true;
            if front.epoch == epoch {
                rec.record(Phase::Ttfb, (now - front.at).as_nanos() as u64);
            }
        }
        let (n, progress) = decoder
            .decode(rb.pending(), head)
            .map_err(|e| Failure::Protocol(Refusal::Http(e)))?;
        rb.consume(n);
        match progress {
            Progress::Partial => return Ok(()),
            Progress::Complete(info) => {
                let s = inflight.pop_front().expect("front exists");
                if s.epoch == epoch {
                    rec.record(Phase::Total, (now - s.at).as_nanos() as u64);
                    if paced {
                        rec.record(Phase::Corrected, (now - s.intended).as_nanos() as u64);
                    }
                    rec.response(info.status);
                }
                framed.completed += 1;
                if !info.keep_alive {
                    framed.closing = true;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The core and the HTTP session against scripted loopback peers, with a fake clock for
    //! every decision: timeouts, backoff, fall-back and pacing are checked without waiting.
    use super::*;
    use crate::engine::core::{Connector, Driver, Link, Plain};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    const REQ: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    fn cfg() -> HttpConfig {
        HttpConfig {
            id: 0,
            workers: 1,
            request: REQ.into(),
            pipeline: 1,
            head_request: false,
            budget: None,
            timeout: Duration::from_secs(10),
            rate: None,
            stages: Vec::new(),
            per_conn: None,
            conn_rate: None,
            close: Close::Fin,
        }
    }

    fn driver(addrs: Vec<SocketAddr>, slots: usize, cfg: HttpConfig) -> Driver<Plain, Http> {
        let poll = mio::Poll::new().unwrap();
        let net = Net::<Plain>::new(
            poll,
            slots,
            (),
            Connector::new(addrs, Vec::new(), 0).unpaced(),
            Duration::from_secs(5),
        );
        let http = Http::new(cfg, &net);
        Driver::new(net, http)
    }

    /// Poll (real I/O, 10 ms at a time) until `done` holds; panics after 30 s of real time.
    fn pump(d: &mut Driver<Plain, Http>, done: impl Fn(&Driver<Plain, Http>) -> bool) {
        let limit = Instant::now() + Duration::from_secs(30);
        while !done(d) {
            assert!(Instant::now() < limit, "condition not reached");
            d.poll_io(Some(Duration::from_millis(10))).unwrap();
        }
    }

    /// Like [`pump`], firing the timer table too: a connection the core's connect pacing
    /// deferred opens at its Reopen deadline (a loaded machine sees that).
    fn pump_timers(d: &mut Driver<Plain, Http>, done: impl Fn(&Driver<Plain, Http>) -> bool) {
        let limit = Instant::now() + Duration::from_secs(30);
        while !done(d) {
            assert!(Instant::now() < limit, "condition not reached");
            d.poll_io(Some(Duration::from_millis(10))).unwrap();
            d.fire_timers(Instant::now());
        }
    }

    fn accept(l: &TcpListener) -> TcpStream {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    fn read_request(s: &mut TcpStream) {
        let mut buf = vec![0u8; REQ.len()];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, REQ);
    }

    #[test]
    fn a_response_is_measured_and_the_next_request_follows_at_once() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(vec![l.local_addr().unwrap()], 1, cfg());
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 1);
        read_request(&mut s);
        s.write_all(OK).unwrap();
        pump(&mut d, |d| d.net.rec.counters.responses == 1);
        read_request(&mut s); // the second request went out in the same event as the response
        assert_eq!(d.net.rec.counters.requests, 2);
        assert_eq!(d.net.rec.counters.reused_requests, 1);
        assert_eq!(d.net.rec.histogram(Phase::Ttfb).len(), 1);
        assert_eq!(d.net.rec.histogram(Phase::Connect).len(), 1);
    }

    #[test]
    fn an_unanswered_request_times_out_at_the_deadline_and_not_before() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(vec![l.local_addr().unwrap()], 1, cfg());
        let t0 = Instant::now();
        d.session.on_start(&mut d.net, t0);
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 1);
        read_request(&mut s);
        let deadline = d.net.timers.get(0, TimerKind::Request).expect("armed");
        d.fire_timers(deadline - Duration::from_millis(1));
        assert_eq!(d.net.rec.counters.total_errors(), 0);
        d.fire_timers(deadline);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ReadTimeout.index()],
            1
        );
        // The connection had never answered: the slot waits out a backoff before reopening.
        assert_eq!(d.net.link(0), Link::Closed);
        assert!(d.net.timers.get(0, TimerKind::Reopen).is_some());
    }

    #[test]
    fn the_request_deadline_follows_the_oldest_request_lazily() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(vec![l.local_addr().unwrap()], 1, cfg());
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 1);
        read_request(&mut s);
        s.write_all(OK).unwrap();
        pump(&mut d, |d| d.net.rec.counters.responses == 1);
        // The timer still holds the first request's deadline; firing it then re-arms it from the
        // second request's send time instead of failing.
        let first = d.net.timers.get(0, TimerKind::Request).expect("armed");
        d.fire_timers(first);
        assert_eq!(d.net.rec.counters.total_errors(), 0);
        let second = d.net.timers.get(0, TimerKind::Request).expect("re-armed");
        assert!(second >= first);
        d.fire_timers(second);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ReadTimeout.index()],
            1
        );
    }

    #[test]
    fn a_connect_that_does_not_complete_in_time_is_a_connect_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(vec![l.local_addr().unwrap()], 1, cfg());
        let t0 = Instant::now();
        d.session.on_start(&mut d.net, t0);
        assert_eq!(d.net.link(0), Link::Connecting);
        // No event has been handled yet: as far as the core knows, the connect is pending.
        let deadline = d.net.timers.get(0, TimerKind::Connect).expect("armed");
        d.fire_timers(deadline);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ConnectTimeout.index()],
            1
        );
    }

    #[test]
    fn refused_connects_back_off_doubling_up_to_the_cap() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let mut d = driver(vec![addr], 1, cfg());
        d.session.on_start(&mut d.net, Instant::now());
        for k in 1..=10u32 {
            let before = Instant::now();
            pump(&mut d, |d| d.net.link(0) == Link::Closed);
            let after = Instant::now();
            let at = d
                .net
                .timers
                .get(0, TimerKind::Reopen)
                .expect("backoff armed");
            // The failure was handled between `before` and `after`, and waits backoff(k).
            let want = backoff(k);
            assert!(at >= before + want && at <= after + want, "failure {k}");
            d.fire_timers(at);
        }
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ConnectRefused.index()],
            10
        );
        let waits: Vec<u128> = (1..=10).map(|k| backoff(k).as_millis()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
    }

    #[test]
    fn a_refused_address_falls_back_to_the_next_one() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(vec![dead_addr, l.local_addr().unwrap()], 1, cfg());
        d.session.on_start(&mut d.net, Instant::now());
        pump(&mut d, |d| d.net.link(0) == Link::Closed);
        let at = d.net.timers.get(0, TimerKind::Reopen).expect("backoff");
        d.fire_timers(at);
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 1);
        read_request(&mut s);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ConnectRefused.index()],
            1
        );
    }

    #[test]
    fn a_close_delimited_body_ends_with_the_fin_that_came_with_it() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(vec![l.local_addr().unwrap()], 1, cfg());
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 1);
        read_request(&mut s);
        s.write_all(b"HTTP/1.1 200 OK\r\n\r\nbody until close")
            .unwrap();
        drop(s);
        pump(&mut d, |d| d.net.rec.counters.responses == 1);
        assert_eq!(d.net.rec.counters.total_errors(), 0);
        assert_eq!(d.net.rec.counters.server_closes, 1);
        // Replaced at once: the next connection is on its way.
        assert_eq!(d.net.link(0), Link::Connecting);
        assert!(accept(&l).peer_addr().is_ok());
    }

    #[test]
    fn a_truncated_body_then_fin_is_eof_mid_response() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(vec![l.local_addr().unwrap()], 1, cfg());
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 1);
        read_request(&mut s);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
            .unwrap();
        drop(s);
        pump(&mut d, |d| d.net.rec.counters.total_errors() == 1);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::EofMidResponse.index()],
            1
        );
    }

    #[test]
    fn rate_mode_sends_what_is_due_by_the_fake_clock_and_backlogs_the_rest() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = cfg();
        c.rate = Some((1000.0, Arrival::Uniform));
        let mut d = driver(vec![l.local_addr().unwrap()], 1, c);
        let t0 = Instant::now();
        d.session.on_start(&mut d.net, t0);
        let _s = accept(&l);
        pump(&mut d, |d| d.net.link(0) == Link::Up);
        // 10 ms of schedule: requests 0..=10 are due (k is due at start + k/rate); one
        // connection takes one, the rest wait in the backlog with their clocks running.
        d.turn(t0 + Duration::from_millis(10));
        let p = d.session.pacer.as_ref().unwrap();
        assert_eq!(d.net.rec.counters.requests, 1);
        assert_eq!(p.backlog.len() as u64 + 1, p.schedule.taken());
        assert!(p.schedule.taken() >= 10, "{}", p.schedule.taken());
    }

    #[test]
    fn rate_mode_releases_everything_due_in_one_turn_each_with_its_lag_measured_at_release() {
        // Coalescing (one wake-up releases every request due) must not blur the lag (pace
        // rule 5): a turn that finds three requests due releases all three, and each lag runs
        // from its own intended time to the release. The schedule started 3.5 s ago at 1/s:
        // request 0 went out at the start, 1, 2 and 3 (due 2.5, 1.5 and 0.5 s ago) are
        // released by this turn.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = cfg();
        c.rate = Some((1.0, Arrival::Uniform));
        let mut d = driver(vec![l.local_addr().unwrap()], 1, c);
        let t0 = Instant::now() - Duration::from_millis(3500);
        d.session.on_start(&mut d.net, t0);
        assert_eq!(d.net.rec.histogram(Phase::SendLag).len(), 1);
        let before = Instant::now();
        d.turn(before);
        let after = Instant::now();
        let p = d.session.pacer.as_ref().unwrap();
        assert_eq!(p.schedule.taken(), 4, "requests 0..=3 are due");
        let lag = d.net.rec.histogram(Phase::SendLag);
        assert_eq!(lag.len(), 4, "one lag sample per released request");
        // Request k (due at t0 + k s) was released between `before` and `after`: its lag lies
        // in that window measured from its own due time (± the histogram's 0.1 % precision).
        for k in 1..=3u64 {
            let due = t0 + Duration::from_secs(k);
            let lo = (before - due).as_nanos() as u64;
            let hi = (after - due).as_nanos() as u64;
            assert_eq!(
                lag.count_between(lo - lo / 500, hi + hi / 500),
                1,
                "request {k}: lag between {lo} and {hi} ns"
            );
        }
    }

    #[test]
    fn unsent_counts_only_the_requests_due_before_the_end_of_the_window() {
        // Request k is due at start + k/rate: at 1000/s, requests 0..=4 are due before 5 ms,
        // request 5 at exactly 5 ms, when the window is over. It was counted as unsent.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = cfg();
        c.rate = Some((1000.0, Arrival::Uniform));
        let mut d = driver(vec![l.local_addr().unwrap()], 1, c);
        let t0 = Instant::now();
        d.session.on_start(&mut d.net, t0);
        // Nothing was written: the connection is not up (request 0 waits in the backlog).
        assert_eq!(d.net.rec.counters.requests, 0);
        let (mut net, mut http) = d.into_parts();
        http.finish(&mut net, t0 + Duration::from_millis(5));
        assert_eq!(net.rec.counters.unsent, 5);
    }

    #[test]
    fn rate_mode_asks_the_loop_to_wake_at_the_next_due_request() {
        // No timer of its own: the session's wake_at is the next due send, and the loop's
        // alarm (core rule 7) is armed for it to the nanosecond; a spinning loop checks the
        // schedule on every turn and arms nothing.
        for spin in [false, true] {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let mut c = cfg();
            c.rate = Some((1000.0, Arrival::Uniform));
            let mut d = driver(vec![l.local_addr().unwrap()], 1, c);
            if spin {
                d.net.set_busy_poll(None);
            }
            let t0 = Instant::now();
            d.session.on_start(&mut d.net, t0);
            let _s = accept(&l);
            pump(&mut d, |d| d.net.link(0) == Link::Up);
            d.turn(t0 + Duration::from_millis(10));
            let p = d.session.pacer.as_ref().unwrap();
            assert_eq!(d.net.rec.counters.requests, 1);
            assert!(p.schedule.taken() >= 10, "{}", p.schedule.taken());
            let due = p.schedule.next_due();
            assert!(due > t0 + Duration::from_millis(10));
            assert_eq!(Session::<Plain>::wake_at(&d.session), Some(due));
            assert_eq!(
                d.next_wake(),
                Some(due),
                "nothing in the timer table comes first"
            );
            // Sleeping, only the alarm can end this wait (no timeout, no peer bytes): it ends at
            // the due instant, never before, its event consumed. Spinning, it ends at once.
            d.poll_until(due, Instant::now()).unwrap();
            assert_eq!(d.alarm(), None, "spin {spin}");
            if !spin {
                assert!(
                    Instant::now() >= due,
                    "woke {:?} early",
                    due - Instant::now()
                );
            }
        }
    }

    #[test]
    fn a_connect_that_completes_with_the_servers_fin_in_the_same_event_fails_at_once() {
        // The server accepts and closes before the client has looked at its socket: the first
        // event says writable (connected) and read-closed together. Before, the connect was
        // taken, the request written, and the close only noticed at `--timeout`.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(vec![l.local_addr().unwrap()], 1, cfg());
        d.session.on_start(&mut d.net, Instant::now());
        let (s, _) = l.accept().unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Let the FIN arrive, then hand the driver its events (a few polls at most: the
        // events may come in one wake-up or two, never a timeout later).
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..3 {
            d.poll_io(Some(Duration::from_millis(100))).unwrap();
        }
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::EofMidResponse.index()],
            1,
            "{:?}",
            d.net.rec.counters.errors
        );
    }

    /// What the peer's next read sees after connbench closed: `Ok(0)` for a FIN, a reset error
    /// for an RST.
    fn read_after_close(s: &mut TcpStream) -> std::io::Result<usize> {
        s.read(&mut [0u8; 64])
    }

    #[test]
    fn requests_per_conn_closes_after_n_responses_and_opens_the_next_in_the_slot() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = cfg();
        c.per_conn = Some(2);
        let mut d = driver(vec![l.local_addr().unwrap()], 1, c);
        d.session.on_start(&mut d.net, Instant::now());
        let mut s1 = accept(&l);
        for n in 1..=2 {
            pump(&mut d, |d| d.net.rec.counters.requests == n);
            read_request(&mut s1);
            s1.write_all(OK).unwrap();
            pump(&mut d, |d| d.net.rec.counters.responses == n);
        }
        // Two responses: connbench closed the first connection (a FIN: nothing unread) ...
        assert_eq!(
            read_after_close(&mut s1).unwrap(),
            0,
            "a FIN after the 2nd response"
        );
        // ... and its slot carries the third request on a new one, which is not a reuse. (Its
        // connect may wait for its Reopen deadline: accept only once it was issued, or this
        // thread would block in accept while the driver never fires the deadline.)
        pump_timers(&mut d, |d| d.net.rec.counters.connections_opened == 2);
        let mut s2 = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 3);
        read_request(&mut s2);
        let k = &d.net.rec.counters;
        assert_eq!(k.connections_opened, 2);
        assert_eq!(
            k.reused_requests, 1,
            "only the 2nd request reused a connection"
        );
        assert_eq!(k.server_closes, 0, "connbench closed it, not the server");
        assert_eq!(k.total_errors(), 0);
        assert_eq!(d.net.rec.histogram(Phase::Connect).len(), 2);
    }

    /// A one-request-per-connection run that closes `how`; the peer answers once and reads on.
    fn closed_after_one_response(how: Close) -> std::io::Result<usize> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = cfg();
        c.per_conn = Some(1);
        c.close = how;
        let mut d = driver(vec![l.local_addr().unwrap()], 1, c);
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 1);
        read_request(&mut s);
        s.write_all(OK).unwrap();
        pump(&mut d, |d| d.net.rec.counters.responses == 1);
        // The next one is on its way: opened at once, or at its Reopen deadline when the
        // core's connect pacing deferred it (a loaded CI box saw that).
        pump_timers(&mut d, |d| d.net.rec.counters.connections_opened == 2);
        read_after_close(&mut s)
    }

    #[test]
    fn close_rst_ends_a_spent_connection_with_a_reset_and_close_fin_with_a_fin() {
        assert_eq!(closed_after_one_response(Close::Fin).unwrap(), 0);
        let e = closed_after_one_response(Close::Rst).expect_err("a reset");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }

    #[test]
    fn finish_closes_the_connections_still_open_the_close_way() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = cfg();
        c.per_conn = Some(5);
        c.close = Close::Rst;
        let mut d = driver(vec![l.local_addr().unwrap()], 1, c);
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests == 1);
        read_request(&mut s);
        let (mut net, mut http) = d.into_parts();
        http.finish(&mut net, Instant::now());
        assert_eq!(net.link(0), Link::Closed);
        let e = read_after_close(&mut s).expect_err("a reset");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }

    #[test]
    fn a_budget_is_claimed_per_connection_so_no_connection_opens_for_nothing() {
        // -n 7 with 3 requests per connection over 4 slots: claims of 3, 3 and 1; the 4th slot
        // opens nothing (rule 5), so the run opens exactly ceil(7 / 3) = 3 connections.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = cfg();
        c.per_conn = Some(3);
        c.budget = Some(7);
        let mut d = driver(vec![l.local_addr().unwrap()], 4, c);
        d.session.on_start(&mut d.net, Instant::now());
        let quotas: Vec<u64> = d.session.conns.iter().map(|c| c.quota).collect();
        assert_eq!(quotas, [3, 3, 1, 0]);
        assert_eq!(d.session.unclaimed, Some(0));
        assert_eq!(d.net.link(3), Link::Closed);
        assert_eq!(d.session.conns[3].state, State::Done);
        // Connect pacing may defer a connect when a run of them held the loop too long (a
        // preempted thread on a loaded CI machine: 1 of 3 had opened in on_start).
        pump_timers(&mut d, |d| d.net.rec.counters.connections_opened == 3);
        assert_eq!(d.net.link(3), Link::Closed);
        assert_eq!(d.session.conns[3].state, State::Done);
    }

    #[test]
    fn a_connection_that_fails_before_its_first_request_gives_back_the_rest_of_its_claim() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let mut c = cfg();
        c.per_conn = Some(3);
        c.budget = Some(7);
        let mut d = driver(vec![addr], 1, c);
        d.session.on_start(&mut d.net, Instant::now());
        assert_eq!(d.session.unclaimed, Some(4));
        pump(&mut d, |d| d.net.link(0) == Link::Closed);
        // The refused connection counts as one failed request (the run still ends), and the
        // two requests it never sent are free for the next connection: budget = unclaimed.
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ConnectRefused.index()],
            1
        );
        assert_eq!(d.session.budget, Some(6));
        assert_eq!(d.session.unclaimed, Some(6));
        let at = d.net.timers.get(0, TimerKind::Reopen).expect("backoff");
        d.fire_timers(at);
        assert_eq!(d.session.conns[0].quota, 3);
        assert_eq!(d.session.unclaimed, Some(3));
    }

    #[test]
    fn conn_rate_opens_connection_k_at_start_plus_k_over_r_on_free_slots() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = cfg();
        c.per_conn = Some(1);
        c.conn_rate = Some(1000.0);
        let mut d = driver(vec![l.local_addr().unwrap()], 3, c);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        d.session.on_start(&mut d.net, t0);
        // Connection 0 is due at the start; a free slot holds the next due time (rule 6).
        assert_eq!(d.net.rec.counters.connections_opened, 1);
        let armed: Vec<_> = (0..3)
            .filter_map(|s| d.net.timers.get(s, TimerKind::Reopen))
            .collect();
        assert_eq!(armed, [ms(1)]);
        d.turn(ms(1) - Duration::from_nanos(1));
        assert_eq!(
            d.net.rec.counters.connections_opened, 1,
            "not before its time"
        );
        d.turn(ms(2));
        assert_eq!(d.net.rec.counters.connections_opened, 3, "1 and 2 were due");
        // Every slot is busy: connections 3, 4 and 5 fall due and wait.
        d.turn(ms(5));
        assert_eq!(d.net.rec.counters.connections_opened, 3);
        assert_eq!(d.net.rec.histogram(Phase::OpenLag).len(), 3);
        // A connection carries its request and closes: its slot takes connection 3 at once.
        let mut s = accept(&l);
        pump(&mut d, |d| d.net.rec.counters.requests >= 1);
        read_request(&mut s);
        s.write_all(OK).unwrap();
        pump(&mut d, |d| d.net.rec.counters.responses == 1);
        d.turn(ms(5));
        assert_eq!(d.net.rec.counters.connections_opened, 4);
        assert_eq!(d.net.rec.histogram(Phase::OpenLag).len(), 4);
        // The run ends at 5.5 ms: 4 and 5 were due and never opened; 6 was not due yet.
        let (mut net, mut http) = d.into_parts();
        http.finish(&mut net, ms(5) + Duration::from_micros(500));
        assert_eq!(net.rec.counters.unopened, 2);
        assert_eq!(net.open_count(), 0, "finish closed what was open");
    }

    #[test]
    fn conn_rate_failures_free_the_slot_without_backoff() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let mut c = cfg();
        c.per_conn = Some(1);
        c.conn_rate = Some(100.0);
        let mut d = driver(vec![addr], 1, c);
        let t0 = Instant::now();
        d.session.on_start(&mut d.net, t0);
        pump(&mut d, |d| d.net.link(0) == Link::Closed);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ConnectRefused.index()],
            1
        );
        // No backoff: the free slot waits for the schedule's next due time, 10 ms on (armed
        // at the end of the loop turn).
        assert_eq!(d.session.conns[0].state, State::Free);
        d.turn(t0 + Duration::from_millis(1));
        assert_eq!(d.net.rec.counters.connections_opened, 1);
        assert_eq!(
            d.net.timers.get(0, TimerKind::Reopen),
            Some(t0 + Duration::from_millis(10))
        );
        d.turn(t0 + Duration::from_millis(10));
        assert_eq!(d.net.rec.counters.connections_opened, 2);
    }
}
