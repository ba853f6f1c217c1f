//! The measurements of `connbench floor` that are not a load run: the raw TCP ping-pong, the
//! connect and TLS handshake churn, the clock read and the timer wake-up. (HTTP TTFB and the
//! WebSocket echo are the `http` and `ws` engines themselves at one connection, run by
//! `app::floor`.) Each runs on the calling thread, which the caller pins or not, for a given
//! time, and hands back a [`Measured`]: the samples, the operations, their CPU.
//!
//! Rules:
//! 1. The raw ping-pong is a loop of its own, not a session on the core: it is the reference
//!    the core's sessions are compared with, so it must carry none of their cost (slots, timer
//!    table, recorder, parsing). Per round trip: one `write`, one `epoll_wait` (sleeping) or as
//!    many `epoll_wait(…, 0)` as it takes (spinning), one `read` — sockperf's ping-pong and the
//!    null client of issue 11, edge-triggered like the core.
//! 2. The connect and handshake churn is a session on the core ([`Churn`]): one connection at
//!    a time, opened, measured, and closed with an RST (SO_LINGER 0), so thousands of them
//!    leave no TIME_WAIT behind. For TLS it first sends one request and reads its response,
//!    so the server's session tickets (TLS 1.3 sends them after the handshake) are in the
//!    client's store before the close and the next handshake can resume.
//! 3. Waiting is [`Wait::Sleep`] (block in `epoll_wait`, or on a timerfd) or [`Wait::Spin`]
//!    (`epoll_wait(…, 0)` and a clock check per turn: what `--busy-poll` does, core rule 6).
//! 4. Every wait is bounded ([`STEP_TIMEOUT`]) and every loop ends at its deadline or on
//!    Ctrl-C; a failure is a message for the report's row, never a panic.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use super::buf::RecvBuf;
use super::core::live::Live;
use super::core::run::RunCtl;
use super::core::timerfd::Timerfd;
use super::core::{
    Close, Connector, Driver, Failure, Lost, Net, Opened, Refusal, Session, TimerKind, Transport,
};
use crate::metrics::floor::Measured;
use crate::metrics::{new_histogram, ErrorClass, Phase, Recorder};
use crate::proto::http1::{Progress, ResponseDecoder};

/// How a measurement waits for events (rule 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Block in `epoll_wait` until an event.
    Sleep,
    /// Spin on `epoll_wait(…, 0)`; SO_BUSY_POLL of this many µs on the sockets when given.
    Spin {
        /// What the kernel allowed (checked before the run).
        so_busy_poll_us: Option<u32>,
    },
}

/// Bytes of one raw ping (and of its echo).
pub const PING_BYTES: usize = 64;
/// Longest wait for one step: a connect, an echo, a timer (rule 4).
pub const STEP_TIMEOUT: Duration = Duration::from_secs(5);
/// How far ahead each timer of the wake-up measurement is armed: a pacing interval of
/// `-R 5000` at one connection.
pub const TIMER_AHEAD: Duration = Duration::from_micros(200);
/// Clock reads per sample of the clock measurement (one sample is their mean).
pub const CLOCK_BATCH: u64 = 1000;

/// CPU time (user + system) of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let (user, sys) = crate::sys::thread_cpu_time();
    (user + sys).as_nanos() as u64
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_nanos() as u64).max(1));
}

/// Rule 1: ping-pong [`PING_BYTES`] with the raw echo service at `addr` for `run_for`.
pub fn ping_pong(addr: SocketAddr, wait: Wait, run_for: Duration) -> Result<Measured, String> {
    let cpu0 = thread_cpu_ns();
    let io = |what: &str, e: io::Error| format!("{what} {addr}: {e}");
    let std = std::net::TcpStream::connect_timeout(&addr, STEP_TIMEOUT)
        .map_err(|e| io("cannot connect to", e))?;
    std.set_nodelay(true).map_err(|e| io("TCP_NODELAY on", e))?;
    std.set_nonblocking(true)
        .map_err(|e| io("O_NONBLOCK on", e))?;
    let mut sock = mio::net::TcpStream::from_std(std);
    if let Wait::Spin {
        so_busy_poll_us: Some(us),
    } = wait
    {
        let _ = socket2::SockRef::from(&sock).set_busy_poll(us);
    }
    let mut poll = Poll::new().map_err(|e| io("epoll for", e))?;
    poll.registry()
        .register(&mut sock, Token(0), Interest::READABLE)
        .map_err(|e| io("registering", e))?;
    let mut events = Events::with_capacity(8);
    let ping = [0x5au8; PING_BYTES];
    let mut buf = [0u8; 4096];
    let mut hist = new_histogram();
    let end = Instant::now() + run_for;
    loop {
        let t0 = Instant::now();
        if t0 >= end || crate::sys::interrupted() {
            break;
        }
        match sock.write(&ping) {
            Ok(PING_BYTES) => {}
            Ok(n) => return Err(format!("{addr} took {n} of {PING_BYTES} bytes")),
            Err(e) => return Err(io("writing to", e)),
        }
        // The socket was drained by the previous short read: wait first, read after.
        let step_end = t0 + STEP_TIMEOUT;
        let mut got = 0;
        while got < PING_BYTES {
            let timeout = match wait {
                Wait::Sleep => step_end.saturating_duration_since(Instant::now()),
                Wait::Spin { .. } => Duration::ZERO,
            };
            match poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io("epoll_wait for", e)),
            }
            if events.is_empty() {
                if Instant::now() >= step_end {
                    return Err(format!("no echo from {addr} within {STEP_TIMEOUT:?}"));
                }
                continue;
            }
            loop {
                match sock.read(&mut buf) {
                    Ok(0) => return Err(format!("{addr} closed the connection")),
                    Ok(n) => {
                        got += n;
                        if n < buf.len() {
                            break; // a short read: drained (core transport rule 1)
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(io("reading from", e)),
                }
            }
        }
        let t1 = Instant::now();
        if got != PING_BYTES {
            return Err(format!(
                "{addr} sent {got} bytes back for {PING_BYTES}: not an echo service"
            ));
        }
        record(&mut hist, t1 - t0);
    }
    Ok(Measured {
        ops: hist.len(),
        hist,
        cpu_ns: thread_cpu_ns() - cpu0,
        errors: 0,
        error_note: None,
    })
}

/// What the churn measured: connect and handshake times, by kind.
#[derive(Clone, Debug)]
pub struct Churned {
    /// TCP connect times (the core's connect phase).
    pub connect: Histogram<u64>,
    /// Full TLS handshakes.
    pub full: Histogram<u64>,
    /// Resumed TLS handshakes.
    pub resumed: Histogram<u64>,
    /// Connections established.
    pub connections: u64,
    /// CPU of the thread, ns.
    pub cpu_ns: u64,
    /// Connections that failed.
    pub errors: u64,
    /// Their classes and counts, e.g. `connect_refused 3`.
    pub error_note: Option<String>,
}

/// Rule 2: open, measure and close one connection at a time to `addrs` for `run_for`;
/// `request` (TLS) is sent on each and its response read before the close.
pub fn churn<T: Transport>(
    ctx: T::Ctx,
    addrs: Vec<SocketAddr>,
    request: Option<Arc<[u8]>>,
    wait: Wait,
    run_for: Duration,
) -> io::Result<Churned> {
    let cpu0 = thread_cpu_ns();
    let mut net = Net::<T>::new(
        Poll::new()?,
        1,
        ctx,
        Connector::new(addrs, Vec::new(), 0),
        STEP_TIMEOUT,
    );
    if let Wait::Spin { so_busy_poll_us } = wait {
        net.set_busy_poll(so_busy_poll_us);
    }
    let mut d = Driver::new(net, Churn::new(request, run_for));
    d.run(&RunCtl {
        stop: Arc::new(AtomicBool::new(false)),
        live: Arc::new(Live::default()),
        warmup: Duration::ZERO,
        run_for: None,
    });
    let (net, s) = d.into_parts();
    let errors = s.failures.iter().map(|(_, n)| n).sum();
    Ok(Churned {
        connect: net.rec.histogram(Phase::Connect).clone(),
        full: s.full,
        resumed: s.resumed,
        connections: s.connections,
        cpu_ns: thread_cpu_ns() - cpu0,
        errors,
        error_note: (errors > 0).then(|| {
            s.failures
                .iter()
                .map(|(what, n)| format!("{what} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        }),
    })
}

/// The churn session (rule 2) on the core's slot 0.
pub struct Churn {
    request: Option<Arc<[u8]>>,
    decoder: ResponseDecoder,
    run_for: Duration,
    end: Option<Instant>,
    over: bool,
    /// The response of this connection's request is complete.
    answered: bool,
    full: Histogram<u64>,
    resumed: Histogram<u64>,
    connections: u64,
    /// Failures by what went wrong, in order of first appearance.
    failures: Vec<(String, u64)>,
}

/// After a failure the slot waits this long before the next connection.
const RETRY_AFTER: Duration = Duration::from_millis(10);

impl Churn {
    /// A churn that sends `request` on each connection (or closes at once) for `run_for`.
    pub fn new(request: Option<Arc<[u8]>>, run_for: Duration) -> Churn {
        Churn {
            request,
            decoder: ResponseDecoder::new(),
            run_for,
            end: None,
            over: false,
            answered: false,
            full: new_histogram(),
            resumed: new_histogram(),
            connections: 0,
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, what: String) {
        match self.failures.iter_mut().find(|(w, _)| *w == what) {
            Some((_, n)) => *n += 1,
            None => self.failures.push((what, 1)),
        }
    }

    fn open<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) {
        if self.over || self.end.is_some_and(|e| now >= e) {
            self.over = true;
            return;
        }
        self.decoder.reset();
        self.answered = false;
        if let Opened::Failed(class) = net.open(0, now) {
            self.fail(class.name().to_string());
            net.timers.set(0, TimerKind::Reopen, now + RETRY_AFTER);
        }
    }

    /// This connection is measured: close it (RST) and open the next.
    fn next<T: Transport>(&mut self, net: &mut Net<T>, now: Instant) {
        net.close(0, Close::Rst);
        self.open(net, now);
    }
}

impl<T: Transport> Session<T> for Churn {
    fn on_start(&mut self, net: &mut Net<T>, now: Instant) {
        self.end = Some(now + self.run_for);
        self.open(net, now);
    }

    fn on_ready(&mut self, net: &mut Net<T>, slot: usize, now: Instant) {
        self.connections += 1;
        if let Some(resumed) = net.transport(slot).and_then(|t| t.resumed()) {
            let took = now.saturating_duration_since(net.established_at(slot));
            let h = if resumed {
                &mut self.resumed
            } else {
                &mut self.full
            };
            record(h, took);
        }
        match self.request.clone() {
            None => self.next(net, now),
            Some(req) => {
                if let Err(e) = net.send(slot, &req) {
                    self.fail(ErrorClass::from_io_error(&e).name().to_string());
                    net.close(slot, Close::Rst);
                    net.timers.set(slot, TimerKind::Reopen, now + RETRY_AFTER);
                }
            }
        }
    }

    fn on_data(
        &mut self,
        _slot: usize,
        rb: &mut RecvBuf,
        _now: Instant,
        _rec: &mut Recorder,
    ) -> Result<(), Failure> {
        if self.answered || self.request.is_none() {
            // Nothing asked for it (the connection closes after this read anyway).
            rb.consume(rb.pending().len());
            return Ok(());
        }
        let (n, progress) = self
            .decoder
            .decode(rb.pending(), false)
            .map_err(|e| Failure::Protocol(Refusal::Http(e)))?;
        rb.consume(n);
        if let Progress::Complete(_) = progress {
            self.answered = true;
            rb.consume(rb.pending().len());
        }
        Ok(())
    }

    fn after_read(&mut self, net: &mut Net<T>, _slot: usize, now: Instant) {
        if self.answered {
            self.next(net, now);
        }
    }

    fn on_lost(&mut self, net: &mut Net<T>, slot: usize, lost: Lost, now: Instant) {
        let what = match lost {
            Lost::Connect(c) | Lost::Handshake(c) | Lost::Tls(c) => c.name().to_string(),
            Lost::HandshakeReset => "tls_handshake (reset)".to_string(),
            Lost::Eof => "eof before the response".to_string(),
            Lost::Io(e) => ErrorClass::from_io_error(&e).name().to_string(),
            Lost::Protocol(why) => format!("protocol ({why})"),
        };
        self.fail(what);
        net.close(slot, Close::Rst);
        net.timers.set(slot, TimerKind::Reopen, now + RETRY_AFTER);
    }

    fn on_timer(&mut self, net: &mut Net<T>, _slot: usize, kind: TimerKind, now: Instant) {
        if kind == TimerKind::Reopen && net.link(0) == super::core::Link::Closed {
            self.open(net, now);
        }
    }

    fn on_turn(&mut self, net: &mut Net<T>, now: Instant) {
        if self.end.is_some_and(|e| now >= e) || crate::sys::interrupted() {
            self.over = true;
            // The connection still open at the end closes like every other (RST), not by the
            // drop's FIN: after a server that closed first, that FIN left it a TIME_WAIT.
            if net.link(0) != super::core::Link::Closed {
                net.close(0, Close::Rst);
            }
        }
    }

    fn finished(&self) -> bool {
        self.over
    }

    fn progress(&self, _rec: &Recorder) -> u64 {
        self.connections
    }
}

/// The cost of one clock read (`Instant::now`, `clock_gettime(CLOCK_MONOTONIC)`): each
/// sample is the mean of [`CLOCK_BATCH`] back-to-back reads.
pub fn clock_cost(run_for: Duration) -> Measured {
    let cpu0 = thread_cpu_ns();
    let mut hist = new_histogram();
    let end = Instant::now() + run_for;
    let mut ops = 0;
    loop {
        let t0 = Instant::now();
        if t0 >= end || crate::sys::interrupted() {
            break;
        }
        for _ in 0..CLOCK_BATCH {
            std::hint::black_box(Instant::now());
        }
        let t1 = Instant::now();
        // t1 is read after the batch: CLOCK_BATCH + 1 reads lie between t0 and t1.
        let per = (t1 - t0).as_nanos() as u64 / (CLOCK_BATCH + 1);
        hist.saturating_record(per.max(1));
        ops += CLOCK_BATCH + 2;
    }
    Measured {
        hist,
        ops,
        cpu_ns: thread_cpu_ns() - cpu0,
        errors: 0,
        error_note: None,
    }
}

/// How late a wake-up comes [`TIMER_AHEAD`] after it was asked for: sleeping, on a timerfd
/// in `epoll_wait` (how `-R` and echo pacing wait); spinning, `epoll_wait(…, 0)` and a clock
/// check per turn (how a `--busy-poll` loop sees any deadline, core rule 6).
pub fn timer_lateness(wait: Wait, run_for: Duration) -> Result<Measured, String> {
    let cpu0 = thread_cpu_ns();
    let err = |what: &str, e: io::Error| format!("{what}: {e}");
    let mut poll = Poll::new().map_err(|e| err("epoll", e))?;
    let mut events = Events::with_capacity(4);
    let mut timer = match wait {
        Wait::Sleep => {
            let t = Timerfd::new().map_err(|e| err("timerfd", e))?;
            poll.registry()
                .register(
                    &mut mio::unix::SourceFd(&t.raw_fd()),
                    Token(0),
                    Interest::READABLE,
                )
                .map_err(|e| err("registering the timerfd", e))?;
            Some(t)
        }
        Wait::Spin { .. } => None,
    };
    let mut hist = new_histogram();
    let end = Instant::now() + run_for;
    loop {
        let now = Instant::now();
        if now >= end || crate::sys::interrupted() {
            break;
        }
        let at = now + TIMER_AHEAD;
        let woke = match &mut timer {
            Some(t) => {
                t.arm(at, now).map_err(|e| err("timerfd_settime", e))?;
                loop {
                    match poll.poll(&mut events, Some(STEP_TIMEOUT)) {
                        Ok(()) if !events.is_empty() => break,
                        Ok(()) => {
                            return Err(format!("the timerfd did not fire in {STEP_TIMEOUT:?}"))
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(err("epoll_wait", e)),
                    }
                }
                let woke = Instant::now();
                t.fired();
                woke
            }
            None => loop {
                match poll.poll(&mut events, Some(Duration::ZERO)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(err("epoll_wait", e)),
                }
                let now = Instant::now();
                if now >= at {
                    break now;
                }
            },
        };
        record(&mut hist, woke.saturating_duration_since(at));
    }
    Ok(Measured {
        ops: hist.len(),
        hist,
        cpu_ns: thread_cpu_ns() - cpu0,
        errors: 0,
        error_note: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::core::Plain;
    use std::net::TcpListener;

    /// A blocking echo server on loopback for one connection (a thread, ended by the client's
    /// close).
    fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.set_nodelay(true).unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        addr
    }

    #[test]
    fn ping_pong_times_round_trips_sleeping_and_spinning() {
        for wait in [
            Wait::Sleep,
            Wait::Spin {
                so_busy_poll_us: None,
            },
        ] {
            // Under two CPU hogs and parallel builds (load 20 on 2 cores) the echo thread
            // got the CPU a handful of times in 100 ms (≤ 10 round trips): count only that
            // round trips were made and each was timed.
            let m = ping_pong(echo_server(), wait, Duration::from_millis(300)).unwrap();
            assert!(m.ops >= 2, "{wait:?}: {} round trips", m.ops);
            assert_eq!(m.ops, m.hist.len());
            assert!(m.hist.min() > 0 && m.hist.min() <= m.hist.value_at_quantile(0.5));
            assert!(m.cpu_per_op_us().is_some());
        }
    }

    #[test]
    fn ping_pong_refuses_a_server_that_is_not_an_echo() {
        // It answers every ping with twice the bytes.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; PING_BYTES];
            if s.read_exact(&mut buf).is_ok() {
                let _ = s.write_all(&[buf, buf].concat());
            }
            std::thread::sleep(Duration::from_secs(1));
        });
        let e = ping_pong(addr, Wait::Sleep, Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("not an echo service"), "{e}");
        // Nobody listening: a clear error, not a hang.
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let e = ping_pong(dead_addr, Wait::Sleep, Duration::from_secs(10)).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }

    #[test]
    fn churn_opens_one_connection_after_another_and_leaves_no_time_wait() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // The kernel may hand out a port that an older connection used as its ephemeral end
        // and whose TIME_WAIT still lingers (another test's, another process's): those were
        // there before. While the listener holds the port no new connection can take it.
        let before = time_wait_on_port(addr.port());
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accepter = std::thread::spawn(move || {
            l.set_nonblocking(true).unwrap();
            let mut n = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                match l.accept() {
                    Ok(_) => n += 1,
                    Err(_) => std::thread::sleep(Duration::from_micros(200)),
                }
            }
            n
        });
        let c = churn::<Plain>(
            (),
            vec![addr],
            None,
            Wait::Sleep,
            Duration::from_millis(200),
        )
        .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let accepted = accepter.join().unwrap();
        assert!(c.connections > 5, "{} connections", c.connections);
        assert_eq!(c.connect.len(), c.connections, "one connect sample each");
        assert_eq!(c.errors, 0, "{:?}", c.error_note);
        assert!(c.full.is_empty() && c.resumed.is_empty(), "plain TCP");
        assert!(accepted <= c.connections + 1);
        // The client closed every connection with an RST: nothing of them waits in TIME_WAIT.
        let after = time_wait_on_port(addr.port());
        assert!(
            after <= before,
            "{after} in TIME_WAIT, {before} before the run"
        );
    }

    /// Sockets in TIME_WAIT (state 06 of /proc/net/tcp) with `port` at either end.
    fn time_wait_on_port(port: u16) -> usize {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        let hex = format!(":{port:04X}");
        table
            .lines()
            .skip(1)
            .filter(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[3] == "06" && (f[1].ends_with(&hex) || f[2].ends_with(&hex))
            })
            .count()
    }

    #[test]
    fn tls_churn_resumes_after_the_first_handshake_and_never_without_resumption() {
        let server = crate::serve::start(crate::serve::ServeConfig {
            http_port: None,
            ..Default::default()
        })
        .unwrap();
        let addr = server.https_addr().unwrap();
        let req: Arc<[u8]> = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            .as_slice()
            .into();
        let run = |resume: bool| {
            let plan = crate::plan::TlsPlan {
                extra_ca_pem: Some(server.ca_pem().as_bytes().to_vec()),
                resume,
                ..Default::default()
            };
            let ctx = crate::engine::core::TlsCtx::factory(&plan, "127.0.0.1").unwrap()(0);
            churn::<crate::engine::core::Tls>(
                ctx,
                vec![addr],
                Some(req.clone()),
                Wait::Sleep,
                Duration::from_millis(300),
            )
            .unwrap()
        };
        let full = run(false);
        assert!(full.connections >= 3, "{}", full.connections);
        assert_eq!(full.errors, 0, "{:?}", full.error_note);
        assert_eq!(full.full.len(), full.connections);
        assert!(full.resumed.is_empty());
        let resumed = run(true);
        assert_eq!(resumed.errors, 0, "{:?}", resumed.error_note);
        // Only the first connection has no ticket yet.
        assert_eq!(resumed.full.len(), 1);
        assert_eq!(resumed.resumed.len(), resumed.connections - 1);
        assert!(resumed.connections >= 3);
        server.stop();
    }

    #[test]
    fn churn_against_a_dead_port_counts_refusals_and_ends_on_time() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let t0 = Instant::now();
        let c = churn::<Plain>(
            (),
            vec![addr],
            None,
            Wait::Sleep,
            Duration::from_millis(100),
        )
        .unwrap();
        assert!(t0.elapsed() < Duration::from_secs(20));
        assert_eq!(c.connections, 0);
        assert!(c.errors >= 1);
        let note = c.error_note.unwrap();
        assert!(note.starts_with("connect_refused "), "{note}");
    }

    #[test]
    fn clock_and_timer_measurements_have_samples() {
        let c = clock_cost(Duration::from_millis(20));
        assert!(!c.hist.is_empty() && c.hist.min() >= 1);
        for wait in [
            Wait::Sleep,
            Wait::Spin {
                so_busy_poll_us: None,
            },
        ] {
            // As for ping_pong: on a loaded machine the thread may wake only a few times.
            let t = timer_lateness(wait, Duration::from_millis(200)).unwrap();
            assert!(t.ops >= 2, "{wait:?}: {} wake-ups", t.ops);
        }
    }
}
