//! `connbench probe`: how many concurrent connections does a server accept, and how does it say
//! no? One thread opens connections at a fixed rate and holds every one of them open until the
//! first connection cannot be established (or `--max` is reached), keeps holding for `--hold` to
//! see whether the ones already open survive, and optionally re-tests just below and at the
//! limit (`--confirm`).
//!
//! The probe is a [`Session`] on the connection core ([`super::core`]): the core makes each
//! connection (socket, connect timeout, TLS handshake and its timeout, the transport and its
//! buffers, the timer table), and this module decides what a connection must do to count as
//! established, when the ramp ends, what the limit is and why each connection was lost. One
//! pass is one [`Net`] (a slot added per connection opened, freed slots reused) driven by the
//! loop in `run_pass` (no warm-up, no coordinator: it checks Ctrl-C and never sleeps longer
//! than [`MAX_WAIT`]). It reuses the HTTP response framer and the WebSocket codec. It must not
//! print, parse flags or format reports (`app` and `report::probe` do), and it never refuses to
//! start because `--max` is above the file-descriptor limit: finding that limit (EMFILE,
//! reported as local) is part of its job.
//!
//! Rules:
//! 1. Pacing: connection k (0-based) is due at `start + k / rate`. The session's `wake_at`
//!    says so and the loop's alarm (core rule 7) wakes it at the due instant with
//!    sub-millisecond precision, which epoll's millisecond timeout cannot; when the loop is late, every due
//!    connection is opened at once (at most [`MAX_BURST`] per turn, and the core's connect
//!    pacing may defer a long run of connects by a millisecond), so lateness never accumulates.
//! 2. A connection is *established* when its last step completes: TCP (and the TLS handshake
//!    for https); then, with [`Establish::Request`], one GET answered below 400; with
//!    [`Establish::WebSocket`], a valid 101. Each step must finish within `connect_timeout`
//!    (the core's connect and handshake deadlines, then the request's or upgrade's
//!    [`TimerKind::Request`] deadline from when it was written). A connection lost within
//!    `settle` of being established (a server that accepts and then resets, closes, or sends a
//!    WebSocket close 1008/1013) was not really admitted: that loss is an establishment
//!    *failure*. It *settles* `settle` after it was established ([`TimerKind::Settle`]); later
//!    losses of held connections are *drops*.
//! 3. The first failure ends the ramp: no connection is opened after it. The *limit* is the
//!    number of settled connections open at that instant, plus those opened *before* the
//!    failing one that were still being established or settling and settle afterwards (a
//!    server admits in order; they were only slower). Connections opened *after* the failing
//!    one that had not settled are not counted, even if TCP completed: they raced the failure,
//!    and a server at its limit refuses them too. (A server resets connection N + 1 only when
//!    its loop gets to it; on a busy machine connection N + 2 completes its TCP handshake in the
//!    kernel's backlog before that reset is seen, and counting it made the limit N + 1.) The
//!    hold starts once those opened before are resolved (each step bounded by
//!    `connect_timeout`, then `settle`). If `max` connections were attempted without a failure,
//!    the ramp ends once the last one has settled, and the limit is what is open.
//! 4. Survival: the connections counted in the limit are marked; after `hold`, the marked ones
//!    still open are the survivors. A held connection is lost when a read returns EOF or an
//!    error, or (with `keepalive`) when the request or ping it sends every `keepalive` is still
//!    unanswered `max(keepalive, connect_timeout)` after it was sent — a silent drop. No
//!    keep-alive goes out while the previous one is unanswered.
//! 5. Classification, by the step the connection was in: connect errors as
//!    [`ErrorClass::from_connect_error`] (EMFILE/ENFILE and EADDRNOTAVAIL are local); a reset
//!    before the connection settled is `connect_reset` (the server accepted, then refused),
//!    during the TLS handshake too ([`Lost::HandshakeReset`]); an EOF during the TLS handshake
//!    is `tls_handshake`; a status ≥ 400 is [`Cause::Status`]; a WebSocket close frame is
//!    [`Cause::WsClose`] with its code; a held connection that is reset or closed is
//!    `reset_mid_response` / `eof_mid_response` (for a WebSocket without a close frame:
//!    `ws_reset` / `ws_abnormal_close`). A FIN or RST in the same event as the last bytes, and a connect that
//!    completes in an event that also says closed, are classified at once (the core's rule 2).
//! 6. Sockets are registered once, edge-triggered, and read until drained (the core's
//!    transport). Every pass ends by closing its sockets with SO_LINGER 0 ([`Close::Rst`]): the
//!    server frees its slots at once and no TIME_WAIT eats the ports the next pass needs.
//! 7. Address fall-back: the core's policy (`core::connect`: a refused or timed-out connect
//!    moves on to the next address) applies only until a first connection was established;
//!    after that a refusal is the limit being looked for, not a dead address. A connection
//!    that falls back is retried at once on the next address and the retry is not counted as
//!    an attempt; on the last address a refusal is a failure. Every new connection goes to the
//!    address that works (the pass's, set on the slot before it opens).

use std::io;
use std::time::{Duration, Instant, SystemTime};

use mio::Poll;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::buf::RecvBuf;
use super::core::live::{Drawer, ProbeSnapshot, ProbeStep};
use super::core::{
    connect, Close, Connector, Driver, Failure, Lost, Net, Opened, Plain, Session, TimerKind, Tls,
    TlsCtx, Transport,
};
use super::EngineError;
use crate::metrics::{ErrorClass, Phase, Recorder, StatusClass};
use crate::plan::Scheme;
use crate::proto::http1::{encode_request, Progress as HttpProgress, ResponseDecoder};
use crate::proto::ws::{self, Decoder, Frame, Handshake, OpCode, Progress as WsProgress};

pub use crate::metrics::probe::SAMPLE_EVERY;
/// Most connections opened in one loop turn when catching up (rule 1), so events of the
/// connections already open are still served between bursts.
pub const MAX_BURST: u64 = 64;
/// Largest WebSocket message a held connection accepts (they are read and discarded).
const WS_MAX_MESSAGE: usize = 1 << 20;
/// "Never" for a schedule that cannot be represented.
const FAR: Duration = Duration::from_secs(365 * 24 * 3600);
/// Longest single wait in the loop, so Ctrl-C is seen promptly whatever is scheduled.
pub const MAX_WAIT: Duration = Duration::from_millis(100);

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
    // Everything is prepared (the request, the TLS configuration) before waiting for
    // --start-at; the probe's clock starts when the wait ends.
    let wait = || match plan.start_at {
        Some(at)
            if super::start::wait_until(at, crate::sys::interrupted)
                == super::start::Waited::Interrupted =>
        {
            Err(EngineError::InterruptedBeforeStart)
        }
        _ => Ok(()),
    };
    match plan.target.scheme {
        Scheme::Http => {
            wait()?;
            run_with::<Plain>(plan, || (), &request)
        }
        Scheme::Https => {
            let base = crate::tls::client_config(&plan.tls)?;
            // One config (and session store) for every pass: the confirm passes resume.
            let config = crate::tls::worker_config(&base, plan.tls.resume);
            let name = crate::tls::server_name(&plan.tls, &plan.target.host)?;
            wait()?;
            run_with::<Tls>(plan, || TlsCtx::new(config.clone(), name.clone()), &request)
        }
    }
}

fn run_with<T: Transport>(
    plan: &ProbePlan,
    ctx: impl Fn() -> T::Ctx,
    request: &[u8],
) -> Result<ProbeResult, EngineError> {
    let started_at = SystemTime::now();
    let t0 = Instant::now();
    let (user0, sys0) = crate::sys::thread_cpu_time();
    let pass =
        run_pass::<T>(plan, ctx(), request, plan.max, plan.hold).map_err(EngineError::Spawn)?;
    let mut interrupted = pass.interrupted;
    let confirm = match plan.confirm {
        Some(pause) => {
            let c = confirm::<T>(plan, &ctx, request, &pass, pause)?;
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
    ctx: &impl Fn() -> T::Ctx,
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
        let pass =
            run_pass::<T>(plan, ctx(), request, max, Duration::ZERO).map_err(EngineError::Spawn)?;
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

/// One pass: a net, the probe session on it, and the loop that drives them until the hold is
/// over (or Ctrl-C). At the end every socket left is closed with an RST (rule 6).
fn run_pass<T: Transport>(
    plan: &ProbePlan,
    ctx: T::Ctx,
    request: &[u8],
    max: usize,
    hold: Duration,
) -> io::Result<PassResult> {
    let connector = Connector::new(plan.target.addrs.clone(), Vec::new(), 0);
    let net = Net::<T>::new(Poll::new()?, 0, ctx, connector, plan.connect_timeout);
    let probe = Probe::new(plan, request, max, hold);
    let mut d = Driver::new(net, probe);
    // The live line: attempts and connect percentiles of the last second (`--progress`).
    let mut drawer = Drawer::new(plan.progress);
    if drawer.is_some() {
        d.net.rec.enable_recent(Phase::Connect);
    }
    let started = Instant::now();
    let mut next_line = started + Duration::from_secs(1);
    d.session.on_start(&mut d.net, started);
    loop {
        if crate::sys::interrupted() {
            d.session.interrupted = true;
            break;
        }
        d.turn(Instant::now());
        if d.session.over {
            break;
        }
        let now = Instant::now();
        if let Some(dr) = &mut drawer {
            if now >= next_line {
                let connect = d.net.rec.recent().and_then(|h| {
                    let p = super::core::live::p50_p99(h);
                    h.reset();
                    p
                });
                let snap = d.session.snapshot(now, connect);
                dr.draw(|out| super::core::live::format_probe(out, &snap));
                next_line = (next_line + Duration::from_secs(1)).max(now);
            }
        }
        // Core rule 7: the wait has no timeout of its own; the alarm ends it.
        let wake = if d.session.burst_left {
            now
        } else {
            d.next_wake()
                .map_or(now + MAX_WAIT, |t| t.min(now + MAX_WAIT))
        };
        if d.poll_until(wake, now).is_err() {
            // epoll itself failing cannot be recovered from; report what was found.
            break;
        }
    }
    if let Some(dr) = &mut drawer {
        dr.clear();
    }
    let (mut net, probe) = d.into_parts();
    Ok(probe.finish(&mut net, Instant::now()))
}

/// Where a slot's connection is, as far as the probe is concerned (TCP and TLS are the core's
/// [`super::core::Link`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// No connection in this slot.
    Free,
    /// `connect()` called; TCP or the TLS handshake in progress.
    Opening,
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

/// What a connection's bytes decided during a read; applied after it (`after_read`), or
/// before the loss is classified when the read ended the connection (`on_lost`).
#[derive(Default)]
struct Proto {
    /// The connection became established at this instant (rule 2).
    done_at: Option<Instant>,
    /// The connection is lost.
    lost: Option<Cause>,
    /// Frames to send in answer (pongs, the close reply).
    out: Vec<u8>,
}

/// A slot's connection.
struct Conn {
    step: Step,
    /// 1-based index in opening order.
    attempt: u64,
    /// Index into the target's addresses it was opened to.
    addr_idx: usize,
    /// When it was established.
    t_done: Instant,
    /// When the last request (establishing or keep-alive) or upgrade was written.
    t_sent: Instant,
    http: ResponseDecoder,
    ws: Option<Box<WsState>>,
    /// A keep-alive request or ping is unanswered.
    awaiting: bool,
    /// Established at least `settle` ago (rule 2).
    settled: bool,
    /// Opened before the first failure and not settled then: counts towards the limit when it
    /// settles (rule 3).
    pending: bool,
    /// Counted in the limit: its survival is checked (rule 4).
    marked: bool,
    p: Proto,
}

impl Conn {
    fn new(step: Step, attempt: u64, addr_idx: usize, now: Instant) -> Conn {
        Conn {
            step,
            attempt,
            addr_idx,
            t_done: now,
            t_sent: now,
            http: ResponseDecoder::new(),
            ws: None,
            awaiting: false,
            settled: false,
            pending: false,
            marked: false,
            p: Proto::default(),
        }
    }
}

/// Where the pass is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Opening connections at the connect rate.
    Ramp,
    /// All `max` attempted; waiting for the last ones to be established and settle.
    Draining,
    /// The first failure happened; waiting for the connections opened before it that were
    /// still being established or settling (rule 3).
    Resolving,
    /// The ramp ended; holding everything open until this instant.
    Holding(Instant),
}

/// The probe session of one pass: its connections and its findings.
struct Probe<'a> {
    plan: &'a ProbePlan,
    request: &'a [u8],
    max: u64,
    hold: Duration,
    /// One per slot of the net.
    conns: Vec<Conn>,
    free: Vec<usize>,
    rng: StdRng,
    /// The address new connections go to (rule 7).
    addr_idx: usize,
    start: Instant,
    stage: Stage,
    attempted: u64,
    /// Connections established (rule 2), late ones after the first failure included.
    established: u64,
    /// Established connections open.
    open: u64,
    /// Connections opened and not yet established.
    in_flight: u64,
    /// Established connections open that have not settled.
    unsettled: u64,
    /// Connections opened before the first failure that have neither settled nor been lost.
    pending: u64,
    peak_open: u64,
    first_failure: Option<FirstFailure>,
    limit: u64,
    reached_max: bool,
    failures: Vec<(Cause, u64)>,
    drops: Vec<(Cause, u64)>,
    series: Vec<(f64, u64)>,
    next_sample: Instant,
    held: u64,
    survivors: u64,
    ping_counter: u64,
    /// The core's connect pacing deferred the next connection until this instant.
    deferred: Option<Instant>,
    /// More connections are due right now than one turn opens.
    burst_left: bool,
    /// The hold is over.
    over: bool,
    interrupted: bool,
}

impl<'a> Probe<'a> {
    fn new(plan: &'a ProbePlan, request: &'a [u8], max: usize, hold: Duration) -> Probe<'a> {
        let now = Instant::now();
        Probe {
            plan,
            request,
            max: max as u64,
            hold,
            conns: Vec::new(),
            free: Vec::new(),
            rng: StdRng::from_rng(&mut rand::rng()),
            addr_idx: 0,
            start: now,
            stage: Stage::Ramp,
            attempted: 0,
            established: 0,
            open: 0,
            in_flight: 0,
            unsettled: 0,
            pending: 0,
            peak_open: 0,
            first_failure: None,
            limit: 0,
            reached_max: false,
            failures: Vec::new(),
            drops: Vec::new(),
            series: vec![(0.0, 0)],
            next_sample: now + SAMPLE_EVERY,
            held: 0,
            survivors: 0,
            ping_counter: 0,
            deferred: None,
            burst_left: false,
            over: false,
            interrupted: false,
        }
    }

    /// When connection `k` (0-based) is due (rule 1).
    fn due(&self, k: u64) -> Instant {
        let secs = k as f64 / self.plan.connect_rate;
        // `app` bounds the rate, so this is always representable; an absurd value must still
        // not panic: it means "not within a year".
        Duration::try_from_secs_f64(secs)
            .ok()
            .and_then(|d| self.start.checked_add(d))
            .unwrap_or(self.start + FAR)
    }

    /// Rule 1: open every connection that is due (at most [`MAX_BURST`]); true when more are
    /// due right now.
    fn open_due<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) -> bool {
        if self.deferred.is_some_and(|t| now < t) {
            return false;
        }
        self.deferred = None;
        let mut opened = 0;
        while self.stage == Stage::Ramp && self.attempted < self.max {
            if self.due(self.attempted) > now {
                return false;
            }
            if opened == MAX_BURST {
                return true;
            }
            opened += 1;
            if !self.open_one(net, now) {
                return false;
            }
        }
        false
    }

    /// Open connection `attempted + 1` to the pass's address; false when the core's connect
    /// pacing deferred it (it stays due and is not counted yet).
    fn open_one<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) -> bool {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.conns.push(Conn::new(Step::Free, 0, 0, now));
                let slot = net.add_slot();
                debug_assert_eq!(slot + 1, self.conns.len(), "one conn per slot");
                slot
            }
        };
        self.attempted += 1;
        let attempt = self.attempted;
        let addr_idx = self.addr_idx;
        net.set_addr_idx(slot, addr_idx);
        match net.open(slot, now) {
            Opened::Connecting => {
                self.conns[slot] = Conn::new(Step::Opening, attempt, addr_idx, now);
                self.in_flight += 1;
            }
            Opened::Deferred(at) => {
                net.timers.stop(slot, TimerKind::Reopen);
                self.free.push(slot);
                self.attempted -= 1;
                self.deferred = Some(at);
                return false;
            }
            Opened::Failed(class) => {
                self.free.push(slot);
                if self.falls_back(class, addr_idx) {
                    // Retried on the next address by the caller's loop: it is still due.
                    self.undo_attempt(net);
                } else {
                    self.failure(&mut net.rec, Cause::Error(class), attempt, Instant::now());
                }
            }
        }
        true
    }

    /// Rule 7: does a connect to `addr_idx` that failed with `class` move the pass to the next
    /// address (or, opened before the pass moved on, retry on the current one)?
    fn falls_back(&mut self, class: ErrorClass, addr_idx: usize) -> bool {
        if !connect::moves_on(class) || self.established > 0 || self.first_failure.is_some() {
            return false;
        }
        if addr_idx == self.addr_idx {
            if self.addr_idx + 1 >= self.plan.target.addrs.len() {
                return false;
            }
            self.addr_idx += 1;
        }
        true
    }

    /// The attempt that fell back is made again: it was not a finding about the server.
    fn undo_attempt<T: Transport>(&mut self, net: &mut Net<T>) {
        self.attempted -= 1;
        net.rec.counters.connections_opened -= 1;
        if self.stage == Stage::Draining {
            self.stage = Stage::Ramp;
        }
    }

    /// Rule 2: the connection in `slot` is established at `at` and held from now on.
    fn established<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, at: Instant) {
        let c = &mut self.conns[slot];
        c.step = Step::Held;
        c.t_done = at;
        self.in_flight -= 1;
        self.open += 1;
        self.unsettled += 1;
        self.established += 1;
        self.peak_open = self.peak_open.max(self.open);
        net.timers.stop(slot, TimerKind::Request);
        if self.plan.settle.is_zero() {
            self.settle(slot);
        } else {
            net.timers
                .set(slot, TimerKind::Settle, at + self.plan.settle);
        }
        if let Some(every) = self.plan.keepalive {
            net.timers.set(slot, TimerKind::Heartbeat, at + every);
        }
    }

    /// True when the connection had settled by `now` (its timer may not have fired yet).
    fn settled_by(&self, c: &Conn, now: Instant) -> bool {
        c.step == Step::Held
            && (c.settled || now.saturating_duration_since(c.t_done) >= self.plan.settle)
    }

    /// The held connection in `slot` settled: counted in the limit if it was waited for.
    fn settle(&mut self, slot: usize) {
        let c = &mut self.conns[slot];
        if c.settled {
            return;
        }
        c.settled = true;
        self.unsettled -= 1;
        if c.pending {
            c.pending = false;
            self.pending -= 1;
            self.mark(slot);
        }
    }

    /// Count the connection in `slot` in the limit and watch its survival (rules 3 and 4).
    fn mark(&mut self, slot: usize) {
        self.conns[slot].marked = true;
        self.limit += 1;
        self.held += 1;
        self.survivors += 1;
    }

    /// The ramp is over at `now` (`failing`: the attempt that failed first): count the limit
    /// and mark the survivors-to-be; the connections opened before the failing one that have
    /// not settled are waited for (rule 3).
    fn end_ramp(&mut self, now: Instant, failing: Option<u64>) {
        for slot in 0..self.conns.len() {
            let c = &self.conns[slot];
            if c.step == Step::Free {
                continue;
            }
            if self.settled_by(c, now) {
                self.settle(slot);
                self.mark(slot);
            } else if failing.is_some_and(|f| c.attempt < f) {
                self.conns[slot].pending = true;
                self.pending += 1;
            }
        }
    }

    /// Count an establishment failure; the first one during the ramp ends it (rule 3).
    fn failure(&mut self, rec: &mut Recorder, cause: Cause, attempt: u64, now: Instant) {
        bump(&mut self.failures, cause);
        // Statuses and close codes have counters of their own in the recorder.
        if let Cause::Error(class) = cause {
            rec.error(class);
        }
        if self.first_failure.is_none() && matches!(self.stage, Stage::Ramp | Stage::Draining) {
            self.first_failure = Some(FirstFailure {
                cause,
                at: now.saturating_duration_since(self.start),
                connection: attempt,
            });
            self.end_ramp(now, Some(attempt));
            self.stage = Stage::Resolving;
        }
    }

    /// Close the connection in `slot` and count why: a failure before it settled, a drop
    /// after (rules 2–4).
    fn lose<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, cause: Cause, now: Instant) {
        let c = &self.conns[slot];
        if c.step == Step::Free {
            return;
        }
        let settled = self.settled_by(c, now);
        let attempt = c.attempt;
        if settled {
            // Its Settle deadline passed and the loss was seen before the timer fired.
            self.settle(slot);
        }
        self.close(net, slot);
        if settled {
            bump(&mut self.drops, cause);
        } else {
            self.failure(&mut net.rec, cause, attempt, now);
        }
    }

    /// Take the connection out of its slot, keeping the counts right.
    fn close<T: Transport>(&mut self, net: &mut Net<T>, slot: usize) {
        let c = &mut self.conns[slot];
        match c.step {
            Step::Free => return,
            Step::Held => {
                self.open -= 1;
                if !c.settled {
                    self.unsettled -= 1;
                }
            }
            Step::Opening | Step::Requesting | Step::Upgrading => self.in_flight -= 1,
        }
        if c.pending {
            self.pending -= 1;
        }
        if c.marked {
            self.survivors -= 1;
        }
        c.step = Step::Free;
        c.ws = None;
        net.close(slot, Close::Fin);
        self.free.push(slot);
    }

    /// The class of a socket error on a connection that is up (rule 5).
    fn io_class(&self, slot: usize, e: &io::Error, now: Instant) -> ErrorClass {
        let reset = matches!(
            e.raw_os_error(),
            Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED)
        );
        if reset && !self.settled_by(&self.conns[slot], now) {
            // Rule 5: accepted, then refused.
            ErrorClass::ConnectReset
        } else if reset && self.plan.establish == Establish::WebSocket {
            // A held WebSocket reset without a close frame (issue 7 point 7).
            ErrorClass::WsReset
        } else {
            ErrorClass::from_io_error(e)
        }
    }

    /// Write `data` on the connection; a failed write loses it.
    fn send<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, data: &[u8], now: Instant) {
        if let Err(e) = net.send(slot, data) {
            let class = self.io_class(slot, &e, now);
            self.lose(net, slot, Cause::Error(class), now);
        }
    }

    /// Rule 4: a keep-alive request or ping on the held connection in `slot`, answered by
    /// `max(keepalive, connect_timeout)` from now or the connection is dropped.
    fn send_keepalive<T: Transport>(
        &mut self,
        net: &mut Net<T>,
        slot: usize,
        every: Duration,
        now: Instant,
    ) {
        let c = &mut self.conns[slot];
        c.awaiting = true;
        c.t_sent = now;
        net.timers.set(
            slot,
            TimerKind::Request,
            now + every.max(self.plan.connect_timeout),
        );
        if c.ws.is_some() {
            self.ping_counter += 1;
            let payload = self.ping_counter.to_be_bytes();
            let mut frame = std::mem::take(&mut c.p.out);
            frame.clear();
            ws::encode_frame(&mut frame, OpCode::Ping, true, &payload, self.rng.random());
            net.rec.counters.ws.pings_sent += 1;
            self.send(net, slot, &frame, now);
            frame.clear();
            self.conns[slot].p.out = frame;
        } else {
            net.rec.counters.requests += 1;
            let req = self.request;
            self.send(net, slot, req, now);
        }
    }

    /// Apply what the bytes of a read decided: establishment, frames to send, loss.
    fn apply<T: Transport>(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        let c = &mut self.conns[slot];
        let done = c.p.done_at.take();
        let lost = c.p.lost.take();
        let mut out = std::mem::take(&mut c.p.out);
        if let Some(at) = done {
            self.established(net, slot, at);
        }
        if !out.is_empty() {
            let sent = net.send(slot, &out);
            out.clear();
            self.conns[slot].p.out = out; // pongs do not allocate every time
            if let (Err(e), None) = (sent, lost) {
                let class = self.io_class(slot, &e, now);
                return self.lose(net, slot, Cause::Error(class), now);
            }
        } else {
            self.conns[slot].p.out = out;
        }
        if let Some(cause) = lost {
            self.lose(net, slot, cause, now);
        }
    }

    /// The server closed the connection in `slot` (rule 5).
    fn eof_cause<T: Transport>(&mut self, net: &mut Net<T>, slot: usize) -> Cause {
        let c = &mut self.conns[slot];
        let class = match c.step {
            Step::Held if c.ws.is_some() => ErrorClass::WsAbnormalClose,
            _ => ErrorClass::EofMidResponse,
        };
        match (c.step, c.http.finish_eof(net.pending(slot))) {
            // A close-delimited error answer (e.g. a 503 without Content-Length).
            (Step::Requesting, Ok(Some(info))) if info.status >= 400 => {
                net.rec.response(info.status);
                Cause::Status(info.status)
            }
            _ => Cause::Error(class),
        }
    }

    /// What the live line shows of the pass at `now`.
    fn snapshot(&self, now: Instant, connect: Option<(u64, u64)>) -> ProbeSnapshot {
        let (step, left) = match self.stage {
            Stage::Ramp => {
                // At the connect rate, if nothing fails first: the rest of the ramp, then the
                // hold.
                let ramp = self.due(self.max).saturating_duration_since(now);
                (ProbeStep::Ramp, Some((ramp + self.hold, true)))
            }
            Stage::Draining => (ProbeStep::Settling, None),
            Stage::Resolving => (ProbeStep::Resolving, None),
            Stage::Holding(end) => (
                ProbeStep::Hold,
                Some((end.saturating_duration_since(now), false)),
            ),
        };
        let count = |v: &[(Cause, u64)]| v.iter().map(|(_, n)| n).sum::<u64>();
        ProbeSnapshot {
            elapsed: now.saturating_duration_since(self.start),
            step,
            attempted: self.attempted,
            max: self.max,
            established: self.established,
            open: self.open,
            failures: count(&self.failures) + count(&self.drops),
            connect,
            left,
        }
    }

    /// Sample the open connections every [`SAMPLE_EVERY`].
    fn sample(&mut self, now: Instant) {
        while now >= self.next_sample {
            let t = (self.next_sample - self.start).as_secs_f64();
            self.series.push((t, self.open));
            self.next_sample += SAMPLE_EVERY;
        }
    }

    /// Stage transitions (rule 3); sets `over` when the hold has ended.
    fn advance(&mut self, now: Instant) {
        loop {
            match self.stage {
                Stage::Ramp if self.attempted >= self.max => self.stage = Stage::Draining,
                Stage::Draining if self.in_flight == 0 && self.unsettled == 0 => {
                    self.reached_max = self.first_failure.is_none();
                    self.end_ramp(now, None);
                    self.stage = Stage::Holding(now + self.hold);
                }
                Stage::Resolving if self.pending == 0 => {
                    self.stage = Stage::Holding(now + self.hold);
                }
                Stage::Holding(end) => {
                    self.over = now >= end;
                    return;
                }
                _ => return,
            }
        }
    }

    /// The pass is over at `end`: close what is left with an RST (rule 6) and hand back what
    /// was found.
    fn finish<T: Transport>(mut self, net: &mut Net<T>, end: Instant) -> PassResult {
        let elapsed = end.saturating_duration_since(self.start);
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
        for (slot, c) in self.conns.iter().enumerate() {
            if c.step != Step::Free {
                net.close(slot, Close::Rst);
            }
        }
        // The core counts TCP (and TLS) up; the probe's "established" is rule 2's.
        net.rec.counters.connections_established = self.established;
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
            established: self.established,
            unresolved,
            peak_open: self.peak_open,
            elapsed,
            interrupted: self.interrupted,
            recorder: std::mem::take(&mut net.rec),
        }
    }
}

impl<T: Transport> Session<T> for Probe<'_> {
    fn on_start(&mut self, _net: &mut Net<T>, now: Instant) {
        self.start = now;
        self.next_sample = now + SAMPLE_EVERY;
    }

    /// TCP (and TLS) are up: established, or the request / upgrade that will establish it goes
    /// out (rule 2).
    fn on_ready(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        if self.conns[slot].step != Step::Opening {
            return;
        }
        let deadline = self.plan.connect_timeout;
        match self.plan.establish {
            Establish::Connect => self.established(net, slot, now),
            Establish::Request => {
                let c = &mut self.conns[slot];
                c.step = Step::Requesting;
                c.t_sent = Instant::now();
                net.timers
                    .set(slot, TimerKind::Request, c.t_sent + deadline);
                net.rec.counters.requests += 1;
                let req = self.request;
                self.send(net, slot, req, now);
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
                    return self.lose(net, slot, Cause::Error(ErrorClass::Protocol), now);
                };
                let c = &mut self.conns[slot];
                c.ws = Some(Box::new(WsState {
                    accept: hs.accept,
                    decoder: Decoder::new(WS_MAX_MESSAGE, false),
                }));
                c.step = Step::Upgrading;
                c.t_sent = Instant::now();
                net.timers
                    .set(slot, TimerKind::Request, c.t_sent + deadline);
                self.send(net, slot, &req, now);
            }
        }
        // Plaintext that came with the TLS handshake's last flight waited in the buffer; what
        // it decides is applied after this read (`after_read` / `on_lost`).
        if self.conns[slot].step != Step::Free && !net.pending(slot).is_empty() {
            let (rb, rec) = net.unread(slot);
            let c = &mut self.conns[slot];
            let mut state = ConnState {
                step: &mut c.step,
                http: &mut c.http,
                ws: &mut c.ws,
                awaiting: &mut c.awaiting,
                t_sent: c.t_sent,
                p: &mut c.p,
            };
            state.on_bytes(rb, now, rec, &mut self.rng);
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
        let mut state = ConnState {
            step: &mut c.step,
            http: &mut c.http,
            ws: &mut c.ws,
            awaiting: &mut c.awaiting,
            t_sent: c.t_sent,
            p: &mut c.p,
        };
        state.on_bytes(rb, now, rec, &mut self.rng);
        Ok(())
    }

    fn after_read(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        if self.conns[slot].step != Step::Free {
            self.apply(net, slot, now);
        }
    }

    fn on_lost(&mut self, net: &mut Net<T>, slot: usize, lost: Lost, now: Instant) {
        if self.conns[slot].step == Step::Free {
            return;
        }
        // What the bytes before the loss decided still counts (an establishment, a status,
        // a close frame, which is answered if the socket still takes it).
        let p = std::mem::take(&mut self.conns[slot].p);
        if let Some(at) = p.done_at {
            self.established(net, slot, at);
        }
        if !p.out.is_empty() {
            let _ = net.send(slot, &p.out);
        }
        if let Some(cause) = p.lost {
            return self.lose(net, slot, cause, now);
        }
        let class = match lost {
            Lost::Connect(class) => {
                if self.falls_back(class, self.conns[slot].addr_idx) {
                    // Rule 7: not a finding about the server; the attempt (due already) is
                    // made again at once on the next address.
                    self.close(net, slot);
                    self.undo_attempt(net);
                    self.open_one(net, now);
                    return;
                }
                class
            }
            Lost::Handshake(class) | Lost::Tls(class) => class,
            Lost::HandshakeReset => ErrorClass::ConnectReset,
            Lost::Protocol(why) => {
                net.rec.reason(ErrorClass::Protocol, &why);
                ErrorClass::Protocol
            }
            Lost::Eof => {
                let cause = self.eof_cause(net, slot);
                return self.lose(net, slot, cause, now);
            }
            Lost::Io(e) => self.io_class(slot, &e, now),
        };
        self.lose(net, slot, Cause::Error(class), now);
    }

    fn on_timer(&mut self, net: &mut Net<T>, slot: usize, kind: TimerKind, now: Instant) {
        let c = &self.conns[slot];
        match (kind, c.step) {
            (TimerKind::Settle, Step::Held) => self.settle(slot),
            // Rule 2: the request or the upgrade was not answered in time.
            (TimerKind::Request, Step::Requesting | Step::Upgrading) => {
                self.lose(net, slot, Cause::Error(ErrorClass::ReadTimeout), now)
            }
            // Rule 4: the keep-alive was not answered in time: a silent drop.
            (TimerKind::Request, Step::Held) if c.awaiting => {
                self.lose(net, slot, Cause::Error(ErrorClass::ReadTimeout), now)
            }
            (TimerKind::Heartbeat, Step::Held) => {
                let Some(every) = self.plan.keepalive else {
                    return;
                };
                // Still waiting for a slow answer: do not pile another one up.
                if !c.awaiting {
                    self.send_keepalive(net, slot, every, now);
                }
                if self.conns[slot].step == Step::Held {
                    net.timers.set(slot, TimerKind::Heartbeat, now + every);
                }
            }
            _ => {}
        }
    }

    /// Pacing, samples and stage transitions, once per loop turn after the timers.
    fn on_turn(&mut self, net: &mut Net<T>, now: Instant) {
        self.burst_left = self.stage == Stage::Ramp && self.open_due(net, now);
        self.sample(now);
        self.advance(now);
    }

    fn wake_at(&self) -> Option<Instant> {
        let mut wake = self.next_sample;
        if let Stage::Holding(end) = self.stage {
            wake = wake.min(end);
        }
        if self.stage == Stage::Ramp && self.attempted < self.max {
            wake = wake.min(self.deferred.unwrap_or_else(|| self.due(self.attempted)));
        }
        Some(wake)
    }
}

/// The parts of a connection its bytes act on (borrowed apart from the session's rng).
struct ConnState<'c> {
    step: &'c mut Step,
    http: &'c mut ResponseDecoder,
    ws: &'c mut Option<Box<WsState>>,
    awaiting: &'c mut bool,
    t_sent: Instant,
    p: &'c mut Proto,
}

impl ConnState<'_> {
    /// Everything that happens to plaintext, by step. Decisions go to `p`: the session applies
    /// them after the read, where the net and the counts are at hand.
    fn on_bytes(&mut self, rb: &mut RecvBuf, now: Instant, rec: &mut Recorder, rng: &mut StdRng) {
        while self.p.lost.is_none() && !rb.is_empty() {
            match *self.step {
                // TLS delivered plaintext with its last flight: it waits for `on_ready`.
                Step::Free | Step::Opening => return,
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

    // The session on the core, against scripted loopback peers. Decisions are taken at the
    // instants handed to `turn` / `fire_timers` (a fake clock); the sockets are real. The fake
    // timeline starts ten seconds ahead of the real clock and connect timeouts are long, so the
    // core's connect pacing (which compares the instant it is given with the real return of
    // `connect()`) never defers a connect and no real deadline falls inside the fake timeline.

    use crate::engine::core::{Driver, Link, Plain};
    use crate::plan::{Target, TlsPlan};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    fn plan(addrs: Vec<SocketAddr>, establish: Establish) -> ProbePlan {
        ProbePlan {
            target: Target {
                scheme: Scheme::Http,
                host: "127.0.0.1".into(),
                port: addrs[0].port(),
                path: "/".into(),
                authority: "x".into(),
                addrs,
                url: "http://x/".into(),
            },
            progress: crate::plan::ProgressWhen::Never,
            tls: TlsPlan::default(),
            headers: Vec::new(),
            connect_rate: 1000.0,
            max: 100,
            hold: Duration::from_secs(1),
            settle: Duration::from_secs(30),
            establish,
            keepalive: None,
            connect_timeout: Duration::from_secs(300),
            confirm: None,
            start_at: None,
        }
    }

    type D<'a> = Driver<Plain, Probe<'a>>;

    fn driver<'a>(plan: &'a ProbePlan) -> D<'a> {
        let connector = Connector::new(plan.target.addrs.clone(), Vec::new(), 0);
        let net = Net::<Plain>::new(Poll::new().unwrap(), 0, (), connector, plan.connect_timeout);
        let probe = Probe::new(plan, GET, plan.max, plan.hold);
        Driver::new(net, probe)
    }

    /// The start of a fake timeline, ahead of the real clock (see above).
    fn start(d: &mut D<'_>) -> Instant {
        let t0 = Instant::now() + Duration::from_secs(10);
        d.session.on_start(&mut d.net, t0);
        t0
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// Poll (real I/O, 10 ms at a time) until `done` holds; panics after 30 s of real time.
    fn pump(d: &mut D<'_>, done: impl Fn(&D<'_>) -> bool) {
        let limit = Instant::now() + Duration::from_secs(30);
        while !done(d) {
            assert!(Instant::now() < limit, "condition not reached");
            d.poll_io(Some(Duration::from_millis(10))).unwrap();
        }
    }

    fn listener() -> TcpListener {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    }

    /// A port nobody listens on (bound, then closed).
    fn dead() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    fn accept(l: &TcpListener) -> TcpStream {
        let limit = Instant::now() + Duration::from_secs(30);
        loop {
            match l.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    return s;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < limit, "nothing to accept");
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    }

    fn nothing_to_accept(l: &TcpListener) -> bool {
        matches!(l.accept(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    fn read_get(s: &mut TcpStream) {
        let mut buf = vec![0u8; GET.len()];
        s.read_exact(&mut buf).unwrap();
        assert_eq!(buf, GET);
    }

    /// Close with SO_LINGER 0: the client sees a reset.
    fn reset(s: TcpStream) {
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }

    /// The slot of the connection opened as `attempt`.
    fn slot_of(d: &D<'_>, attempt: u64) -> usize {
        d.session
            .conns
            .iter()
            .position(|c| c.step != Step::Free && c.attempt == attempt)
            .unwrap_or_else(|| panic!("connection {attempt} is not open"))
    }

    /// Fire the Settle deadline of connection `attempt` (and whatever is due before it);
    /// returns that instant.
    fn settle_conn(d: &mut D<'_>, attempt: u64) -> Instant {
        let slot = slot_of(d, attempt);
        let at = d.net.timers.get(slot, TimerKind::Settle).expect("settling");
        d.fire_timers(at);
        assert!(d.session.conns[slot].settled);
        at
    }

    #[test]
    fn connection_k_is_due_at_start_plus_k_over_rate_and_a_late_loop_catches_up_in_bursts() {
        let l = listener();
        let mut p = plan(vec![l.local_addr().unwrap()], Establish::Connect);
        p.max = 100;
        let mut d = driver(&p);
        let t0 = start(&mut d);
        d.turn(t0);
        assert_eq!(d.session.attempted, 1, "connection 0 is due at the start");
        // 1000/s: connection k is due at t0 + k ms.
        d.turn(t0 + Duration::from_micros(9_999));
        assert_eq!(d.session.attempted, 10);
        d.turn(ms(t0, 10));
        assert_eq!(d.session.attempted, 11);
        // The loop is asked to wake for the next one, to the microsecond (its alarm, core
        // rule 7).
        assert_eq!(d.next_wake(), Some(ms(t0, 11)));
        // 90 ms late: 90 connections are due; one turn opens MAX_BURST of them and asks for
        // another turn at once; the next turn opens the rest that are due, and no more.
        d.turn(ms(t0, 100));
        assert_eq!(d.session.attempted, 11 + MAX_BURST);
        assert!(d.session.burst_left);
        d.turn(ms(t0, 100));
        assert_eq!(d.session.attempted, 100);
        assert!(!d.session.burst_left);
        assert_eq!(d.net.rec.counters.connections_opened, 100);
        // All `max` attempted: nothing more is opened, whatever the time.
        d.turn(ms(t0, 5000));
        assert_eq!(d.session.attempted, 100);
        assert_eq!(d.session.stage, Stage::Draining);
    }

    #[test]
    fn a_refused_first_address_falls_back_at_once_and_the_retry_is_not_an_attempt() {
        let l = listener();
        let p = plan(vec![dead(), l.local_addr().unwrap()], Establish::Connect);
        let mut d = driver(&p);
        let t0 = start(&mut d);
        d.turn(t0);
        assert_eq!(d.session.attempted, 1);
        pump(&mut d, |d| d.session.established == 1);
        let _s = accept(&l);
        assert_eq!(d.session.attempted, 1, "the retry is the same attempt");
        assert_eq!(d.net.rec.counters.connections_opened, 1);
        assert_eq!(d.net.rec.counters.total_errors(), 0);
        assert!(d.session.failures.is_empty());
        assert!(d.session.first_failure.is_none());
        // New connections go to the address that worked.
        assert_eq!(d.session.addr_idx, 1);
        d.turn(ms(t0, 1));
        let slot = slot_of(&d, 2);
        assert_eq!(d.net.addr_idx(slot), 1);
        pump(&mut d, |d| d.session.established == 2);
        let _s2 = accept(&l);
    }

    #[test]
    fn a_connect_timeout_before_anything_was_established_falls_back_too() {
        // The one policy (core::connect rule 2) moves on after a timeout as after a refusal.
        let first = listener();
        let second = listener();
        let p = plan(
            vec![first.local_addr().unwrap(), second.local_addr().unwrap()],
            Establish::Connect,
        );
        let mut d = driver(&p);
        let t0 = start(&mut d);
        d.turn(t0);
        // As far as the core knows the connect is still pending at its deadline.
        let slot = slot_of(&d, 1);
        let deadline = d.net.timers.get(slot, TimerKind::Connect).expect("armed");
        d.fire_timers(deadline);
        assert!(d.session.failures.is_empty());
        assert_eq!(d.session.addr_idx, 1);
        assert_eq!(d.session.attempted, 1, "the retry is the same attempt");
        assert_eq!(d.net.rec.counters.connections_opened, 1);
        assert_eq!(d.net.addr_idx(slot_of(&d, 1)), 1);
        pump(&mut d, |d| d.session.established == 1);
        let _s = accept(&second);
    }

    #[test]
    fn a_refusal_on_the_last_address_is_a_failure_even_before_anything_was_established() {
        let p = plan(vec![dead(), dead()], Establish::Connect);
        let mut d = driver(&p);
        let t0 = start(&mut d);
        d.turn(t0);
        pump(&mut d, |d| d.session.first_failure.is_some());
        let f = d.session.first_failure.unwrap();
        assert_eq!(f.cause, Cause::Error(ErrorClass::ConnectRefused));
        assert_eq!(f.connection, 1, "the fall-back retry was not counted");
        assert_eq!(d.session.attempted, 1);
        assert_eq!(d.net.rec.counters.connections_opened, 1);
        assert_eq!(
            d.net.rec.counters.errors[ErrorClass::ConnectRefused.index()],
            1
        );
        assert_eq!(d.session.limit, 0);
    }

    #[test]
    fn a_refusal_after_a_connection_was_established_is_the_limit_not_a_dead_address() {
        let first = listener();
        let second = listener();
        let p = plan(
            vec![first.local_addr().unwrap(), second.local_addr().unwrap()],
            Establish::Connect,
        );
        let mut d = driver(&p);
        let t0 = start(&mut d);
        d.turn(t0);
        pump(&mut d, |d| d.session.established == 1);
        let _held = accept(&first);
        // The first address stops listening: connection 2 is refused there.
        drop(first);
        d.turn(ms(t0, 1));
        pump(&mut d, |d| d.session.first_failure.is_some());
        let f = d.session.first_failure.unwrap();
        assert_eq!(f.cause, Cause::Error(ErrorClass::ConnectRefused));
        assert_eq!(f.connection, 2);
        assert_eq!(d.session.addr_idx, 0, "no fall-back after an establishment");
        assert_eq!(d.session.attempted, 2);
        assert!(
            nothing_to_accept(&second),
            "nothing went to the second address"
        );
        // The ramp is over: nothing is opened any more.
        d.turn(ms(t0, 50));
        assert_eq!(d.session.attempted, 2);
    }

    #[test]
    fn a_reset_within_settle_is_a_failure_and_after_it_a_drop() {
        let l = listener();
        let mut p = plan(vec![l.local_addr().unwrap()], Establish::Connect);
        p.max = 2;
        let mut d = driver(&p);
        let t0 = start(&mut d);
        d.turn(t0);
        pump(&mut d, |d| d.session.established == 1);
        let s1 = accept(&l);
        d.turn(ms(t0, 1));
        pump(&mut d, |d| d.session.established == 2);
        let s2 = accept(&l);
        // Connection 1 lives through its settle window (fake clock): its reset is a drop.
        let _ = settle_conn(&mut d, 1);
        assert!(!d.session.conns[slot_of(&d, 2)].settled);
        reset(s1);
        pump(&mut d, |d| d.session.open == 1);
        assert_eq!(
            d.session.drops,
            vec![(Cause::Error(ErrorClass::ResetMidResponse), 1)]
        );
        assert!(d.session.failures.is_empty());
        assert!(d.session.first_failure.is_none());
        // Connection 2 is reset well within its 30 s window: the server did not admit it.
        reset(s2);
        pump(&mut d, |d| d.session.open == 0);
        assert_eq!(
            d.session.failures,
            vec![(Cause::Error(ErrorClass::ConnectReset), 1)]
        );
        let f = d.session.first_failure.unwrap();
        assert_eq!(f.connection, 2);
        assert_eq!(d.session.limit, 0);
        assert_eq!(d.session.drops.len(), 1);
    }

    #[test]
    fn an_unanswered_keepalive_is_a_silent_drop_at_its_deadline_and_none_piles_up() {
        let l = listener();
        let mut p = plan(vec![l.local_addr().unwrap()], Establish::Connect);
        p.max = 1;
        p.keepalive = Some(Duration::from_millis(100));
        p.settle = Duration::from_millis(50);
        let mut d = driver(&p);
        let t0 = start(&mut d);
        d.turn(t0);
        pump(&mut d, |d| d.session.established == 1);
        let mut s = accept(&l);
        // `max` reached and settled: the ramp ends, the connection is held and watched. (The
        // turn is taken at the settle instant, before the first keep-alive is due.)
        let settled = settle_conn(&mut d, 1);
        d.turn(settled);
        assert!(matches!(d.session.stage, Stage::Holding(_)));
        assert!(d.session.reached_max);
        assert_eq!(
            (d.session.limit, d.session.held, d.session.survivors),
            (1, 1, 1)
        );
        let slot = slot_of(&d, 1);
        let beat = d.net.timers.get(slot, TimerKind::Heartbeat).expect("armed");
        d.fire_timers(beat);
        read_get(&mut s);
        assert_eq!(d.net.rec.counters.requests, 1);
        // Answered within max(keepalive, connect_timeout) of being sent, or dropped.
        let deadline = d.net.timers.get(slot, TimerKind::Request).expect("armed");
        assert_eq!(deadline, beat + p.connect_timeout);
        // Later beats do not send another request while this one is unanswered.
        let next = d
            .net
            .timers
            .get(slot, TimerKind::Heartbeat)
            .expect("re-armed");
        d.fire_timers(next);
        assert_eq!(d.net.rec.counters.requests, 1);
        d.fire_timers(deadline - Duration::from_nanos(1));
        assert_eq!(d.session.open, 1);
        d.fire_timers(deadline);
        assert_eq!(d.session.open, 0);
        assert_eq!(d.net.link(slot), Link::Closed);
        assert_eq!(
            d.session.drops,
            vec![(Cause::Error(ErrorClass::ReadTimeout), 1)]
        );
        assert!(d.session.failures.is_empty());
        assert_eq!(d.session.survivors, 0);
        s.set_nonblocking(true).unwrap();
        let mut rest = [0u8; 64];
        assert!(
            !matches!(s.read(&mut rest), Ok(n) if n > 0),
            "no second request was sent"
        );
    }

    #[test]
    fn an_answered_keepalive_keeps_the_connection() {
        let l = listener();
        let mut p = plan(vec![l.local_addr().unwrap()], Establish::Connect);
        p.max = 1;
        p.keepalive = Some(Duration::from_millis(100));
        let mut d = driver(&p);
        let t0 = start(&mut d);
        d.turn(t0);
        pump(&mut d, |d| d.session.established == 1);
        let mut s = accept(&l);
        let slot = slot_of(&d, 1);
        let beat = d.net.timers.get(slot, TimerKind::Heartbeat).expect("armed");
        d.fire_timers(beat);
        read_get(&mut s);
        s.write_all(OK).unwrap();
        pump(&mut d, |d| !d.session.conns[slot_of(d, 1)].awaiting);
        let deadline = beat + p.connect_timeout;
        d.fire_timers(deadline);
        assert_eq!(d.session.open, 1);
        assert!(d.session.drops.is_empty());
        // The next beat sends the next keep-alive.
        let next = d
            .net
            .timers
            .get(slot, TimerKind::Heartbeat)
            .expect("re-armed");
        d.fire_timers(next);
        read_get(&mut s);
        assert_eq!(d.net.rec.counters.requests, 2);
    }

    #[test]
    fn the_limit_counts_settled_and_earlier_connections_not_later_ones_that_raced_the_failure() {
        // Four connections with --request: 1 answered 200, 2 still waiting for its answer,
        // 4 answered 200 (TCP and the request done before 3's answer is seen), 3 answered 429.
        // None has settled. The limit counts 1 and 2 (opened before the failing one) once they
        // settle, not 4, which raced the failure.
        let l = listener();
        let mut p = plan(vec![l.local_addr().unwrap()], Establish::Request);
        p.max = 4;
        let mut d = driver(&p);
        let t0 = start(&mut d);
        // One at a time, so that s[k] is connection k + 1.
        let mut s = Vec::new();
        for k in 0..4 {
            d.turn(ms(t0, k));
            assert_eq!(d.session.attempted, k + 1);
            pump(&mut d, |d| d.net.rec.counters.requests == k + 1);
            let mut c = accept(&l);
            read_get(&mut c);
            s.push(c);
        }
        s[0].write_all(OK).unwrap();
        s[3].write_all(OK).unwrap();
        pump(&mut d, |d| d.session.established == 2);
        s[2].write_all(b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\n\r\n")
            .unwrap();
        pump(&mut d, |d| d.session.first_failure.is_some());
        let f = d.session.first_failure.unwrap();
        assert_eq!(f.cause, Cause::Status(429));
        assert_eq!(f.connection, 3);
        assert_eq!(d.session.stage, Stage::Resolving);
        assert_eq!(d.session.limit, 0, "nothing had settled");
        assert_eq!(d.session.pending, 2, "connections 1 and 2 are waited for");
        // Connection 2 is answered after the failure: established, then settles.
        s[1].write_all(OK).unwrap();
        pump(&mut d, |d| d.session.established == 3);
        let last = [1, 2, 4]
            .map(|a| d.net.timers.get(slot_of(&d, a), TimerKind::Settle).unwrap())
            .into_iter()
            .max()
            .unwrap();
        d.fire_timers(last);
        assert_eq!(d.session.unsettled, 0);
        d.turn(ms(t0, 10));
        assert!(matches!(d.session.stage, Stage::Holding(_)));
        assert_eq!(d.session.limit, 2);
        assert_eq!((d.session.held, d.session.survivors), (2, 2));
        assert_eq!(d.session.open, 3, "connection 4 is open, but not counted");
        assert!(!d.session.conns[slot_of(&d, 4)].marked);
        // Losing the uncounted one is a drop that does not touch survival.
        reset(s.pop().unwrap());
        pump(&mut d, |d| d.session.open == 2);
        assert_eq!(d.session.survivors, 2);
        let (mut net, probe) = d.into_parts();
        let r = probe.finish(&mut net, ms(t0, 20));
        assert_eq!((r.limit, r.held, r.survived), (2, 2, 2));
        assert_eq!(r.established, 3);
        assert_eq!(r.recorder.counters.connections_established, 3);
        assert_eq!(r.failures, vec![(Cause::Status(429), 1)]);
        assert_eq!(r.drops_total(), 1);
        assert!(!r.reached_max);
        // Rule 6: the pass closed what was left.
        assert_eq!(net.open_count(), 0);
    }

    #[test]
    fn a_server_that_resets_the_tls_handshake_is_connect_reset() {
        // An https probe against a server that accepts TCP and resets: rule 5 says the server
        // accepted, then refused (`connect_reset`), not that TLS failed.
        let l = listener();
        let mut p = plan(vec![l.local_addr().unwrap()], Establish::Connect);
        p.target.scheme = Scheme::Https;
        p.tls.insecure = true;
        let config = crate::tls::client_config(&p.tls).unwrap();
        let name = crate::tls::server_name(&p.tls, "127.0.0.1").unwrap();
        let connector = Connector::new(p.target.addrs.clone(), Vec::new(), 0);
        let net = Net::<Tls>::new(
            Poll::new().unwrap(),
            0,
            TlsCtx::new(config, name),
            connector,
            p.connect_timeout,
        );
        let probe = Probe::new(&p, GET, p.max, p.hold);
        let mut d = Driver::new(net, probe);
        let t0 = Instant::now() + Duration::from_secs(10);
        d.session.on_start(&mut d.net, t0);
        d.turn(t0);
        let s = accept(&l);
        reset(s);
        let limit = Instant::now() + Duration::from_secs(30);
        while d.session.first_failure.is_none() {
            assert!(Instant::now() < limit, "no failure");
            d.poll_io(Some(Duration::from_millis(10))).unwrap();
        }
        let f = d.session.first_failure.unwrap();
        assert_eq!(f.cause, Cause::Error(ErrorClass::ConnectReset));
        assert_eq!(d.session.established, 0);
    }

    /// A TLS server (self-signed, TLS 1.3 half-RTT data on) that accepts one connection, sends
    /// `early` with its last handshake flight, completes the handshake and holds the connection
    /// until the returned sender is dropped.
    fn half_rtt_server(
        l: TcpListener,
        early: &'static [u8],
    ) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .unwrap();
        cfg.send_half_rtt_data = true;
        let cfg = std::sync::Arc::new(cfg);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let mut s = accept(&l);
            let mut conn = rustls::ServerConnection::new(cfg).unwrap();
            conn.writer().write_all(early).unwrap();
            // Until the handshake is done or the client gave up (it may close as soon as it
            // has read the answer).
            while conn.is_handshaking() && conn.complete_io(&mut s).is_ok() {}
            // Hold the connection (no close that the client could classify instead).
            let _ = rx.recv_timeout(Duration::from_secs(60));
        });
        (tx, t)
    }

    #[test]
    fn plaintext_that_comes_with_the_tls_handshake_is_read_once_the_connection_is_up() {
        // A TLS server at its limit that answers 503 right away, in the same flight as its
        // handshake Finished: the plaintext is there before the connection is up, and must be
        // read then, not when (if ever) more bytes arrive.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut p = plan(vec![l.local_addr().unwrap()], Establish::Connect);
        p.target.scheme = Scheme::Https;
        p.tls.insecure = true;
        let (hold, server) = half_rtt_server(
            l,
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        );
        let config = crate::tls::client_config(&p.tls).unwrap();
        let name = crate::tls::server_name(&p.tls, "127.0.0.1").unwrap();
        let connector = Connector::new(p.target.addrs.clone(), Vec::new(), 0);
        let net = Net::<Tls>::new(
            Poll::new().unwrap(),
            0,
            TlsCtx::new(config, name),
            connector,
            p.connect_timeout,
        );
        let probe = Probe::new(&p, GET, p.max, p.hold);
        let mut d = Driver::new(net, probe);
        let t0 = Instant::now() + Duration::from_secs(10);
        d.session.on_start(&mut d.net, t0);
        d.turn(t0);
        let limit = Instant::now() + Duration::from_secs(30);
        while d.session.first_failure.is_none() {
            assert!(Instant::now() < limit, "the 503 was never read");
            d.poll_io(Some(Duration::from_millis(10))).unwrap();
        }
        let f = d.session.first_failure.unwrap();
        assert_eq!(f.cause, Cause::Status(503));
        assert_eq!(
            d.session.established, 1,
            "TLS up is established with Connect"
        );
        assert_eq!(d.net.rec.counters.handshakes_full, 1);
        drop(hold);
        server.join().unwrap();
    }
}
