//! The WebSocket session: every slot of a worker lives through connect → TLS → upgrade →
//! subscribe → messages on the connection core ([`super::core`]), and a reconnection manager
//! replaces lost connections with backoff, a budget and automatic resubscription.
//!
//! The core makes the connections and moves the bytes; this module decides what they say and
//! what a loss means. Frames are encoded into a per-slot buffer (pongs, close replies,
//! subscriptions, echo messages) and written once per event, so one readable edge costs one
//! read and at most one write.
//!
//! Rules:
//! 1. Server pings are always answered, whatever the mode.
//! 2. A lost connection (close frame, EOF without one, reset, error, staleness, pong timeout) is
//!    replaced after a jittered backoff (`engine::reconnect`); reconnects draw from the
//!    worker's share of the reconnect budget; after `max_retries` failed attempts in a row the
//!    slot gives up. A TCP reset of an open connection is `ws_reset`; a FIN without a close
//!    frame is `ws_abnormal_close`.
//! 3. Every subscription is sent again on the replacement, then the echo messages owed while the
//!    connection was down (bounded by `send_buffer`; the excess is counted as dropped).
//! 4. Sequence trackers live with the slot, not the connection, so a gap across a reconnect is
//!    seen; a new numbering on the new connection is counted as "backwards", not as a gap.
//! 5. Time: one monotonic clock read per socket read; unix time for one-way latency is derived
//!    from it through an offset taken once at start. `first_message` runs from the upgrade
//!    request's first byte written (where `upgrade` starts) to the first data message (rule 7)
//!    framed: both ends are packets a capture shows, it is never shorter than the upgrade, and
//!    a message that arrives in the same read as the 101 gets the upgrade's time, not 0.
//! 6. Echo mode is open loop (`engine::pace`): message k of every slot's schedule is due at
//!    start + k / rate, start being the moment the run starts (so message 0 is due at once and
//!    waits for the first connection, as an HTTP `-R` request waits for a free one). A timerfd
//!    armed for the next due time releases them (µs, not the loop's tick; with `--busy-poll`
//!    the spinning loop checks the due time on every turn instead); what is due while a
//!    slot has no open connection is owed and sent when it opens. Only what was owed across an
//!    outage of an open connection counts as `buffered_sent`. Each message's send lag is how
//!    late the loop released it (`pace` rule 5); its wait for a connection is in `corrected`.
//! 7. Liveness. `--stale-after` watches *data* messages: every text or binary message except a
//!    reply to our own text heartbeat, i.e. a text message that arrives while one of our text
//!    heartbeats is unanswered and either repeats it or contains `pong` (ASCII, any case:
//!    `pong`, `{"op":"pong"}`, Bybit's `"ret_msg":"pong"`). Such a reply proves the connection,
//!    not the feed, so a stalled feed that still answers heartbeats goes stale. In ping mode the
//!    pongs are what is measured and count as data. Protocol pings (`--heartbeat ping`, ping
//!    mode) carry their send time; a pong answers every ping sent at or before the time it
//!    echoes, and the oldest ping left unanswered for `--pong-timeout` replaces the connection
//!    (`pong_timeout`: the peer or the path is gone, whether or not data still trickles in).
//! 8. Timers: the upgrade deadline, staleness, heartbeats and pong deadlines are the slot's
//!    entries in the core's timer table; staleness and pong deadlines are checked lazily (armed
//!    once, re-armed from the true deadline when they fire early), so a message costs no timer
//!    operation.
//! 9. Stages (`--stages`, `--scenario`; stream and ping modes): the worker holds its share of
//!    the stage target in slots `0..active` (`engine::stage`); the others are parked. A slot
//!    the ramp takes back is closed normally (close 1000, as at the end of the run) and parked:
//!    that is neither a reconnect nor an error, and a slot the ramp gives back starts afresh (a
//!    new connection, not a resubscription; a new sequence numbering is not a gap).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::buf::RecvBuf;
use super::core::verbose::Verbose;
use super::core::{Close, Failure, Link, Lost, Net, Opened, Session, TimerKind, Transport};
use super::pace;
use super::reconnect::{Backoff, Budget};
use super::stage::Stager;
use crate::metrics::{ErrorClass, Phase, ReconnectCause, Recorder, StatusClass};
use crate::plan::{Heartbeat, WsMode, WsPlan};
use crate::proto::jsonfield::{self, FieldPath, Raw, TsUnit};
use crate::proto::seq::{SeqEvent, SeqTracker};
use crate::proto::ws::{self, Decoder, Frame, Handshake, OpCode, Progress, UpgradeError};

/// Most echo messages one slot sends in one pass (a catch-up burst is spread out).
const MAX_BURST: u64 = 256;

/// Where a slot is, as far as WebSocket is concerned (TCP and TLS are the core's [`Link`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No connection; its Reopen timer (backoff, budget or connect pacing) opens one.
    Waiting,
    /// `connect()` called, TCP or TLS in progress.
    Connecting,
    /// Upgrade request sent, waiting for the 101.
    Upgrading,
    /// Upgraded and subscribed.
    Open,
    /// Gave up (retries exhausted) or the run is ending.
    Done,
    /// Not wanted by the current stage (rule 9): no connection until the ramp wants it.
    Parked,
}

/// What the frame handler decided during one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Keep going.
    Continue,
    /// Replace the connection for this cause (and count this error class, if any).
    Lose(ReconnectCause, Option<ErrorClass>),
}

/// The protocol side of a slot: everything the frame handler touches during a read.
struct Proto {
    /// Messages (and upgrade answers) shown by `-v` on this slot.
    shown: u32,
    state: State,
    handshake: Option<Handshake>,
    decoder: Decoder,
    /// Frames to write after this event (pongs, close replies, subscriptions, echo messages).
    out: Vec<u8>,
    /// Rendered subscription messages of this connection.
    subs: Vec<Vec<u8>>,
    /// Sequence trackers by stream key hash.
    seqs: Vec<(u64, SeqTracker)>,
    /// When the upgrade request's first byte was written: the start of `upgrade` and of
    /// `first_message`.
    t_upgrade: Instant,
    /// Liveness of the open connection (rule 7).
    live: Liveness,
    /// The first moment of the current outage (a connection that had been open was lost).
    lost_at: Option<Instant>,
    /// This slot has been open before: the next open is a resubscription.
    was_open: bool,
    verdict: Verdict,
    just_opened: bool,
    /// The connection that just opened replaces one that had been open (an outage ended).
    reopened: bool,
}

/// A slot: its protocol state and the reconnection and echo bookkeeping that outlive a
/// connection.
struct Slot {
    backoff: Backoff,
    /// Echo schedule: messages accounted for (sent or owed) since the run started.
    echo_accounted: u64,
    /// Echo messages owed while disconnected.
    owed: u64,
    /// Schedule index of the first message owed (the owed ones are consecutive).
    owed_from: u64,
    p: Proto,
}

/// Echo mode's open-loop schedule (module rule 6), shared by the worker's slots.
struct EchoPacer {
    rate: f64,
    /// When the next pass is due: the first message not yet due (or at once, when a slot is
    /// still behind after its burst).
    next_at: Instant,
}

/// What the frame handler tracks about an open connection's liveness (rule 7).
#[derive(Clone, Copy, Debug)]
struct Liveness {
    /// A data message arrived on this connection.
    first_seen: bool,
    /// When the last data message arrived.
    last_data: Instant,
    /// Text heartbeats sent and not answered yet.
    text_unanswered: u32,
    /// Send time (ns on the worker clock) of the oldest protocol ping not answered yet.
    ping_unanswered: Option<u64>,
    /// Send time of the last protocol ping.
    last_ping: u64,
}

impl Liveness {
    fn new(now: Instant) -> Liveness {
        Liveness {
            first_seen: false,
            last_data: now,
            text_unanswered: 0,
            ping_unanswered: None,
            last_ping: 0,
        }
    }

    /// A pong echoing `sent` (our ping payload) answers every ping sent up to then. When later
    /// pings are still out, the next one due is at most the last sent: counting from it errs
    /// on the patient side.
    fn pong(&mut self, sent: u64) {
        if let Some(oldest) = self.ping_unanswered {
            if sent >= self.last_ping {
                self.ping_unanswered = None;
            } else if sent >= oldest {
                self.ping_unanswered = Some(self.last_ping);
            }
        }
    }
}

/// Whether a text message is the reply to our text heartbeat `sent` (rule 7), given that one is
/// unanswered.
fn is_heartbeat_reply(data: &[u8], sent: &str) -> bool {
    data == sent.as_bytes() || data.windows(4).any(|w| w.eq_ignore_ascii_case(b"pong"))
}

/// Monotonic → unix time, from one offset taken at start.
#[derive(Clone, Copy)]
struct Clock {
    base: Instant,
    base_unix_ns: u64,
}

impl Clock {
    fn new() -> Clock {
        let base = Instant::now();
        let base_unix_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock { base, base_unix_ns }
    }

    /// Nanoseconds since the worker started (carried in echo messages and ping payloads).
    #[inline]
    fn mono_ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    #[inline]
    fn unix_ns(&self, t: Instant) -> u64 {
        self.base_unix_ns + self.mono_ns(t)
    }
}

/// Read-only context and per-worker state the frame handler needs.
struct Rx<'a> {
    plan: &'a WsPlan,
    rec: &'a mut Recorder,
    rng: &'a mut StdRng,
    clock: Clock,
    ts_unit: &'a mut Option<TsUnit>,
    echo_path: &'a FieldPath,
    intended_path: &'a FieldPath,
    /// `-v`, and the global index of the connection the bytes came from.
    verbose: Option<(&'a Verbose, usize)>,
}

/// The WebSocket session of one worker.
pub struct Ws {
    plan: Arc<WsPlan>,
    slots: Vec<Slot>,
    rng: StdRng,
    clock: Clock,
    msg: Vec<u8>,
    budget: Option<Budget>,
    ts_unit: Option<TsUnit>,
    echo_path: FieldPath,
    intended_path: FieldPath,
    stopping: bool,
    /// Slots that gave up: when all did, the worker is finished.
    done: usize,
    /// Echo mode's schedule.
    echo: Option<EchoPacer>,
    /// `-v` (core rule: off and free unless asked).
    verbose: Option<Arc<Verbose>>,
    /// Global index of the first slot's connection.
    first_conn: usize,
    /// This worker's index and the number of workers (its share of a stage's connections).
    worker: (usize, usize),
    /// Staged runs (rule 9): slots `0..active` should hold a connection.
    active: usize,
    stager: Option<Stager>,
}

impl Ws {
    /// A session for the net's slots of worker `id`; `first_conn` is the global index of its
    /// first connection (for `{conn}`), `budget` its share of the reconnect budget.
    pub fn new<T: Transport>(
        plan: Arc<WsPlan>,
        id: usize,
        first_conn: usize,
        budget: Option<(u32, Duration)>,
        net: &Net<T>,
    ) -> Ws {
        let now = Instant::now();
        let plan_threads = plan.threads.max(1);
        debug_assert!(
            plan.stages.is_empty() || plan.session.mode != WsMode::Echo,
            "echo mode paces each connection from the run's start: no stages"
        );
        let slots = (0..net.slots())
            .map(|i| Slot {
                backoff: Backoff::default(),
                echo_accounted: 0,
                owed: 0,
                owed_from: 0,
                p: Proto {
                    shown: 0,
                    state: State::Waiting,
                    handshake: None,
                    decoder: Decoder::new(plan.session.max_message, plan.session.utf8_check),
                    out: Vec::with_capacity(512),
                    subs: render_subscriptions(&plan, first_conn + i),
                    seqs: Vec::new(),
                    t_upgrade: now,
                    live: Liveness::new(now),
                    lost_at: None,
                    was_open: false,
                    verdict: Verdict::Continue,
                    just_opened: false,
                    reopened: false,
                },
            })
            .collect();
        let echo = if plan.session.mode == WsMode::Echo && plan.session.send_rate > 0.0 {
            Some(EchoPacer {
                rate: plan.session.send_rate,
                next_at: now,
            })
        } else {
            None
        };
        Ws {
            budget: budget.map(|(k, per)| Budget::new(k.max(1), per, now)),
            ts_unit: plan.session.ts_unit,
            msg: Vec::with_capacity(plan.session.message_size.max(64) + 64),
            plan,
            slots,
            rng: StdRng::from_rng(&mut rand::rng()),
            clock: Clock::new(),
            echo_path: FieldPath::parse("t").expect("static path"),
            intended_path: FieldPath::parse("i").expect("static path"),
            stopping: false,
            done: 0,
            echo,
            verbose: None,
            first_conn,
            worker: (id, plan_threads),
            active: usize::MAX,
            stager: None,
        }
    }

    /// Show what the first connections receive, and every reconnection, in `v` (`-v`).
    pub fn set_verbose(&mut self, v: Arc<Verbose>) {
        self.verbose = Some(v);
    }

    /// The run is over at `end`: count the echo messages due and never written, close every
    /// open connection with a normal close (1000; best effort, one write), and hand back the
    /// stage windows (the run is then the sum of its windows).
    pub fn finish<T: Transport>(&mut self, net: &mut Net<T>, end: Instant) -> Vec<(Recorder, u64)> {
        self.stopping = true;
        if let Some(e) = &self.echo {
            // `pace` rule 3: those still owed to a connection that is down, and those the loop
            // had not released yet.
            let due = pace::due_by(self.clock.mono_ns(end), e.rate);
            for s in &self.slots {
                net.rec.counters.unsent += s.owed + due.saturating_sub(s.echo_accounted);
            }
        }
        for slot in 0..self.slots.len() {
            self.close_normally(net, slot);
        }
        match self.stager.take() {
            Some(st) => {
                let open = net.open_count();
                st.finish(&mut net.rec, open)
            }
            None => Vec::new(),
        }
    }

    /// Send a normal close (1000) on an open connection (best effort, one write).
    fn close_normally<T: Transport>(&mut self, net: &mut Net<T>, slot: usize) {
        if self.slots[slot].p.state == State::Open {
            let mask = self.rng.random();
            let s = &mut self.slots[slot];
            s.p.out.clear();
            ws::encode_close(&mut s.p.out, 1000, "", mask);
            self.write_out(net, slot);
        }
    }

    /// Staged runs (rule 9): at each check, open or park slots so this worker holds its share
    /// of the stage target.
    fn stage_tick<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) {
        let Some(st) = &mut self.stager else {
            return;
        };
        let open = net.open_count();
        let Some(t) = st.check(now, &mut net.rec, open) else {
            return;
        };
        let (id, workers) = self.worker;
        let want = super::stage::wanted(&self.plan.stages, t, id, workers, self.slots.len());
        let have = self.active.min(self.slots.len());
        self.active = want;
        for slot in have..want {
            if self.slots[slot].p.state == State::Parked {
                self.set_state(slot, State::Waiting);
                self.open(net, slot, now);
            }
        }
        for slot in want..have {
            self.park(net, slot);
        }
    }

    /// Rule 9: the ramp takes the slot back: a normal close, and a fresh start if it comes back.
    fn park<T: Transport>(&mut self, net: &mut Net<T>, slot: usize) {
        self.close_normally(net, slot);
        net.close(slot, Close::Fin);
        let s = &mut self.slots[slot];
        s.backoff.reset();
        s.p.out.clear();
        s.p.decoder.reset();
        s.p.handshake = None;
        s.p.verdict = Verdict::Continue;
        s.p.just_opened = false;
        s.p.reopened = false;
        s.p.was_open = false;
        s.p.lost_at = None;
        s.p.seqs.clear();
        self.set_state(slot, State::Parked);
    }

    fn set_state(&mut self, slot: usize, state: State) {
        let p = &mut self.slots[slot].p;
        if p.state == State::Done && state != State::Done {
            self.done -= 1;
        } else if p.state != State::Done && state == State::Done {
            self.done += 1;
        }
        p.state = state;
    }

    fn open<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        if self.stopping {
            return self.set_state(slot, State::Done);
        }
        if self.slots[slot].p.was_open {
            if let Some(b) = &mut self.budget {
                if !b.try_take(now) {
                    let at = b.next_available(now);
                    net.timers.set(slot, TimerKind::Reopen, at);
                    return self.set_state(slot, State::Waiting);
                }
            }
        }
        match net.open(slot, now) {
            Opened::Connecting => self.set_state(slot, State::Connecting),
            Opened::Deferred(_) => self.set_state(slot, State::Waiting),
            Opened::Failed(class) => {
                self.set_state(slot, State::Connecting);
                self.lose(net, slot, ReconnectCause::Error, Some(class), now);
            }
        }
    }

    /// Write `p.out` and clear it; false when the connection failed (and was lost).
    fn write_out<T: Transport>(&mut self, net: &mut Net<T>, slot: usize) -> bool {
        let p = &mut self.slots[slot].p;
        if p.out.is_empty() {
            return true;
        }
        if net.link(slot) != Link::Up {
            p.out.clear();
            return true;
        }
        let res = net.send(slot, &p.out);
        p.out.clear();
        match res {
            Ok(()) => true,
            Err(e) => {
                let class = self.io_class(slot, &e);
                self.lose(
                    net,
                    slot,
                    ReconnectCause::Abnormal,
                    Some(class),
                    Instant::now(),
                );
                false
            }
        }
    }

    /// Rule 2: a socket error of an open connection is a reset or an abnormal close; before
    /// the upgrade it is classified like any socket error.
    fn io_class(&self, slot: usize, e: &std::io::Error) -> ErrorClass {
        let class = ErrorClass::from_io_error(e);
        match self.slots[slot].p.state {
            State::Open if class == ErrorClass::ResetMidResponse => ErrorClass::WsReset,
            State::Open => ErrorClass::WsAbnormalClose,
            _ => class,
        }
    }

    /// Drop the slot's connection and schedule its replacement (rule 2).
    fn lose<T: Transport>(
        &mut self,
        net: &mut Net<T>,
        slot: usize,
        cause: ReconnectCause,
        class: Option<ErrorClass>,
        now: Instant,
    ) {
        if let Some(c) = class {
            net.rec.error(c);
        }
        net.close(slot, Close::Fin);
        let s = &mut self.slots[slot];
        s.p.out.clear();
        s.p.decoder.reset();
        s.p.handshake = None;
        s.p.verdict = Verdict::Continue;
        s.p.just_opened = false;
        if s.p.state == State::Open {
            s.p.lost_at.get_or_insert(now);
        }
        if self.stopping {
            return self.set_state(slot, State::Done);
        }
        net.rec.counters.ws.reconnects[cause.index()] += 1;
        match s.backoff.next(&self.plan.session.backoff, &mut self.rng) {
            Some(wait) => {
                if let Some(v) = &self.verbose {
                    let why = match class {
                        Some(c) => format!("lost ({}, {})", cause.name(), c.name()),
                        None => format!("lost ({})", cause.name()),
                    };
                    v.reconnecting(
                        now,
                        self.first_conn + slot,
                        &why,
                        wait,
                        s.backoff.attempts(),
                    );
                }
                net.timers.set(slot, TimerKind::Reopen, now + wait);
                self.set_state(slot, State::Waiting);
            }
            None => {
                if let Some(v) = &self.verbose {
                    v.conn(
                        now,
                        self.first_conn + slot,
                        format_args!(
                            "lost ({}); retries exhausted after {} attempts, not reconnecting",
                            cause.name(),
                            s.backoff.attempts()
                        ),
                    );
                }
                net.rec.counters.ws.retries_exhausted += 1;
                self.set_state(slot, State::Done);
            }
        }
    }

    /// The 101 arrived in the read that just ended: start the open connection's timers, send
    /// what is owed, reset the backoff.
    fn opened<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        let plan = &self.plan;
        if let Some(st) = plan.session.stale_after {
            let last = self.slots[slot].p.live.last_data;
            net.timers.set(slot, TimerKind::Stale, last + st);
        }
        if plan.session.heartbeat != Heartbeat::Off {
            net.timers.set(
                slot,
                TimerKind::Heartbeat,
                now + plan.session.heartbeat_interval,
            );
        }
        net.timers.stop(slot, TimerKind::Request);
        let reopened = self.slots[slot].p.reopened;
        self.send_owed(net, slot, reopened);
        self.slots[slot].backoff.reset();
    }

    /// Echo mode (rule 6): release every message due by `now` on every slot, write what open
    /// connections got, and set the next due time `wake_at` gives the loop (or at once, when a
    /// slot is still behind after its burst).
    fn echo_pass<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) {
        let Some(e) = &self.echo else {
            return;
        };
        let due = pace::due_by(self.clock.mono_ns(now), e.rate);
        let mut behind = false;
        for slot in 0..self.slots.len() {
            let open = self.slots[slot].p.state == State::Open;
            self.echo_schedule(net, slot, due, open);
            behind |= self.slots[slot].echo_accounted < due;
            if open {
                self.write_out(net, slot);
            }
        }
        let Some(e) = &mut self.echo else {
            return;
        };
        e.next_at = if behind {
            now
        } else {
            self.clock.base + Duration::from_nanos(pace::offset_ns(due, e.rate))
        };
    }

    /// Echo mode: send what the schedule says is due, or owe it while disconnected (rule 3).
    /// Each message released here gets its send lag: how late the client's loop released it
    /// (`engine::pace`'s health metric), whether it is written at once or owed to a connection
    /// that is down, whose wait shows in `corrected`.
    fn echo_schedule<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, due: u64, open: bool) {
        let limit = self.plan.session.send_buffer as u64;
        let rate = self.plan.session.send_rate;
        let s = &mut self.slots[slot];
        let new = due.saturating_sub(s.echo_accounted);
        if new == 0 {
            return;
        }
        let first = s.echo_accounted;
        let n = if open { new.min(MAX_BURST) } else { new };
        let released = self.clock.mono_ns(Instant::now());
        for idx in first..first + n {
            let lag = released.saturating_sub(pace::offset_ns(idx, rate));
            net.rec.record(Phase::SendLag, lag);
        }
        s.echo_accounted += n;
        if open {
            for idx in first..first + n {
                self.encode_echo(&mut net.rec, slot, idx);
            }
        } else {
            if s.owed == 0 {
                s.owed_from = first;
            }
            let room = limit.saturating_sub(s.owed);
            let kept = new.min(room);
            s.owed += kept;
            net.rec.counters.ws.buffer_dropped += new - kept;
            // Due and never written (`pace` rule 3).
            net.rec.counters.unsent += new - kept;
        }
    }

    /// After (re)subscribing: the echo messages owed while the connection was down (or, for a
    /// slot's first connection, not yet open: those are no outage's and not counted as
    /// buffered).
    fn send_owed<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, reopened: bool) {
        let owed = std::mem::take(&mut self.slots[slot].owed);
        let from = self.slots[slot].owed_from;
        for idx in from..from + owed {
            self.encode_echo(&mut net.rec, slot, idx);
        }
        if reopened {
            net.rec.counters.ws.buffered_sent += owed;
        }
    }

    /// Echo message number `idx` of this slot's schedule:
    /// `{"t":<sent, ns since the run's start>,"i":<intended, same clock>,"n":<k>,"pad":"…"}`,
    /// padded to the size. The schedule is open-loop (`engine::pace`'s argument): message idx is
    /// due at idx / rate whatever the echoes do, so the echo's latency from "i" is the corrected
    /// one and from "t" the uncorrected one.
    fn encode_echo(&mut self, rec: &mut Recorder, slot: usize, idx: u64) {
        use std::io::Write as _;
        let t = self.clock.mono_ns(Instant::now());
        let i = pace::offset_ns(idx, self.plan.session.send_rate);
        let n = rec.counters.ws.messages_out;
        self.msg.clear();
        let _ = write!(self.msg, "{{\"t\":{t},\"i\":{i},\"n\":{n},\"pad\":\"");
        let size = self.plan.session.message_size;
        while self.msg.len() + 2 < size {
            self.msg.push(b'x');
        }
        self.msg.extend_from_slice(b"\"}");
        let mask = self.rng.random();
        ws::encode_frame(
            &mut self.slots[slot].p.out,
            OpCode::Text,
            true,
            &self.msg,
            mask,
        );
        rec.counters.ws.messages_out += 1;
        // The echo messages are echo mode's requests (`rate.sent_per_s`).
        rec.counters.requests += 1;
    }

    /// A heartbeat is due: encode it, note what is unanswered, arm the next one (and the pong
    /// deadline).
    fn heartbeat<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        let mask = self.rng.random();
        let plan = &self.plan;
        let s = &mut self.slots[slot];
        net.timers.set(
            slot,
            TimerKind::Heartbeat,
            now + plan.session.heartbeat_interval,
        );
        match &plan.session.heartbeat {
            Heartbeat::Off => {}
            Heartbeat::Ping => {
                let t = self.clock.mono_ns(Instant::now());
                ws::encode_frame(&mut s.p.out, OpCode::Ping, true, &t.to_le_bytes(), mask);
                net.rec.counters.ws.pings_sent += 1;
                s.p.live.ping_unanswered.get_or_insert(t);
                s.p.live.last_ping = t;
                if let Some(limit) = plan.session.pong_timeout {
                    net.timers.set_at_most(slot, TimerKind::Pong, now + limit);
                }
            }
            Heartbeat::Text(text) => {
                ws::encode_frame(&mut s.p.out, OpCode::Text, true, text.as_bytes(), mask);
                net.rec.counters.ws.messages_out += 1;
                net.rec.counters.ws.pings_sent += 1;
                s.p.live.text_unanswered = s.p.live.text_unanswered.saturating_add(1);
            }
        }
    }
}

impl<T: Transport> Session<T> for Ws {
    fn on_start(&mut self, net: &mut Net<T>, now: Instant) {
        // The clock (and with it the echo schedule) starts with the run, not when the worker
        // was built: the start barrier may have taken a while.
        self.clock = Clock::new();
        if let Some(e) = &mut self.echo {
            e.next_at = self.clock.base;
        }
        if !self.plan.stages.is_empty() {
            // Rule 9: every slot waits for the ramp.
            for slot in 0..self.slots.len() {
                self.set_state(slot, State::Parked);
            }
            self.active = 0;
            self.stager = Some(Stager::new(&self.plan.stages, now));
            return self.stage_tick(net, now);
        }
        for slot in 0..self.slots.len() {
            self.open(net, slot, now);
        }
    }

    fn finished(&self) -> bool {
        self.done == self.slots.len()
    }

    fn progress(&self, rec: &Recorder) -> u64 {
        rec.counters.ws.messages_in
    }

    /// TCP (and TLS) up: send the upgrade request (its deadline is the connect timeout).
    fn on_ready(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        let hs = Handshake::new(&mut self.rng);
        let req = match ws::encode_upgrade(
            &self.plan.target.path,
            &self.plan.target.authority,
            &hs.key,
            &self.plan.headers,
        ) {
            Ok(r) => r,
            // Validated before the run started; counted rather than trusted.
            Err(_) => {
                return self.lose(
                    net,
                    slot,
                    ReconnectCause::Error,
                    Some(ErrorClass::Protocol),
                    now,
                )
            }
        };
        let s = &mut self.slots[slot];
        s.p.handshake = Some(hs);
        s.p.state = State::Upgrading;
        s.p.t_upgrade = Instant::now();
        s.p.out.clear();
        s.p.out.extend_from_slice(&req);
        net.timers.set(
            slot,
            TimerKind::Request,
            s.p.t_upgrade + self.plan.connect_timeout,
        );
        self.write_out(net, slot);
    }

    fn on_data(
        &mut self,
        slot: usize,
        rb: &mut RecvBuf,
        now: Instant,
        rec: &mut Recorder,
    ) -> Result<(), Failure> {
        let p = &mut self.slots[slot].p;
        let mut rx = Rx {
            plan: &self.plan,
            rec,
            rng: &mut self.rng,
            clock: self.clock,
            ts_unit: &mut self.ts_unit,
            echo_path: &self.echo_path,
            intended_path: &self.intended_path,
            verbose: self.verbose.as_deref().map(|v| (v, self.first_conn + slot)),
        };
        on_bytes(p, &mut rx, rb, now);
        Ok(())
    }

    fn after_read(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        if std::mem::take(&mut self.slots[slot].p.just_opened) {
            self.opened(net, slot, now);
        }
        // Pongs, close replies, subscriptions: one write.
        if !self.write_out(net, slot) {
            return;
        }
        if let Verdict::Lose(cause, class) =
            std::mem::replace(&mut self.slots[slot].p.verdict, Verdict::Continue)
        {
            self.lose(net, slot, cause, class, now);
        }
    }

    fn on_lost(&mut self, net: &mut Net<T>, slot: usize, lost: Lost, now: Instant) {
        // What the read that ended the connection decided comes first: a close frame followed
        // by the FIN is the server's close, not an abnormal one.
        if let Verdict::Lose(cause, class) =
            std::mem::replace(&mut self.slots[slot].p.verdict, Verdict::Continue)
        {
            return self.lose(net, slot, cause, class, now);
        }
        let state = self.slots[slot].p.state;
        let (cause, class) = match lost {
            Lost::Connect(class) | Lost::Handshake(class) | Lost::Tls(class) => {
                (ReconnectCause::Error, class)
            }
            Lost::HandshakeReset => (ReconnectCause::Error, ErrorClass::TlsHandshake),
            Lost::Protocol(why) => {
                net.rec.reason(ErrorClass::WsProtocol, &why);
                (ReconnectCause::Error, ErrorClass::WsProtocol)
            }
            Lost::Eof => match state {
                State::Open => (ReconnectCause::Abnormal, ErrorClass::WsAbnormalClose),
                _ => (ReconnectCause::Error, ErrorClass::UpgradeRejected),
            },
            Lost::Io(e) => {
                let cause = if state == State::Open {
                    ReconnectCause::Abnormal
                } else {
                    ReconnectCause::Error
                };
                (cause, self.io_class(slot, &e))
            }
        };
        self.lose(net, slot, cause, Some(class), now);
    }

    fn on_timer(&mut self, net: &mut Net<T>, slot: usize, kind: TimerKind, now: Instant) {
        let state = self.slots[slot].p.state;
        match (kind, state) {
            (TimerKind::Reopen, State::Waiting) => self.open(net, slot, now),
            (TimerKind::Request, State::Upgrading) => self.lose(
                net,
                slot,
                ReconnectCause::Error,
                Some(ErrorClass::ReadTimeout),
                now,
            ),
            (TimerKind::Stale, State::Open) => {
                let (Some(st), last) = (
                    self.plan.session.stale_after,
                    self.slots[slot].p.live.last_data,
                ) else {
                    return;
                };
                if now - last >= st {
                    self.lose(
                        net,
                        slot,
                        ReconnectCause::Stale,
                        Some(ErrorClass::Stale),
                        now,
                    );
                } else {
                    net.timers.set(slot, TimerKind::Stale, last + st);
                }
            }
            (TimerKind::Pong, State::Open) => {
                let (Some(limit), Some(sent)) = (
                    self.plan.session.pong_timeout,
                    self.slots[slot].p.live.ping_unanswered,
                ) else {
                    return;
                };
                let due = self.clock.base + Duration::from_nanos(sent) + limit;
                if now >= due {
                    self.lose(
                        net,
                        slot,
                        ReconnectCause::PongTimeout,
                        Some(ErrorClass::PongTimeout),
                        now,
                    );
                } else {
                    net.timers.set(slot, TimerKind::Pong, due);
                }
            }
            (TimerKind::Heartbeat, State::Open) => {
                self.heartbeat(net, slot, now);
                self.write_out(net, slot);
            }
            _ => {}
        }
    }

    fn on_turn(&mut self, net: &mut Net<T>, now: Instant) {
        if self.echo.as_ref().is_some_and(|e| now >= e.next_at) {
            self.echo_pass(net, now);
        }
        self.stage_tick(net, now);
    }

    fn wake_at(&self) -> Option<Instant> {
        let echo = self.echo.as_ref().map(|e| e.next_at);
        let stage = self.stager.as_ref().map(Stager::next_check);
        match (echo, stage) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn render_subscriptions(plan: &WsPlan, conn: usize) -> Vec<Vec<u8>> {
    plan.session
        .subscriptions
        .iter()
        .map(|s| s.replace("{conn}", &conn.to_string()).into_bytes())
        .collect()
}

/// Everything that happens to bytes read from an upgrading or open connection. Frames to send
/// in answer go to `p.out`; what should happen to the connection goes to `p.verdict`.
fn on_bytes(p: &mut Proto, rx: &mut Rx<'_>, rb: &mut RecvBuf, now: Instant) {
    if p.verdict != Verdict::Continue {
        return;
    }
    if p.state == State::Upgrading {
        let accept = p
            .handshake
            .as_ref()
            .map(|h| h.accept.as_str())
            .unwrap_or("");
        let parsed = ws::parse_upgrade_response(rb.pending(), accept);
        if let (Some((v, conn)), false) = (rx.verbose, matches!(parsed, Ok(None))) {
            let end = match parsed {
                Ok(Some(n)) => n,
                _ => rb.pending().len(),
            };
            v.received(now, conn, p.shown, &rb.pending()[..end]);
            p.shown += 1;
        }
        match parsed {
            Ok(None) => return,
            Ok(Some(n)) => {
                rb.consume(n);
                upgraded(p, rx, now);
            }
            Err(e) => {
                // A non-101 answer is counted by its status class (the JSON `responses`).
                if let UpgradeError::Status(code) = e {
                    rx.rec.counters.status[StatusClass::of(code).index()] += 1;
                }
                rx.rec.reason(ErrorClass::UpgradeRejected, &e);
                p.verdict = Verdict::Lose(ReconnectCause::Error, Some(ErrorClass::UpgradeRejected));
                return;
            }
        }
    }
    if p.state != State::Open {
        return;
    }
    loop {
        let (n, progress) = match p.decoder.decode(rb.pending()) {
            Ok(r) => r,
            Err(e) => {
                rx.rec.reason(ErrorClass::WsProtocol, &e);
                let mask = rx.rng.random();
                ws::encode_close(&mut p.out, e.close_code(), "", mask);
                p.verdict = Verdict::Lose(ReconnectCause::Error, Some(ErrorClass::WsProtocol));
                return;
            }
        };
        match progress {
            Progress::Partial => {
                rb.consume(n);
                if n == 0 {
                    return;
                }
            }
            Progress::Frame(frame) => {
                if let (Some((v, conn)), Frame::Message { text, data }) = (rx.verbose, &frame) {
                    v.message(now, conn, u64::from(p.shown), data, !*text);
                    p.shown = p.shown.saturating_add(1);
                }
                let verdict = on_frame(
                    &mut p.out,
                    &mut p.seqs,
                    &mut p.live,
                    p.t_upgrade,
                    rx,
                    frame,
                    now,
                );
                rb.consume(n);
                if verdict != Verdict::Continue {
                    p.verdict = verdict;
                    return;
                }
            }
        }
    }
}

/// The 101 arrived: record the upgrade (and the outage it ends), subscribe.
fn upgraded(p: &mut Proto, rx: &mut Rx<'_>, now: Instant) {
    rx.rec
        .record(Phase::Upgrade, (now - p.t_upgrade).as_nanos() as u64);
    rx.rec.counters.ws.upgraded += 1;
    if let Some(lost) = p.lost_at {
        rx.rec.record(Phase::Outage, (now - lost).as_nanos() as u64);
    }
    for sub in &p.subs {
        let mask = rx.rng.random();
        ws::encode_frame(&mut p.out, OpCode::Text, true, sub, mask);
    }
    let k = p.subs.len() as u64;
    rx.rec.counters.ws.subscriptions_sent += k;
    rx.rec.counters.ws.messages_out += k;
    p.reopened = p.lost_at.is_some();
    if let Some(lost) = p.lost_at.take() {
        rx.rec.counters.ws.resubscribed += 1;
        rx.rec
            .record(Phase::Resubscribe, (now - lost).as_nanos() as u64);
    }
    p.state = State::Open;
    p.was_open = true;
    p.just_opened = true;
    p.live = Liveness::new(now);
}

/// One frame from an open connection.
#[allow(clippy::too_many_arguments)]
fn on_frame(
    out: &mut Vec<u8>,
    seqs: &mut Vec<(u64, SeqTracker)>,
    live: &mut Liveness,
    t_upgrade: Instant,
    rx: &mut Rx<'_>,
    frame: Frame<'_>,
    now: Instant,
) -> Verdict {
    let ws = &mut rx.rec.counters.ws;
    match frame {
        Frame::Message { text, data } => {
            ws.messages_in += 1;
            if let (true, Heartbeat::Text(sent)) = (text, &rx.plan.session.heartbeat) {
                if live.text_unanswered > 0 && is_heartbeat_reply(data, sent) {
                    // Rule 7: proves the connection, not the feed.
                    live.text_unanswered -= 1;
                    ws.pongs_received += 1;
                    return Verdict::Continue;
                }
            }
            live.last_data = now;
            if !live.first_seen {
                live.first_seen = true;
                rx.rec
                    .record(Phase::FirstMessage, (now - t_upgrade).as_nanos() as u64);
            }
            if text {
                on_message(seqs, rx, data, now);
            }
            Verdict::Continue
        }
        Frame::Ping(payload) => {
            // Rule 1: always answered.
            ws.pings_answered += 1;
            let mask = rx.rng.random();
            ws::encode_frame(out, OpCode::Pong, true, payload, mask);
            Verdict::Continue
        }
        Frame::Pong(payload) => {
            ws.pongs_received += 1;
            if rx.plan.session.mode == WsMode::Ping {
                // Rule 7: in ping mode the pongs are the data.
                live.last_data = now;
            }
            if let Ok(bytes) = <[u8; 8]>::try_from(payload) {
                let sent = u64::from_le_bytes(bytes);
                let rtt = rx.clock.mono_ns(now).saturating_sub(sent);
                rx.rec.record(Phase::Rtt, rtt);
                live.pong(sent);
            }
            Verdict::Continue
        }
        Frame::Close { code, .. } => {
            ws.close_code(code);
            let mask = rx.rng.random();
            ws::encode_close(out, code.unwrap_or(1000), "", mask);
            Verdict::Lose(ReconnectCause::ServerClose, None)
        }
    }
}

/// A text data message: echo round trip, one-way latency, sequence gaps.
fn on_message(seqs: &mut Vec<(u64, SeqTracker)>, rx: &mut Rx<'_>, data: &[u8], now: Instant) {
    let plan = rx.plan;
    if plan.session.mode == WsMode::Echo {
        let now_ns = rx.clock.mono_ns(now);
        if let Some(t) = jsonfield::find_u64(data, rx.echo_path) {
            rx.rec.record(Phase::Rtt, now_ns.saturating_sub(t));
        }
        if let Some(i) = jsonfield::find_u64(data, rx.intended_path) {
            rx.rec.record(Phase::Corrected, now_ns.saturating_sub(i));
        }
    }
    if let Some(path) = &plan.session.ts_field {
        match jsonfield::find_u64(data, path) {
            Some(v) => {
                let now_unix = rx.clock.unix_ns(now);
                let unit = match *rx.ts_unit {
                    Some(u) => Some(u),
                    None => {
                        let u = jsonfield::infer_unit(v, now_unix);
                        *rx.ts_unit = u;
                        u
                    }
                };
                match unit {
                    Some(u) => {
                        if rx.rec.ts_unit.is_none() {
                            rx.rec.ts_unit = Some(u.name());
                        }
                        let ts = u.to_unix_nanos(v);
                        if ts <= now_unix {
                            rx.rec.record(Phase::Latency, now_unix - ts);
                        } else {
                            rx.rec.counters.ws.ts_future += 1;
                        }
                    }
                    None => rx.rec.counters.ws.ts_missing += 1,
                }
            }
            None => rx.rec.counters.ws.ts_missing += 1,
        }
    }
    if let Some(path) = &plan.session.seq_field {
        if let Some(seq) = jsonfield::find_u64(data, path) {
            let key = match jsonfield::find(data, &plan.session.stream_field) {
                Some(Raw::Str(s)) | Some(Raw::Number(s)) => fnv1a(s),
                _ => 0,
            };
            let idx = match seqs.iter().position(|(k, _)| *k == key) {
                Some(i) => i,
                None => {
                    seqs.push((key, SeqTracker::default()));
                    seqs.len() - 1
                }
            };
            let ws = &mut rx.rec.counters.ws;
            match seqs[idx].1.observe(seq) {
                SeqEvent::Gap { missing } => {
                    ws.seq_gaps += 1;
                    ws.seq_missing += missing;
                }
                SeqEvent::Backwards => ws.seq_backwards += 1,
                SeqEvent::First | SeqEvent::InOrder | SeqEvent::Duplicate => {}
            }
        }
    }
}

/// FNV-1a: a stable, allocation-free key for a stream name.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    // The WebSocket session on the core against a scripted loopback server, with a fake clock
    // for every deadline: upgrade timeout, staleness, pong deadline, reconnect backoff.
    use crate::engine::core::{Connector, Driver, Plain};
    use crate::plan::{Scheme, Target, TlsPlan};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    fn plan(addr: SocketAddr) -> WsPlan {
        WsPlan {
            target: Target {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: addr.port(),
                path: "/ws".into(),
                authority: format!("127.0.0.1:{}", addr.port()),
                addrs: vec![addr],
                url: format!("ws://{addr}/ws"),
            },
            tls: TlsPlan::default(),
            headers: vec![],
            connections: 1,
            threads: 1,
            pinning: crate::plan::Pinning::None,
            duration: Duration::from_secs(60),
            warmup: Duration::ZERO,
            connect_timeout: Duration::from_secs(5),
            progress: crate::plan::Progress::new(crate::plan::ProgressWhen::Never),
            intervals: false,
            session: crate::plan::WsSession {
                subscriptions: vec![r#"{"op":"subscribe"}"#.into()],
                mode: WsMode::Stream,
                send_rate: 0.0,
                message_size: 64,
                ping_interval: Duration::from_secs(1),
                ts_field: None,
                ts_unit: None,
                seq_field: None,
                stream_field: FieldPath::parse("stream").unwrap(),
                utf8_check: true,
                max_message: 1 << 20,
                backoff: crate::plan::BackoffPolicy::default(),
                reconnect_budget: None,
                stale_after: None,
                heartbeat: Heartbeat::Off,
                heartbeat_interval: Duration::from_secs(20),
                pong_timeout: None,
                send_buffer: 100,
            },
            sources: vec![],
            busy_poll: None,
            verbose: false,
            stages: vec![],
            start_at: None,
        }
    }

    fn driver(plan: WsPlan) -> Driver<Plain, Ws> {
        let net = Net::<Plain>::new(
            mio::Poll::new().unwrap(),
            1,
            (),
            Connector::new(plan.target.addrs.clone(), Vec::new(), 0).unpaced(),
            plan.connect_timeout,
        );
        let ws = Ws::new(Arc::new(plan), 0, 0, None, &net);
        Driver::new(net, ws)
    }

    fn pump(d: &mut Driver<Plain, Ws>, done: impl Fn(&Driver<Plain, Ws>) -> bool) {
        let limit = Instant::now() + Duration::from_secs(30);
        while !done(d) {
            assert!(Instant::now() < limit, "condition not reached");
            d.poll_io(Some(Duration::from_millis(10))).unwrap();
        }
    }

    /// Accept, read the upgrade request, answer 101 with the right accept key.
    fn upgrade(l: &TcpListener, d: &mut Driver<Plain, Ws>) -> TcpStream {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        pump(d, |d| d.session.slots[0].p.state == State::Upgrading);
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("key");
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            ws::accept_for(key.trim())
        );
        s.write_all(answer.as_bytes()).unwrap();
        pump(d, |d| d.session.slots[0].p.state == State::Open);
        s
    }

    fn server_text(s: &mut TcpStream, text: &str) {
        let mut f = vec![0x81, text.len() as u8];
        f.extend_from_slice(text.as_bytes());
        s.write_all(&f).unwrap();
    }

    #[test]
    fn an_unanswered_upgrade_times_out_at_its_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(plan(l.local_addr().unwrap()));
        d.session.on_start(&mut d.net, Instant::now());
        let _s = l.accept().unwrap();
        pump(&mut d, |d| d.session.slots[0].p.state == State::Upgrading);
        let deadline = d.net.timers.get(0, TimerKind::Request).expect("armed");
        d.fire_timers(deadline - Duration::from_millis(1));
        assert_eq!(d.net.rec.counters.total_errors(), 0);
        d.fire_timers(deadline);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ReadTimeout.index()],
            1
        );
        assert_eq!(d.session.slots[0].p.state, State::Waiting);
        assert!(d.net.timers.get(0, TimerKind::Reopen).is_some());
    }

    #[test]
    fn staleness_follows_the_last_data_message_lazily() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = plan(l.local_addr().unwrap());
        p.session.stale_after = Some(Duration::from_secs(30));
        let mut d = driver(p);
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = upgrade(&l, &mut d);
        let first = d
            .net
            .timers
            .get(0, TimerKind::Stale)
            .expect("armed at open");
        server_text(&mut s, r#"{"stream":"a"}"#);
        pump(&mut d, |d| d.net.rec.counters.ws.messages_in == 1);
        let last = d.session.slots[0].p.live.last_data;
        // The armed deadline is the open's; firing it re-arms from the last message.
        d.fire_timers(first);
        assert_eq!(d.net.rec.counters.total_errors(), 0);
        assert_eq!(
            d.net.timers.get(0, TimerKind::Stale),
            Some(last + Duration::from_secs(30))
        );
        d.fire_timers(last + Duration::from_secs(30));
        assert_eq!(d.net.rec.counters.errors[ErrorClass::Stale.index()], 1);
        assert_eq!(
            d.net.rec.counters.ws.reconnects[ReconnectCause::Stale.index()],
            1
        );
    }

    #[test]
    fn a_reply_to_our_text_heartbeat_does_not_keep_a_stalled_feed_alive() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = plan(l.local_addr().unwrap());
        p.session.stale_after = Some(Duration::from_secs(30));
        p.session.heartbeat = Heartbeat::Text(r#"{"op":"ping"}"#.into());
        p.session.heartbeat_interval = Duration::from_secs(10);
        let mut d = driver(p);
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = upgrade(&l, &mut d);
        let opened = d.session.slots[0].p.live.last_data;
        let beat = d
            .net
            .timers
            .get(0, TimerKind::Heartbeat)
            .expect("heartbeat armed");
        d.fire_timers(beat);
        assert_eq!(d.net.rec.counters.ws.pings_sent, 1);
        server_text(&mut s, r#"{"op":"pong"}"#);
        pump(&mut d, |d| d.net.rec.counters.ws.pongs_received == 1);
        assert_eq!(d.session.slots[0].p.live.last_data, opened, "not data");
        d.fire_timers(opened + Duration::from_secs(30));
        assert_eq!(d.net.rec.counters.errors[ErrorClass::Stale.index()], 1);
    }

    #[test]
    fn an_unanswered_protocol_ping_is_a_pong_timeout_at_its_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = plan(l.local_addr().unwrap());
        p.session.heartbeat = Heartbeat::Ping;
        p.session.heartbeat_interval = Duration::from_secs(10);
        p.session.pong_timeout = Some(Duration::from_secs(10));
        let mut d = driver(p);
        d.session.on_start(&mut d.net, Instant::now());
        let _s = upgrade(&l, &mut d);
        let beat = d.net.timers.get(0, TimerKind::Heartbeat).expect("armed");
        d.fire_timers(beat);
        assert_eq!(d.net.rec.counters.ws.pings_sent, 1);
        let deadline = d.net.timers.get(0, TimerKind::Pong).expect("pong deadline");
        assert_eq!(deadline, beat + Duration::from_secs(10));
        // The next heartbeat (same instant as the deadline) sends another ping; the deadline
        // stays the first ping's.
        d.fire_timers(deadline);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::PongTimeout.index()],
            1
        );
    }

    #[test]
    fn a_reset_of_an_open_connection_is_ws_reset_and_a_fin_is_abnormal_close() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(plan(l.local_addr().unwrap()));
        d.session.on_start(&mut d.net, Instant::now());
        let s = upgrade(&l, &mut d);
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // RST
        pump(&mut d, |d| d.net.rec.counters.total_errors() == 1);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::WsReset.index()],
            1,
            "{:?}",
            d.net.rec.counters.errors
        );
        // The replacement, closed with a FIN this time.
        let at = d.net.timers.get(0, TimerKind::Reopen).expect("backoff");
        d.fire_timers(at);
        let s = upgrade(&l, &mut d);
        // A FIN (a close with our subscription still unread would be an RST).
        s.shutdown(std::net::Shutdown::Write).unwrap();
        pump(&mut d, |d| d.net.rec.counters.total_errors() == 2);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::WsAbnormalClose.index()],
            1
        );
        assert_eq!(
            d.net.rec.counters.ws.reconnects[ReconnectCause::Abnormal.index()],
            2
        );
    }

    #[test]
    fn a_close_frame_followed_by_the_fin_in_one_read_is_the_servers_close() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = driver(plan(l.local_addr().unwrap()));
        d.session.on_start(&mut d.net, Instant::now());
        let mut s = upgrade(&l, &mut d);
        s.write_all(&[0x88, 0x02, 0x03, 0xe9]).unwrap(); // close 1001
        drop(s);
        pump(&mut d, |d| d.session.slots[0].p.state == State::Waiting);
        assert_eq!(d.net.rec.counters.total_errors(), 0);
        assert_eq!(
            d.net.rec.counters.ws.reconnects[ReconnectCause::ServerClose.index()],
            1
        );
    }

    #[test]
    fn backoff_gives_up_after_max_retries() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let mut p = plan(addr);
        p.session.backoff.max_retries = Some(3);
        let mut d = driver(p);
        d.session.on_start(&mut d.net, Instant::now());
        for _ in 0..3 {
            pump(&mut d, |d| d.session.slots[0].p.state == State::Waiting);
            let at = d.net.timers.get(0, TimerKind::Reopen).expect("backoff");
            d.fire_timers(at);
        }
        pump(&mut d, |d| d.session.slots[0].p.state == State::Done);
        assert_eq!(d.net.rec.counters.ws.retries_exhausted, 1);
        assert!(Session::<Plain>::finished(&d.session));
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ConnectRefused.index()],
            4
        );
    }

    #[test]
    fn heartbeat_replies_are_told_apart_from_data() {
        let op = r#"{"op":"ping"}"#;
        for reply in [
            &br#"{"op":"pong"}"#[..],
            b"pong",
            b"PONG",
            br#"{"success":true,"ret_msg":"pong","conn_id":"x","op":"ping"}"#,
            // a server that echoes the heartbeat back
            br#"{"op":"ping"}"#,
        ] {
            assert!(
                is_heartbeat_reply(reply, op),
                "{}",
                String::from_utf8_lossy(reply)
            );
        }
        for data in [
            &br#"{"stream":"btcusdt","seq":7,"price":"1.0"}"#[..],
            b"",
            b"pon",
            br#"{"op":"ping "}"#,
        ] {
            assert!(
                !is_heartbeat_reply(data, op),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
        assert!(is_heartbeat_reply(b"ping", "ping"));
    }

    #[test]
    fn a_pong_answers_every_ping_sent_up_to_the_time_it_echoes() {
        let mut l = Liveness::new(Instant::now());
        l.pong(5);
        assert_eq!(
            l.ping_unanswered, None,
            "an unsolicited pong changes nothing"
        );
        // pings at 100, 200, 300
        for t in [100, 200, 300] {
            l.ping_unanswered.get_or_insert(t);
            l.last_ping = t;
        }
        assert_eq!(l.ping_unanswered, Some(100));
        l.pong(50);
        assert_eq!(l.ping_unanswered, Some(100), "older than every ping out");
        l.pong(100);
        assert_eq!(
            l.ping_unanswered,
            Some(300),
            "200 may be out still: the patient bound"
        );
        l.pong(300);
        assert_eq!(l.ping_unanswered, None);
    }
}
