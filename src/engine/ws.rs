//! The WebSocket worker: one thread, one `mio::Poll`, a fixed set of connection slots, each
//! living through connect → TLS → upgrade → subscribe → messages, and a reconnection manager
//! that replaces lost connections with backoff, a budget and automatic resubscription.
//!
//! It shares the HTTP worker's machinery — sockets ([`super::socket`]), the [`Transport`]
//! (plain or TLS, chosen once), the receive buffer and the coordinator — and differs in what a
//! connection does once open. Frames are encoded into a per-slot buffer (pongs, close replies,
//! subscriptions, echo messages) and written once per event, so one readable edge costs one
//! read and at most one write.
//!
//! Rules:
//! 1. Server pings are always answered, whatever the mode.
//! 2. A lost connection (close frame, EOF without one, error, staleness) is replaced after a
//!    jittered backoff (`engine::reconnect`); reconnects draw from the worker's share of the
//!    reconnect budget; after `max_retries` failed attempts in a row the slot gives up.
//! 3. Every subscription is sent again on the replacement, then the echo messages owed while the
//!    connection was down (bounded by `send_buffer`; the excess is counted as dropped).
//! 4. Sequence trackers live with the slot, not the connection, so a gap across a reconnect is
//!    seen; a new numbering on the new connection is counted as "backwards", not as a gap.
//! 5. Time: one monotonic clock read per socket read; unix time for one-way latency is derived
//!    from it through an offset taken once at start.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::event::Event;
use mio::{Events, Interest, Poll, Token, Waker};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::buf::RecvBuf;
use super::reconnect::{Backoff, Budget};
use super::socket;
use super::transport::{Failure, Transport};
use super::worker::{IntervalClock, Live, Output};
use crate::metrics::{ErrorClass, Phase, ReconnectCause, Recorder, StatusClass};
use crate::plan::{Heartbeat, WsMode, WsPlan};
use crate::proto::jsonfield::{self, FieldPath, Raw, TsUnit};
use crate::proto::seq::{SeqEvent, SeqTracker};
use crate::proto::ws::{self, Decoder, Frame, Handshake, OpCode, Progress, UpgradeError};
use crate::report::WorkerStats;

const WAKER: Token = Token(usize::MAX);
const SCRATCH: usize = 64 * 1024;
/// Most echo messages one slot sends in one timer pass (a catch-up burst is spread out).
const MAX_BURST: u64 = 256;

/// Everything one WebSocket worker needs.
pub struct WsSetup<C> {
    /// Worker index.
    pub id: usize,
    /// CPU to pin to.
    pub cpu: Option<usize>,
    /// Connections this worker drives.
    pub connections: usize,
    /// Global index of this worker's first connection (for `{conn}`).
    pub first_conn: usize,
    /// The run plan (read-only).
    pub plan: Arc<WsPlan>,
    /// This worker's share of the reconnect budget.
    pub budget: Option<(u32, Duration)>,
    /// Transport context.
    pub ctx: C,
    /// Set by the coordinator to end the run.
    pub stop: Arc<AtomicBool>,
    /// Live counters for the progress line.
    pub progress: Arc<Live>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No socket; (re)connect at this instant.
    Backoff(Instant),
    /// `connect()` called.
    Connecting,
    /// TLS handshake in progress.
    Handshaking,
    /// Upgrade request sent, waiting for the 101.
    Upgrading,
    /// Upgraded and subscribed.
    Open,
    /// Gave up (retries exhausted) or the run is ending.
    Done,
}

/// What the frame handler decided during one read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Keep going.
    Continue,
    /// Replace the connection for this cause (and count this error class, if any).
    Lose(ReconnectCause, Option<ErrorClass>),
}

/// The protocol side of a slot: everything the frame handler touches while the transport is
/// borrowed for reading.
struct Proto {
    state: State,
    handshake: Option<Handshake>,
    decoder: Decoder,
    /// Frames to write after this event (pongs, close replies, subscriptions, echo messages).
    out: Vec<u8>,
    /// Rendered subscription messages of this connection.
    subs: Vec<Vec<u8>>,
    /// Sequence trackers by stream key hash.
    seqs: Vec<(u64, SeqTracker)>,
    t_connect: Instant,
    t_established: Instant,
    t_upgrade: Instant,
    t_open: Instant,
    first_seen: bool,
    last_data: Instant,
    next_beat: Instant,
    /// The first moment of the current outage (a connection that had been open was lost).
    lost_at: Option<Instant>,
    /// This slot has been open before: the next open is a resubscription.
    was_open: bool,
    verdict: Verdict,
    just_opened: bool,
}

struct Slot<T> {
    gen: u32,
    sock: Option<mio::net::TcpStream>,
    transport: Option<T>,
    rb: RecvBuf,
    pending: Vec<u8>,
    addr_idx: usize,
    backoff: Backoff,
    /// Echo schedule: messages accounted for (sent or owed) since the worker started.
    echo_accounted: u64,
    /// Echo messages owed while disconnected.
    owed: u64,
    /// Schedule index of the first message owed (the owed ones are consecutive).
    owed_from: u64,
    p: Proto,
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
}

/// A WebSocket worker, generic over the transport.
pub struct WsWorker<T: Transport> {
    setup: WsSetup<T::Ctx>,
    poll: Poll,
    slots: Vec<Slot<T>>,
    rec: Recorder,
    rng: StdRng,
    clock: Clock,
    scratch: Box<[u8]>,
    msg: Vec<u8>,
    budget: Option<Budget>,
    ts_unit: Option<TsUnit>,
    echo_path: FieldPath,
    intended_path: FieldPath,
    open: u64,
    stopping: bool,
    max_stall: Duration,
    tick: Duration,
    /// Keeps a connect storm from starving the loop (`socket::ConnectPacer`).
    pacer: socket::ConnectPacer,
    /// Earliest moment a slot in backoff (or deferred by the connect pacer) may open.
    next_open: Option<Instant>,
    /// Every slot gave up (checked on the timer pass, not per event).
    all_done: bool,
}

fn render_subscriptions(plan: &WsPlan, conn: usize) -> Vec<Vec<u8>> {
    plan.subscriptions
        .iter()
        .map(|s| s.replace("{conn}", &conn.to_string()).into_bytes())
        .collect()
}

impl<T: Transport> WsWorker<T> {
    /// Build the worker and its waker.
    pub fn new(setup: WsSetup<T::Ctx>) -> std::io::Result<(WsWorker<T>, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let now = Instant::now();
        let plan = setup.plan.clone();
        let slots = (0..setup.connections)
            .map(|i| Slot {
                gen: 0,
                sock: None,
                transport: None,
                rb: RecvBuf::new(),
                // Only used when the socket refuses part of a write: grows on first need.
                pending: Vec::new(),
                addr_idx: 0,
                backoff: Backoff::default(),
                echo_accounted: 0,
                owed: 0,
                owed_from: 0,
                p: Proto {
                    state: State::Backoff(now),
                    handshake: None,
                    decoder: Decoder::new(plan.max_message, plan.utf8_check),
                    out: Vec::with_capacity(512),
                    subs: render_subscriptions(&plan, setup.first_conn + i),
                    seqs: Vec::new(),
                    t_connect: now,
                    t_established: now,
                    t_upgrade: now,
                    t_open: now,
                    first_seen: false,
                    last_data: now,
                    next_beat: now,
                    lost_at: None,
                    was_open: false,
                    verdict: Verdict::Continue,
                    just_opened: false,
                },
            })
            .collect();
        // The timer pass runs often enough for the finest schedule asked for.
        let mut tick = Duration::from_millis(20);
        if plan.mode == WsMode::Echo && plan.send_rate > 0.0 {
            tick = tick.min(Duration::from_secs_f64(1.0 / plan.send_rate / 2.0));
        }
        if plan.heartbeat != Heartbeat::Off {
            tick = tick.min(plan.heartbeat_interval / 4);
        }
        if let Some(s) = plan.stale_after {
            tick = tick.min(s / 4);
        }
        let tick = tick.max(Duration::from_millis(1));
        let budget = setup.budget.map(|(k, per)| Budget::new(k.max(1), per, now));
        Ok((
            WsWorker {
                setup,
                poll,
                slots,
                rec: Recorder::new(),
                rng: StdRng::from_rng(&mut rand::rng()),
                clock: Clock::new(),
                scratch: vec![0; SCRATCH].into_boxed_slice(),
                msg: Vec::with_capacity(plan.message_size.max(64) + 64),
                budget,
                ts_unit: plan.ts_unit,
                echo_path: FieldPath::parse("t").expect("static path"),
                intended_path: FieldPath::parse("i").expect("static path"),
                open: 0,
                stopping: false,
                max_stall: Duration::ZERO,
                tick,
                next_open: None,
                all_done: false,
                pacer: socket::ConnectPacer::new(now),
            },
            waker,
        ))
    }

    /// Run until the coordinator says stop, or every slot gave up.
    pub fn run(mut self) -> Output {
        let started = Instant::now();
        let warm_end = started + self.setup.plan.warmup;
        let mut warm = self.setup.plan.warmup.is_zero();
        let mut events = Events::with_capacity(1024);
        for slot in 0..self.slots.len() {
            self.open(slot);
        }
        let mut next_tick = started + self.tick;
        let mut intervals = IntervalClock::new(&self.setup.progress, &mut self.rec, warm_end);
        loop {
            let now = Instant::now();
            let mut wake = next_tick;
            if !warm {
                wake = wake.min(warm_end);
            }
            if let Some(c) = intervals.next() {
                wake = wake.min(c);
            }
            if let Some(o) = self.next_open {
                wake = wake.min(o);
            }
            if let Err(e) = self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(now)))
            {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
            let loop_now = Instant::now();
            for ev in events.iter() {
                self.on_event(ev);
            }
            if self.setup.stop.load(Ordering::Relaxed) {
                break;
            }
            let now = Instant::now();
            if !warm && now >= warm_end {
                warm = true;
                self.rec.reset();
                intervals.restart(now);
            }
            if warm {
                intervals.tick(now, false, &mut self.rec, &self.setup.progress);
            }
            if now >= next_tick || self.next_open.is_some_and(|o| now >= o) {
                self.timers(now);
                next_tick = now + self.tick;
            }
            self.publish();
            if self.all_done {
                break;
            }
            self.max_stall = self.max_stall.max(Instant::now() - loop_now);
        }
        self.stopping = true;
        self.say_goodbye();
        if warm {
            intervals.tick(Instant::now(), true, &mut self.rec, &self.setup.progress);
        }
        self.publish();
        self.setup.progress.done.store(true, Ordering::Release);
        let (user, sys) = crate::sys::thread_cpu_time();
        Output {
            stats: WorkerStats {
                cpu: self.setup.cpu,
                connections: self.setup.connections,
                cpu_user_ns: user.as_nanos() as u64,
                cpu_sys_ns: sys.as_nanos() as u64,
                max_stall_ns: self.max_stall.as_nanos() as u64,
            },
            recorder: std::mem::take(&mut self.rec),
            windows: Vec::new(),
            finished_at: Instant::now(),
        }
    }

    fn publish(&self) {
        let p = &self.setup.progress;
        let c = &self.rec.counters;
        p.responses.store(c.ws.messages_in, Ordering::Relaxed);
        p.errors.store(c.total_errors(), Ordering::Relaxed);
        p.open.store(self.open, Ordering::Relaxed);
    }

    /// A normal close (1000) on every open connection as the run ends; best effort, one write.
    fn say_goodbye(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].p.state == State::Open {
                let mask = self.rng.random();
                let s = &mut self.slots[slot];
                s.p.out.clear();
                ws::encode_close(&mut s.p.out, 1000, "", mask);
                self.write_out(slot);
            }
        }
    }

    #[inline]
    fn token(slot: usize, gen: u32) -> Token {
        Token(slot | (gen as usize) << 32)
    }

    fn open(&mut self, slot: usize) {
        if self.stopping {
            self.slots[slot].p.state = State::Done;
            return;
        }
        let now = Instant::now();
        if let Some(at) = self.pacer.admit(now) {
            self.slots[slot].p.state = State::Backoff(at);
            self.next_open = Some(self.next_open.map_or(at, |o| o.min(at)));
            return;
        }
        if self.slots[slot].p.was_open {
            if let Some(b) = &mut self.budget {
                if !b.try_take(now) {
                    let at = b.next_available(now);
                    self.slots[slot].p.state = State::Backoff(at);
                    self.next_open = Some(self.next_open.map_or(at, |o| o.min(at)));
                    return;
                }
            }
        }
        let addrs = &self.setup.plan.target.addrs;
        let s = &mut self.slots[slot];
        let addr: SocketAddr = addrs[s.addr_idx % addrs.len()];
        let source = socket::source_for(&self.setup.plan.sources, self.setup.first_conn + slot);
        s.p.t_connect = now;
        self.rec.counters.connections_opened += 1;
        let res = socket::connect_from(addr, source);
        self.pacer.done(Instant::now());
        let mut sock = match res {
            Ok(sock) => sock,
            Err(e) => {
                return self.lose(
                    slot,
                    ReconnectCause::Error,
                    Some(ErrorClass::from_connect_error(&e)),
                )
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Self::token(slot, s.gen),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.lose(
                slot,
                ReconnectCause::Error,
                Some(ErrorClass::from_connect_error(&e)),
            );
        }
        let s = &mut self.slots[slot];
        s.sock = Some(sock);
        s.p.state = State::Connecting;
        self.open += 1;
    }

    fn on_event(&mut self, ev: &Event) {
        if ev.token() == WAKER {
            return;
        }
        let slot = ev.token().0 & 0xFFFF_FFFF;
        let gen = (ev.token().0 >> 32) as u32;
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        if s.gen != gen {
            return;
        }
        match s.p.state {
            State::Connecting => {
                if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                    self.on_connect_event(slot);
                }
            }
            State::Handshaking | State::Upgrading | State::Open => {
                if ev.is_writable() && !self.flush(slot) {
                    return;
                }
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    self.on_readable(slot);
                }
            }
            State::Backoff(_) | State::Done => {}
        }
    }

    fn on_connect_event(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let sock = s.sock.as_ref().expect("connecting slot has a socket");
        match socket::is_connected(sock) {
            Ok(false) => {}
            Ok(true) => {
                let now = Instant::now();
                s.p.t_established = now;
                self.rec
                    .record(Phase::Connect, (now - s.p.t_connect).as_nanos() as u64);
                match T::start(&self.setup.ctx) {
                    Ok(t) => {
                        let handshaking = t.is_handshaking();
                        s.transport = Some(t);
                        if handshaking {
                            s.p.state = State::Handshaking;
                            self.flush(slot);
                        } else {
                            self.send_upgrade(slot);
                        }
                    }
                    Err(f) => self.on_failure(slot, f),
                }
            }
            Err(e) => {
                if matches!(
                    ErrorClass::from_connect_error(&e),
                    ErrorClass::ConnectRefused | ErrorClass::ConnectTimeout
                ) {
                    let n = self.setup.plan.target.addrs.len();
                    s.addr_idx = (s.addr_idx + 1) % n;
                }
                self.lose(
                    slot,
                    ReconnectCause::Error,
                    Some(ErrorClass::from_connect_error(&e)),
                )
            }
        }
    }

    /// TCP (and TLS) ready: count the handshake and send the upgrade request.
    fn send_upgrade(&mut self, slot: usize) {
        let plan = self.setup.plan.clone();
        let s = &mut self.slots[slot];
        if let Some(t) = &s.transport {
            super::transport::record_handshake(&mut self.rec, t);
        }
        self.rec.counters.connections_established += 1;
        let hs = Handshake::new(&mut self.rng);
        let req = match ws::encode_upgrade(
            &plan.target.path,
            &plan.target.authority,
            &hs.key,
            &plan.headers,
        ) {
            Ok(r) => r,
            Err(_) => return self.lose(slot, ReconnectCause::Error, Some(ErrorClass::Protocol)),
        };
        s.p.handshake = Some(hs);
        s.p.state = State::Upgrading;
        s.p.t_upgrade = Instant::now();
        s.p.out.clear();
        s.p.out.extend_from_slice(&req);
        self.write_out(slot);
    }

    /// Write `p.out` and clear it; false when the connection failed.
    fn write_out(&mut self, slot: usize) -> bool {
        let s = &mut self.slots[slot];
        if s.p.out.is_empty() {
            return true;
        }
        let (Some(sock), Some(t)) = (s.sock.as_mut(), s.transport.as_mut()) else {
            s.p.out.clear();
            return true;
        };
        let res = t.send(
            sock,
            &s.p.out,
            &mut s.pending,
            &mut self.rec.counters.bytes_out,
        );
        s.p.out.clear();
        match res {
            Ok(()) => true,
            Err(e) => {
                let class = ErrorClass::from_io_error(&e);
                self.lose(slot, ReconnectCause::Abnormal, Some(class));
                false
            }
        }
    }

    fn flush(&mut self, slot: usize) -> bool {
        let s = &mut self.slots[slot];
        let (Some(sock), Some(t)) = (s.sock.as_mut(), s.transport.as_mut()) else {
            return true;
        };
        match t.flush(sock, &mut s.pending, &mut self.rec.counters.bytes_out) {
            Ok(_) => true,
            Err(e) => {
                let class = if s.p.state == State::Handshaking {
                    ErrorClass::TlsHandshake
                } else {
                    ErrorClass::from_io_error(&e)
                };
                self.lose(slot, ReconnectCause::Error, Some(class));
                false
            }
        }
    }

    fn on_readable(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        let (Some(sock), Some(t)) = (s.sock.as_mut(), s.transport.as_mut()) else {
            return;
        };
        let mut bytes_in = 0;
        let p = &mut s.p;
        p.verdict = Verdict::Continue;
        p.just_opened = false;
        let mut rx = Rx {
            plan: &self.setup.plan,
            rec: &mut self.rec,
            rng: &mut self.rng,
            clock: self.clock,
            ts_unit: &mut self.ts_unit,
            echo_path: &self.echo_path,
            intended_path: &self.intended_path,
        };
        let res = t.recv(
            sock,
            &mut self.scratch,
            &mut s.rb,
            &mut bytes_in,
            |rb, now| {
                on_bytes(p, &mut rx, rb, now);
                Ok(())
            },
        );
        self.rec.counters.bytes_in += bytes_in;
        let recv = match res {
            Ok(r) => r,
            Err(f) => return self.on_failure(slot, f),
        };
        if let Some(done) = recv.handshake_done {
            let s = &mut self.slots[slot];
            self.rec
                .record(Phase::Tls, (done - s.p.t_established).as_nanos() as u64);
            self.send_upgrade(slot);
            return;
        }
        if self.slots[slot].p.just_opened {
            self.send_owed(slot);
            self.slots[slot].backoff.reset();
        }
        // Pongs, close replies, subscriptions: one write.
        if !self.write_out(slot) {
            return;
        }
        match self.slots[slot].p.verdict {
            Verdict::Lose(cause, class) => self.lose(slot, cause, class),
            Verdict::Continue if recv.eof => {
                let class = match self.slots[slot].p.state {
                    State::Open => ErrorClass::WsAbnormalClose,
                    State::Handshaking => ErrorClass::TlsHandshake,
                    _ => ErrorClass::UpgradeRejected,
                };
                self.lose(slot, ReconnectCause::Abnormal, Some(class))
            }
            Verdict::Continue => {}
        }
    }

    fn on_failure(&mut self, slot: usize, f: Failure) {
        let state = self.slots[slot].p.state;
        let class = match f {
            Failure::Tls(class) => class,
            Failure::Protocol(why) => {
                self.rec.reason(ErrorClass::WsProtocol, &why);
                ErrorClass::WsProtocol
            }
            Failure::Io(e) => match state {
                State::Handshaking => ErrorClass::TlsHandshake,
                State::Open => ErrorClass::WsAbnormalClose,
                _ => ErrorClass::from_io_error(&e),
            },
        };
        let cause = if state == State::Open {
            ReconnectCause::Abnormal
        } else {
            ReconnectCause::Error
        };
        self.lose(slot, cause, Some(class));
    }

    /// Drop the slot's connection and schedule its replacement (rule 2).
    fn lose(&mut self, slot: usize, cause: ReconnectCause, class: Option<ErrorClass>) {
        let now = Instant::now();
        if let Some(c) = class {
            self.rec.error(c);
        }
        let s = &mut self.slots[slot];
        if s.sock.take().is_some() {
            self.open -= 1;
        }
        s.transport = None;
        s.rb.clear();
        s.pending.clear();
        s.p.out.clear();
        s.p.decoder.reset();
        s.p.handshake = None;
        s.gen = s.gen.wrapping_add(1);
        if s.p.state == State::Open {
            s.p.lost_at.get_or_insert(now);
        }
        if self.stopping {
            s.p.state = State::Done;
            return;
        }
        self.rec.counters.ws.reconnects[cause.index()] += 1;
        match s.backoff.next(&self.setup.plan.backoff, &mut self.rng) {
            Some(wait) => {
                s.p.state = State::Backoff(now + wait);
                let at = now + wait;
                self.next_open = Some(self.next_open.map_or(at, |o| o.min(at)));
            }
            None => {
                self.rec.counters.ws.retries_exhausted += 1;
                s.p.state = State::Done;
            }
        }
    }

    /// Timeouts, staleness, heartbeats, echo sends and due reconnects.
    fn timers(&mut self, now: Instant) {
        let plan = self.setup.plan.clone();
        let echo_due = if plan.mode == WsMode::Echo && plan.send_rate > 0.0 {
            Some(((now - self.clock.base).as_secs_f64() * plan.send_rate) as u64)
        } else {
            None
        };
        // Rebuilt by this pass: open() and lose() below add what they schedule.
        self.next_open = None;
        let mut done = 0;
        for slot in 0..self.slots.len() {
            let state = self.slots[slot].p.state;
            if let Some(due) = echo_due {
                self.echo_schedule(slot, due, state == State::Open);
            }
            let s = &self.slots[slot];
            match state {
                State::Backoff(at) if at <= now => self.open(slot),
                State::Backoff(at) => {
                    self.next_open = Some(self.next_open.map_or(at, |o| o.min(at)));
                }
                State::Done => done += 1,
                State::Connecting if now - s.p.t_connect >= plan.connect_timeout => self.lose(
                    slot,
                    ReconnectCause::Error,
                    Some(ErrorClass::ConnectTimeout),
                ),
                State::Handshaking if now - s.p.t_established >= plan.connect_timeout => {
                    self.lose(slot, ReconnectCause::Error, Some(ErrorClass::TlsHandshake))
                }
                State::Upgrading if now - s.p.t_upgrade >= plan.connect_timeout => {
                    self.lose(slot, ReconnectCause::Error, Some(ErrorClass::ReadTimeout))
                }
                State::Open => {
                    if plan.stale_after.is_some_and(|st| now - s.p.last_data >= st) {
                        self.lose(slot, ReconnectCause::Stale, Some(ErrorClass::Stale));
                        continue;
                    }
                    if plan.heartbeat != Heartbeat::Off && now >= s.p.next_beat {
                        self.heartbeat(slot, now);
                    }
                    self.write_out(slot);
                }
                _ => {}
            }
        }
        self.all_done = done == self.slots.len();
    }

    /// Echo mode: send what the schedule says is due, or owe it while disconnected (rule 3).
    fn echo_schedule(&mut self, slot: usize, due: u64, open: bool) {
        let limit = self.setup.plan.send_buffer as u64;
        let s = &mut self.slots[slot];
        let new = due.saturating_sub(s.echo_accounted);
        if new == 0 {
            return;
        }
        if open {
            let n = new.min(MAX_BURST);
            let first = s.echo_accounted;
            s.echo_accounted += n;
            for idx in first..first + n {
                self.encode_echo(slot, idx);
            }
        } else {
            if s.owed == 0 {
                s.owed_from = s.echo_accounted;
            }
            s.echo_accounted += new;
            let room = limit.saturating_sub(s.owed);
            let kept = new.min(room);
            s.owed += kept;
            self.rec.counters.ws.buffer_dropped += new - kept;
        }
    }

    /// After (re)subscribing: the echo messages owed while the connection was down.
    fn send_owed(&mut self, slot: usize) {
        let owed = std::mem::take(&mut self.slots[slot].owed);
        let from = self.slots[slot].owed_from;
        for idx in from..from + owed {
            self.encode_echo(slot, idx);
        }
        self.rec.counters.ws.buffered_sent += owed;
    }

    /// Echo message number `idx` of this slot's schedule:
    /// `{"t":<sent, ns since worker start>,"i":<intended, same clock>,"n":<k>,"pad":"…"}`,
    /// padded to the size. The schedule is open-loop (`engine::pace`'s argument): message idx is
    /// due at idx / rate whatever the echoes do, so the echo's latency from "i" is the corrected
    /// one and from "t" the uncorrected one.
    fn encode_echo(&mut self, slot: usize, idx: u64) {
        use std::io::Write as _;
        let t = self.clock.mono_ns(Instant::now());
        let i = (idx as f64 * 1e9 / self.setup.plan.send_rate) as u64;
        self.rec.record(Phase::SendLag, t.saturating_sub(i));
        let n = self.rec.counters.ws.messages_out;
        self.msg.clear();
        let _ = write!(self.msg, "{{\"t\":{t},\"i\":{i},\"n\":{n},\"pad\":\"");
        let size = self.setup.plan.message_size;
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
        self.rec.counters.ws.messages_out += 1;
    }

    fn heartbeat(&mut self, slot: usize, now: Instant) {
        let plan = self.setup.plan.clone();
        let mask = self.rng.random();
        let s = &mut self.slots[slot];
        s.p.next_beat = now + plan.heartbeat_interval;
        match &plan.heartbeat {
            Heartbeat::Off => {}
            Heartbeat::Ping => {
                let t = self.clock.mono_ns(Instant::now()).to_le_bytes();
                ws::encode_frame(&mut s.p.out, OpCode::Ping, true, &t, mask);
                self.rec.counters.ws.pings_sent += 1;
            }
            Heartbeat::Text(text) => {
                ws::encode_frame(&mut s.p.out, OpCode::Text, true, text.as_bytes(), mask);
                self.rec.counters.ws.messages_out += 1;
            }
        }
    }
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
        match ws::parse_upgrade_response(rb.pending(), accept) {
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
                let verdict = on_frame(
                    &mut p.out,
                    &mut p.seqs,
                    &mut p.first_seen,
                    &mut p.last_data,
                    p.t_open,
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
    if let Some(lost) = p.lost_at.take() {
        rx.rec.counters.ws.resubscribed += 1;
        rx.rec
            .record(Phase::Resubscribe, (now - lost).as_nanos() as u64);
    }
    p.state = State::Open;
    p.was_open = true;
    p.just_opened = true;
    p.t_open = now;
    p.first_seen = false;
    p.last_data = now;
    p.next_beat = now + rx.plan.heartbeat_interval;
}

/// One frame from an open connection.
#[allow(clippy::too_many_arguments)]
fn on_frame(
    out: &mut Vec<u8>,
    seqs: &mut Vec<(u64, SeqTracker)>,
    first_seen: &mut bool,
    last_data: &mut Instant,
    t_open: Instant,
    rx: &mut Rx<'_>,
    frame: Frame<'_>,
    now: Instant,
) -> Verdict {
    let ws = &mut rx.rec.counters.ws;
    match frame {
        Frame::Message { text, data } => {
            ws.messages_in += 1;
            *last_data = now;
            if !*first_seen {
                *first_seen = true;
                rx.rec
                    .record(Phase::FirstMessage, (now - t_open).as_nanos() as u64);
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
            if rx.plan.mode == WsMode::Ping {
                *last_data = now;
            }
            if let Ok(bytes) = <[u8; 8]>::try_from(payload) {
                let sent = u64::from_le_bytes(bytes);
                let rtt = rx.clock.mono_ns(now).saturating_sub(sent);
                rx.rec.record(Phase::Rtt, rtt);
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
    if plan.mode == WsMode::Echo {
        let now_ns = rx.clock.mono_ns(now);
        if let Some(t) = jsonfield::find_u64(data, rx.echo_path) {
            rx.rec.record(Phase::Rtt, now_ns.saturating_sub(t));
        }
        if let Some(i) = jsonfield::find_u64(data, rx.intended_path) {
            rx.rec.record(Phase::Corrected, now_ns.saturating_sub(i));
        }
    }
    if let Some(path) = &plan.ts_field {
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
    if let Some(path) = &plan.seq_field {
        if let Some(seq) = jsonfield::find_u64(data, path) {
            let key = match jsonfield::find(data, &plan.stream_field) {
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
