//! Client sockets: non-blocking connect with the options a benchmark needs, made with socket2
//! because mio's `TcpStream::connect` cannot set options before `connect()`; the choice of a
//! source address (`--source`); and the pacing that keeps a connect storm from starving the
//! event loop. This module never reads or writes a connected socket and keeps no per-connection
//! state.
//!
//! Rules (mio `TcpStream` docs, libs.md §3):
//! 1. `connect()` on a non-blocking socket returns EINPROGRESS; completion is confirmed on the
//!    first writable event by `take_error()` being clean and `peer_addr()` succeeding — except
//!    where the event alone proves it ([`connect_proved_by_event`]): on Linux, epoll computes
//!    the readiness it reports by polling the socket when it delivers the event, and a TCP
//!    socket in SYN_SENT polls as nothing at all, so an event that says writable and neither
//!    error nor any hang-up is an established connection. That saves the two syscalls of the
//!    check (`getsockopt(SO_ERROR)`, `getpeername`) on every connection; an event with an error
//!    or a close still gets the full check, so refusals and resets are classified as before.
//! 2. TCP_NODELAY is set before connect: a request must never wait for Nagle.
//! 3. Errors from `socket()` itself (EMFILE/ENFILE) are local limits and are classified as such
//!    by the caller.
//! 4. With a source address, IP_BIND_ADDRESS_NO_PORT is set before `bind(src:0)`: the kernel
//!    then picks the port at `connect()`, per 4-tuple, instead of reserving one at `bind()` for
//!    every destination (which caps a source at ~28k connections across all targets). Without a
//!    source nothing is bound.
//! 5. The kernel's ephemeral-port search in `connect()` grows with the connections already open
//!    (or in TIME_WAIT) from the same source to the same destination: measured at ~19k
//!    connections from one address, 70-80 % of the client's CPU is `__inet_hash_connect` and one
//!    `connect()` takes milliseconds. Spreading over source addresses keeps each search short.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// Start a non-blocking TCP connect to `addr`. The socket is usually still connecting when this
/// returns; the caller registers it and confirms completion with [`is_connected`].
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    connect_from(addr, None)
}

/// [`connect`], from `source` when one is given (rule 4). A source of the other address family
/// than `addr` fails with the OS error of `bind`/`connect` (EAFNOSUPPORT or EINVAL); the CLI
/// refuses such a combination before any socket is made.
pub fn connect_from(addr: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_tcp_nodelay(true)?;
    if let Some(ip) = source {
        bind_no_port(&sock, ip)?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(sock)))
}

/// Rule 1: `Ok(true)` once connected, `Ok(false)` while still connecting, `Err` on failure.
pub fn is_connected(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a readiness event of a socket still connecting says, in the terms of mio's `Event`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectEvent {
    /// EPOLLOUT (`is_writable`).
    pub writable: bool,
    /// EPOLLERR (`is_error`).
    pub error: bool,
    /// EPOLLRDHUP or EPOLLHUP (`is_read_closed`).
    pub read_closed: bool,
    /// EPOLLHUP or an error with EPOLLOUT (`is_write_closed`).
    pub write_closed: bool,
}

impl From<crate::engine::raw::Event> for ConnectEvent {
    fn from(ev: crate::engine::raw::Event) -> ConnectEvent {
        ConnectEvent {
            writable: ev.is_writable(),
            error: ev.is_error(),
            read_closed: ev.is_read_closed(),
            write_closed: ev.is_write_closed(),
        }
    }
}

/// Rule 1: true when the event alone proves the connect completed, so [`is_connected`] need not
/// be asked: writable, and no error or hang-up of either direction. Only where the poller is
/// epoll (Linux), whose events report the socket's readiness at delivery; elsewhere always
/// false (the full check runs).
#[inline]
pub fn connect_proved_by_event(ev: ConnectEvent) -> bool {
    cfg!(any(target_os = "linux", target_os = "android"))
        && ev.writable
        && !ev.error
        && !ev.read_closed
        && !ev.write_closed
}

/// The source address of global connection number `conn`: round-robin over `sources`, so
/// connection i always leaves from the same address (a reconnect keeps it). None when no
/// `--source` was given.
#[inline]
pub fn source_for(sources: &[IpAddr], conn: usize) -> Option<IpAddr> {
    if sources.is_empty() {
        None
    } else {
        Some(sources[conn % sources.len()])
    }
}

/// Check once, before a run, that `source` can be used: it is an address of this host and the
/// kernel accepts IP_BIND_ADDRESS_NO_PORT. With that option `bind` reserves no port, so the
/// check leaves nothing behind. The error is the OS's (EADDRNOTAVAIL: not a local address).
pub fn check_source(source: IpAddr) -> io::Result<()> {
    let sock = Socket::new(
        Domain::for_address(SocketAddr::new(source, 0)),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    bind_no_port(&sock, source)
}

/// Rule 4: IP_BIND_ADDRESS_NO_PORT, then `bind(source:0)`.
fn bind_no_port(sock: &Socket, source: IpAddr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: `sock` is an open socket for the whole call; the option value is a c_int that
    // lives on this stack frame and its exact size is passed. socket2 0.6 has no wrapper for
    // this option (libs.md §3). IPv6 sockets take this SOL_IP option too (Linux
    // ipv6_setsockopt hands SOL_IP to ip_setsockopt, and inet6_bind honours it).
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    sock.bind(&SocketAddr::new(source, 0).into())
}

/// SO_BUSY_POLL asked for on every socket of a `--busy-poll` run, µs: the kernel's
/// documented starting value (Documentation/networking/napi.rst, "busy polling").
pub const SO_BUSY_POLL_US: u32 = 50;

/// Check once, before a run, whether the kernel lets this process set SO_BUSY_POLL to `us` on
/// a TCP socket (raising it needs CAP_NET_ADMIN): set it on a throwaway socket and read it
/// back. The error is the OS's (EPERM without the capability).
pub fn busy_poll_allowed(us: u32) -> io::Result<()> {
    let sock = Socket::new(Domain::IPV4, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    sock.set_busy_poll(us)?;
    match sock.busy_poll()? {
        got if got == us => Ok(()),
        got => Err(io::Error::other(format!(
            "SO_BUSY_POLL reads back {got} µs after setting {us}"
        ))),
    }
}

/// How long a run of back-to-back connects may hold the event loop before it must yield.
pub const PACE_BUSY: Duration = Duration::from_millis(5);
/// How long the connects yield to the event loop after [`PACE_BUSY`].
pub const PACE_PAUSE: Duration = Duration::from_millis(1);
/// A connect starting within this of the previous one's return belongs to the same run (the
/// event loop cannot have had a real turn in between).
pub const PACE_GAP: Duration = Duration::from_micros(100);

/// Bounded connect pacing for one worker. A worker that opens thousands of connections in one
/// go (the start of a run, or a mass reconnect after a timeout pass) would otherwise not poll
/// until the last `connect()` returned — seconds at ~19k connections (rule 5) — so the first
/// connections' completions wait unseen, inflate the connect phase and hit the connect timeout
/// although the kernel had established them. The pacer lets a run of back-to-back connects last
/// [`PACE_BUSY`], then pauses them for [`PACE_PAUSE`] so events are processed in between.
/// Connects spread out by normal event handling (a replacement here and there) are never
/// deferred.
///
/// A connect deferred during a pause gets a *turn*, not just the end of the pause: as many
/// turns per run as the last run held, one run plus its pause ([`PACE_BUSY`] + [`PACE_PAUSE`])
/// after another. Sending every deferred slot to the end of the pause made each pause fire and
/// re-defer all the slots still waiting: at 19,500 connections about 80 pauses × thousands of
/// Reopen timers, a quarter of the client's CPU spent in the timer heap.
///
/// Use: `admit(now)` before a connect (defer it when it answers `Some`); then, around the
/// `connect()` itself, `started(t)` and `done(t)` with instants read from the clock right
/// then. A run is timed only from those readings — never from `now`, which may be the loop
/// turn's (older) clock reading, or a test's fake one — and from connect to connect *return*,
/// since one `connect()` alone can take milliseconds when the ephemeral-port search is long.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPacer {
    /// Start of the current run of back-to-back connects.
    busy_since: Instant,
    /// When the last connect returned.
    last_done: Instant,
    /// Connects wait until this instant.
    paused_until: Option<Instant>,
    /// Connects returned in the current run (0: the next `started` begins a run).
    run_len: u32,
    /// Connects the last run that ended in a pause held: turns per run.
    per_run: u32,
    /// The run the last turn handed out belongs to, and how many turns it has.
    horizon: Instant,
    handed: u32,
    /// How long a run may last: [`PACE_BUSY`] (tests of sessions: forever, see
    /// [`ConnectPacer::unpaced`]).
    busy: Duration,
}

/// Turns per run before any run was measured: what fits in [`PACE_BUSY`] at ~20 µs a connect.
const FIRST_PER_RUN: u32 = 256;

impl ConnectPacer {
    /// A pacer with no run in progress.
    pub fn new(now: Instant) -> ConnectPacer {
        ConnectPacer {
            busy_since: now,
            last_done: now,
            paused_until: None,
            run_len: 0,
            per_run: FIRST_PER_RUN,
            horizon: now,
            handed: 0,
            busy: PACE_BUSY,
        }
    }

    /// A pacer that never pauses: for the unit tests of sessions, which drive their loop turn
    /// by turn (often on a fake clock) and count the connects a turn makes. On a loaded
    /// machine one preempted `connect()` lasts past [`PACE_BUSY`] and the pause would defer
    /// the next to a real instant the fake clock never reaches.
    #[cfg(test)]
    pub fn unpaced(now: Instant) -> ConnectPacer {
        ConnectPacer {
            busy: Duration::MAX,
            ..ConnectPacer::new(now)
        }
    }

    /// May a connect start at `now`? `None`: yes; `Some(at)`: defer it to `at`, its turn.
    #[inline]
    pub fn admit(&mut self, now: Instant) -> Option<Instant> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(self.turn(until));
            }
            self.paused_until = None;
        }
        None
    }

    /// The next turn for a connect deferred during the pause that ends at `until`: the first
    /// `per_run` turns at `until`, the next `per_run` one run and pause later, and so on.
    /// Turns already handed out stay valid; a pause after they were all used starts again at
    /// its own end.
    fn turn(&mut self, until: Instant) -> Instant {
        if self.horizon < until {
            self.horizon = until;
            self.handed = 0;
        }
        if self.handed >= self.per_run {
            self.horizon += PACE_BUSY + PACE_PAUSE;
            self.handed = 0;
        }
        self.handed += 1;
        self.horizon
    }

    /// An admitted `connect()` starts at `t` (read from the clock just before it).
    #[inline]
    pub fn started(&mut self, t: Instant) {
        if self.run_len == 0 || t.saturating_duration_since(self.last_done) > PACE_GAP {
            self.busy_since = t;
            self.run_len = 0;
        }
    }

    /// The admitted connect returned at `t` (successfully or not; read from the clock).
    #[inline]
    pub fn done(&mut self, t: Instant) {
        self.last_done = t;
        self.run_len += 1;
        if t.saturating_duration_since(self.busy_since) >= self.busy {
            self.paused_until = Some(t + PACE_PAUSE);
            self.per_run = self.run_len;
            self.run_len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};

    #[test]
    fn busy_poll_check_agrees_with_a_socket_of_the_run() {
        // Whatever the kernel allows here (root or not), the check and a connecting socket of
        // the run get the same answer.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let sock = connect(l.local_addr().unwrap()).unwrap();
        let on_socket = socket2::SockRef::from(&sock).set_busy_poll(SO_BUSY_POLL_US);
        assert_eq!(
            busy_poll_allowed(SO_BUSY_POLL_US).is_ok(),
            on_socket.is_ok(),
            "{on_socket:?}"
        );
        if on_socket.is_ok() {
            assert_eq!(
                socket2::SockRef::from(&sock).busy_poll().unwrap(),
                SO_BUSY_POLL_US
            );
        }
    }

    #[test]
    fn only_a_clean_writable_event_proves_a_connect() {
        let clean = ConnectEvent {
            writable: true,
            ..ConnectEvent::default()
        };
        assert!(connect_proved_by_event(clean));
        let spoiled = [
            ConnectEvent::default(),
            ConnectEvent {
                error: true,
                ..clean
            },
            ConnectEvent {
                read_closed: true,
                ..clean
            },
            ConnectEvent {
                write_closed: true,
                ..clean
            },
            ConnectEvent {
                writable: false,
                read_closed: true,
                ..clean
            },
        ];
        for ev in spoiled {
            assert!(!connect_proved_by_event(ev), "{ev:?}");
        }
    }

    /// Poll `sock` (registered as token 0) for up to `wait`; the events it got, as seen by
    /// the connect rule.
    fn connect_events(
        poll: &mut mio::Poll,
        events: &mut [libc::epoll_event],
        wait: Duration,
    ) -> Vec<ConnectEvent> {
        use std::os::fd::AsRawFd;
        let until = Instant::now() + wait;
        let mut seen = Vec::new();
        while seen.is_empty() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            // The loop's own wait (the raw call, as the core makes it).
            let n = crate::engine::raw::epoll_wait(poll.as_raw_fd(), events, Some(until - now))
                .unwrap();
            seen.extend(
                events[..n]
                    .iter()
                    .map(|e| ConnectEvent::from(crate::engine::raw::Event::from_epoll(e))),
            );
        }
        seen
    }

    fn register(poll: &mio::Poll, sock: &mut TcpStream) {
        poll.registry()
            .register(
                sock,
                mio::Token(0),
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )
            .unwrap();
    }

    #[test]
    fn a_connect_still_in_syn_sent_raises_no_event_and_its_clean_writable_event_is_a_connection() {
        // A listener with a full accept queue drops SYNs (Linux: tcp_conn_request), so a
        // connect to it stays in SYN_SENT until the server accepts and the SYN is retransmitted
        // (after ~1 s).
        let l = socket2::Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        l.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        l.listen(0).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let l: TcpListener = l.into();
        let filler = std::net::TcpStream::connect(addr).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let mut events = crate::engine::raw::event_buffer(8);
        let mut sock = connect(addr).unwrap();
        register(&poll, &mut sock);
        let early = connect_events(&mut poll, &mut events, Duration::from_millis(300));
        if early.is_empty() {
            // Still connecting: the full check agrees that nothing is settled.
            assert!(!is_connected(&sock).unwrap());
        } else {
            // The kernel queued it after all (the filler may not have counted yet): whatever
            // came, the rule may only call it a connection when the full check does.
            for ev in &early {
                if connect_proved_by_event(*ev) {
                    assert!(is_connected(&sock).unwrap(), "{ev:?}");
                }
            }
        }
        // Make room: the retransmitted SYN gets in, and the clean writable edge proves it.
        let (_a, _) = l.accept().unwrap();
        drop(filler);
        let mut proved = false;
        let until = Instant::now() + Duration::from_secs(30);
        while !proved && Instant::now() < until {
            for ev in connect_events(&mut poll, &mut events, Duration::from_secs(1)) {
                if connect_proved_by_event(ev) {
                    assert!(is_connected(&sock).unwrap(), "{ev:?}");
                    proved = true;
                }
            }
        }
        assert!(proved, "no clean writable event within 30 s");
        let _ = l.accept().unwrap();
    }

    #[test]
    fn a_refused_connect_is_never_proved_by_its_event() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let mut poll = mio::Poll::new().unwrap();
        let mut events = crate::engine::raw::event_buffer(8);
        let mut sock = connect(addr).unwrap();
        register(&poll, &mut sock);
        let seen = connect_events(&mut poll, &mut events, Duration::from_secs(30));
        assert!(!seen.is_empty(), "no event for a refused connect in 30 s");
        for ev in seen {
            assert!(!connect_proved_by_event(ev), "{ev:?}");
        }
        let e = is_connected(&sock).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn sources_are_taken_round_robin() {
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(source_for(&[], 5), None);
        let picked: Vec<_> = (0..5).map(|i| source_for(&[a, b], i)).collect();
        assert_eq!(picked, [Some(a), Some(b), Some(a), Some(b), Some(a)]);
    }

    /// Accept one connection made from `source` and return the peer address the server saw.
    fn peer_seen(listen: IpAddr, source: Option<IpAddr>) -> SocketAddr {
        let l = TcpListener::bind((listen, 0)).unwrap();
        let stream = connect_from(l.local_addr().unwrap(), source).unwrap();
        let (_conn, peer) = l.accept().unwrap();
        drop(stream);
        peer
    }

    #[test]
    fn a_source_address_is_what_the_server_sees() {
        let src: IpAddr = Ipv4Addr::new(127, 0, 0, 7).into();
        let peer = peer_seen(Ipv4Addr::LOCALHOST.into(), Some(src));
        assert_eq!(peer.ip(), src);
        assert_ne!(peer.port(), 0);
        // Without a source the kernel picks the loopback address itself.
        let peer = peer_seen(Ipv4Addr::LOCALHOST.into(), None);
        assert_eq!(peer.ip(), IpAddr::from(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn ipv6_source_works_when_the_host_has_ipv6() {
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        if TcpListener::bind((v6, 0)).is_err() {
            eprintln!("no IPv6 loopback here: skipped");
            return;
        }
        assert_eq!(peer_seen(v6, Some(v6)).ip(), v6);
    }

    /// Read IP_BIND_ADDRESS_NO_PORT back from a socket.
    fn no_port_option(sock: &TcpStream) -> libc::c_int {
        use std::os::fd::AsRawFd;
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid fd for the call; `v`/`len` are live locals of the sizes passed.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", io::Error::last_os_error());
        v
    }

    #[test]
    fn a_source_binds_without_reserving_a_port_and_no_source_binds_nothing() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let dst = l.local_addr().unwrap();
        let src: IpAddr = Ipv4Addr::new(127, 0, 0, 9).into();
        let with = connect_from(dst, Some(src)).unwrap();
        assert_eq!(no_port_option(&with), 1);
        let without = connect(dst).unwrap();
        assert_eq!(no_port_option(&without), 0);
        // Every connection from one source still gets its own 4-tuple.
        let mut peers = std::collections::HashSet::new();
        let mut keep = vec![with, without];
        for _ in 0..2 {
            let (c, peer) = l.accept().unwrap();
            assert!(peers.insert(peer));
            keep.push(TcpStream::from_std(c));
        }
        for _ in 0..30 {
            keep.push(connect_from(dst, Some(src)).unwrap());
            let (c, peer) = l.accept().unwrap();
            assert_eq!(peer.ip(), src);
            assert!(peers.insert(peer), "duplicate peer {peer}");
            keep.push(TcpStream::from_std(c));
        }
        assert_eq!(peers.len(), 32);
    }

    #[test]
    fn a_foreign_source_is_refused_up_front() {
        // 192.0.2.1 (TEST-NET-1) is never an address of this host.
        let e = check_source("192.0.2.1".parse().unwrap()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EADDRNOTAVAIL), "{e}");
        check_source("127.0.0.5".parse().unwrap()).unwrap();
    }

    #[test]
    fn a_source_of_the_other_family_fails_without_panicking() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let r = connect_from(l.local_addr().unwrap(), Some(Ipv6Addr::LOCALHOST.into()));
        assert!(r.is_err());
    }

    #[test]
    fn pacer_defers_only_a_long_back_to_back_run() {
        let t0 = Instant::now();
        let mut p = ConnectPacer::new(t0);
        // Back-to-back connects, each taking 10 µs, for just under PACE_BUSY: all admitted.
        let step = Duration::from_micros(10);
        let mut t = t0;
        while t + step < t0 + PACE_BUSY {
            assert_eq!(p.admit(t), None);
            p.started(t);
            t += step;
            p.done(t);
        }
        // The one that ends at PACE_BUSY is admitted and starts the pause...
        assert_eq!(p.admit(t), None);
        p.started(t);
        t += step;
        p.done(t);
        // ...so the next ones wait for it to end.
        let until = t + PACE_PAUSE;
        assert_eq!(p.admit(t), Some(until));
        assert_eq!(p.admit(until - step), Some(until));
        // After the pause a new run starts.
        assert_eq!(p.admit(until), None);
        p.started(until);
        p.done(until + step);
        assert_eq!(p.admit(until + step), None);
    }

    #[test]
    fn pacer_counts_slow_connects_back_to_back() {
        // Each connect() takes 2 ms (a long port search): the third one ends past PACE_BUSY.
        let t0 = Instant::now();
        let mut p = ConnectPacer::new(t0);
        let slow = Duration::from_millis(2);
        let mut t = t0;
        for _ in 0..3 {
            assert_eq!(p.admit(t), None);
            p.started(t);
            t += slow;
            p.done(t);
        }
        assert_eq!(p.admit(t), Some(t + PACE_PAUSE));
    }

    /// A worker opening `n` slots at once against connects that each take `each`, on a fake
    /// clock: a deferred slot comes back at the instant the pacer named (as its Reopen timer
    /// does) and asks again; wakes run in time order. Returns the deferrals it took and when
    /// the last connect returned.
    fn storm(n: usize, each: Duration) -> (usize, Duration) {
        use std::cmp::Reverse;
        let t0 = Instant::now();
        let mut p = ConnectPacer::new(t0);
        let mut t = t0;
        let mut waiting = std::collections::BinaryHeap::new();
        let mut deferrals = 0;
        let mut try_open =
            |slot: usize, t: &mut Instant, waiting: &mut std::collections::BinaryHeap<_>| match p
                .admit(*t)
            {
                None => {
                    p.started(*t);
                    *t += each;
                    p.done(*t);
                }
                Some(at) => {
                    assert!(at > *t, "deferred to {at:?}, not later than now");
                    deferrals += 1;
                    waiting.push(Reverse((at, slot)));
                }
            };
        for slot in 0..n {
            try_open(slot, &mut t, &mut waiting);
        }
        while let Some(Reverse((at, slot))) = waiting.pop() {
            t = t.max(at);
            try_open(slot, &mut t, &mut waiting);
        }
        (deferrals, t - t0)
    }

    #[test]
    fn a_connect_storm_defers_each_slot_about_once_not_once_per_pause() {
        // 20,000 connects of 20 µs: 250 fit in a busy run, so there are ~80 pauses. Deferring
        // every waiting slot to the end of the current pause made each pause re-defer all the
        // rest (~800,000 Reopen timers through the worker's heap, a quarter of the client's CPU
        // in a 19,500-connection storm); a deferred slot must come back when its turn comes.
        let n = 20_000;
        let each = Duration::from_micros(20);
        let (deferrals, took) = storm(n, each);
        assert!(deferrals <= 2 * n, "{deferrals} deferrals for {n} connects");
        // And the pacing still costs only its pauses: busy 5 ms, pause 1 ms.
        let work = each * n as u32;
        let bound =
            work * (PACE_BUSY + PACE_PAUSE).as_micros() as u32 / PACE_BUSY.as_micros() as u32;
        assert!(
            took <= bound + PACE_BUSY,
            "{took:?} for {work:?} of connects"
        );
        // Slow connects (a long port search: 2 ms each) too.
        let (deferrals, _) = storm(2_000, Duration::from_millis(2));
        assert!(
            deferrals <= 2 * 2_000,
            "{deferrals} deferrals for slow connects"
        );
    }

    #[test]
    fn a_stale_loop_clock_does_not_make_one_connect_a_whole_run() {
        // The loop read its clock 8 ms before the first connect (a long turn, or a slow start
        // of thousands of slots): timing the run from that reading made a single 20 µs connect
        // look like a 5 ms run, paused the storm and sized every turn for one connect per run
        // (a 19,500-connection storm then opened ~100 connections a second).
        let stale = Instant::now();
        let mut p = ConnectPacer::new(stale);
        let t = stale + Duration::from_millis(8);
        assert_eq!(p.admit(stale), None);
        p.started(t);
        p.done(t + Duration::from_micros(20));
        assert_eq!(p.admit(stale), None, "one connect is not a run of 5 ms");
    }

    #[test]
    fn pacer_never_defers_spread_out_connects() {
        let t0 = Instant::now();
        let mut p = ConnectPacer::new(t0);
        // A 20 µs connect every 200 µs (the loop runs in between) for a whole second.
        for i in 0..5000u32 {
            let t = t0 + Duration::from_micros(200) * i;
            assert_eq!(p.admit(t), None, "connect {i} deferred");
            p.started(t);
            p.done(t + Duration::from_micros(20));
        }
    }
}
