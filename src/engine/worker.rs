//! One worker: a thread with its own `mio::Poll`, its own connections and its own Recorder.
//!
//! Each connection lives in a fixed slot; a slot's socket is replaced when the server closes it
//! or it fails, and the slot's generation is bumped so stale events for the old socket (still in
//! the current `Events` batch) are ignored. Tokens are `slot | generation << 32`.
//!
//! Hot-path rules:
//! 1. Sockets are registered once, edge-triggered, READABLE | WRITABLE; no `epoll_ctl` per
//!    request. Closing the fd removes it from epoll, so there is no deregister either.
//! 2. The next request is written right after a response completes, in the same event.
//! 3. Nothing allocates per request: the request bytes are pre-serialized (K copies for
//!    pipelining), the in-flight queue and buffers are sized at start.
//! 4. Clock reads only where a metric is defined: before each request write, after each socket
//!    read, at connect and handshake completion, plus one per loop iteration for timers.
//!
//! Timers (connect/request timeouts and reconnect backoff) are a periodic sweep over the slots
//! (every [`SWEEP_EVERY`]) plus an exact wake-up for the earliest backoff. Later load shapes
//! (constant rate) add their own schedule beside it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::event::Event;
use mio::{Events, Interest, Poll, Token, Waker};

use super::buf::RecvBuf;
use super::pace::{Arrival, Schedule, Timer};
use super::socket;
use super::transport::{Failure, Refusal, Transport};
use crate::metrics::{ErrorClass, Phase, Recorder};
use crate::proto::http1::{Progress, ProtoError, ResponseDecoder};
use crate::report::WorkerStats;

/// How often timeouts are checked.
pub const SWEEP_EVERY: Duration = Duration::from_millis(20);
/// Longest a failing slot waits before it reconnects.
const MAX_BACKOFF: Duration = Duration::from_millis(100);
/// Token of the waker (never a slot: slots are < 2^32 with a generation above).
const WAKER: Token = Token(usize::MAX);
/// Token of the pacing timer.
const PACER: Token = Token(usize::MAX - 1);
/// Most due requests kept waiting for a free connection; past it they are counted as unsent.
const MAX_BACKLOG: usize = 1 << 20;
/// Per-worker socket read scratch for TLS records.
const SCRATCH: usize = 64 * 1024;

/// State shared between one worker and the coordinator: written by the worker with relaxed
/// stores once per loop iteration, read by the progress line. Cache-line aligned so workers
/// never share a line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Live {
    /// Responses fully framed in the measured window.
    pub responses: AtomicU64,
    /// Failures in the measured window.
    pub errors: AtomicU64,
    /// Connections currently open.
    pub open: AtomicU64,
    /// The worker has sent its whole `-n` share and seen every answer.
    pub done: AtomicBool,
    /// One-second interval histograms (`--hlog`), pushed by the worker once a second and read
    /// by the coordinator after the join; None when interval logging is off.
    pub intervals: Option<std::sync::Mutex<Vec<IntervalPart>>>,
}

/// One worker's share of interval `index` (seconds since the measured window began).
pub type IntervalPart = (u32, Vec<(Phase, hdrhistogram::Histogram<u64>)>);

/// Cuts the worker's interval histograms once a second (only when `--hlog` asked for them).
#[derive(Debug)]
pub struct IntervalClock {
    next: Option<Instant>,
    index: u32,
}

impl IntervalClock {
    /// Off unless the live cell collects intervals; else the first cut is a second after `from`.
    pub fn new(live: &Live, rec: &mut Recorder, from: Instant) -> IntervalClock {
        let next = live.intervals.as_ref().map(|_| {
            rec.enable_intervals();
            from + Duration::from_secs(1)
        });
        IntervalClock { next, index: 0 }
    }

    /// When the next cut is due, if interval logging is on.
    pub fn next(&self) -> Option<Instant> {
        self.next
    }

    /// Restart the intervals (the warm-up ended at `from`).
    pub fn restart(&mut self, from: Instant) {
        if self.next.is_some() {
            self.next = Some(from + Duration::from_secs(1));
            self.index = 0;
        }
    }

    /// Cut an interval if one is due (or, with `last`, whatever is left).
    pub fn tick(&mut self, now: Instant, last: bool, rec: &mut Recorder, live: &Live) {
        let (Some(next), Some(store)) = (self.next, &live.intervals) else {
            return;
        };
        if now < next && !last {
            return;
        }
        let part = rec.cut_interval();
        if !part.is_empty() {
            store
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((self.index, part));
        }
        self.index += 1;
        self.next = Some(next + Duration::from_secs(1));
    }
}

/// Everything a worker needs, prepared by the coordinator.
pub struct Setup<C> {
    /// Worker index.
    pub id: usize,
    /// CPU to pin to.
    pub cpu: Option<usize>,
    /// Connections this worker drives.
    pub connections: usize,
    /// Requests this worker must send (`-n`), or None.
    pub budget: Option<u64>,
    /// Where to connect: the resolved addresses, in resolver order. A slot whose connect is
    /// refused or times out moves on to the next one (so `localhost` works whichever of
    /// 127.0.0.1 and ::1 the server listens on).
    pub addrs: Vec<SocketAddr>,
    /// Local source addresses (`--source`), round-robin by global connection index; empty:
    /// no bind.
    pub sources: Vec<std::net::IpAddr>,
    /// Global index of this worker's first connection (picks its sources).
    pub first_conn: usize,
    /// One serialized request.
    pub request: Arc<[u8]>,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// The request method is HEAD (responses have no body).
    pub head_request: bool,
    /// Warm-up excluded from results.
    pub warmup: Duration,
    /// Request timeout.
    pub timeout: Duration,
    /// Connect (and handshake) timeout.
    pub connect_timeout: Duration,
    /// Constant-rate mode: this worker's requests per second and their spacing.
    pub rate: Option<(f64, Arrival)>,
    /// Ramp profile of the whole run (this worker drives its share of each stage's count).
    pub stages: Vec<crate::plan::Stage>,
    /// Number of workers (to take this worker's share of a stage's connections).
    pub workers: usize,
    /// Transport context (TLS config).
    pub ctx: C,
    /// Set by the coordinator to end the run.
    pub stop: Arc<AtomicBool>,
    /// This worker's progress cell.
    pub progress: Arc<Live>,
}

/// What a worker hands back when it ends.
pub struct Output {
    /// Measurements of the measured window.
    pub recorder: Recorder,
    /// Staged runs: this worker's measurements per stage window (ramp, hold, …) and the
    /// connections it had open at the end of each.
    pub windows: Vec<(Recorder, u64)>,
    /// Cost and health.
    pub stats: WorkerStats,
    /// When the worker's last request was answered (or the worker stopped).
    pub finished_at: Instant,
}

/// Life of a slot's current connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// No socket; waiting to reconnect at this instant.
    Backoff(Instant),
    /// `connect()` called, waiting for the socket to become writable.
    Connecting,
    /// TCP established, TLS handshake in progress.
    Handshaking,
    /// Ready to carry requests.
    Ready,
    /// No socket and none will be opened (budget spent or run stopping).
    Done,
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

struct Conn<T> {
    gen: u32,
    state: State,
    sock: Option<mio::net::TcpStream>,
    transport: Option<T>,
    /// When `connect()` was called.
    t_connect: Instant,
    /// When TCP completed.
    t_established: Instant,
    rb: RecvBuf,
    pending: Vec<u8>,
    decoder: ResponseDecoder,
    inflight: VecDeque<Sent>,
    /// Requests this connection has carried.
    carried: u64,
    /// A response arrived on this connection.
    answered: bool,
    /// Consecutive connections of this slot that failed before any response.
    failures: u32,
    /// Index into `Setup::addrs` this slot connects to.
    addr_idx: usize,
}

/// What the framer saw in one `recv`.
#[derive(Default)]
struct Framed {
    completed: usize,
    closing: bool,
}

/// Constant-rate mode state (the timing model is `engine::pace`).
struct Pacer {
    schedule: Schedule,
    timer: Timer,
    /// Ready connections with nothing in flight, as (slot, generation): checked when popped.
    idle: Vec<(usize, u32)>,
    /// Intended send times of due requests waiting for a free connection.
    backlog: VecDeque<Instant>,
}

/// A staged run's clock: which window we are in and how many slots should be active.
struct Stager {
    windows: Vec<crate::plan::StageWindow>,
    window: usize,
    start: Instant,
    next_check: Instant,
    done: Vec<(Recorder, u64)>,
}

/// A worker instance, generic over the transport (TLS is chosen once).
pub struct Worker<T: Transport> {
    setup: Setup<T::Ctx>,
    poll: Poll,
    conns: Vec<Conn<T>>,
    rec: Recorder,
    /// `pipeline` copies of the request, so K requests go out in one write.
    batch: Vec<u8>,
    scratch: Box<[u8]>,
    /// Requests still to send under `-n`.
    budget: Option<u64>,
    inflight_total: u64,
    open: u64,
    epoch: u32,
    stopping: bool,
    next_backoff: Option<Instant>,
    max_stall: Duration,
    pacer: Option<Pacer>,
    /// Slots `0..active` should hold a connection; the rest are parked (staged runs).
    active: usize,
    stager: Option<Stager>,
    /// Keeps a connect storm from starving the loop (`socket::ConnectPacer`).
    connect_pacer: socket::ConnectPacer,
}

impl<T: Transport> Worker<T> {
    /// Build the worker (allocates everything it will need) and its waker.
    pub fn new(setup: Setup<T::Ctx>) -> std::io::Result<(Worker<T>, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let now = Instant::now();
        let pipeline = setup.pipeline.max(1);
        let conns = (0..setup.connections)
            .map(|_| Conn {
                gen: 0,
                state: State::Backoff(now),
                sock: None,
                transport: None,
                t_connect: now,
                t_established: now,
                rb: RecvBuf::new(),
                pending: Vec::with_capacity(setup.request.len() * pipeline),
                decoder: ResponseDecoder::new(),
                inflight: VecDeque::with_capacity(pipeline),
                carried: 0,
                answered: false,
                failures: 0,
                addr_idx: 0,
            })
            .collect();
        let batch = setup.request.repeat(pipeline);
        let budget = setup.budget;
        let has_stages = !setup.stages.is_empty();
        let pacer = match setup.rate {
            Some((rate, arrival)) => {
                let timer = Timer::new()?;
                poll.registry().register(
                    &mut mio::unix::SourceFd(&timer.raw_fd()),
                    PACER,
                    Interest::READABLE,
                )?;
                Some(Pacer {
                    schedule: Schedule::new(rate, now, arrival, setup.id as u64 + 1),
                    timer,
                    idle: Vec::with_capacity(setup.connections),
                    backlog: VecDeque::with_capacity(4096),
                })
            }
            None => None,
        };
        Ok((
            Worker {
                setup,
                poll,
                conns,
                rec: Recorder::new(),
                batch,
                scratch: vec![0; SCRATCH].into_boxed_slice(),
                budget,
                inflight_total: 0,
                open: 0,
                epoch: 0,
                stopping: false,
                next_backoff: None,
                max_stall: Duration::ZERO,
                pacer,
                active: if has_stages { 0 } else { usize::MAX },
                stager: None,
                connect_pacer: socket::ConnectPacer::new(now),
            },
            waker,
        ))
    }

    /// Run until the coordinator says stop or, under `-n`, every request was answered.
    pub fn run(mut self) -> Output {
        let started = Instant::now();
        let warm_end = started + self.setup.warmup;
        let mut warm = self.setup.warmup.is_zero();
        let mut events = Events::with_capacity(1024);
        for slot in 0..self.conns.len() {
            self.open(slot);
        }
        let mut next_sweep = started + SWEEP_EVERY;
        let mut finished_at = None;
        let mut intervals = IntervalClock::new(&self.setup.progress, &mut self.rec, warm_end);
        if !self.setup.stages.is_empty() {
            self.stager = Some(Stager {
                windows: crate::plan::stage_windows(&self.setup.stages),
                window: 0,
                start: started,
                next_check: started,
                done: Vec::new(),
            });
            self.stage_tick(started);
        }
        if let Some(p) = &mut self.pacer {
            p.schedule = Schedule::new(
                self.setup.rate.map_or(1.0, |r| r.0),
                started,
                self.setup.rate.map_or(Arrival::Uniform, |r| r.1),
                self.setup.id as u64 + 1,
            );
        }
        loop {
            self.dispatch();
            let now = Instant::now();
            let mut wake = next_sweep;
            if let Some(b) = self.next_backoff {
                wake = wake.min(b);
            }
            if let Some(c) = intervals.next() {
                wake = wake.min(c);
            }
            if !warm {
                wake = wake.min(warm_end);
            }
            let timeout = wake.saturating_duration_since(now);
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
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
                // The warm-up is over: forget it. Requests still in flight from it are not
                // recorded when they complete (their epoch is older).
                warm = true;
                self.rec.reset();
                self.epoch += 1;
                intervals.restart(now);
            }
            if warm {
                intervals.tick(now, false, &mut self.rec, &self.setup.progress);
            }
            if now >= next_sweep || self.next_backoff.is_some_and(|b| now >= b) {
                self.sweep(now);
                next_sweep = now + SWEEP_EVERY;
            }
            self.stage_tick(now);
            self.publish();
            if self.budget == Some(0) && self.inflight_total == 0 {
                finished_at = Some(Instant::now());
                self.setup.progress.done.store(true, Ordering::Release);
                break;
            }
            self.max_stall = self.max_stall.max(Instant::now() - loop_now);
        }
        self.stopping = true;
        let finished_at = finished_at.unwrap_or_else(Instant::now);
        if let Some(p) = &mut self.pacer {
            // Rule 3 of `pace`: every request due and never written is counted.
            while p.schedule.next_due() <= finished_at {
                p.schedule.advance();
                self.rec.counters.unsent += 1;
            }
            self.rec.counters.unsent += p.backlog.len() as u64;
        }
        if warm {
            intervals.tick(finished_at, true, &mut self.rec, &self.setup.progress);
        }
        self.publish();
        self.setup.progress.done.store(true, Ordering::Release);
        let (user, sys) = crate::sys::thread_cpu_time();
        // Staged: the last window ends here, and the run is the sum of its windows.
        let windows = match self.stager.take() {
            Some(mut st) => {
                st.done.push((std::mem::take(&mut self.rec), self.open));
                for (w, _) in &st.done {
                    self.rec.merge(w);
                }
                st.done
            }
            None => Vec::new(),
        };
        // Sockets close as the worker drops; the server sees an orderly FIN.
        Output {
            windows,
            stats: WorkerStats {
                cpu: self.setup.cpu,
                connections: self.setup.connections,
                cpu_user_ns: user.as_nanos() as u64,
                cpu_sys_ns: sys.as_nanos() as u64,
                max_stall_ns: self.max_stall.as_nanos() as u64,
            },
            recorder: std::mem::take(&mut self.rec),
            finished_at,
        }
    }

    fn publish(&self) {
        let p = &self.setup.progress;
        let c = &self.rec.counters;
        p.responses.store(c.responses, Ordering::Relaxed);
        p.errors.store(c.total_errors(), Ordering::Relaxed);
        p.open.store(self.open, Ordering::Relaxed);
    }

    #[inline]
    fn token(slot: usize, gen: u32) -> Token {
        Token(slot | (gen as usize) << 32)
    }

    /// Open a connection in `slot` (its previous socket is gone).
    fn open(&mut self, slot: usize) {
        if self.stopping || self.budget == Some(0) || slot >= self.active {
            // Done, or parked until a stage wants this slot.
            self.conns[slot].state = State::Done;
            return;
        }
        let now = Instant::now();
        if let Some(at) = self.connect_pacer.admit(now) {
            self.conns[slot].state = State::Backoff(at);
            self.next_backoff = Some(self.next_backoff.map_or(at, |b| b.min(at)));
            return;
        }
        let c = &mut self.conns[slot];
        let addr = self.setup.addrs[c.addr_idx % self.setup.addrs.len()];
        let source = socket::source_for(&self.setup.sources, self.setup.first_conn + slot);
        c.t_connect = now;
        self.rec.counters.connections_opened += 1;
        let res = socket::connect_from(addr, source);
        self.connect_pacer.done(Instant::now());
        let mut sock = match res {
            Ok(s) => s,
            Err(e) => {
                self.fail(slot, ErrorClass::from_connect_error(&e));
                return;
            }
        };
        let token = Self::token(slot, c.gen);
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
        {
            self.fail(slot, ErrorClass::from_connect_error(&e));
            return;
        }
        let c = &mut self.conns[slot];
        c.sock = Some(sock);
        c.state = State::Connecting;
        self.open += 1;
    }

    fn on_event(&mut self, ev: &Event) {
        let token = ev.token();
        if token == WAKER {
            return;
        }
        if token == PACER {
            if let Some(p) = &mut self.pacer {
                p.timer.clear();
            }
            return;
        }
        let slot = token.0 & 0xFFFF_FFFF;
        let gen = (token.0 >> 32) as u32;
        let Some(c) = self.conns.get(slot) else {
            return;
        };
        if c.gen != gen {
            return; // an event for a socket this slot already replaced
        }
        match c.state {
            State::Connecting => {
                if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                    self.on_connect_event(slot);
                }
            }
            State::Handshaking | State::Ready => {
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
        let c = &mut self.conns[slot];
        let sock = c.sock.as_ref().expect("connecting slot has a socket");
        match socket::is_connected(sock) {
            Ok(false) => {}
            Ok(true) => {
                let now = Instant::now();
                c.t_established = now;
                let connect = now - c.t_connect;
                self.rec.record(Phase::Connect, connect.as_nanos() as u64);
                match T::start(&self.setup.ctx) {
                    Ok(t) => {
                        let handshaking = t.is_handshaking();
                        c.transport = Some(t);
                        if handshaking {
                            c.state = State::Handshaking;
                            self.flush(slot);
                        } else {
                            self.on_ready(slot);
                        }
                    }
                    Err(f) => self.on_failure(slot, f),
                }
            }
            Err(e) => self.fail(slot, ErrorClass::from_connect_error(&e)),
        }
    }

    /// The connection can carry requests: count it and send the first batch.
    fn on_ready(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        c.state = State::Ready;
        self.rec.counters.connections_established += 1;
        if let Some(t) = &c.transport {
            super::transport::record_handshake(&mut self.rec, t);
        }
        if self.pacer.is_some() {
            self.available(slot);
        } else {
            let k = self.setup.pipeline.max(1);
            self.send(slot, k, None);
        }
    }

    /// Rate mode: a connection can take a request. It takes the oldest waiting one, or waits
    /// in the idle list for the schedule.
    fn available(&mut self, slot: usize) {
        let Some(p) = &mut self.pacer else {
            return;
        };
        match p.backlog.pop_front() {
            Some(intended) => self.send(slot, 1, Some(intended)),
            None => p.idle.push((slot, self.conns[slot].gen)),
        }
    }

    /// Rate mode: hand every request that is due to an idle connection (or the backlog), then
    /// arm the timer for the next one.
    fn dispatch(&mut self) {
        if self.stopping {
            return;
        }
        let Some(mut p) = self.pacer.take() else {
            return;
        };
        let now = Instant::now();
        while p.schedule.next_due() <= now {
            let intended = p.schedule.advance();
            let mut sent = false;
            while let Some((slot, gen)) = p.idle.pop() {
                let c = &self.conns[slot];
                if c.gen == gen && c.state == State::Ready && c.inflight.is_empty() {
                    self.send(slot, 1, Some(intended));
                    sent = true;
                    break;
                }
            }
            if !sent {
                if p.backlog.len() < MAX_BACKLOG {
                    p.backlog.push_back(intended);
                } else {
                    self.rec.counters.unsent += 1;
                }
            }
        }
        // An armed timer points at or before the next due time (the schedule only moves
        // forward), so it only needs arming when it has fired.
        if !p.timer.is_armed() {
            let _ = p.timer.arm(
                p.schedule
                    .next_due()
                    .saturating_duration_since(Instant::now()),
            );
        }
        self.pacer = Some(p);
    }

    /// Write up to `k` requests on `slot` (fewer when the `-n` budget runs out). In rate mode
    /// `intended` is the request's scheduled send time (k is then 1).
    fn send(&mut self, slot: usize, k: usize, intended: Option<Instant>) {
        let k = match self.budget {
            Some(b) => (b as usize).min(k),
            None => k,
        };
        if k == 0 || self.stopping {
            return;
        }
        let c = &mut self.conns[slot];
        let at = Instant::now();
        if let Some(i) = intended {
            self.rec.record(Phase::SendLag, (at - i).as_nanos() as u64);
        }
        for _ in 0..k {
            c.inflight.push_back(Sent {
                at,
                intended: intended.unwrap_or(at),
                ttfb_seen: false,
                epoch: self.epoch,
            });
            if c.carried > 0 {
                self.rec.counters.reused_requests += 1;
            }
            c.carried += 1;
        }
        self.rec.counters.requests += k as u64;
        self.inflight_total += k as u64;
        if let Some(b) = &mut self.budget {
            *b -= k as u64;
        }
        let len = self.setup.request.len() * k;
        let (sock, t) = (c.sock.as_mut(), c.transport.as_mut());
        let (Some(sock), Some(t)) = (sock, t) else {
            return;
        };
        if let Err(e) = t.send(
            sock,
            &self.batch[..len],
            &mut c.pending,
            &mut self.rec.counters.bytes_out,
        ) {
            self.fail(slot, ErrorClass::from_io_error(&e));
        }
    }

    /// Write queued output; false when the connection failed.
    fn flush(&mut self, slot: usize) -> bool {
        let c = &mut self.conns[slot];
        let (Some(sock), Some(t)) = (c.sock.as_mut(), c.transport.as_mut()) else {
            return true;
        };
        match t.flush(sock, &mut c.pending, &mut self.rec.counters.bytes_out) {
            Ok(_) => true,
            Err(e) => {
                let class = if c.state == State::Handshaking {
                    ErrorClass::TlsHandshake
                } else {
                    ErrorClass::from_io_error(&e)
                };
                self.fail(slot, class);
                false
            }
        }
    }

    fn on_readable(&mut self, slot: usize) {
        let head = self.setup.head_request;
        let epoch = self.epoch;
        let c = &mut self.conns[slot];
        let (Some(sock), Some(t)) = (c.sock.as_mut(), c.transport.as_mut()) else {
            return;
        };
        let mut framed = Framed::default();
        let mut bytes_in = 0;
        let decoder = &mut c.decoder;
        let inflight = &mut c.inflight;
        let rec = &mut self.rec;
        let paced = self.pacer.is_some();
        let res = t.recv(
            sock,
            &mut self.scratch,
            &mut c.rb,
            &mut bytes_in,
            |rb, now| {
                frame(
                    decoder,
                    inflight,
                    rec,
                    head,
                    epoch,
                    paced,
                    rb,
                    now,
                    &mut framed,
                )
            },
        );
        self.rec.counters.bytes_in += bytes_in;
        if framed.completed > 0 {
            c.answered = true;
            c.failures = 0;
            self.inflight_total -= framed.completed as u64;
        }
        let recv = match res {
            Ok(r) => r,
            Err(f) => return self.on_failure(slot, f),
        };
        if let Some(done) = recv.handshake_done {
            let tls = done - c.t_established;
            self.rec.record(Phase::Tls, tls.as_nanos() as u64);
            self.on_ready(slot);
            if self.conns[slot].state != State::Ready {
                return;
            }
        }
        if framed.closing {
            // The server said this connection carries nothing more.
            self.rec.counters.server_closes += 1;
            let lost = !self.conns[slot].inflight.is_empty();
            if lost {
                self.fail(slot, ErrorClass::EofMidResponse);
            } else {
                self.replace(slot);
            }
            return;
        }
        if recv.eof {
            return self.on_eof(slot);
        }
        if framed.completed > 0 {
            if self.pacer.is_some() {
                self.available(slot);
            } else {
                self.send(slot, framed.completed, None);
            }
        }
        // TLS may have queued records of its own (handshake flights, alerts); for plain TCP
        // with nothing pending this is free.
        if self.conns[slot].sock.is_some() {
            self.flush(slot);
        }
    }

    fn on_eof(&mut self, slot: usize) {
        let epoch = self.epoch;
        let c = &mut self.conns[slot];
        if c.state == State::Handshaking {
            return self.fail(slot, ErrorClass::TlsHandshake);
        }
        match c.decoder.finish_eof(c.rb.pending()) {
            Ok(Some(info)) => {
                // A close-delimited body ends here.
                let now = Instant::now();
                if let Some(s) = c.inflight.pop_front() {
                    self.inflight_total -= 1;
                    if s.epoch == epoch {
                        self.rec
                            .record(Phase::Total, (now - s.at).as_nanos() as u64);
                        self.rec.response(info.status);
                    }
                }
                self.rec.counters.server_closes += 1;
                if self.conns[slot].inflight.is_empty() {
                    self.replace(slot);
                } else {
                    self.fail(slot, ErrorClass::EofMidResponse);
                }
            }
            Ok(None) if c.inflight.is_empty() => {
                // An idle keep-alive connection closed by the server: not a failure.
                self.rec.counters.server_closes += 1;
                self.replace(slot);
            }
            // Bytes that could never have become a response are a protocol error, however
            // they were split; a response cut short is an EOF.
            Err(e) if e != ProtoError::Truncated => {
                self.rec.reason(ErrorClass::Protocol, &e);
                self.fail(slot, ErrorClass::Protocol)
            }
            Ok(None) | Err(_) => self.fail(slot, ErrorClass::EofMidResponse),
        }
    }

    fn on_failure(&mut self, slot: usize, f: Failure) {
        let state = self.conns[slot].state;
        let class = match f {
            Failure::Tls(class) => class,
            Failure::Protocol(why) => {
                self.rec.reason(ErrorClass::Protocol, &why);
                ErrorClass::Protocol
            }
            Failure::Io(e) => match state {
                State::Handshaking => ErrorClass::TlsHandshake,
                _ => ErrorClass::from_io_error(&e),
            },
        };
        if state == State::Ready
            && self.conns[slot].inflight.is_empty()
            && matches!(class, ErrorClass::ResetMidResponse)
        {
            // A reset on an idle keep-alive connection loses no request.
            self.rec.counters.server_closes += 1;
            return self.replace(slot);
        }
        self.fail(slot, class);
    }

    /// Count a failure, drop the connection, and reconnect after a backoff if nothing was ever
    /// answered on this slot's recent connections (so a dead server is not hammered).
    fn fail(&mut self, slot: usize, class: ErrorClass) {
        self.rec.error(class);
        let c = &mut self.conns[slot];
        if c.carried == 0 {
            // The request this connection was opened for never went out: under `-n` it counts
            // as sent and failed, so a run against a dead server still ends.
            if let Some(b) = &mut self.budget {
                *b = b.saturating_sub(1);
            }
        }
        let failures = if c.answered { 0 } else { c.failures + 1 };
        if matches!(
            class,
            ErrorClass::ConnectRefused | ErrorClass::ConnectTimeout
        ) {
            c.addr_idx = (c.addr_idx + 1) % self.setup.addrs.len();
        }
        self.close(slot);
        let c = &mut self.conns[slot];
        c.failures = failures;
        if failures == 0 {
            self.open(slot);
        } else {
            let wait =
                Duration::from_millis(1u64 << failures.min(7).saturating_sub(1)).min(MAX_BACKOFF);
            let at = Instant::now() + wait;
            c.state = State::Backoff(at);
            self.next_backoff = Some(self.next_backoff.map_or(at, |b| b.min(at)));
        }
    }

    /// Close the slot's connection and open a new one right away.
    fn replace(&mut self, slot: usize) {
        let failures = self.conns[slot].failures;
        self.close(slot);
        self.conns[slot].failures = failures;
        self.open(slot);
    }

    fn close(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if c.sock.take().is_some() {
            self.open -= 1;
        }
        c.transport = None;
        self.inflight_total -= c.inflight.len() as u64;
        c.inflight.clear();
        c.rb.clear();
        c.pending.clear();
        c.decoder.reset();
        c.carried = 0;
        c.answered = false;
        c.failures = 0;
        c.gen = c.gen.wrapping_add(1);
        c.state = State::Done;
    }

    /// Staged runs: move to the next window when due, and open or close connections so this
    /// worker holds its share of the stage's current target.
    fn stage_tick(&mut self, now: Instant) {
        let Some(st) = &mut self.stager else {
            return;
        };
        if now < st.next_check {
            return;
        }
        // The seed steps its ramps 10 times a second; this does 100.
        st.next_check = now + Duration::from_millis(10);
        let t = now - st.start;
        while st.window + 1 < st.windows.len() && t >= st.windows[st.window + 1].start {
            st.done.push((std::mem::take(&mut self.rec), self.open));
            st.window += 1;
        }
        let total = crate::plan::stage_target(&self.setup.stages, t);
        let want = crate::plan::share(total as u64, self.setup.workers, self.setup.id) as usize;
        let want = want.min(self.conns.len());
        let have = self.active.min(self.conns.len());
        if want > have {
            self.active = want;
            for slot in have..want {
                if self.conns[slot].sock.is_none() {
                    self.open(slot);
                }
            }
        } else if want < have {
            self.active = want;
            // Ramping down: these connections close now (what they had in flight is dropped on
            // purpose, not counted as a failure).
            for slot in want..have {
                self.close(slot);
            }
        }
    }

    /// Timeouts and due reconnects.
    fn sweep(&mut self, now: Instant) {
        self.next_backoff = None;
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            match c.state {
                State::Backoff(at) if at <= now => self.open(slot),
                State::Backoff(at) => {
                    self.next_backoff = Some(self.next_backoff.map_or(at, |b| b.min(at)));
                }
                State::Connecting if now - c.t_connect >= self.setup.connect_timeout => {
                    self.fail(slot, ErrorClass::ConnectTimeout)
                }
                State::Handshaking if now - c.t_established >= self.setup.connect_timeout => {
                    self.fail(slot, ErrorClass::TlsHandshake)
                }
                State::Ready => {
                    if let Some(s) = c.inflight.front() {
                        if now - s.at >= self.setup.timeout {
                            self.fail(slot, ErrorClass::ReadTimeout);
                        }
                    }
                }
                _ => {}
            }
        }
        // fail() inside the loop may have scheduled backoffs before this pass reached them.
        for c in &self.conns {
            if let State::Backoff(at) = c.state {
                self.next_backoff = Some(self.next_backoff.map_or(at, |b| b.min(at)));
            }
        }
    }
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
