//! One event-loop thread of the target: its own `mio::Poll`, its own listeners (one per port,
//! SO_REUSEPORT siblings of the other threads'), a slab of connections and a timer heap. It
//! shares nothing with other loops on the request path; `Shared::open` is touched only on
//! accept and close.
//!
//! Rules this loop keeps:
//! 1. Tokens are `generation << 32 | slot` (`engine::core::token`, the client's encoding). A slot's generation changes when its connection
//!    closes, so a stale event later in the same batch (or a stale timer) is ignored instead of
//!    reaching a newer connection in the same slot. Generations stay below 2^31 so connection
//!    tokens never collide with the reserved listener and waker tokens at the top of the range.
//! 2. Accept runs until `WouldBlock`; on fd exhaustion (EMFILE/ENFILE) or other resource errors
//!    it retries from a timer, since no new edge arrives for connections already queued.
//! 3. The poll timeout is the next timer deadline (rounded up to ms by mio, which only makes
//!    `/delay` late by under a millisecond) and never longer than [`MAX_WAIT`], so a missed wake
//!    still stops the loop promptly. The loop never sleeps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn::{Conn, Ctx, Outcome, Transport};
use super::{OverLimit, ServeError, Shared, ThreadCounters};

const WAKER: usize = usize::MAX;
/// Listener tokens: `LISTENER_BASE + index` (index 0 plain, 1 TLS, 2 raw echo).
const LISTENER_BASE: usize = usize::MAX - 3;
const GEN_MASK: u32 = 0x7fff_ffff;
const MAX_WAIT: Duration = Duration::from_millis(250);
/// Accept retry delay after a resource error.
const ACCEPT_RETRY: Duration = Duration::from_millis(20);

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// What the connections of a listener speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// HTTP/1.1 (then maybe WebSocket).
    Plain,
    /// The same over TLS.
    Tls,
    /// Raw TCP echo: every byte back.
    Echo,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Plain, Kind::Tls, Kind::Echo];

    fn token(self) -> usize {
        LISTENER_BASE + self as usize
    }
}

struct Listener {
    sock: TcpListener,
    kind: Kind,
}

/// One thread's loop, built on the caller's thread (so errors surface from `start`) and then
/// moved into its thread by [`Loop::run`].
pub(super) struct Loop {
    poll: Poll,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    counters: Arc<ThreadCounters>,
    listeners: Vec<Listener>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    scratch: Vec<u8>,
    new_timers: Vec<Instant>,
}

impl Loop {
    pub(super) fn new(
        shared: Arc<Shared>,
        counters: Arc<ThreadCounters>,
        http: Option<TcpListener>,
        https: Option<TcpListener>,
        echo: Option<TcpListener>,
    ) -> Result<Loop, ServeError> {
        let err = |what: &str, e: io::Error| ServeError::Thread(format!("{what}: {e}"));
        let poll = Poll::new().map_err(|e| err("cannot create a poll instance", e))?;
        let waker = Waker::new(poll.registry(), Token(WAKER))
            .map_err(|e| err("cannot create a waker", e))?;
        let mut listeners = Vec::with_capacity(3);
        for (sock, kind) in [http, https, echo].into_iter().zip(Kind::ALL) {
            let Some(mut sock) = sock else { continue };
            poll.registry()
                .register(&mut sock, Token(kind.token()), Interest::READABLE)
                .map_err(|e| err("cannot register a listener", e))?;
            listeners.push(Listener { sock, kind });
        }
        Ok(Loop {
            poll,
            waker: Arc::new(waker),
            shared,
            counters,
            listeners,
            slots: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            scratch: Vec::new(),
            new_timers: Vec::new(),
        })
    }

    pub(super) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// Runs until the stop flag is set, then closes every connection.
    pub(super) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut again: Vec<usize> = Vec::new();
        let mut revisit: Vec<usize> = Vec::new();
        while !self.shared.stop.load(Ordering::Acquire) {
            let timeout = if again.is_empty() {
                self.next_timeout(Instant::now())
            } else {
                Duration::ZERO
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // epoll_wait itself failing is not recoverable; stopping beats spinning.
                Err(_) => break,
            }
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            let now = Instant::now();
            std::mem::swap(&mut again, &mut revisit);
            for ev in events.iter() {
                match ev.token().0 {
                    WAKER => {}
                    t if t >= LISTENER_BASE => self.accept(t, now),
                    t => self.drive(t, now, ev.is_read_closed(), &mut again),
                }
            }
            for t in revisit.drain(..) {
                self.drive(t, now, false, &mut again);
            }
            self.fire_timers(now, &mut again);
        }
        for idx in 0..self.slots.len() {
            self.close(idx);
        }
    }

    fn next_timeout(&self, now: Instant) -> Duration {
        match self.timers.peek() {
            Some(Reverse((t, _))) => t.saturating_duration_since(now).min(MAX_WAIT),
            None => MAX_WAIT,
        }
    }

    fn fire_timers(&mut self, now: Instant, again: &mut Vec<usize>) {
        while let Some(&Reverse((t, token))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            if token >= LISTENER_BASE {
                self.accept(token, now);
            } else {
                self.drive(token, now, false, again);
            }
        }
    }

    fn accept(&mut self, token: usize, now: Instant) {
        let Some(li) = self.listeners.iter().position(|l| l.kind.token() == token) else {
            return;
        };
        let kind = self.listeners[li].kind;
        loop {
            let sock = match self.listeners[li].sock.accept() {
                Ok((sock, _)) => sock,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                // EMFILE, ENFILE, ENOBUFS, ENOMEM...: the backlog keeps the connections.
                Err(_) => {
                    self.timers.push(Reverse((now + ACCEPT_RETRY, token)));
                    return;
                }
            };
            self.admit(sock, kind, now);
        }
    }

    fn admit(&mut self, mut sock: mio::net::TcpStream, kind: Kind, now: Instant) {
        // Without NODELAY pipelined responses meet Nagle + delayed ACK: ~40 ms TTFB (libs.md §3).
        let _ = sock.set_nodelay(true);
        let admitted = match self.shared.max_conns {
            None => {
                self.shared.open.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(max) => {
                if self.shared.open.fetch_add(1, Ordering::Relaxed) < max {
                    true
                } else {
                    self.shared.open.fetch_sub(1, Ordering::Relaxed);
                    false
                }
            }
        };
        if admitted {
            self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            // An echo connection has no request to answer 429 to: it is reset whatever the mode.
            if self.shared.over_limit == OverLimit::Refuse || kind == Kind::Echo {
                // SO_LINGER 0: close sends RST, so the client sees a reset, not a clean EOF.
                let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
                return;
            }
        }
        let uncount = |shared: &Shared| {
            if admitted {
                shared.open.fetch_sub(1, Ordering::Relaxed);
            }
        };
        let idx = match self.free.pop() {
            Some(idx) => idx,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                self.slots.len() - 1
            }
        };
        let token = crate::engine::core::token(idx, self.slots[idx].generation).0;
        if self
            .poll
            .registry()
            .register(
                &mut sock,
                Token(token),
                Interest::READABLE | Interest::WRITABLE,
            )
            .is_err()
        {
            uncount(&self.shared);
            self.free.push(idx);
            return;
        }
        let cfg = if kind == Kind::Tls {
            self.shared.tls.as_ref()
        } else {
            None
        };
        match Transport::new(sock, cfg) {
            Ok(t) if kind == Kind::Echo => self.slots[idx].conn = Some(Conn::echo(t)),
            Ok(t) => {
                let mut conn = Conn::new(t, admitted);
                if !admitted && self.shared.over_limit == OverLimit::Close {
                    let until = conn.close_at_once(now);
                    self.timers.push(Reverse((until, token)));
                }
                self.slots[idx].conn = Some(conn);
            }
            Err(_) => {
                uncount(&self.shared);
                self.free.push(idx);
            }
        }
    }

    fn drive(&mut self, token: usize, now: Instant, rdhup: bool, again: &mut Vec<usize>) {
        let Some((idx, generation)) = crate::engine::core::untoken(Token(token)) else {
            return;
        };
        let Some(slot) = self.slots.get_mut(idx) else {
            return;
        };
        if slot.generation != generation {
            return;
        }
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        let mut ctx = Ctx {
            now,
            rdhup,
            shared: &self.shared,
            counters: &self.counters,
            scratch: &mut self.scratch,
            timers: &mut self.new_timers,
        };
        let outcome = conn.drive(&mut ctx);
        for t in self.new_timers.drain(..) {
            self.timers.push(Reverse((t, token)));
        }
        match outcome {
            Outcome::Keep => {}
            Outcome::Again => again.push(token),
            Outcome::Close => self.close(idx),
        }
    }

    fn close(&mut self, idx: usize) {
        let slot = &mut self.slots[idx];
        // Dropping the connection closes its fd, which also removes it from the epoll set (the
        // fd is never duplicated), so no deregister syscall is spent per close.
        let Some(conn) = slot.conn.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1) & GEN_MASK;
        if conn.admitted {
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
        }
        drop(conn);
        self.free.push(idx);
    }
}
