//! The load engine: turns an [`HttpPlan`] into pinned worker threads, coordinates the run
//! (duration, `-n`, Ctrl-C, live progress), and merges what the workers measured.
//!
//! The coordinator thread never touches a connection. It sleeps in short steps, reads the
//! workers' relaxed progress counters for the live line, and at the end sets the stop flag and
//! wakes every worker's `Poll` through its `Waker`. Configuration errors are returned before any
//! thread starts; once the run started, failures are only counted.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant, SystemTime};

pub mod buf;
pub mod core;
pub mod floor;
pub mod http;
pub mod pace;
pub mod probe;
pub mod raw;
pub mod reconnect;
pub mod socket;
pub mod stage;
pub mod start;

pub mod ws;

use crate::metrics::run::RunResult;
use crate::metrics::Recorder;
use crate::plan::{share, HttpPlan, Pinning, Scheme, Stop, WsPlan};
use crate::proto::http1::{encode_request, RequestError};
use crate::tls::TlsError;
use core::live::Live;

/// Debug builds only (the binary the end-to-end tests run): worker N panics shortly after the
/// start when this variable is N, so the tests can check that a panic fails the run loudly.
/// Release builds ignore it.
pub const DEBUG_PANIC_ENV: &str = "CONNBENCH_DEBUG_PANIC_WORKER";

/// File descriptors kept free for everything that is not a connection.
pub const FD_RESERVE: u64 = 64;

/// Why a run could not start. Every variant is the user's to fix (exit code 2).
#[derive(Debug)]
pub enum EngineError {
    /// The request could not be serialized from the given method/headers/body.
    Request(RequestError),
    /// The TLS settings are unusable.
    Tls(TlsError),
    /// More connections than the file-descriptor limit allows.
    TooManyConnections {
        /// Connections asked for.
        connections: usize,
        /// Descriptors they need (two per connection with the in-process target).
        needed: u64,
        /// The soft RLIMIT_NOFILE after raising it to the hard limit.
        limit: u64,
    },
    /// A worker thread or its poller could not be created.
    Spawn(std::io::Error),
    /// Ctrl-C came while waiting for `--start-at`: nothing was run (exit 130, no report).
    InterruptedBeforeStart,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Request(e) => write!(f, "{e}"),
            EngineError::Tls(e) => write!(f, "{e}"),
            EngineError::TooManyConnections {
                connections,
                needed,
                limit,
            } => write!(
                f,
                "-c {connections} needs {needed} file descriptors but the limit is {limit} \
                 (lower -c, or raise the hard limit: ulimit -Hn / LimitNOFILE)"
            ),
            EngineError::Spawn(e) => write!(f, "cannot start a worker thread: {e}"),
            EngineError::InterruptedBeforeStart => write!(
                f,
                "interrupted while waiting for --start-at: no connection was opened and no \
                 report was written"
            ),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<TlsError> for EngineError {
    fn from(e: TlsError) -> Self {
        EngineError::Tls(e)
    }
}

/// Check that `connections` fit under the fd limit (raised to the hard limit first).
/// `fds_per_connection` is 2 when the target runs in this process.
pub fn check_fd_limit(connections: usize, fds_per_connection: u64) -> Result<u64, EngineError> {
    let limit = crate::sys::raise_fd_limit();
    let needed = connections as u64 * fds_per_connection + FD_RESERVE;
    if needed > limit {
        return Err(EngineError::TooManyConnections {
            connections,
            needed,
            limit,
        });
    }
    Ok(limit)
}

/// Run the plan to completion (or until Ctrl-C) and return the merged measurements.
pub fn run(plan: &HttpPlan) -> Result<RunResult, EngineError> {
    let request: Arc<[u8]> = encode_request(
        &plan.method,
        &plan.target.path,
        &plan.target.authority,
        &plan.headers,
        &plan.body,
    )
    .map_err(EngineError::Request)?
    .into();
    let ctx = match plan.target.scheme {
        Scheme::Http => None,
        Scheme::Https => Some(core::TlsCtx::factory(&plan.tls, &plan.target.host)?),
    };
    let before = crate::sys::time_wait_towards(&plan.target.addrs).ok();
    let mut result = match ctx {
        None => run_with::<core::Plain>(plan, request, |_| ())?,
        Some(ctx) => run_with::<core::Tls>(plan, request, ctx)?,
    };
    result.time_wait = time_wait(before, &plan.target.addrs);
    Ok(result)
}

/// The TIME_WAIT reading after a run (the workers have closed their connections), with the one
/// taken before it; None when `/proc/net/tcp` could not be read.
fn time_wait(
    before: Option<u64>,
    target: &[std::net::SocketAddr],
) -> Option<crate::metrics::run::TimeWait> {
    let after = crate::sys::time_wait_towards(target).ok()?;
    Some(crate::metrics::run::TimeWait {
        at_start: before?,
        at_end: after,
    })
}

fn run_with<T>(
    plan: &HttpPlan,
    request: Arc<[u8]>,
    ctx: impl Fn(usize) -> T::Ctx,
) -> Result<RunResult, EngineError>
where
    T: core::Transport + 'static,
    T::Ctx: Send + 'static,
{
    let head_request = plan.method.eq_ignore_ascii_case("HEAD");
    let threads = plan.threads.max(1);
    let verbose = plan
        .verbose
        .then(|| Arc::new(core::verbose::Verbose::new(Instant::now())));
    let shape = RunShape {
        threads: plan.threads,
        pinning: plan.pinning.clone(),
        stop: plan.stop,
        warmup: plan.warmup,
        progress: plan.progress.clone(),
        // Paced runs show the latency from the intended send time, as their report leads with.
        line: LineKind::Http(
            if plan.rate.is_some() || plan.stages.iter().any(|s| s.rate.is_some()) {
                crate::metrics::Phase::Corrected
            } else {
                crate::metrics::Phase::Total
            },
        ),
        intervals: plan.intervals,
        stages: crate::plan::stage_windows(&plan.stages),
        start_at: plan.start_at,
    };
    let result = run_workers(&shape, |id, cpu, stop, live| {
        let connections = plan.connections_of(id);
        let connector = core::Connector::new(
            plan.target.addrs.clone(),
            plan.sources.clone(),
            (0..id).map(|w| plan.connections_of(w)).sum(),
        );
        let cfg = http::HttpConfig {
            id,
            workers: threads,
            request: request.clone(),
            pipeline: plan.pipeline,
            head_request,
            budget: plan.requests_of(id),
            timeout: plan.timeout,
            // The total rate is split evenly over the workers; each keeps its own schedule.
            rate: plan.rate.map(|(r, arrival)| (r / threads as f64, arrival)),
            stages: plan.stages.clone(),
            per_conn: plan.requests_per_conn,
            // Split like the request rate: each worker keeps its own schedule of connections.
            conn_rate: plan.conn_rate.map(|r| r / threads as f64),
            close: match plan.close {
                crate::plan::CloseMode::Fin => core::Close::Fin,
                crate::plan::CloseMode::Rst => core::Close::Rst,
            },
        };
        let ctx = ctx(id);
        let connect_timeout = plan.connect_timeout;
        let warmup = plan.warmup;
        let run_for = match plan.stop {
            Stop::Duration(d) => Some(d),
            Stop::Requests(_) => None,
        };
        let busy_poll = plan.busy_poll.clone();
        let verbose = verbose.clone();
        let first_conn = (0..id).map(|w| plan.connections_of(w)).sum();
        move || {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), core::WAKER)?);
            let mut net = core::Net::<T>::new(poll, connections, ctx, connector, connect_timeout);
            if let Some(bp) = &busy_poll {
                net.set_busy_poll(bp.so_busy_poll.as_ref().ok().copied());
            }
            let mut session = http::Http::new(cfg, &net);
            if let Some(v) = verbose {
                session.set_verbose(v, first_conn);
            }
            let mut driver = core::Driver::new(net, session);
            let run = move || {
                let ctl = core::run::RunCtl {
                    stop,
                    live,
                    warmup,
                    run_for,
                };
                let end = driver.run(&ctl);
                let (mut net, mut session) = driver.into_parts();
                let windows = session.finish(&mut net, window_end(&end, warmup, run_for));
                worker_output(net, cpu, connections, &end, windows)
            };
            std::io::Result::Ok((waker, run))
        }
    });
    if let Some(v) = &verbose {
        v.finish();
    }
    result
}

/// The end of a worker's measured window: the deadline of a time-bounded run (the stop flag
/// reaches the worker a little after it, and what fell due in between was never owed by the
/// run), or when the worker finished, whichever came first.
fn window_end(end: &core::run::RunEnd, warmup: Duration, run_for: Option<Duration>) -> Instant {
    match run_for {
        Some(d) => end.finished_at.min(end.started + warmup + d),
        None => end.finished_at,
    }
}

/// Run a WebSocket plan to completion (or until Ctrl-C) and return the merged measurements.
pub fn run_ws(plan: &WsPlan) -> Result<RunResult, EngineError> {
    let plan = Arc::new(plan.clone());
    let before = crate::sys::time_wait_towards(&plan.target.addrs).ok();
    let mut result = match plan.target.scheme {
        Scheme::Http => run_ws_with::<core::Plain>(plan.clone(), |_| ())?,
        Scheme::Https => {
            let ctx = core::TlsCtx::factory(&plan.tls, &plan.target.host)?;
            run_ws_with::<core::Tls>(plan.clone(), ctx)?
        }
    };
    result.time_wait = time_wait(before, &plan.target.addrs);
    Ok(result)
}

fn run_ws_with<T>(
    plan: Arc<WsPlan>,
    ctx: impl Fn(usize) -> T::Ctx,
) -> Result<RunResult, EngineError>
where
    T: core::Transport + 'static,
    T::Ctx: Send + 'static,
{
    let shape = RunShape {
        threads: plan.threads,
        pinning: plan.pinning.clone(),
        stop: Stop::Duration(plan.duration),
        warmup: plan.warmup,
        progress: plan.progress.clone(),
        // Stream: the server-timestamp latency; echo and ping: the round trip.
        line: LineKind::Ws {
            phase: match plan.session.mode {
                crate::plan::WsMode::Stream => crate::metrics::Phase::Latency,
                crate::plan::WsMode::Echo | crate::plan::WsMode::Ping => crate::metrics::Phase::Rtt,
            },
            sends: plan.session.mode == crate::plan::WsMode::Echo,
        },
        intervals: plan.intervals,
        stages: crate::plan::stage_windows(&plan.stages),
        start_at: plan.start_at,
    };
    let threads = plan.threads.max(1);
    let verbose = plan
        .verbose
        .then(|| Arc::new(core::verbose::Verbose::new(Instant::now())));
    let mut first_conn = 0;
    let result = run_workers(&shape, |id, cpu, stop, live| {
        let connections = share(plan.connections as u64, threads, id) as usize;
        let connector =
            core::Connector::new(plan.target.addrs.clone(), plan.sources.clone(), first_conn);
        // Each worker enforces its share of the budget: no lock between workers.
        let budget = plan
            .session
            .reconnect_budget
            .map(|(k, per)| (share(k as u64, threads, id).max(1) as u32, per));
        let ctx = ctx(id);
        let plan = plan.clone();
        let first = first_conn;
        first_conn += connections;
        let verbose = verbose.clone();
        move || {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), core::WAKER)?);
            let mut net =
                core::Net::<T>::new(poll, connections, ctx, connector, plan.connect_timeout);
            // A frame is decoded once whole: the buffer must hold the largest message accepted
            // plus its header (14 bytes at most).
            net.set_recv_max(plan.session.max_message.saturating_add(14));
            if let Some(bp) = &plan.busy_poll {
                net.set_busy_poll(bp.so_busy_poll.as_ref().ok().copied());
            }
            let mut session = ws::Ws::new(plan.clone(), id, first, budget, &net);
            if let Some(v) = verbose {
                session.set_verbose(v);
            }
            let mut driver = core::Driver::new(net, session);
            let run = move || {
                let ctl = core::run::RunCtl {
                    stop,
                    live,
                    warmup: plan.warmup,
                    run_for: Some(plan.duration),
                };
                let end = driver.run(&ctl);
                let (mut net, mut session) = driver.into_parts();
                let windows = session.finish(&mut net, Instant::now());
                worker_output(net, cpu, connections, &end, windows)
            };
            std::io::Result::Ok((waker, run))
        }
    });
    if let Some(v) = &verbose {
        v.finish();
    }
    result
}

/// What a worker hands back: its recorder, stage windows, CPU and worst stall.
fn worker_output<T: core::Transport>(
    mut net: core::Net<T>,
    cpu: Option<usize>,
    connections: usize,
    end: &core::run::RunEnd,
    windows: Vec<(crate::metrics::Recorder, u64)>,
) -> core::live::Output {
    let (user, sys) = crate::sys::thread_cpu_time();
    core::live::Output {
        windows,
        stats: crate::metrics::run::WorkerStats {
            cpu,
            connections,
            cpu_user_ns: user.as_nanos() as u64,
            cpu_sys_ns: sys.as_nanos() as u64,
            max_stall_ns: end.max_stall.as_nanos() as u64,
        },
        recorder: std::mem::take(&mut net.rec),
        finished_at: end.finished_at,
    }
}

/// What the coordinator needs of a run, whatever its protocol.
#[derive(Clone, Debug)]
pub struct RunShape {
    /// Worker threads.
    pub threads: usize,
    /// Worker pinning.
    pub pinning: Pinning,
    /// What ends the run.
    pub stop: Stop,
    /// Warm-up excluded from the results.
    pub warmup: Duration,
    /// The live progress line.
    pub progress: crate::plan::Progress,
    /// What the line shows.
    pub line: LineKind,
    /// Collect one-second interval histograms (`--hlog`).
    pub intervals: bool,
    /// Staged runs: the windows workers cut their measurements at.
    pub stages: Vec<crate::plan::StageWindow>,
    /// `--start-at`: the workers are built, then released at this wall-clock instant.
    pub start_at: Option<SystemTime>,
}

/// What a run's live line shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// HTTP: responses per second and the percentiles of this phase.
    Http(crate::metrics::Phase),
    /// WebSocket: messages per second and the percentiles of `phase`.
    Ws {
        /// Latency (stream) or rtt (echo, ping).
        phase: crate::metrics::Phase,
        /// The run sends messages of its own (echo): their rate is shown too.
        sends: bool,
    },
}

impl LineKind {
    /// The phase whose percentiles the line shows.
    pub fn phase(self) -> crate::metrics::Phase {
        match self {
            LineKind::Http(p) | LineKind::Ws { phase: p, .. } => p,
        }
    }
}

/// Spawn one pinned thread per worker, start them together, coordinate the run, join and merge.
/// `job(id, cpu, stop, live)` returns the builder that runs *inside* the worker's thread: it
/// creates the worker (its Poll, its buffers) and returns its waker and its run function.
pub fn run_workers<J, R>(
    shape: &RunShape,
    mut job: impl FnMut(usize, Option<usize>, Arc<AtomicBool>, Arc<Live>) -> J,
) -> Result<RunResult, EngineError>
where
    J: FnOnce() -> std::io::Result<(Arc<mio::Waker>, R)> + Send + 'static,
    R: FnOnce() -> core::live::Output,
{
    let threads = shape.threads.max(1);
    let stop = Arc::new(AtomicBool::new(false));
    let lives: Vec<Arc<Live>> = (0..threads)
        .map(|_| {
            Arc::new(Live {
                intervals: shape.intervals.then(|| std::sync::Mutex::new(Vec::new())),
                recent: core::live::Drawer::new(shape.progress.when)
                    .map(|_| core::live::Recent::new(shape.line.phase())),
                ..Live::default()
            })
        })
        .collect();
    let barrier = Arc::new(Barrier::new(threads + 1));
    // Set before the release when there will be no run (a worker failed to build, or Ctrl-C
    // came while waiting for --start-at): the workers then open nothing.
    let no_run = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut handles = Vec::with_capacity(threads);
    for (id, live) in lives.iter().enumerate() {
        let cpu = match &shape.pinning {
            Pinning::Cpus(cpus) => cpus.get(id).copied(),
            Pinning::None => None,
        };
        let build = job(id, cpu, stop.clone(), live.clone());
        let stop_on_panic = stop.clone();
        let injected_panic = cfg!(debug_assertions)
            && std::env::var(DEBUG_PANIC_ENV)
                .ok()
                .and_then(|v| v.parse().ok())
                == Some(id);
        let barrier = barrier.clone();
        let no_run = no_run.clone();
        let ready_tx = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("connbench-w{id}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    crate::sys::pin_current_thread(cpu);
                }
                let (waker, run) = match build() {
                    Ok(w) => w,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        barrier.wait();
                        return None;
                    }
                };
                let _ = ready_tx.send(Ok(waker));
                barrier.wait();
                // Released without a run: another worker failed to build, or Ctrl-C came
                // while waiting for --start-at. Open nothing.
                if no_run.load(Ordering::SeqCst) {
                    return None;
                }
                // A panic must not vanish with the thread: stop the run at once (the other
                // workers' measurements are kept) and hand the message to the join below.
                let run = move || {
                    if injected_panic {
                        // Let the other workers measure something first.
                        std::thread::sleep(Duration::from_millis(300));
                        panic!("{DEBUG_PANIC_ENV}={id}: panic injected for the tests");
                    }
                    run()
                };
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                    Ok(out) => Some(Ok(out)),
                    Err(payload) => {
                        stop_on_panic.store(true, Ordering::SeqCst);
                        Some(Err(panic_message(payload.as_ref())))
                    }
                }
            })
            .map_err(EngineError::Spawn)?;
        handles.push(handle);
    }
    drop(ready_tx);
    let mut wakers = Vec::with_capacity(threads);
    let mut spawn_error = None;
    for r in ready_rx.iter().take(threads) {
        match r {
            Ok(w) => wakers.push(w),
            Err(e) => spawn_error = Some(e),
        }
    }
    if spawn_error.is_some() {
        stop.store(true, Ordering::SeqCst);
        no_run.store(true, Ordering::SeqCst);
    }
    // Everything is built (threads, polls, TLS contexts): wait for --start-at, then release.
    let mut interrupted_before_start = false;
    if let (Some(at), None) = (shape.start_at, &spawn_error) {
        if start::wait_until(at, crate::sys::interrupted) == start::Waited::Interrupted {
            interrupted_before_start = true;
            no_run.store(true, Ordering::SeqCst);
            stop.store(true, Ordering::SeqCst);
        }
    }
    // One start for every worker (core::run rule 4), taken before the release so no worker
    // can begin before it.
    let start = Instant::now();
    let wall_start = SystemTime::now();
    for live in &lives {
        let _ = live.start.set(start);
    }
    barrier.wait();

    let ended_at = coordinate(shape, start, &stop, &lives, spawn_error.is_some());
    stop.store(true, Ordering::SeqCst);
    for w in &wakers {
        let _ = w.wake();
    }

    let mut recorder = Recorder::new();
    let mut workers = Vec::with_capacity(threads);
    let mut last_finish = None::<Instant>;
    let mut stages: Vec<crate::metrics::run::StageResult> = shape
        .stages
        .iter()
        .map(|w| crate::metrics::run::StageResult {
            window: w.clone(),
            recorder: Recorder::new(),
            open_at_end: 0,
        })
        .collect();
    let mut worker_panics = Vec::new();
    for (id, h) in handles.into_iter().enumerate() {
        // The thread itself never panics outside `catch_unwind` above (building the worker
        // reports errors, not panics); a join error is treated the same way all the same.
        let out = match h.join() {
            Ok(Some(Ok(out))) => out,
            Ok(None) => continue,
            Ok(Some(Err(message))) => {
                worker_panics.push(crate::metrics::run::WorkerPanic {
                    worker: id,
                    message,
                    responses_lost: lives[id].responses.load(Ordering::Relaxed),
                });
                continue;
            }
            Err(payload) => {
                worker_panics.push(crate::metrics::run::WorkerPanic {
                    worker: id,
                    message: panic_message(payload.as_ref()),
                    responses_lost: lives[id].responses.load(Ordering::Relaxed),
                });
                continue;
            }
        };
        {
            for (into, (rec, open)) in stages.iter_mut().zip(out.windows.iter()) {
                into.recorder.merge(rec);
                into.open_at_end += open;
            }
            recorder.merge(&out.recorder);
            workers.push(out.stats);
            last_finish = Some(last_finish.map_or(out.finished_at, |t| t.max(out.finished_at)));
        }
    }
    if let Some(e) = spawn_error {
        return Err(EngineError::Spawn(e));
    }
    if interrupted_before_start {
        return Err(EngineError::InterruptedBeforeStart);
    }
    let window_start = start + shape.warmup;
    let end = match shape.stop {
        Stop::Requests(_) if !ended_at.interrupted => last_finish.unwrap_or(ended_at.at),
        _ => ended_at.at,
    };
    let elapsed = end.saturating_duration_since(window_start);
    Ok(RunResult {
        recorder,
        workers,
        started_at: wall_start + shape.warmup,
        elapsed,
        interrupted: ended_at.interrupted,
        peak_rss_bytes: crate::sys::peak_rss_bytes(),
        peak_open: ended_at.peak_open,
        intervals: merge_intervals(&lives, elapsed),
        stages,
        worker_panics,
        time_wait: None,
    })
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Every worker's interval parts, merged by interval index, in time order.
fn merge_intervals(lives: &[Arc<Live>], elapsed: Duration) -> Vec<crate::metrics::Interval> {
    use crate::metrics::Interval;
    let mut out: Vec<Interval> = Vec::new();
    for live in lives {
        let Some(store) = &live.intervals else {
            continue;
        };
        let parts = std::mem::take(&mut *store.lock().unwrap_or_else(|e| e.into_inner()));
        for (index, hists) in parts {
            let start = Duration::from_secs(index as u64);
            let slot = match out.iter().position(|i| i.start == start) {
                Some(i) => i,
                None => {
                    out.push(Interval {
                        start,
                        length: Duration::from_secs(1),
                        hists: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            for (phase, h) in hists {
                match out[slot].hists.iter_mut().find(|(p, _)| *p == phase) {
                    Some((_, into)) => {
                        into.add(&h).expect("interval histograms share bounds");
                    }
                    None => out[slot].hists.push((phase, h)),
                }
            }
        }
    }
    out.sort_by_key(|i| i.start);
    // The last interval ends with the run.
    if let Some(last) = out.last_mut() {
        last.length = elapsed
            .saturating_sub(last.start)
            .min(Duration::from_secs(1));
    }
    out
}

struct Ended {
    at: Instant,
    interrupted: bool,
    /// Most connections open at once, sampled every few ms.
    peak_open: u64,
}

/// Wait for the end of the run, drawing the live progress line when asked (once a second: the
/// rates and the percentiles of the second since the previous line; erased before returning).
fn coordinate(
    plan: &RunShape,
    start: Instant,
    stop: &AtomicBool,
    lives: &[Arc<Live>],
    failed: bool,
) -> Ended {
    let deadline = match plan.stop {
        Stop::Duration(d) => Some(start + plan.warmup + d),
        Stop::Requests(_) => None,
    };
    let mut drawer = core::live::Drawer::new(plan.progress.when);
    let mut line = LineState::new(start);
    let mut next_line = start + Duration::from_secs(1);
    let mut peak_open = 0u64;
    let ended = loop {
        let now = Instant::now();
        let open: u64 = lives.iter().map(|l| l.open.load(Ordering::Relaxed)).sum();
        peak_open = peak_open.max(open);
        if failed || stop.load(Ordering::Relaxed) {
            break (now, false);
        }
        if crate::sys::interrupted() {
            break (now, true);
        }
        if deadline.is_some_and(|d| now >= d)
            || lives.iter().all(|l| l.done.load(Ordering::Acquire))
        {
            break (now, false);
        }
        if let Some(d) = &mut drawer {
            if now >= next_line {
                line.draw(d, plan, lives, now, open);
                next_line += Duration::from_secs(1);
                // A stalled coordinator draws once, not a burst of catch-up lines.
                if next_line <= now {
                    next_line = now + Duration::from_secs(1);
                }
            }
        }
        let mut nap = Duration::from_millis(5);
        if let Some(d) = deadline {
            nap = nap.min(d.saturating_duration_since(now));
        }
        std::thread::sleep(nap);
    };
    if let Some(d) = &mut drawer {
        d.clear();
    }
    Ended {
        at: ended.0,
        interrupted: ended.1,
        peak_open,
    }
}

/// What the coordinator keeps between two lines: the previous counts (for the rates) and the
/// histogram the workers' recent samples are gathered into.
struct LineState {
    start: Instant,
    at: Instant,
    done: u64,
    sent: u64,
    recent: hdrhistogram::Histogram<u64>,
}

impl LineState {
    fn new(start: Instant) -> LineState {
        LineState {
            start,
            at: start,
            done: 0,
            sent: 0,
            recent: crate::metrics::new_recent_histogram(),
        }
    }

    /// Take the workers' counters and recent samples and draw one line.
    fn draw(
        &mut self,
        drawer: &mut core::live::Drawer,
        plan: &RunShape,
        lives: &[Arc<Live>],
        now: Instant,
        open: u64,
    ) {
        let sum = |f: fn(&Live) -> &std::sync::atomic::AtomicU64| -> u64 {
            lives.iter().map(|l| f(l).load(Ordering::Relaxed)).sum()
        };
        let done = sum(|l| &l.responses);
        let sent = sum(|l| &l.sent);
        let dt = now
            .saturating_duration_since(self.at)
            .as_secs_f64()
            .max(1e-3);
        // The counters restart when the warm-up ends: that second's rate is its count.
        let rate =
            |now: u64, before: u64| (if now >= before { now - before } else { now }) as f64 / dt;
        let work = match plan.line {
            LineKind::Http(_) => core::live::Work::Http {
                per_sec: rate(done, self.done),
            },
            LineKind::Ws { sends, .. } => core::live::Work::Ws {
                in_per_sec: rate(done, self.done),
                out_per_sec: sends.then(|| rate(sent, self.sent)),
                reconnects: sum(|l| &l.reconnects),
            },
        };
        for l in lives {
            if let Some(r) = &l.recent {
                let mut h = r.hist.lock().unwrap_or_else(|e| e.into_inner());
                let _ = self.recent.add(&*h);
                h.reset();
            }
        }
        let elapsed = now.saturating_duration_since(self.start);
        let snap = core::live::LoadSnapshot {
            elapsed,
            warmup: plan.warmup,
            stop: plan.stop,
            done,
            series: plan.progress.series.as_ref(),
            stage: core::live::stage_now(&plan.stages, elapsed),
            work,
            phase: plan.line.phase(),
            recent: core::live::p50_p99(&self.recent),
            errors: sum(|l| &l.errors),
            open,
        };
        drawer.draw(|out| core::live::format_load(out, &snap));
        self.recent.reset();
        self.at = now;
        self.done = done;
        self.sent = sent;
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Recorder;

    fn shape(threads: usize, run_for: Duration) -> RunShape {
        RunShape {
            threads,
            pinning: Pinning::None,
            stop: Stop::Duration(run_for),
            warmup: Duration::ZERO,
            progress: crate::plan::Progress::new(crate::plan::ProgressWhen::Never),
            line: LineKind::Http(crate::metrics::Phase::Total),
            intervals: false,
            stages: Vec::new(),
            start_at: None,
        }
    }

    type Run = Box<dyn FnOnce() -> core::live::Output>;

    /// A job whose worker counts `n` responses, then either panics or waits for the stop flag.
    fn job(
        panics: bool,
        n: u64,
        stop: Arc<AtomicBool>,
        live: Arc<Live>,
    ) -> impl FnOnce() -> std::io::Result<(Arc<mio::Waker>, Run)> + Send + 'static {
        move || {
            let poll = mio::Poll::new()?;
            let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0))?);
            let run: Run = Box::new(move || {
                let _poll = poll;
                let mut recorder = Recorder::new();
                recorder.counters.responses = n;
                live.responses.store(n, Ordering::Relaxed);
                if panics {
                    panic!("injected by the test after {n} responses");
                }
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                core::live::Output {
                    recorder,
                    windows: Vec::new(),
                    stats: Default::default(),
                    finished_at: Instant::now(),
                }
            });
            Ok((waker, run))
        }
    }

    #[test]
    fn a_panicking_worker_stops_the_run_and_is_reported_not_dropped() {
        // Ten minutes unless the panic ends the run: the test would hang, not pass, if the
        // coordinator did not notice.
        let started = Instant::now();
        let r = run_workers(&shape(2, Duration::from_secs(600)), |id, _, stop, live| {
            job(id == 1, 5 + id as u64, stop, live)
        })
        .expect("run");
        assert!(started.elapsed() < Duration::from_secs(300));
        assert_eq!(r.worker_panics.len(), 1, "{:?}", r.worker_panics);
        let p = &r.worker_panics[0];
        assert_eq!(p.worker, 1);
        assert_eq!(p.message, "injected by the test after 6 responses");
        assert_eq!(p.responses_lost, 6);
        assert!(p.describe().contains("6 measured responses are missing"));
        // The survivor's measurements are kept.
        assert_eq!(r.workers.len(), 1);
        assert_eq!(r.recorder.counters.responses, 5);
    }

    #[test]
    fn the_window_ends_at_the_deadline_not_when_the_stop_reached_the_worker() {
        // `-R` counted the requests that fell due between the deadline and the worker seeing
        // the stop flag as unsent (`finish` was given the instant the loop ended).
        let started = Instant::now();
        let end = core::run::RunEnd {
            started,
            finished_at: started + Duration::from_millis(2_007),
            warm: true,
            max_stall: Duration::ZERO,
        };
        let warmup = Duration::from_millis(500);
        let d = Duration::from_millis(1_500);
        assert_eq!(window_end(&end, warmup, Some(d)), started + warmup + d);
        // A run that finished before its deadline (or was interrupted) ends when it did.
        assert_eq!(
            window_end(&end, warmup, Some(Duration::from_secs(9))),
            end.finished_at
        );
        assert_eq!(window_end(&end, warmup, None), end.finished_at);
    }

    #[test]
    fn every_worker_is_released_with_the_same_start_already_set() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let before = Instant::now();
        run_workers(&shape(3, Duration::from_millis(50)), |_, _, stop, live| {
            let seen = seen.clone();
            let inner = job(false, 1, stop, live.clone());
            move || {
                let (waker, run) = inner()?;
                let run: Run = Box::new(move || {
                    // Read first thing after the release, as the worker loop does.
                    seen.lock().unwrap().push(live.start.get().copied());
                    run()
                });
                Ok((waker, run))
            }
        })
        .expect("run");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        let first = seen[0].expect("set before the release");
        assert!(first >= before);
        assert!(seen.iter().all(|s| *s == Some(first)), "{seen:?}");
    }

    #[test]
    fn a_run_without_panics_reports_none() {
        let r = run_workers(&shape(2, Duration::from_millis(50)), |_, _, stop, live| {
            job(false, 3, stop, live)
        })
        .expect("run");
        assert!(r.worker_panics.is_empty());
        assert_eq!(r.workers.len(), 2);
        assert_eq!(r.recorder.counters.responses, 6);
    }
}
