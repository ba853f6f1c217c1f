//! `connbench probe`: how many concurrent connections does a server accept, and how does it say
//! no? One thread opens connections at a fixed rate and holds every one of them open until the
//! first connection cannot be established (or `--max` is reached), keeps holding for `--hold` to
//! see whether the ones already open survive, and optionally re-tests just below and at the
//! limit (`--confirm`).
//!
//! It owns the probe's event loop and its verdicts; it reuses the workers' machinery as is:
//! [`socket::connect`], the [`Transport`] (plain or TLS, chosen once), [`RecvBuf`], the HTTP
//! response framer and the WebSocket codec. It must not print, parse flags or format reports
//! (`app` and `report::probe` do), and it never refuses to start because `--max` is above the
//! file-descriptor limit: finding that limit (EMFILE, reported as local) is part of its job.
//!
//! Rules:
//! 1. Pacing: connection k is due at `start + k / rate`. A `timerfd` (registered in the same
//!    `Poll`) wakes the loop at the due instant with sub-millisecond precision, which epoll's
//!    millisecond timeout cannot; when the loop is late, every due connection is opened at
//!    once (at most [`MAX_BURST`] per iteration), so lateness never accumulates.
//! 2. A connection is *established* when its last step completes: TCP (and the TLS handshake
//!    for https); then, with [`Establish::Request`], one GET answered below 400; with
//!    [`Establish::WebSocket`], a valid 101. A connection lost within `settle` of that moment
//!    (a server that accepts and then resets, closes, or sends a WebSocket close 1008/1013)
//!    was not really admitted: that loss is an establishment *failure*. Later losses of held
//!    connections are *drops*.
//! 3. The first failure ends the ramp: no connection is opened after it. The *limit* is the
//!    number of established connections open at that instant (the failing one excluded), plus
//!    those opened *before* the failing one that were still being established and complete
//!    afterwards (a server admits in order; they were only slower). The hold starts once those
//!    are resolved (bounded by `connect_timeout`). If `max` connections were attempted without
//!    a failure, the ramp ends once the last one has settled, and the limit is what is open.
//! 4. Survival: the connections open when the ramp ended are marked (and the late ones of
//!    rule 3); after `hold`, the marked ones still open are the survivors. A held connection
//!    is lost when a read returns EOF or an error, or (with `keepalive`) when its keep-alive
//!    request or ping is still unanswered at a keep-alive tick `max(keepalive,
//!    connect_timeout)` after it was sent — a silent drop.
//! 5. Classification, by the step the connection was in: connect errors as
//!    [`ErrorClass::from_connect_error`] (EMFILE/ENFILE and EADDRNOTAVAIL are local); a reset
//!    before the connection settled is `connect_reset` (the server accepted, then refused); an
//!    EOF during the TLS handshake is `tls_handshake`; a status ≥ 400 is [`Cause::Status`]; a
//!    WebSocket close frame is [`Cause::WsClose`] with its code; a held connection that is reset
//!    or closed is `reset_mid_response` / `eof_mid_response` (`ws_reset` / `ws_abnormal_close`
//!    for a WebSocket without a close frame).
//! 6. Sockets are registered once, edge-triggered, and read until drained, as in the workers;
//!    an event that says the peer closed is read to the EOF, and a connect that completes in
//!    such an event is read at once (a server that accepts and closes or resets straight away
//!    fails the connection by rules 2 and 5; it is never held as established).
//!    Every pass ends by closing its sockets with SO_LINGER 0 (an RST): the server frees its
//!    slots at once and no TIME_WAIT eats the ports the next pass needs.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::buf::RecvBuf;
use super::socket;
use super::transport::{record_handshake, Failure, Plain, Tls, TlsCtx, Transport};
use super::EngineError;
use crate::metrics::{ErrorClass, Phase, Recorder, StatusClass};
use crate::plan::Scheme;
use crate::proto::http1::{encode_request, Progress as HttpProgress, ResponseDecoder};
use crate::proto::ws::{self, Decoder, Frame, Handshake, OpCode, Progress as WsProgress};

pub use crate::metrics::probe::SAMPLE_EVERY;
/// Most connections opened in one loop iteration when catching up (rule 1), so events of the
/// connections already open are still served between bursts.
pub const MAX_BURST: u64 = 64;
/// Largest WebSocket message a held connection accepts (they are read and discarded).
const WS_MAX_MESSAGE: usize = 1 << 20;
/// Token of the pacing timer; connection tokens are `slot | generation << 32`.
const TIMER: Token = Token(usize::MAX);
/// Socket read scratch for TLS records.
const SCRATCH: usize = 64 * 1024;
/// "Never" for a schedule that cannot be represented.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest single wait in the loop, so Ctrl-C is seen promptly whatever is scheduled.
const MAX_WAIT: Duration = Duration::from_millis(100);

pub use crate::metrics::probe::{Cause, Confirm, FirstFailure, PassResult, ProbeResult, Stability};
pub use crate::plan::{Establish, ProbePlan};

/// Run the probe (and its confirmation) on the calling thread.
pub fn run(plan: &ProbePlan) -> Result<ProbeResult, EngineError> {
    let request = encode_request(
        "GET",
        &plan.target.path,
        &plan.target.authority,
        &plan.headers,
        &[],
    )
    .map_err(EngineError::Request)?;
    if plan.establish == Establish::WebSocket {
        // Every connection sends its own key; check the headers once, before any connects.
        ws::encode_upgrade(
            &plan.target.path,
            &plan.target.authority,
            "dGhlIHNhbXBsZSBub25jZQ==",
            &plan.headers,
        )
        .map_err(EngineError::Request)?;
    }
    match plan.target.scheme {
        Scheme::Http => run_with::<Plain>(plan, &(), &request),
        Scheme::Https => {
            let base = crate::tls::client_config(&plan.tls)?;
            let ctx = TlsCtx {
                config: crate::tls::worker_config(&base, plan.tls.resume),
                name: crate::tls::server_name(&plan.tls, &plan.target.host)?,
            };
            run_with::<Tls>(plan, &ctx, &request)
        }
    }
}

fn run_with<T: Transport>(
    plan: &ProbePlan,
    ctx: &T::Ctx,
    request: &[u8],
) -> Result<ProbeResult, EngineError> {
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    let (user0, sys0) = crate::sys::thread_cpu_time();
    let pass = Pass::<T>::new(plan, ctx, request, plan.max, plan.hold)
        .map_err(EngineError::Spawn)?
        .run();
    let mut interrupted = pass.interrupted;
    let confirm = match plan.confirm {
        Some(pause) => {
            let c = confirm::<T>(plan, ctx, request, &pass, pause)?;
            interrupted |= [&c.below, &c.above]
                .iter()
                .any(|p| p.as_ref().is_some_and(|p| p.interrupted));
            Some(c)
        }
        None => None,
    };
    let (user1, sys1) = crate::sys::thread_cpu_time();
    Ok(ProbeResult {
        pass,
        confirm,
        started_at,
        elapsed: t0.elapsed(),
        interrupted: interrupted || crate::sys::interrupted(),
        peak_rss_bytes: crate::sys::peak_rss_bytes(),
        cpu_user_ns: user1.saturating_sub(user0).as_nanos() as u64,
        cpu_sys_ns: sys1.saturating_sub(sys0).as_nanos() as u64,
    })
}

/// `--confirm`: everything of the probe is closed already; pause, re-run to limit − 1 (every
/// connection must be established), pause, re-run to limit + 1 (it must fail the same way at
/// the same limit).
fn confirm<T: Transport>(
    plan: &ProbePlan,
    ctx: &T::Ctx,
    request: &[u8],
    main: &PassResult,
    pause: Duration,
) -> Result<Confirm, EngineError> {
    let skipped = |reason: &str| Confirm {
        stability: Stability::Skipped,
        reason: reason.to_string(),
        below: None,
        above: None,
    };
    let Some(first) = main.first_failure else {
        return Ok(skipped(
            "no failure up to --max: there is no limit to confirm",
        ));
    };
    if main.interrupted {
        return Ok(skipped("interrupted"));
    }
    let limit = main.limit;
    let run_pass = |max: u64| -> Result<Option<PassResult>, EngineError> {
        if !pause_for(pause) {
            return Ok(None);
        }
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let pass = Pass::<T>::new(plan, ctx, request, max, Duration::ZERO)
            .map_err(EngineError::Spawn)?
            .run();
        Ok(Some(pass))
    };
    let below = if limit > 0 {
        match run_pass(limit - 1)? {
            Some(p) => Some(p),
            None => return Ok(skipped("interrupted")),
        }
    } else {
        None
    };
    let Some(above) = run_pass(limit + 1)? else {
        return Ok(Confirm {
            below,
            ..skipped("interrupted")
        });
    };
    let mut problems = Vec::new();
    if let Some(b) = &below {
        if !b.reached_max {
            let how = b.first_failure.map_or_else(
                || "did not settle".to_string(),
                |f| format!("failed with {} at {} open", f.cause.label(), b.limit),
            );
            problems.push(format!("{} connections: {how}", limit - 1));
        }
    }
    match above.first_failure {
        None => problems.push(format!(
            "{} connections: all established (no failure)",
            limit + 1
        )),
        Some(f) if f.cause != first.cause || above.limit != limit => problems.push(format!(
            "{} connections: failed with {} at {} open, the probe with {} at {limit}",
            limit + 1,
            f.cause.label(),
            above.limit,
            first.cause.label()
        )),
        Some(_) => {}
    }
    let (stability, reason) = if problems.is_empty() {
        let below = if limit > 0 {
            format!("{} connections held; ", limit - 1)
        } else {
            String::new()
        };
        (
            Stability::Stable,
            format!(
                "{below}{} connections failed with {} at {limit} open again",
                limit + 1,
                first.cause.label()
            ),
        )
    } else {
        (Stability::Unstable, problems.join("; "))
    };
    Ok(Confirm {
        stability,
        reason,
        below,
        above: Some(above),
    })
}

/// Sleep `d` in short steps; false when Ctrl-C came first.
fn pause_for(d: Duration) -> bool {
    let end = Instant::now() + d;
    loop {
        if crate::sys::interrupted() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The pacing timer (rule 1): a non-blocking `timerfd` on CLOCK_MONOTONIC, the clock `Instant`
/// uses, armed once per due instant.
struct Pacer {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl Pacer {
    fn new() -> io::Result<Pacer> {
        // SAFETY: timerfd_create takes no pointers; a non-negative return is a new fd we own.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by timerfd_create and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Pacer { fd, armed: None })
    }

    /// Fire once at `at` (relative to `now`; an instant already past fires at once).
    fn arm(&mut self, at: Instant, now: Instant) -> io::Result<()> {
        if self.armed == Some(at) {
            return Ok(());
        }
        // A zero it_value would disarm the timer instead of firing it.
        let d = at
            .saturating_duration_since(now)
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `spec` is fully initialised; a null old_value is allowed.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = Some(at);
        Ok(())
    }

    /// The timer fired: consume its expiration count so the next expiry raises a new edge.
    fn fired(&mut self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into an 8-byte buffer; EAGAIN (nothing to read) is fine.
        unsafe {
            libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len());
        }
        self.armed = None;
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// `connect()` called, waiting for the socket to become writable.
    Connecting,
    /// TCP established, TLS handshake in progress.
    Handshaking,
    /// The GET is out, waiting for its complete response.
    Requesting,
    /// The upgrade request is out, waiting for the 101.
    Upgrading,
    /// Established: held open.
    Held,
}

/// The WebSocket half of a connection.
struct WsState {
    /// The `Sec-WebSocket-Accept` the 101 must carry.
    accept: String,
    decoder: Decoder,
}

/// What a connection's bytes decided; the loop applies it after the read.
#[derive(Default)]
struct Proto {
    /// The connection became established at this instant (rule 2).
    done_at: Option<Instant>,
    /// The connection is lost.
    lost: Option<Cause>,
    /// Frames to send in answer (pongs, the close reply).
    out: Vec<u8>,
}

struct Conn<T> {
    sock: TcpStream,
    transport: Option<T>,
    step: Step,
    /// 1-based index in opening order.
    attempt: u64,
    /// Index into the target's addresses.
    addr_idx: usize,
    t_connect: Instant,
    t_tcp: Instant,
    /// When it was established.
    t_done: Instant,
    /// When the last request (establishing or keep-alive) or upgrade was written.
    t_sent: Instant,
    rb: RecvBuf,
    pending: Vec<u8>,
    http: ResponseDecoder,
    ws: Option<Box<WsState>>,
    /// A keep-alive request or ping is unanswered.
    awaiting: bool,
    /// Open when the ramp ended: counts towards survival (rule 4).
    marked: bool,
    p: Proto,
}

struct Slot<T> {
    gen: u32,
    conn: Option<Conn<T>>,
}

/// Where the pass is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Opening connections at the connect rate.
    Ramp,
    /// All `max` attempted; waiting for the last ones to be established and settle.
    Draining,
    /// The first failure happened; waiting for the connections opened before it that were
    /// still being established (bounded by `connect_timeout`).
    Resolving,
    /// The ramp ended; holding everything open until this instant.
    Holding(Instant),
}

/// One pass: its poller, its connections, its findings.
struct Pass<'a, T: Transport> {
    plan: &'a ProbePlan,
    ctx: &'a T::Ctx,
    request: &'a [u8],
    max: u64,
    hold: Duration,
    poll: Poll,
    pacer: Pacer,
    slots: Vec<Slot<T>>,
    free: Vec<usize>,
    rec: Recorder,
    scratch: Box<[u8]>,
    rng: StdRng,
    /// The address new connections go to (moves on while nothing was ever established and
    /// the current one refuses, so `localhost` works whichever of 127.0.0.1 / ::1 listens).
    addr_idx: usize,
    start: Instant,
    stage: Stage,
    attempted: u64,
    /// Established connections open.
    open: u64,
    /// Connections opened and not yet established.
    in_flight: u64,
    peak_open: u64,
    last_done: Option<Instant>,
    first_failure: Option<FirstFailure>,
    /// Connections opened before the first failure and still being established when it
    /// happened (rule 3).
    earlier_in_flight: u64,
    limit: u64,
    reached_max: bool,
    failures: Vec<(Cause, u64)>,
    drops: Vec<(Cause, u64)>,
    series: Vec<(f64, u64)>,
    next_sample: Instant,
    held: u64,
    survivors: u64,
    /// Establishment deadlines, in opening order (`connect_timeout` is the same for all).
    deadlines: VecDeque<(Instant, usize, u32)>,
    /// Keep-alive instants, in the order they were scheduled (always `now + keepalive`).
    keepalives: VecDeque<(Instant, usize, u32)>,
    ping_counter: u64,
    interrupted: bool,
}

impl<'a, T: Transport> Pass<'a, T> {
    fn new(
        plan: &'a ProbePlan,
        ctx: &'a T::Ctx,
        request: &'a [u8],
        max: usize,
        hold: Duration,
    ) -> io::Result<Pass<'a, T>> {
        let poll = Poll::new()?;
        let pacer = Pacer::new()?;
        poll.registry().register(
            &mut SourceFd(&pacer.fd.as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        let start = Instant::now();
        Ok(Pass {
            plan,
            ctx,
            request,
            max: max as u64,
            hold,
            poll,
            pacer,
            slots: Vec::new(),
            free: Vec::new(),
            rec: Recorder::new(),
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            rng: StdRng::from_rng(&mut rand::rng()),
            addr_idx: 0,
            start,
            stage: Stage::Ramp,
            attempted: 0,
            open: 0,
            in_flight: 0,
            peak_open: 0,
            last_done: None,
            first_failure: None,
            earlier_in_flight: 0,
            limit: 0,
            reached_max: false,
            failures: Vec::new(),
            drops: Vec::new(),
            series: vec![(0.0, 0)],
            next_sample: start + SAMPLE_EVERY,
            held: 0,
            survivors: 0,
            deadlines: VecDeque::new(),
            keepalives: VecDeque::new(),
            ping_counter: 0,
            interrupted: false,
        })
    }

    fn run(mut self) -> PassResult {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if crate::sys::interrupted() {
                self.interrupted = true;
                break;
            }
            let burst_left = self.open_due(now);
            let now = Instant::now();
            self.timers(now);
            if !self.advance(now) {
                break;
            }
            let timeout = if burst_left {
                Duration::ZERO
            } else {
                self.arm_pacer(now);
                self.wait(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // epoll itself failing cannot be recovered from; report what was found.
                    break;
                }
            }
            for ev in events.iter() {
                if ev.token() == TIMER {
                    self.pacer.fired();
                } else {
                    self.on_event(ev);
                }
            }
        }
        self.finish()
    }

    /// Rule 1: open every connection that is due (at most [`MAX_BURST`]); true when more are
    /// due right now.
    fn open_due(&mut self, now: Instant) -> bool {
        let mut opened = 0;
        while self.stage == Stage::Ramp && self.attempted < self.max {
            if self.due(self.attempted) > now {
                return false;
            }
            if opened == MAX_BURST {
                return true;
            }
            self.open_one();
            opened += 1;
        }
        false
    }

    /// When connection `k` (0-based) is due.
    fn due(&self, k: u64) -> Instant {
        let secs = k as f64 / self.plan.connect_rate;
        // `app` bounds the rate, so this is always representable; an absurd value must still
        // not panic: it means "not within a year".
        Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| self.start.checked_add(d))
            .unwrap_or(self.start + FAR)
    }

    fn arm_pacer(&mut self, now: Instant) {
        if self.stage == Stage::Ramp && self.attempted < self.max {
            let at = self.due(self.attempted);
            if self.pacer.arm(at, now).is_err() {
                // Without the timer the loop still wakes at least every MAX_WAIT; pacing just
                // gets coarser. Nothing else to do about a failing timerfd_settime.
                self.pacer.armed = None;
            }
        }
    }

    /// How long the loop may sleep: until the next sample, deadline, keep-alive or stage end.
    fn wait(&self, now: Instant) -> Duration {
        let mut wake = self.next_sample;
        if let Some(&(t, _, _)) = self.deadlines.front() {
            wake = wake.min(t);
        }
        if let Some(&(t, _, _)) = self.keepalives.front() {
            wake = wake.min(t);
        }
        match self.stage {
            Stage::Holding(end) => wake = wake.min(end),
            Stage::Resolving => {}
            Stage::Draining => {
                if let Some(t) = self.last_done {
                    wake = wake.min(t + self.plan.settle);
                }
            }
            Stage::Ramp => {
                if self.pacer.armed.is_none() && self.attempted < self.max {
                    wake = wake.min(self.due(self.attempted));
                }
            }
        }
        wake.saturating_duration_since(now).min(MAX_WAIT)
    }

    /// Stage transitions (rule 3); false when the pass is over.
    fn advance(&mut self, now: Instant) -> bool {
        match self.stage {
            Stage::Ramp if self.attempted >= self.max => {
                self.stage = Stage::Draining;
                self.advance(now)
            }
            Stage::Draining
                if self.in_flight == 0
                    && self.last_done.is_none_or(|t| now >= t + self.plan.settle) =>
            {
                self.reached_max = self.first_failure.is_none();
                self.end_ramp();
                self.stage = Stage::Holding(now + self.hold);
                self.advance(now)
            }
            Stage::Resolving if self.earlier_in_flight == 0 => {
                self.stage = Stage::Holding(now + self.hold);
                self.advance(now)
            }
            Stage::Holding(end) => now < end,
            _ => true,
        }
    }

    /// The ramp is over: note the limit and mark the survivors-to-be (rules 3 and 4).
    fn end_ramp(&mut self) {
        self.limit = self.open;
        for slot in &mut self.slots {
            if let Some(c) = &mut slot.conn {
                if c.step == Step::Held {
                    c.marked = true;
                    self.held += 1;
                }
            }
        }
        self.survivors = self.held;
    }

    /// True when a connection opened as `attempt` was among those still being established
    /// when the first failure happened (they count towards the limit if they make it).
    fn opened_before_failure(&self, attempt: u64) -> bool {
        self.first_failure.is_some_and(|f| attempt < f.connection)
    }

    fn timers(&mut self, now: Instant) {
        while let Some(&(t, slot, gen)) = self.deadlines.front() {
            if t > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(step) = self.live(slot, gen).map(|c| c.step) else {
                continue;
            };
            let class = match step {
                Step::Held => continue,
                Step::Connecting => ErrorClass::ConnectTimeout,
                Step::Handshaking => ErrorClass::TlsHandshake,
                Step::Requesting | Step::Upgrading => ErrorClass::ReadTimeout,
            };
            self.lose(slot, Cause::Error(class), now);
        }
        if let Some(every) = self.plan.keepalive {
            while let Some(&(t, slot, gen)) = self.keepalives.front() {
                if t > now {
                    break;
                }
                self.keepalives.pop_front();
                let timeout = every.max(self.plan.connect_timeout);
                match self.live(slot, gen).map(|c| (c.awaiting, now - c.t_sent)) {
                    None => {}
                    // Rule 4: the previous keep-alive was never answered.
                    Some((true, waited)) if waited >= timeout => {
                        self.lose(slot, Cause::Error(ErrorClass::ReadTimeout), now)
                    }
                    // Still waiting for a slow answer: do not pile another one up.
                    Some((true, _)) => self.keepalives.push_back((now + every, slot, gen)),
                    Some((false, _)) => {
                        self.send_keepalive(slot, now);
                        if self.live(slot, gen).is_some() {
                            self.keepalives.push_back((now + every, slot, gen));
                        }
                    }
                }
            }
        }
        while now >= self.next_sample {
            let t = (self.next_sample - self.start).as_secs_f64();
            self.series.push((t, self.open));
            self.next_sample += SAMPLE_EVERY;
        }
    }

    /// The connection in `slot` if it is still generation `gen`.
    fn live(&self, slot: usize, gen: u32) -> Option<&Conn<T>> {
        let s = self.slots.get(slot)?;
        if s.gen != gen {
            return None;
        }
        s.conn.as_ref()
    }

    #[inline]
    fn token(slot: usize, gen: u32) -> Token {
        Token(slot | (gen as usize) << 32)
    }

    fn open_one(&mut self) {
        self.attempted += 1;
        let attempt = self.attempted;
        self.rec.counters.connections_opened += 1;
        let addr_idx = self.addr_idx;
        let addr = self.plan.target.addrs[addr_idx];
        let t_connect = Instant::now();
        let mut sock = match socket::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                let class = ErrorClass::from_connect_error(&e);
                if !self.fall_back(class, addr_idx) {
                    self.failure(Cause::Error(class), attempt, Instant::now());
                }
                return;
            }
        };
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot { gen: 0, conn: None });
                self.slots.len() - 1
            }
        };
        let gen = self.slots[slot].gen;
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Self::token(slot, gen),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free.push(slot);
            let class = ErrorClass::from_connect_error(&e);
            self.failure(Cause::Error(class), attempt, Instant::now());
            return;
        }
        self.slots[slot].conn = Some(Conn {
            sock,
            transport: None,
            step: Step::Connecting,
            attempt,
            addr_idx,
            t_connect,
            t_tcp: t_connect,
            t_done: t_connect,
            t_sent: t_connect,
            rb: RecvBuf::new(),
            pending: Vec::new(),
            http: ResponseDecoder::new(),
            ws: None,
            awaiting: false,
            marked: false,
            p: Proto::default(),
        });
        self.in_flight += 1;
        self.deadlines
            .push_back((t_connect + self.plan.connect_timeout, slot, gen));
    }

    /// A refused connection before anything was ever established moves new connections to the
    /// target's next address instead of counting as the limit; true when it did.
    fn fall_back(&mut self, class: ErrorClass, addr_idx: usize) -> bool {
        let addrs = self.plan.target.addrs.len();
        if class != ErrorClass::ConnectRefused
            || self.rec.counters.connections_established > 0
            || addr_idx != self.addr_idx
            || self.addr_idx + 1 >= addrs
        {
            return false;
        }
        self.addr_idx += 1;
        // The attempt is retried at once on the next address.
        self.attempted -= 1;
        self.rec.counters.connections_opened -= 1;
        true
    }

    fn on_event(&mut self, ev: &mio::event::Event) {
        let slot = ev.token().0 & 0xFFFF_FFFF;
        let gen = (ev.token().0 >> 32) as u32;
        let Some(step) = self.live(slot, gen).map(|c| c.step) else {
            return; // an event for a connection this slot already closed
        };
        // The peer closed or the socket failed: read on to the EOF or the error (transport
        // rule 1), whatever else the event says.
        let closed = ev.is_read_closed() || ev.is_error();
        if step == Step::Connecting {
            if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
                self.on_connect_event(slot);
                // A connect that completes in the same event as the server's bytes or its
                // close: act on them now (rule 6), no new edge will come for them. A server
                // that accepts and closes at once did not admit the connection.
                let connected = self
                    .live(slot, gen)
                    .is_some_and(|c| c.step != Step::Connecting);
                if (ev.is_readable() || closed) && connected {
                    self.on_readable(slot, closed);
                }
            }
            return;
        }
        if ev.is_writable() && !self.flush(slot) {
            return;
        }
        if ev.is_readable() || closed {
            self.on_readable(slot, closed);
        }
    }

    fn on_connect_event(&mut self, slot: usize) {
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return;
        };
        match socket::is_connected(&c.sock) {
            Ok(false) => {}
            Ok(true) => {
                let now = Instant::now();
                c.t_tcp = now;
                self.rec
                    .record(Phase::Connect, (now - c.t_connect).as_nanos() as u64);
                match T::start(self.ctx) {
                    Ok(t) => {
                        let handshaking = t.is_handshaking();
                        c.transport = Some(t);
                        if handshaking {
                            c.step = Step::Handshaking;
                            self.flush(slot);
                        } else {
                            self.transport_ready(slot, now);
                        }
                    }
                    Err(f) => self.on_failure(slot, f),
                }
            }
            Err(e) => {
                let class = ErrorClass::from_connect_error(&e);
                let addr_idx = c.addr_idx;
                if self.fall_back(class, addr_idx) {
                    // Not a finding about the server: the next address gets the attempt.
                    self.close(slot);
                } else {
                    self.lose(slot, Cause::Error(class), Instant::now());
                }
            }
        }
    }

    /// TCP (and TLS) are up: establish, or send the request / upgrade that will.
    fn transport_ready(&mut self, slot: usize, now: Instant) {
        let establish = self.plan.establish;
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return;
        };
        if let Some(t) = &c.transport {
            record_handshake(&mut self.rec, t);
        }
        match establish {
            Establish::Connect => self.established(slot, now),
            Establish::Request => {
                c.step = Step::Requesting;
                c.t_sent = Instant::now();
                self.rec.counters.requests += 1;
                let req = self.request;
                self.send(slot, req);
            }
            Establish::WebSocket => {
                let hs = Handshake::new(&mut self.rng);
                let target = &self.plan.target;
                let Ok(req) = ws::encode_upgrade(
                    &target.path,
                    &target.authority,
                    &hs.key,
                    &self.plan.headers,
                ) else {
                    // Checked once in `run`: only a key with control characters could fail.
                    return self.lose(slot, Cause::Error(ErrorClass::Protocol), now);
                };
                c.ws = Some(Box::new(WsState {
                    accept: hs.accept,
                    decoder: Decoder::new(WS_MAX_MESSAGE, false),
                }));
                c.step = Step::Upgrading;
                c.t_sent = Instant::now();
                self.send(slot, &req);
            }
        }
    }

    /// Rule 2: the connection is established and held from now on.
    fn established(&mut self, slot: usize, at: Instant) {
        let gen = self.slots[slot].gen;
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return;
        };
        c.step = Step::Held;
        c.t_done = at;
        if self.first_failure.is_some_and(|f| c.attempt < f.connection) {
            // Rule 3: it was admitted before the failing one, only slower to finish.
            c.marked = true;
            self.earlier_in_flight -= 1;
            self.limit += 1;
            self.held += 1;
            self.survivors += 1;
        }
        self.in_flight -= 1;
        self.open += 1;
        self.peak_open = self.peak_open.max(self.open);
        self.rec.counters.connections_established += 1;
        self.last_done = Some(self.last_done.map_or(at, |t| t.max(at)));
        if let Some(every) = self.plan.keepalive {
            self.keepalives
                .push_back((Instant::now() + every, slot, gen));
        }
    }

    /// Write `data` on the connection; false when that lost it.
    fn send(&mut self, slot: usize, data: &[u8]) -> bool {
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return false;
        };
        let Some(t) = c.transport.as_mut() else {
            return true;
        };
        match t.send(
            &mut c.sock,
            data,
            &mut c.pending,
            &mut self.rec.counters.bytes_out,
        ) {
            Ok(()) => true,
            Err(e) => {
                self.on_failure(slot, Failure::Io(e));
                false
            }
        }
    }

    /// Write what the socket refused earlier (and TLS's own records); false when that lost it.
    fn flush(&mut self, slot: usize) -> bool {
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return false;
        };
        let Some(t) = c.transport.as_mut() else {
            return true;
        };
        match t.flush(
            &mut c.sock,
            &mut c.pending,
            &mut self.rec.counters.bytes_out,
        ) {
            Ok(_) => true,
            Err(e) => {
                self.on_failure(slot, Failure::Io(e));
                false
            }
        }
    }

    fn send_keepalive(&mut self, slot: usize, now: Instant) {
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return;
        };
        c.awaiting = true;
        c.t_sent = now;
        if c.ws.is_some() {
            self.ping_counter += 1;
            let payload = self.ping_counter.to_be_bytes();
            let mask = self.rng.random();
            let mut frame = Vec::with_capacity(16);
            ws::encode_frame(&mut frame, OpCode::Ping, true, &payload, mask);
            self.rec.counters.ws.pings_sent += 1;
            self.send(slot, &frame);
        } else {
            self.rec.counters.requests += 1;
            let req = self.request;
            self.send(slot, req);
        }
    }

    /// Read what the socket holds and act on it; `closed`: the event said the peer closed or
    /// the socket failed (read to the end, transport rule 1).
    fn on_readable(&mut self, slot: usize, closed: bool) {
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return;
        };
        let Some(t) = c.transport.as_mut() else {
            return;
        };
        let mut bytes_in = 0;
        let rec = &mut self.rec;
        let rng = &mut self.rng;
        let (sock, rb) = (&mut c.sock, &mut c.rb);
        let mut state = ConnState {
            step: &mut c.step,
            http: &mut c.http,
            ws: &mut c.ws,
            awaiting: &mut c.awaiting,
            t_sent: c.t_sent,
            p: &mut c.p,
        };
        let res = t.recv(
            sock,
            &mut self.scratch,
            rb,
            &mut bytes_in,
            closed,
            |rb, now| {
                state.on_bytes(rb, now, rec, rng);
                Ok(())
            },
        );
        self.rec.counters.bytes_in += bytes_in;
        let recv = match res {
            Ok(r) => r,
            Err(f) => {
                // What the bytes before the failure decided still counts (an establishment,
                // a status): apply it first.
                if !self.apply(slot) {
                    return;
                }
                return self.on_failure(slot, f);
            }
        };
        if let Some(done) = recv.handshake_done {
            let Some(c) = self.slots[slot].conn.as_ref() else {
                return;
            };
            self.rec
                .record(Phase::Tls, (done - c.t_tcp).as_nanos() as u64);
            self.transport_ready(slot, done);
            // Plaintext that arrived with the handshake's last flight waited in the buffer.
            let Some(c) = self.slots[slot].conn.as_mut() else {
                return;
            };
            if !c.rb.is_empty() {
                let mut state = ConnState {
                    step: &mut c.step,
                    http: &mut c.http,
                    ws: &mut c.ws,
                    awaiting: &mut c.awaiting,
                    t_sent: c.t_sent,
                    p: &mut c.p,
                };
                state.on_bytes(&mut c.rb, done, &mut self.rec, &mut self.rng);
            }
        }
        if !self.apply(slot) {
            return;
        }
        if recv.eof {
            let now = Instant::now();
            let Some(c) = self.slots[slot].conn.as_mut() else {
                return;
            };
            let cause = match c.step {
                Step::Handshaking => ErrorClass::TlsHandshake,
                Step::Held if c.ws.is_some() => ErrorClass::WsAbnormalClose,
                _ => ErrorClass::EofMidResponse,
            };
            let cause = match (c.step, c.http.finish_eof(c.rb.pending())) {
                // A close-delimited error answer (e.g. a 503 without Content-Length).
                (Step::Requesting, Ok(Some(info))) if info.status >= 400 => {
                    self.rec.response(info.status);
                    Cause::Status(info.status)
                }
                _ => Cause::Error(cause),
            };
            return self.lose(slot, cause, now);
        }
        // Pongs and close replies queued by the frames just read; TLS records of its own.
        self.flush(slot);
    }

    /// Apply what the bytes decided: establishment, frames to send, loss. False when the
    /// connection is gone.
    fn apply(&mut self, slot: usize) -> bool {
        let Some(c) = self.slots[slot].conn.as_mut() else {
            return false;
        };
        let done = c.p.done_at.take();
        let lost = c.p.lost.take();
        let out = std::mem::take(&mut c.p.out);
        if let Some(at) = done {
            self.established(slot, at);
        }
        if !out.is_empty() {
            let ok = self.send(slot, &out);
            // Hand the buffer back so pongs do not allocate every time.
            if let Some(c) = self.slots[slot].conn.as_mut() {
                c.p.out = out;
                c.p.out.clear();
            }
            if !ok {
                return false;
            }
        }
        if let Some(cause) = lost {
            self.lose(slot, cause, Instant::now());
            return false;
        }
        true
    }

    fn on_failure(&mut self, slot: usize, f: Failure) {
        let now = Instant::now();
        let Some(c) = self.slots[slot].conn.as_ref() else {
            return;
        };
        let settled = c.step == Step::Held && now - c.t_done >= self.plan.settle;
        let class = match f {
            Failure::Tls(class) => class,
            Failure::Protocol(_) => ErrorClass::Protocol,
            Failure::Io(e) => {
                let reset = matches!(
                    e.raw_os_error(),
                    Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED)
                );
                match c.step {
                    Step::Connecting => ErrorClass::from_connect_error(&e),
                    // Rule 5: accepted, then refused.
                    _ if reset && !settled => ErrorClass::ConnectReset,
                    Step::Handshaking => ErrorClass::TlsHandshake,
                    Step::Held if reset && c.ws.is_some() => ErrorClass::WsReset,
                    _ => ErrorClass::from_io_error(&e),
                }
            }
        };
        self.lose(slot, Cause::Error(class), now);
    }

    /// Close the connection in `slot` and count why (rules 2–4).
    fn lose(&mut self, slot: usize, cause: Cause, now: Instant) {
        let Some(c) = self.close(slot) else {
            return;
        };
        let settled =
            c.step == Step::Held && now.saturating_duration_since(c.t_done) >= self.plan.settle;
        if settled {
            bump(&mut self.drops, cause);
        } else {
            self.failure(cause, c.attempt, now);
        }
    }

    /// Count an establishment failure; the first one during the ramp ends it (rule 3).
    fn failure(&mut self, cause: Cause, attempt: u64, now: Instant) {
        bump(&mut self.failures, cause);
        // Statuses and close codes have counters of their own in the recorder.
        if let Cause::Error(class) = cause {
            self.rec.error(class);
        }
        if self.first_failure.is_none() && matches!(self.stage, Stage::Ramp | Stage::Draining) {
            self.first_failure = Some(FirstFailure {
                cause,
                at: now - self.start,
                connection: attempt,
            });
            self.end_ramp();
            self.earlier_in_flight = self
                .slots
                .iter()
                .filter_map(|s| s.conn.as_ref())
                .filter(|c| c.step != Step::Held && c.attempt < attempt)
                .count() as u64;
            self.stage = Stage::Resolving;
        }
    }

    /// Take the connection out of its slot (its socket closes when the value drops), keeping
    /// the counts right. None when the slot was already empty.
    fn close(&mut self, slot: usize) -> Option<Conn<T>> {
        let s = self.slots.get_mut(slot)?;
        let c = s.conn.take()?;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot);
        if c.step == Step::Held {
            self.open -= 1;
        } else {
            self.in_flight -= 1;
            if self.opened_before_failure(c.attempt) {
                self.earlier_in_flight -= 1;
            }
        }
        if c.marked {
            self.survivors -= 1;
        }
        Some(c)
    }

    fn finish(mut self) -> PassResult {
        let end = Instant::now();
        let elapsed = end - self.start;
        let last = self.series.last().map_or(0.0, |s| s.0);
        if elapsed.as_secs_f64() > last {
            self.series.push((elapsed.as_secs_f64(), self.open));
        }
        let unresolved = self.in_flight;
        if matches!(self.stage, Stage::Ramp | Stage::Draining) {
            // Interrupted before the ramp ended: what is open now is what it reached.
            self.limit = self.open;
            self.held = self.open;
            self.survivors = self.open;
        }
        for s in &mut self.slots {
            if let Some(c) = s.conn.take() {
                // Rule 6: RST, so the server's slots free at once and no TIME_WAIT is left.
                let _ = socket2::SockRef::from(&c.sock).set_linger(Some(Duration::ZERO));
            }
        }
        PassResult {
            max: self.max as usize,
            limit: self.limit,
            reached_max: self.reached_max,
            first_failure: self.first_failure,
            failures: self.failures,
            drops: self.drops,
            series: self.series,
            held: self.held,
            survived: self.survivors,
            attempted: self.attempted,
            established: self.rec.counters.connections_established,
            unresolved,
            peak_open: self.peak_open,
            elapsed,
            interrupted: self.interrupted,
            recorder: self.rec,
        }
    }
}

/// The parts of a connection its bytes act on (the socket and transport are borrowed apart).
struct ConnState<'c> {
    step: &'c mut Step,
    http: &'c mut ResponseDecoder,
    ws: &'c mut Option<Box<WsState>>,
    awaiting: &'c mut bool,
    t_sent: Instant,
    p: &'c mut Proto,
}

impl ConnState<'_> {
    /// Everything that happens to plaintext, by step. Decisions go to `p` (rule: the loop
    /// applies them after the read, where the counts live).
    fn on_bytes(&mut self, rb: &mut RecvBuf, now: Instant, rec: &mut Recorder, rng: &mut StdRng) {
        while self.p.lost.is_none() && !rb.is_empty() {
            match *self.step {
                // TLS delivered plaintext with its last flight: it waits for the next step.
                Step::Connecting | Step::Handshaking => return,
                Step::Upgrading => {
                    if !self.upgrade(rb, now, rec) {
                        return;
                    }
                }
                Step::Requesting => {
                    if !self.response(rb, now, rec) {
                        return;
                    }
                }
                Step::Held if self.ws.is_some() => return self.frames(rb, rng, rec),
                Step::Held => {
                    if !self.response(rb, now, rec) {
                        return;
                    }
                }
            }
        }
    }

    /// Frame one HTTP response; true when one completed (more bytes may follow).
    fn response(&mut self, rb: &mut RecvBuf, now: Instant, rec: &mut Recorder) -> bool {
        let (n, progress) = match self.http.decode(rb.pending(), false) {
            Ok(r) => r,
            Err(_) => {
                self.p.lost = Some(Cause::Error(ErrorClass::Protocol));
                return false;
            }
        };
        rb.consume(n);
        let HttpProgress::Complete(info) = progress else {
            return false;
        };
        rec.response(info.status);
        *self.awaiting = false;
        if *self.step == Step::Requesting {
            rec.record(Phase::Total, (now - self.t_sent).as_nanos() as u64);
        }
        if info.status >= 400 {
            self.p.lost = Some(Cause::Status(info.status));
            return false;
        }
        if *self.step == Step::Requesting {
            *self.step = Step::Held;
            self.p.done_at = Some(now);
        }
        true
    }

    /// Check the answer to the upgrade; true when the 101 was validated.
    fn upgrade(&mut self, rb: &mut RecvBuf, now: Instant, rec: &mut Recorder) -> bool {
        let Some(ws) = self.ws.as_ref() else {
            return false;
        };
        match ws::parse_upgrade_response(rb.pending(), &ws.accept) {
            Ok(None) => false,
            Ok(Some(n)) => {
                rb.consume(n);
                rec.record(Phase::Upgrade, (now - self.t_sent).as_nanos() as u64);
                rec.counters.ws.upgraded += 1;
                *self.step = Step::Held;
                self.p.done_at = Some(now);
                true
            }
            Err(ws::UpgradeError::Status(code)) => {
                rec.counters.status[StatusClass::of(code).index()] += 1;
                self.p.lost = Some(Cause::Status(code));
                false
            }
            Err(_) => {
                self.p.lost = Some(Cause::Error(ErrorClass::UpgradeRejected));
                false
            }
        }
    }

    /// Frames on a held WebSocket: pings are answered, pongs and messages prove it alive, a
    /// close frame is answered and loses the connection.
    fn frames(&mut self, rb: &mut RecvBuf, rng: &mut StdRng, rec: &mut Recorder) {
        let Some(ws_state) = self.ws.as_mut() else {
            return;
        };
        let out = &mut self.p.out;
        loop {
            let (n, progress) = match ws_state.decoder.decode(rb.pending()) {
                Ok(r) => r,
                Err(e) => {
                    ws::encode_close(out, e.close_code(), "", rng.random());
                    self.p.lost = Some(Cause::Error(ErrorClass::WsProtocol));
                    return;
                }
            };
            let mut lost = None;
            match progress {
                WsProgress::Partial => {}
                WsProgress::Frame(Frame::Ping(payload)) => {
                    rec.counters.ws.pings_answered += 1;
                    ws::encode_frame(out, OpCode::Pong, true, payload, rng.random());
                }
                WsProgress::Frame(Frame::Pong(_)) => {
                    rec.counters.ws.pongs_received += 1;
                    *self.awaiting = false;
                }
                WsProgress::Frame(Frame::Message { .. }) => {
                    rec.counters.ws.messages_in += 1;
                    *self.awaiting = false;
                }
                WsProgress::Frame(Frame::Close { code, .. }) => {
                    rec.counters.ws.close_code(code);
                    ws::encode_close(out, code.unwrap_or(1000), "", rng.random());
                    lost = Some(Cause::WsClose(code));
                }
            }
            rb.consume(n);
            if lost.is_some() {
                self.p.lost = lost;
                return;
            }
            if n == 0 {
                return;
            }
        }
    }
}

/// Add one to `cause`'s count, keeping first-occurrence order.
fn bump(counts: &mut Vec<(Cause, u64)>, cause: Cause) {
    match counts.iter_mut().find(|(c, _)| *c == cause) {
        Some((_, n)) => *n += 1,
        None => counts.push((cause, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Target, TlsPlan};

    #[test]
    fn labels_name_the_class_the_status_or_the_close_code() {
        assert_eq!(
            Cause::Error(ErrorClass::ConnectReset).label(),
            "connect_reset"
        );
        assert_eq!(Cause::Status(429).label(), "http_429");
        assert_eq!(Cause::WsClose(Some(1013)).label(), "ws_close_1013");
        assert_eq!(Cause::WsClose(None).label(), "ws_close");
        assert!(Cause::Error(ErrorClass::FdLimit).is_local());
        assert!(Cause::Error(ErrorClass::AddrNotAvailable).is_local());
        assert!(!Cause::Error(ErrorClass::ConnectReset).is_local());
        assert!(!Cause::Status(503).is_local());
        assert_eq!(Cause::Status(503).status(), Some(503));
        assert_eq!(Cause::WsClose(Some(1008)).close_code(), Some(1008));
        assert_eq!(Cause::Status(503).close_code(), None);
    }

    #[test]
    fn bump_counts_in_first_occurrence_order() {
        let mut v = Vec::new();
        bump(&mut v, Cause::Status(429));
        bump(&mut v, Cause::Error(ErrorClass::ConnectReset));
        bump(&mut v, Cause::Status(429));
        assert_eq!(
            v,
            vec![
                (Cause::Status(429), 2),
                (Cause::Error(ErrorClass::ConnectReset), 1)
            ]
        );
    }

    /// A plan against `addr` whose timeouts and settle window never run out within a test.
    fn plan_for(addr: std::net::SocketAddr, establish: Establish) -> ProbePlan {
        ProbePlan {
            target: Target {
                scheme: Scheme::Http,
                host: addr.ip().to_string(),
                port: addr.port(),
                path: "/".into(),
                authority: addr.to_string(),
                addrs: vec![addr],
                url: format!("http://{addr}/"),
            },
            tls: TlsPlan::default(),
            headers: Vec::new(),
            connect_rate: 1.0,
            max: 1,
            hold: Duration::ZERO,
            settle: Duration::from_secs(30),
            establish,
            keepalive: None,
            connect_timeout: Duration::from_secs(30),
            confirm: None,
        }
    }

    /// Opens the pass's one connection, lets the server end it with `end` before the pass
    /// looks at the socket, then hands the pass the one event that says both "connected" and
    /// "closed" — the order a busy client sees when the server accepts and closes at once.
    fn connect_then(end: impl FnOnce(std::net::TcpStream)) -> Pass<'static, Plain> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let plan = Box::leak(Box::new(plan_for(
            listener.local_addr().expect("addr"),
            Establish::Connect,
        )));
        let mut pass = Pass::<Plain>::new(plan, &(), b"", 1, Duration::ZERO).expect("pass");
        pass.open_one();
        let (server, _) = listener.accept().expect("accept");
        end(server);
        // Wait (bounded) for the close to reach the client socket; poll(2) leaves its epoll
        // edge alone.
        let fd = pass.slots[0]
            .conn
            .as_ref()
            .expect("connecting")
            .sock
            .as_raw_fd();
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, alive for the whole call.
        let ready = unsafe { libc::poll(&mut pfd, 1, 5000) };
        assert_eq!(ready, 1, "the server's close did not arrive within 5 s");
        let mut events = Events::with_capacity(8);
        pass.poll
            .poll(&mut events, Some(Duration::from_secs(5)))
            .expect("poll");
        let ev = events
            .iter()
            .find(|e| e.token() != TIMER)
            .expect("an event for the connection");
        assert!(ev.is_writable() && ev.is_read_closed(), "one event: {ev:?}");
        pass.on_event(ev);
        pass
    }

    #[test]
    fn connect_completing_with_a_fin_is_a_failure_not_an_established_connection() {
        let pass = connect_then(|s| s.shutdown(std::net::Shutdown::Write).expect("FIN"));
        let eof = Cause::Error(ErrorClass::EofMidResponse);
        assert_eq!(pass.open, 0, "held as if the server had admitted it");
        assert_eq!(pass.failures, vec![(eof, 1)]);
        assert_eq!(pass.first_failure.map(|f| f.cause), Some(eof));
    }

    #[test]
    fn connect_completing_with_a_reset_is_a_failure_not_an_established_connection() {
        let pass = connect_then(|s| {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .expect("linger 0");
        });
        let reset = Cause::Error(ErrorClass::ConnectReset);
        assert_eq!(pass.open, 0, "held as if the server had admitted it");
        assert_eq!(pass.failures, vec![(reset, 1)]);
        assert_eq!(pass.first_failure.map(|f| f.cause), Some(reset));
    }

    /// A connection's protocol state outside any socket, fed bytes by hand.
    struct Fed {
        step: Step,
        http: ResponseDecoder,
        ws: Option<Box<WsState>>,
        awaiting: bool,
        p: Proto,
        rb: RecvBuf,
        rec: Recorder,
        rng: StdRng,
    }

    impl Fed {
        fn new(step: Step, ws_accept: Option<&str>) -> Fed {
            Fed {
                step,
                http: ResponseDecoder::new(),
                ws: ws_accept.map(|a| {
                    Box::new(WsState {
                        accept: a.to_string(),
                        decoder: Decoder::new(WS_MAX_MESSAGE, false),
                    })
                }),
                awaiting: false,
                p: Proto::default(),
                rb: RecvBuf::new(),
                rec: Recorder::new(),
                rng: StdRng::seed_from_u64(1),
            }
        }

        fn feed(&mut self, bytes: &[u8]) {
            let spare = self.rb.spare();
            spare[..bytes.len()].copy_from_slice(bytes);
            self.rb.filled(bytes.len());
            let mut st = ConnState {
                step: &mut self.step,
                http: &mut self.http,
                ws: &mut self.ws,
                awaiting: &mut self.awaiting,
                t_sent: Instant::now(),
                p: &mut self.p,
            };
            st.on_bytes(&mut self.rb, Instant::now(), &mut self.rec, &mut self.rng);
        }
    }

    #[test]
    fn a_2xx_establishes_and_a_429_or_503_is_a_failure_with_its_status() {
        let mut f = Fed::new(Step::Requesting, None);
        f.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(f.step, Step::Held);
        assert!(f.p.done_at.is_some() && f.p.lost.is_none());
        assert_eq!(f.rec.histogram(Phase::Total).len(), 1);
        for status in [429u16, 503] {
            let mut f = Fed::new(Step::Requesting, None);
            // Byte by byte: nothing is decided before the response is complete.
            let resp =
                format!("HTTP/1.1 {status} X\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
            for b in resp.as_bytes() {
                assert!(f.p.lost.is_none());
                f.feed(std::slice::from_ref(b));
            }
            assert_eq!(f.p.lost, Some(Cause::Status(status)));
            assert!(f.p.done_at.is_none());
            assert_eq!(f.step, Step::Requesting);
        }
    }

    #[test]
    fn a_keepalive_answer_clears_the_wait_and_garbage_is_a_protocol_failure() {
        let mut f = Fed::new(Step::Held, None);
        f.awaiting = true;
        f.feed(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(!f.awaiting && f.p.lost.is_none());
        f.feed(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert_eq!(f.p.lost, Some(Cause::Error(ErrorClass::Protocol)));
    }

    #[test]
    fn upgrade_101_then_close_1013_is_a_ws_close_failure_and_is_answered() {
        let hs = Handshake::from_key("dGhlIHNhbXBsZSBub25jZQ==");
        let mut f = Fed::new(Step::Upgrading, Some(&hs.accept));
        let mut bytes = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
            hs.accept
        )
        .into_bytes();
        // Server frames are unmasked: close, code 1013 "Try Again Later".
        bytes.extend_from_slice(&[0x88, 0x02, 0x03, 0xF5]);
        f.feed(&bytes);
        assert_eq!(f.step, Step::Held);
        assert!(f.p.done_at.is_some(), "the 101 established it first");
        assert_eq!(f.p.lost, Some(Cause::WsClose(Some(1013))));
        // The close is answered with a masked close frame carrying the same code.
        assert_eq!(f.p.out[0], 0x88);
        assert_eq!(f.p.out[1], 0x80 | 2);
        assert_eq!(f.rec.histogram(Phase::Upgrade).len(), 1);
    }

    #[test]
    fn a_non_101_answer_to_the_upgrade_fails_with_its_status() {
        let mut f = Fed::new(Step::Upgrading, Some("x"));
        f.feed(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(f.p.lost, Some(Cause::Status(429)));
        let mut f = Fed::new(Step::Upgrading, Some("expected"));
        f.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n");
        assert_eq!(f.p.lost, Some(Cause::Error(ErrorClass::UpgradeRejected)));
    }

    #[test]
    fn held_websocket_answers_pings_and_counts_pongs() {
        let mut f = Fed::new(Step::Held, Some("x"));
        f.awaiting = true;
        // ping "hi", then a pong: the ping gets a masked pong with the same payload.
        f.feed(&[0x89, 0x02, b'h', b'i', 0x8A, 0x00]);
        assert!(f.p.lost.is_none());
        assert!(!f.awaiting, "the pong answered the keep-alive");
        assert_eq!(f.p.out.len(), 2 + 4 + 2);
        assert_eq!(&f.p.out[..2], &[0x8A, 0x82]);
        let mask = [f.p.out[2], f.p.out[3], f.p.out[4], f.p.out[5]];
        assert_eq!([f.p.out[6] ^ mask[0], f.p.out[7] ^ mask[1]], *b"hi");
        assert_eq!(f.rec.counters.ws.pings_answered, 1);
        assert_eq!(f.rec.counters.ws.pongs_received, 1);
    }

    #[test]
    fn the_pacer_fires_at_the_due_instant_not_a_millisecond_later() {
        let mut pacer = Pacer::new().expect("timerfd");
        let mut poll = Poll::new().expect("poll");
        poll.registry()
            .register(
                &mut SourceFd(&pacer.fd.as_raw_fd()),
                TIMER,
                Interest::READABLE,
            )
            .expect("register");
        let mut events = Events::with_capacity(4);
        for _ in 0..3 {
            let now = Instant::now();
            let at = now + Duration::from_micros(300);
            pacer.arm(at, now).expect("arm");
            let deadline = now + Duration::from_secs(2);
            let mut fired = false;
            while !fired && Instant::now() < deadline {
                poll.poll(&mut events, Some(Duration::from_secs(1)))
                    .expect("poll");
                fired = events.iter().any(|e| e.token() == TIMER);
            }
            assert!(fired, "the timer raised an edge");
            pacer.fired();
            // Not early; an epoll timeout could not be this close (it rounds up to 1 ms).
            assert!(Instant::now() >= at);
            assert!(pacer.armed.is_none());
        }
    }
}
