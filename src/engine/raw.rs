//! The hot path's socket calls, made straight to the kernel instead of through glibc's wrappers.
//!
//! Why: connbench is a multi-threaded process (the coordinator plus its workers), and in such a
//! process glibc's `send`, `recv`, `epoll_wait`, `connect` and `close` are cancellation points:
//! around every call the wrapper switches the thread to asynchronous cancellation and back, two
//! atomic read-modify-writes on the thread's cancel word. connbench never cancels a thread (Rust
//! has no `pthread_cancel`), so that work buys nothing. Measured on the 2-core machine, nginx on
//! CPU 0 and one client thread on CPU 1, `-c 10` keep-alive: the null client
//! (`examples/null_client.rs`, single-threaded, so glibc skips the switch) costs 3.49 µs of CPU
//! per response, and the same binary with one extra sleeping thread 3.57 µs. The workers'
//! `send`, `recv` and `epoll_wait` made here took connbench from 1.08× to 1.06× the null
//! client's CPU per response (medians of 5 interleaved 5 s rounds each).
//!
//! Rules:
//! 1. Each function is the system call of the same name with the same arguments and the same
//!    result: a count, or the OS error from `errno` (`libc::syscall` sets it). Nothing retries:
//!    `EINTR` and `EAGAIN` go back to the caller exactly as `std` would hand them over.
//! 2. `send` passes `MSG_NOSIGNAL`, as `std`'s `TcpStream::write` does: a peer that has gone
//!    away is an `EPIPE` error for that connection, never a SIGPIPE for the process.
//! 3. `epoll_wait` is `epoll_pwait` with no signal mask, which the kernel defines as
//!    `epoll_wait`; the plain call does not exist on every architecture (aarch64). It waits on
//!    a `mio::Poll`'s epoll descriptor: mio registers each source with its token as the
//!    event's data, so [`Event`] reads the token and the readiness exactly as mio's own events
//!    would (the same predicates, copied from mio's epoll selector).

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

#[inline]
fn result(n: libc::c_long) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(fd, buf, len, 0)`.
#[inline]
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call; the two null
    // pointers are recvfrom's optional source address and its length.
    result(unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    })
}

/// `send(fd, buf, len, MSG_NOSIGNAL)` (rule 2).
#[inline]
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call; no destination
    // address (a connected socket).
    result(unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    })
}

/// `epoll_wait(epfd, events, len, timeout)` (rule 3). `None` waits without limit; a timeout is
/// rounded up to the next millisecond, so a wait never ends before it, as mio's does.
#[inline]
pub fn epoll_wait(
    epfd: RawFd,
    events: &mut [libc::epoll_event],
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let ms = timeout_ms(timeout);
    let max = events.len().min(libc::c_int::MAX as usize) as libc::c_int;
    // SAFETY: `events` is valid for writes of `max` entries; a null sigmask makes epoll_pwait
    // epoll_wait (its size argument is then ignored).
    result(unsafe {
        libc::syscall(
            libc::SYS_epoll_pwait,
            epfd,
            events.as_mut_ptr(),
            max,
            ms,
            std::ptr::null::<libc::sigset_t>(),
            0usize,
        )
    })
}

/// One epoll event as the loop reads it (rule 3): mio's token and readiness, by value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token the source was registered with.
    pub token: mio::Token,
    flags: u32,
}

impl Event {
    /// The event `epoll_wait` wrote.
    #[inline]
    pub fn from_epoll(e: &libc::epoll_event) -> Event {
        // Copies out of the (packed, on x86_64) struct; no reference to a packed field.
        let (flags, data) = (e.events, e.u64);
        Event {
            token: mio::Token(data as usize),
            flags,
        }
    }

    #[inline]
    fn has(self, flag: libc::c_int) -> bool {
        self.flags & flag as u32 != 0
    }

    /// EPOLLIN or EPOLLPRI (mio's `is_readable`).
    #[inline]
    pub fn is_readable(self) -> bool {
        self.has(libc::EPOLLIN) || self.has(libc::EPOLLPRI)
    }

    /// EPOLLOUT (mio's `is_writable`).
    #[inline]
    pub fn is_writable(self) -> bool {
        self.has(libc::EPOLLOUT)
    }

    /// EPOLLERR (mio's `is_error`).
    #[inline]
    pub fn is_error(self) -> bool {
        self.has(libc::EPOLLERR)
    }

    /// Both halves closed (EPOLLHUP), or the peer's FIN (EPOLLIN with EPOLLRDHUP): mio's
    /// `is_read_closed`.
    #[inline]
    pub fn is_read_closed(self) -> bool {
        self.has(libc::EPOLLHUP) || (self.has(libc::EPOLLIN) && self.has(libc::EPOLLRDHUP))
    }

    /// EPOLLHUP, EPOLLOUT with EPOLLERR, or EPOLLERR alone: mio's `is_write_closed`.
    #[inline]
    pub fn is_write_closed(self) -> bool {
        self.has(libc::EPOLLHUP)
            || (self.has(libc::EPOLLOUT) && self.has(libc::EPOLLERR))
            || self.flags == libc::EPOLLERR as u32
    }
}

/// `epoll_wait`'s timeout: -1 for none, else whole milliseconds rounded up (never a zero wait
/// for a non-zero timeout), saturating. No u128 arithmetic: this runs once per loop turn.
#[inline]
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d
                .as_secs()
                .saturating_mul(1000)
                .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)));
            ms.min(libc::c_int::MAX as u64) as libc::c_int
        }
    }
}

/// A zeroed batch of `n` epoll events for [`epoll_wait`].
pub fn event_buffer(n: usize) -> Vec<libc::epoll_event> {
    vec![libc::epoll_event { events: 0, u64: 0 }; n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::net::TcpStream;
    use mio::{Interest, Poll, Token};
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    fn ev(flags: libc::c_int) -> Event {
        Event::from_epoll(&libc::epoll_event {
            events: flags as u32,
            u64: 7,
        })
    }

    #[test]
    fn readiness_reads_as_mios_does() {
        use libc::{EPOLLERR as E, EPOLLHUP as H, EPOLLIN as I, EPOLLOUT as O};
        use libc::{EPOLLPRI as P, EPOLLRDHUP as R};
        // (flags, readable, writable, error, read_closed, write_closed), from mio's selector.
        let table = [
            (I, true, false, false, false, false),
            (P, true, false, false, false, false),
            (O, false, true, false, false, false),
            (I | O, true, true, false, false, false),
            (I | R, true, false, false, true, false),
            (R, false, false, false, false, false),
            (H, false, false, false, true, true),
            (I | O | H | R, true, true, false, true, true),
            (E, false, false, true, false, true),
            (O | E, false, true, true, false, true),
            (I | E, true, false, true, false, false),
        ];
        for (flags, r, w, e, rc, wc) in table {
            let x = ev(flags);
            assert_eq!(x.token, Token(7));
            let got = (
                x.is_readable(),
                x.is_writable(),
                x.is_error(),
                x.is_read_closed(),
                x.is_write_closed(),
            );
            assert_eq!(got, (r, w, e, rc, wc), "flags {flags:#x}");
        }
    }

    fn wait_for(poll: &Poll, want: impl Fn(&Event) -> bool) -> Event {
        let mut buf = event_buffer(16);
        let limit = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let n = epoll_wait(poll.as_raw_fd(), &mut buf, Some(Duration::from_millis(100)))
                .expect("epoll_wait");
            if let Some(e) = buf[..n].iter().map(Event::from_epoll).find(|e| want(e)) {
                return e;
            }
            assert!(std::time::Instant::now() < limit, "no such event in 30 s");
        }
    }

    #[test]
    fn events_of_a_mio_registration_carry_its_token_and_readiness() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let poll = Poll::new().unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        poll.registry()
            .register(&mut c, Token(42), Interest::READABLE | Interest::WRITABLE)
            .unwrap();
        let (mut peer, _) = l.accept().unwrap();
        let up = wait_for(&poll, |e| e.is_writable());
        assert_eq!(up.token, Token(42));
        assert!(!up.is_read_closed() && !up.is_error());
        peer.write_all(b"hi").unwrap();
        let data = wait_for(&poll, |e| e.is_readable());
        assert_eq!(data.token, Token(42));
        let mut buf = [0u8; 8];
        assert_eq!(recv(c.as_raw_fd(), &mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
        assert_eq!(
            recv(c.as_raw_fd(), &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        drop(peer);
        let fin = wait_for(&poll, |e| e.is_read_closed());
        assert_eq!(fin.token, Token(42));
        assert_eq!(recv(c.as_raw_fd(), &mut buf).unwrap(), 0, "EOF");
    }

    /// Runs `f` with SIGPIPE blocked in this thread and returns whether one arrived meanwhile
    /// (a blocked signal stays pending even though Rust's runtime ignores SIGPIPE, so the
    /// check sees what a plain `send` would raise).
    fn sigpipe_raised_by(f: impl FnOnce()) -> bool {
        // SAFETY: sigset_t values are initialised by sigemptyset before use; the mask calls
        // only change this thread's mask and are restored below.
        unsafe {
            let mut pipe: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut pipe);
            libc::sigaddset(&mut pipe, libc::SIGPIPE);
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, &pipe, &mut old);
            f();
            let mut pending: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut pending);
            let raised = libc::sigismember(&pending, libc::SIGPIPE) == 1;
            if raised {
                let zero = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&pipe, std::ptr::null_mut(), &zero);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            raised
        }
    }

    /// Sends on `c` until it fails (the peer reset it), returning the error.
    fn send_until_refused(
        c: &std::net::TcpStream,
        with: fn(RawFd, &[u8]) -> io::Result<usize>,
    ) -> io::Error {
        let limit = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match with(c.as_raw_fd(), b"more") {
                Ok(_) => assert!(std::time::Instant::now() < limit, "send never failed"),
                Err(e) => return e,
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn reset_pair() -> std::net::TcpStream {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        assert_eq!(send(c.as_raw_fd(), b"ping").unwrap(), 4);
        let mut buf = [0u8; 4];
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer); // an RST
        c
    }

    #[test]
    fn send_reaches_the_peer_and_a_gone_peer_is_an_error_not_a_signal() {
        let c = reset_pair();
        let mut err = None;
        let raised = sigpipe_raised_by(|| {
            // Past the reset, every send is EPIPE: keep going until one is.
            let mut e = send_until_refused(&c, send);
            if e.kind() == io::ErrorKind::ConnectionReset {
                e = send_until_refused(&c, send);
            }
            err = Some(e);
        });
        let err = err.unwrap();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe, "{err}");
        assert!(!raised, "send raised SIGPIPE");
        // The check itself: the same sequence without MSG_NOSIGNAL does raise it.
        fn plain_send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
            // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
            let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) };
            result(n as libc::c_long)
        }
        let c = reset_pair();
        assert!(sigpipe_raised_by(|| {
            let e = send_until_refused(&c, plain_send);
            if e.kind() == io::ErrorKind::ConnectionReset {
                send_until_refused(&c, plain_send);
            }
        }));
    }

    #[test]
    fn timeouts_round_up_to_whole_milliseconds_and_saturate() {
        let ms = |d: Duration| timeout_ms(Some(d));
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(ms(Duration::ZERO), 0);
        assert_eq!(ms(Duration::from_nanos(1)), 1);
        assert_eq!(ms(Duration::from_millis(1)), 1);
        assert_eq!(ms(Duration::from_micros(1001)), 2);
        assert_eq!(ms(Duration::from_micros(1_999_999)), 2000);
        assert_eq!(ms(Duration::from_secs(3)), 3000);
        assert_eq!(ms(Duration::from_secs(1 << 40)), libc::c_int::MAX);
        assert_eq!(ms(Duration::MAX), libc::c_int::MAX);
    }

    #[test]
    fn a_wait_with_nothing_ready_times_out_after_its_timeout() {
        let poll = Poll::new().unwrap();
        let mut buf = event_buffer(4);
        let t0 = std::time::Instant::now();
        let n = epoll_wait(
            poll.as_raw_fd(),
            &mut buf,
            Some(Duration::from_micros(1500)),
        )
        .unwrap();
        assert_eq!(n, 0);
        // Rounded up to whole milliseconds, never down: at least 2 ms.
        assert!(
            t0.elapsed() >= Duration::from_millis(2),
            "{:?}",
            t0.elapsed()
        );
        let n = epoll_wait(poll.as_raw_fd(), &mut buf, Some(Duration::ZERO)).unwrap();
        assert_eq!(n, 0);
    }
}
