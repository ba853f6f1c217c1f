//! Client sockets: non-blocking connect with the options a benchmark needs, made with socket2
//! because mio's `TcpStream::connect` cannot set options before `connect()`; the choice of a
//! source address (`--source`); and the pacing that keeps a connect storm from starving the
//! event loop. This module never reads or writes a connected socket and keeps no per-connection
//! state.
//!
//! Rules (mio `TcpStream` docs, libs.md §3):
//! 1. `connect()` on a non-blocking socket returns EINPROGRESS; completion is confirmed on the
//!    first writable event by `take_error()` being clean and `peer_addr()` succeeding.
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
/// [`PACE_BUSY`], then defers the next ones by [`PACE_PAUSE`] so events are processed in
/// between. Connects spread out by normal event handling (a replacement here and there) are
/// never deferred.
///
/// Use: `admit(now)` before a connect (defer it when it answers `Some`), `done(now)` when
/// `connect()` has returned: a run is measured from connect to connect *return*, since one
/// `connect()` alone can take milliseconds when the ephemeral-port search is long.
#[derive(Debug, Clone, Copy)]
pub struct ConnectPacer {
    /// Start of the current run of back-to-back connects.
    busy_since: Instant,
    /// When the last connect returned.
    last_done: Instant,
    /// Connects wait until this instant.
    paused_until: Option<Instant>,
}

impl ConnectPacer {
    /// A pacer with no run in progress.
    pub fn new(now: Instant) -> ConnectPacer {
        ConnectPacer {
            busy_since: now,
            last_done: now,
            paused_until: None,
        }
    }

    /// May a connect start at `now`? `None`: yes; `Some(at)`: defer it to `at`.
    #[inline]
    pub fn admit(&mut self, now: Instant) -> Option<Instant> {
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until);
            }
            self.paused_until = None;
            self.busy_since = now;
        }
        if now.saturating_duration_since(self.last_done) > PACE_GAP {
            self.busy_since = now;
        }
        None
    }

    /// The admitted connect returned at `now` (successfully or not).
    #[inline]
    pub fn done(&mut self, now: Instant) {
        self.last_done = now;
        if now.saturating_duration_since(self.busy_since) >= PACE_BUSY {
            self.paused_until = Some(now + PACE_PAUSE);
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
            t += step;
            p.done(t);
        }
        // The one that ends at PACE_BUSY is admitted and starts the pause...
        assert_eq!(p.admit(t), None);
        t += step;
        p.done(t);
        // ...so the next ones wait for it to end.
        let until = t + PACE_PAUSE;
        assert_eq!(p.admit(t), Some(until));
        assert_eq!(p.admit(until - step), Some(until));
        // After the pause a new run starts.
        assert_eq!(p.admit(until), None);
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
            t += slow;
            p.done(t);
        }
        assert_eq!(p.admit(t), Some(t + PACE_PAUSE));
    }

    #[test]
    fn pacer_never_defers_spread_out_connects() {
        let t0 = Instant::now();
        let mut p = ConnectPacer::new(t0);
        // A 20 µs connect every 200 µs (the loop runs in between) for a whole second.
        for i in 0..5000u32 {
            let t = t0 + Duration::from_micros(200) * i;
            assert_eq!(p.admit(t), None, "connect {i} deferred");
            p.done(t + Duration::from_micros(20));
        }
    }
}
