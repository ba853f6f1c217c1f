//! The built-in loopback target (`connbench serve`): a real HTTP/1.1 keep-alive and WebSocket
//! server, plain and TLS, that the load engine, the integration tests, the benches and users
//! point connbench at.
//!
//! This module owns the public surface ([`start`], [`ServeConfig`], [`ServerHandle`]) and the
//! start/stop choreography: listeners are bound and the certificate is generated *before* any
//! thread runs, so every configuration error surfaces from [`start`] and never from a loop. The
//! work itself lives in private submodules: `listener` (socket2 listeners), `tls` (rcgen +
//! rustls), `http` (sans-IO request heads, upgrade validation), `routes` (sans-IO routing and
//! response bytes), `ws` (sans-IO WebSocket framing, server role), `session` (sans-IO
//! WebSocket behaviour: echo, market-data feed, heartbeat, faults), `conn` (one connection's
//! buffers and transport pump, HTTP then maybe WebSocket) and `event_loop` (one mio loop per
//! thread: slab, timers, accept).
//!
//! HTTP faults: `http_stall` makes the whole target stop answering HTTP for a window (requests
//! are still read and queued, then answered in order), for tests of constant-rate clients and
//! timeouts against a server that hiccups; `http_fail_after` answers every request after the
//! first N of the whole target with one status (503 by default, keep-alive), for tests of how a
//! client reports a server that starts failing part-way through a run.
//!
//! Close faults, where the bytes and the end of the connection leave together (one write, then
//! at once the FIN or the RST, so a client on loopback usually sees both in one readiness
//! event): `/close/fin/N` and `/close/rst/N` answer 200 with N body bytes delimited by the
//! close (no Content-Length, not chunked) and `Connection: close`, then end the TCP connection
//! with a FIN (`shutdown`, no TLS close_notify) or a reset (SO_LINGER 0); `/truncate/fin/N` and
//! `/truncate/rst/N` announce `Content-Length: N` (N ≥ 1), send only the first N/2 bytes, then
//! do the same. Past `max_conns`, [`OverLimit::Close`] ends each connection with a FIN right
//! after accept and [`OverLimit::Refuse`] with a reset; `ws_drop_rst` makes `ws_drop_every`
//! reset instead of FIN.
//!
//! Framing faults, for tests of clients' decoders: `/headers/N` answers 200 with exactly N
//! header fields (3 to 10,000; an empty body); `/garbage` writes a malformed head that never
//! ends (a status line, then a line that is not a header field) and closes; and the `drip`
//! knob writes every byte in a write of its own, `drip` apart, so a client sees every response
//! split at every byte (its framing, and the class of its errors, must not change).
//!
//! Answers worth knowing when pointing a client at it: chunked *request* bodies get `411 Length
//! Required` and a close (only Content-Length bodies are read, and discarded); a head over
//! 16 KiB gets 431; `/delay` resolves to the millisecond (mio's poll timeout granularity).
//!
//! WebSocket, on both ports, at `/ws` and `/echo` (query ignored): a valid RFC 6455 upgrade
//! gets `101`; a bad or missing `Sec-WebSocket-Version` gets `426` naming version 13; any other
//! defect gets `400`; both close. Frames the client pipelines behind the upgrade request are
//! kept. Client frames must be masked (else close 1002); messages are limited to 1 MiB (1009);
//! text must be UTF-8 (1007); pings get pongs with the same payload; a close is answered with
//! the same code and then a FIN. `/echo` echoes text and binary. `/ws` takes subscriptions
//! (any text containing `subscribe`, acknowledged with `{"event":"subscribed","stream":...}`)
//! and sends `ws_rate` messages per second round-robin over them, shaped
//! `{"stream":..,"seq":..,"timestamp":<µs>,"price":"..","qty":"..","side":"buy"}`; it answers
//! text `ping` with `pong` and `{"op":"ping"}` with `{"op":"pong"}`, and takes `unsubscribe`.
//! The `ws_*` fault knobs of [`ServeConfig`] apply per connection, timed from its upgrade. A
//! client that stops reading costs at most about 2 MiB: past 1 MiB of unsent output, data
//! messages are dropped (counted, and visible to the client as seq gaps).
//!
//! Raw TCP echo (`echo_port`, off by default; `connbench serve --echo PORT`): a third listener
//! whose connections speak no protocol at all: every byte read is written back at once (no
//! TLS, no faults; past `max_conns` they are reset). It is the reference round trip of
//! `connbench floor`, the sockperf-style ping-pong that HTTP and WebSocket are compared with.
//!
//! It must never be the bottleneck of a benchmark: no thread per connection, no allocation per
//! request on `/` or per WebSocket message in steady state, no sleeping, no lock on the request
//! path. It must never panic on input either: a connection that misbehaves is simply closed.

mod conn;
mod event_loop;
mod http;
mod listener;
mod routes;
mod session;
mod tls;
mod ws;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What to do with a connection past `max_conns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverLimit {
    /// Accept and immediately reset it (SO_LINGER 0 close): the client sees a reset.
    Refuse,
    /// Answer its requests with `429 Too Many Requests` + `Connection: close` (then close).
    TooMany,
    /// Accept and immediately end it with a clean TCP FIN, before any byte (and before any
    /// TLS): the client sees an EOF, usually in the same event as its connect completing.
    Close,
}

/// How to run the target. `Default` is one thread, both listeners on ephemeral loopback ports.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Address to bind both listeners to (default 127.0.0.1).
    pub bind: IpAddr,
    /// Plain HTTP port: `Some(0)` = ephemeral (default), `None` = no plain listener.
    pub http_port: Option<u16>,
    /// HTTPS port: `Some(0)` = ephemeral (default), `None` = no TLS listener.
    pub https_port: Option<u16>,
    /// Raw TCP echo port: `Some(0)` = ephemeral, `None` = no echo listener (default).
    pub echo_port: Option<u16>,
    /// Event-loop threads (default 1); with more than one, each has its own SO_REUSEPORT
    /// listener on the same port and the kernel spreads connections.
    pub threads: usize,
    /// Pin thread i to `cpus[i % len]` (core_affinity); empty = no pinning.
    pub cpus: Vec<usize>,
    /// Concurrent admitted connections across all threads and both ports (`Some(0)` rejects
    /// every connection, which is a valid fault to inject).
    pub max_conns: Option<usize>,
    /// What happens to connections past `max_conns` (default [`OverLimit::Refuse`]).
    pub over_limit: OverLimit,
    /// The N-th request of each connection (N ≥ 1) gets `Connection: close`, then the
    /// connection is closed.
    pub close_after: Option<u64>,
    /// Write the self-signed certificate PEM here.
    pub cert_out: Option<PathBuf>,
    /// Data messages per second per WebSocket connection on `/ws` (default 10.0), round-robin
    /// over its subscriptions; 0 to 1,000,000. `0.0` sends none (subscriptions are still
    /// acknowledged).
    pub ws_rate: f64,
    /// Abnormal close: this long after the upgrade, each connection's TCP connection is closed
    /// WITHOUT a close frame (clean FIN, so bytes already written arrive; the client sees 1006).
    pub ws_drop_every: Option<Duration>,
    /// `ws_drop_every` ends the TCP connection with a reset (SO_LINGER 0) instead of a FIN:
    /// bytes the socket already sent arrive, then the RST (needs `ws_drop_every`).
    pub ws_drop_rst: bool,
    /// Every N-th data message of a subscription (N ≥ 1) skips one seq number. The first
    /// message of a subscription never skips: a gap needs a predecessor to be visible.
    pub ws_gap_every: Option<u64>,
    /// This long after the upgrade, stop sending data messages; the connection stays open and
    /// control frames are still answered.
    pub ws_stall_after: Option<Duration>,
    /// Send a ping (payload = 8-byte big-endian counter) every D. A client that has not answered
    /// the previous ping with a matching pong by the time the next one is due (or within
    /// `ws_pong_timeout` if set) gets close 1008 "pong timeout", then the connection closes.
    pub ws_ping_every: Option<Duration>,
    /// Deadline for the pong, counted from its ping (needs `ws_ping_every`).
    pub ws_pong_timeout: Option<Duration>,
    /// HTTP stall, `(after, for)`: from `after` past the first HTTP request the target reads
    /// (not its start: a client that takes a while to start still meets the stall) and for
    /// `for`, no HTTP request is answered. Requests keep being read and queued (up to the per-connection pipelining
    /// bound, 64, past which reading pauses and TCP holds the rest); when the stall ends every
    /// queued reply goes out, in order. Counted in [`ServerStats::http_stalled_requests`].
    /// Upgrades and error answers (400, 429, …) wait too: the server answers *nothing*.
    pub http_stall: Option<(Duration, Duration)>,
    /// Send this text message right after the `101`, in the same write (on `/ws` and `/echo`),
    /// as servers that greet a new connection do: the client reads the upgrade response and
    /// the first data message at the same instant. At most [`MAX_GREETING`] bytes.
    pub ws_greeting: Option<String>,
    /// Never answer pings (a peer whose control path is dead): no pong ever comes back, while
    /// data and the connection itself go on.
    pub ws_ignore_pings: bool,
    /// Write fault: every byte the target writes (HTTP responses, the `101`, WebSocket frames)
    /// goes out in a write of its own, this long after the previous one (TCP_NODELAY is always
    /// on, so each is its own segment): clients see responses split at every byte.
    pub drip: Option<Duration>,
    /// HTTP fault, `(n, status)`: the first `n` HTTP requests (counted over the whole target,
    /// every thread and port) are answered as usual, every later one with `status` (200-599,
    /// keep-alive), WebSocket upgrades included: a server that starts failing under load.
    /// Counted in [`ServerStats::http_failed`].
    pub http_fail_after: Option<(u64, u16)>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: Some(0),
            https_port: Some(0),
            echo_port: None,
            threads: 1,
            cpus: Vec::new(),
            max_conns: None,
            over_limit: OverLimit::Refuse,
            close_after: None,
            cert_out: None,
            ws_rate: 10.0,
            ws_drop_every: None,
            ws_drop_rst: false,
            ws_gap_every: None,
            ws_stall_after: None,
            ws_ping_every: None,
            ws_pong_timeout: None,
            http_stall: None,
            ws_greeting: None,
            ws_ignore_pings: false,
            drip: None,
            http_fail_after: None,
        }
    }
}

/// Counters summed over all threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests parsed and answered (including error answers such as 400 and 429).
    pub requests: u64,
    /// Connections admitted (within `max_conns`).
    pub accepted: u64,
    /// Connections past `max_conns`: reset (`Refuse`) or answered 429 (`TooMany`).
    pub rejected: u64,
    /// Admitted connections currently open.
    pub open: u64,
    /// WebSocket upgrades answered with 101 (both ports, `/ws` and `/echo`).
    pub ws_upgrades: u64,
    /// Data messages handed to the socket layer on `/ws` (not counting back-pressure drops).
    pub ws_messages_sent: u64,
    /// Data messages sent whose seq skipped ahead of the previously sent one of the same
    /// subscription (injected gaps and back-pressure drops alike), counted when the message
    /// after the gap is sent: a client that receives every sent message sees exactly this many.
    pub ws_gaps: u64,
    /// Abnormal closes done by `ws_drop_every` (no close frame).
    pub ws_drops: u64,
    /// Connections closed with 1008 because a pong did not come back in time.
    pub ws_pong_timeouts: u64,
    /// Subscriptions acknowledged on `/ws`.
    pub ws_subscriptions: u64,
    /// Data messages not sent because the client was not reading (the per-connection output
    /// bound was reached). Their seq numbers are consumed, so the client sees a gap.
    pub ws_messages_dropped: u64,
    /// Requests that arrived during the `http_stall` window and were answered only after it.
    pub http_stalled_requests: u64,
    /// Bytes the echo listener's connections read (and wrote back).
    pub echo_bytes: u64,
    /// Requests answered with the `http_fail_after` status instead of their route.
    pub http_failed: u64,
}

/// Why the target could not start. Each variant's `Display` is one line naming the problem and
/// the fix.
#[derive(Debug)]
pub enum ServeError {
    /// The configuration itself is inconsistent (the caller's fault).
    Config(String),
    /// A listener could not be created, bound or put in listening state.
    Bind {
        /// The address that failed.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The certificate PEM could not be written to `cert_out`.
    CertOut {
        /// The path from `cert_out`.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Certificate generation or the rustls configuration failed.
    Tls(String),
    /// An event-loop thread could not be created (poll, waker, spawn) or pinned.
    Thread(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Config(msg) => write!(f, "invalid target configuration: {msg}"),
            ServeError::Bind { addr, source } => write!(
                f,
                "cannot listen on {addr}: {source} (pick another port, or 0 for an ephemeral one)"
            ),
            ServeError::CertOut { path, source } => write!(
                f,
                "cannot write the certificate to {}: {source} (choose a writable path)",
                path.display()
            ),
            ServeError::Tls(msg) => {
                write!(
                    f,
                    "cannot set up TLS for the target: {msg} (run without HTTPS)"
                )
            }
            ServeError::Thread(msg) => write!(
                f,
                "cannot start a target thread: {msg} (use fewer threads or other --cpus)"
            ),
        }
    }
}

impl std::error::Error for ServeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ServeError::Bind { source, .. } | ServeError::CertOut { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Counters one event loop updates with relaxed atomics. One cache line per thread so loops
/// never share a line; only [`ServerHandle::stats`] reads across them.
#[repr(align(64))]
#[derive(Default)]
struct ThreadCounters {
    requests: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    ws_upgrades: AtomicU64,
    ws_messages_sent: AtomicU64,
    ws_gaps: AtomicU64,
    ws_drops: AtomicU64,
    ws_pong_timeouts: AtomicU64,
    ws_subscriptions: AtomicU64,
    ws_messages_dropped: AtomicU64,
    http_stalled_requests: AtomicU64,
    echo_bytes: AtomicU64,
    http_failed: AtomicU64,
}

/// State shared by every loop of one server. Read-only except `stop` (set once) and `open`
/// (touched only on accept and close, never per request).
struct Shared {
    stop: AtomicBool,
    /// Admitted connections open right now, across threads and ports.
    open: AtomicUsize,
    max_conns: Option<usize>,
    over_limit: OverLimit,
    close_after: Option<u64>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// `GET /` answered keep-alive over HTTP/1.1: status line, headers and body, built once.
    index_response: Box<[u8]>,
    /// WebSocket rate and faults.
    ws: session::Settings,
    /// `ServeConfig::ws_drop_rst`.
    ws_drop_rst: bool,
    /// `http_stall` as `(after, for)`, counted from `first_request`.
    http_stall: Option<(Duration, Duration)>,
    /// When the first HTTP request was read (set once, by whichever connection reads it).
    first_request: std::sync::OnceLock<Instant>,
    /// `ws_greeting`, encoded once as a whole text frame.
    ws_greeting: Option<Box<[u8]>>,
    /// The `drip` write fault.
    drip: Option<Duration>,
    /// `http_fail_after`, and the HTTP requests routed so far (touched per request only when
    /// the fault is on).
    http_fail_after: Option<(u64, u16)>,
    http_routed: AtomicU64,
}

/// A running target. Dropping it stops it, like [`ServerHandle::stop`].
pub struct ServerHandle {
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    echo_addr: Option<SocketAddr>,
    ca_pem: String,
    shared: Arc<Shared>,
    counters: Vec<Arc<ThreadCounters>>,
    wakers: Vec<Arc<mio::Waker>>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("http_addr", &self.http_addr)
            .field("https_addr", &self.https_addr)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Address of the plain HTTP listener, if any.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Address of the TLS listener, if any.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Address of the raw TCP echo listener, if any.
    pub fn echo_addr(&self) -> Option<SocketAddr> {
        self.echo_addr
    }

    /// PEM of the self-signed certificate (clients use it as their CA).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Counters summed over threads (relaxed atomics updated by the loops; cheap).
    pub fn stats(&self) -> ServerStats {
        let mut s = ServerStats {
            open: self.shared.open.load(Ordering::Relaxed) as u64,
            ..ServerStats::default()
        };
        for c in &self.counters {
            s.requests += c.requests.load(Ordering::Relaxed);
            s.accepted += c.accepted.load(Ordering::Relaxed);
            s.rejected += c.rejected.load(Ordering::Relaxed);
            s.ws_upgrades += c.ws_upgrades.load(Ordering::Relaxed);
            s.ws_messages_sent += c.ws_messages_sent.load(Ordering::Relaxed);
            s.ws_gaps += c.ws_gaps.load(Ordering::Relaxed);
            s.ws_drops += c.ws_drops.load(Ordering::Relaxed);
            s.ws_pong_timeouts += c.ws_pong_timeouts.load(Ordering::Relaxed);
            s.ws_subscriptions += c.ws_subscriptions.load(Ordering::Relaxed);
            s.ws_messages_dropped += c.ws_messages_dropped.load(Ordering::Relaxed);
            s.http_stalled_requests += c.http_stalled_requests.load(Ordering::Relaxed);
            s.echo_bytes += c.echo_bytes.load(Ordering::Relaxed);
            s.http_failed += c.http_failed.load(Ordering::Relaxed);
        }
        s
    }

    /// Stop every thread (Waker + flag), close all sockets, join. Drop does the same.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for w in &self.wakers {
            // A failed wake only delays the stop to the loop's next wakeup; loops also poll with
            // a bounded timeout so they always see the flag.
            let _ = w.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Bind, generate the certificate, spawn the event loops, return once listening.
pub fn start(cfg: ServeConfig) -> Result<ServerHandle, ServeError> {
    validate(&cfg)?;

    let (cert, tls_config) = tls::build()?;
    if let Some(path) = &cfg.cert_out {
        std::fs::write(path, cert.as_bytes()).map_err(|source| ServeError::CertOut {
            path: path.clone(),
            source,
        })?;
    }

    let http = cfg
        .http_port
        .map(|port| listener::bind_group(SocketAddr::new(cfg.bind, port), cfg.threads))
        .transpose()?;
    let https = cfg
        .https_port
        .map(|port| listener::bind_group(SocketAddr::new(cfg.bind, port), cfg.threads))
        .transpose()?;
    let echo = cfg
        .echo_port
        .map(|port| listener::bind_group(SocketAddr::new(cfg.bind, port), cfg.threads))
        .transpose()?;
    let http_addr = http.as_ref().map(|g| g.addr);
    let https_addr = https.as_ref().map(|g| g.addr);
    let echo_addr = echo.as_ref().map(|g| g.addr);
    let mut http_listeners = http.map(|g| g.listeners).unwrap_or_default().into_iter();
    let mut https_listeners = https.map(|g| g.listeners).unwrap_or_default().into_iter();
    let mut echo_listeners = echo.map(|g| g.listeners).unwrap_or_default().into_iter();

    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        open: AtomicUsize::new(0),
        max_conns: cfg.max_conns,
        over_limit: cfg.over_limit,
        close_after: cfg.close_after,
        tls: https_addr.map(|_| Arc::new(tls_config)),
        index_response: routes::index_response(),
        ws: session::Settings {
            rate: cfg.ws_rate,
            drop_every: cfg.ws_drop_every,
            gap_every: cfg.ws_gap_every,
            stall_after: cfg.ws_stall_after,
            ping_every: cfg.ws_ping_every,
            pong_timeout: cfg.ws_pong_timeout,
            ignore_pings: cfg.ws_ignore_pings,
        },
        ws_greeting: cfg.ws_greeting.as_deref().map(|g| {
            let mut frame = Vec::with_capacity(g.len() + 4);
            ws::push_frame(&mut frame, ws::OpCode::Text, g.as_bytes());
            frame.into_boxed_slice()
        }),
        ws_drop_rst: cfg.ws_drop_rst,
        // `validate` bounds both durations, so these additions cannot overflow.
        http_stall: cfg.http_stall,
        first_request: std::sync::OnceLock::new(),
        drip: cfg.drip,
        http_fail_after: cfg.http_fail_after,
        http_routed: AtomicU64::new(0),
    });

    let mut handle = ServerHandle {
        http_addr,
        https_addr,
        echo_addr,
        ca_pem: cert,
        shared: Arc::clone(&shared),
        counters: Vec::with_capacity(cfg.threads),
        wakers: Vec::with_capacity(cfg.threads),
        threads: Vec::with_capacity(cfg.threads),
    };

    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), ServeError>>();
    for i in 0..cfg.threads {
        let counters = Arc::new(ThreadCounters::default());
        let lp = event_loop::Loop::new(
            Arc::clone(&shared),
            Arc::clone(&counters),
            http_listeners.next(),
            https_listeners.next(),
            echo_listeners.next(),
        )?;
        handle.counters.push(counters);
        handle.wakers.push(lp.waker());
        let cpu = (!cfg.cpus.is_empty()).then(|| cfg.cpus[i % cfg.cpus.len()]);
        let ready = ready_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("connbench-target-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                        let _ = ready.send(Err(ServeError::Thread(format!(
                            "cannot pin thread {i} to CPU {cpu}"
                        ))));
                        return;
                    }
                }
                let _ = ready.send(Ok(()));
                drop(ready);
                lp.run();
            });
        match spawned {
            Ok(t) => handle.threads.push(t),
            // `handle` drops here and stops the threads already spawned.
            Err(e) => return Err(ServeError::Thread(e.to_string())),
        }
    }
    drop(ready_tx);
    for _ in 0..cfg.threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(ServeError::Thread("a thread exited while starting".into())),
        }
    }
    Ok(handle)
}

/// Highest per-connection WebSocket data rate accepted: beyond it a loop would spend its time
/// formatting messages no client can read.
const MAX_WS_RATE: f64 = 1_000_000.0;
/// Longest WebSocket fault delay accepted (one week).
const MAX_WS_DELAY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Longest `ws_greeting` accepted, in bytes.
pub const MAX_GREETING: usize = 64 * 1024;

fn validate(cfg: &ServeConfig) -> Result<(), ServeError> {
    if cfg.threads == 0 {
        return Err(ServeError::Config("threads must be at least 1".into()));
    }
    if cfg.http_port.is_none() && cfg.https_port.is_none() {
        return Err(ServeError::Config(
            "neither an HTTP nor an HTTPS port is enabled; enable at least one".into(),
        ));
    }
    if cfg.close_after == Some(0) {
        return Err(ServeError::Config(
            "close_after counts requests from 1; use 1 to close after the first".into(),
        ));
    }
    if !(cfg.ws_rate.is_finite() && (0.0..=MAX_WS_RATE).contains(&cfg.ws_rate)) {
        return Err(ServeError::Config(format!(
            "ws_rate must be between 0 and {MAX_WS_RATE} messages per second per connection, not {}",
            cfg.ws_rate
        )));
    }
    if cfg.ws_gap_every == Some(0) {
        return Err(ServeError::Config(
            "ws_gap_every counts messages from 1; use 1 to skip on every message".into(),
        ));
    }
    for (name, d) in [
        ("ws_drop_every", cfg.ws_drop_every),
        ("ws_stall_after", cfg.ws_stall_after),
        ("ws_ping_every", cfg.ws_ping_every),
        ("ws_pong_timeout", cfg.ws_pong_timeout),
    ] {
        match d {
            Some(d) if d.is_zero() => {
                return Err(ServeError::Config(format!(
                    "{name} must be longer than zero"
                )))
            }
            // Keeps `upgrade instant + d` from overflowing an Instant on any platform.
            Some(d) if d > MAX_WS_DELAY => {
                return Err(ServeError::Config(format!(
                    "{name} must be at most {} s",
                    MAX_WS_DELAY.as_secs()
                )))
            }
            _ => {}
        }
    }
    if let Some((after, len)) = cfg.http_stall {
        if len.is_zero() {
            return Err(ServeError::Config(
                "http_stall needs a length longer than zero".into(),
            ));
        }
        // Keeps `start + after + len` from overflowing an Instant on any platform.
        if after > MAX_WS_DELAY || len > MAX_WS_DELAY {
            return Err(ServeError::Config(format!(
                "http_stall start and length must each be at most {} s",
                MAX_WS_DELAY.as_secs()
            )));
        }
    }
    if cfg
        .ws_greeting
        .as_ref()
        .is_some_and(|g| g.len() > MAX_GREETING)
    {
        return Err(ServeError::Config(format!(
            "ws_greeting must be at most {MAX_GREETING} bytes"
        )));
    }
    if let Some((_, status)) = cfg.http_fail_after {
        if !(200..=599).contains(&status) {
            return Err(ServeError::Config(format!(
                "http_fail_after status must be between 200 and 599, not {status}"
            )));
        }
    }
    if cfg.ws_drop_rst && cfg.ws_drop_every.is_none() {
        return Err(ServeError::Config(
            "ws_drop_rst needs ws_drop_every (it says how the drop ends the connection)".into(),
        ));
    }
    match cfg.drip {
        Some(d) if d.is_zero() => {
            return Err(ServeError::Config("drip must be longer than zero".into()))
        }
        // Keeps `now + drip` from overflowing an Instant on any platform.
        Some(d) if d > MAX_WS_DELAY => {
            return Err(ServeError::Config(format!(
                "drip must be at most {} s",
                MAX_WS_DELAY.as_secs()
            )))
        }
        _ => {}
    }
    if cfg.ws_pong_timeout.is_some() && cfg.ws_ping_every.is_none() {
        return Err(ServeError::Config(
            "ws_pong_timeout needs ws_ping_every (no ping, no pong to wait for)".into(),
        ));
    }
    if !cfg.cpus.is_empty() {
        // Checked here, on the caller's thread, because after pinning `get_core_ids` only sees
        // one CPU (libs.md §6), and because core_affinity aborts on ids past CPU_SETSIZE.
        let allowed: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        if let Some(bad) = cfg.cpus.iter().find(|c| !allowed.contains(c)) {
            return Err(ServeError::Config(format!(
                "CPU {bad} is not available to this process (allowed: {allowed:?})"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod ws_tests;
