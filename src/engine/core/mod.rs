//! The one connection core that HTTP, WebSocket and the probe run on (DESIGN.md:
//! `Conn = socket + Transport + Session`).
//!
//! The core owns what every connection has whatever it speaks: a slot with a generation token,
//! the socket and its connect (source address, connect pacing, the address fall-back policy),
//! the [`Transport`] (plain or TLS, chosen once), the receive buffer, the connect and handshake
//! timeouts, and the [`TimerTable`] every other deadline lives in. A [`Session`] (HTTP, WebSocket
//! or the probe) owns what a connection *does* once it is up: what to write, how to frame what
//! comes back, what to measure, and what to do when the connection is lost.
//!
//! Rules:
//! 1. Metric instants are read where they are defined (connect completed, handshake flipped,
//!    bytes read, a request sent: [`Net::now`]) and handed to the session. The loop's "now" for
//!    timers after a wait is the latest read instant or send instant its events produced
//!    ([`Net::take_latest`]; connect and handshake instants do not count), stale only by the
//!    work that followed it (a `send` at most); a turn whose events produced none reads the
//!    clock once. At one response per wait (keep-alive at low concurrency) that is a clock
//!    read less per response.
//! 2. Edge-triggered means: act on everything the event says. A connect that completes in an
//!    event that also says closed or error is read at once, so the close is classified now; an
//!    event that says read-closed or error makes the transport read on to EOF (transport rule 2).
//! 3. A session learns of a lost connection through [`Session::on_lost`] while the slot still
//!    holds it (so an EOF can frame a close-delimited body from the receive buffer); after the
//!    call the core closes it unless the session already did (and maybe reopened the slot).
//! 4. The session never sees a stale event: events carry `slot | generation << 32`, and a closed
//!    slot's generation moves on, so events of its old socket still in the batch are dropped,
//!    and [`TimerTable::clear_slot`] forgets its deadlines.
//! 5. Decisions take `now` as an argument ([`Driver::fire_timers`], [`Driver::turn`]), so the
//!    core and the sessions are tested with a fake clock against scripted loopback peers.
//! 6. Busy poll (`--busy-poll`, [`Net::set_busy_poll`]): [`Driver::poll_io`] never sleeps, it
//!    calls `epoll_wait` with a zero timeout whatever it is given, so the wake-up the kernel
//!    would otherwise spend on every response (~50 µs on the reference VM) is gone. The loop
//!    then turns continuously: deadlines fire from the timer table on the first turn that
//!    sees them due, sessions check their own due times (pacing) on every turn, and no alarm
//!    (rule 7) is armed. New sockets also get SO_BUSY_POLL when the kernel
//!    allows it (it needs CAP_NET_ADMIN to raise; it only acts on devices with NAPI, so not on
//!    loopback).
//! 7. The loop's own deadline is one timerfd, the alarm ([`Driver::poll_until`]), and the wait
//!    itself has no timeout. It is the loop's only timer: the slots' deadlines and the session's
//!    due instants (pacing: [`Session::wake_at`]) all come to it, to the microsecond. An `epoll_wait` timeout arms a kernel timer on every wait that
//!    sleeps and cancels it when an event comes first, which is nearly always; the alarm is
//!    armed only when the loop must wake *earlier* than it is armed for. A wake instant that moves
//!    later (the usual case: deadlines are pushed forward by every response) keeps the earlier
//!    alarm, which then wakes the loop once for nothing, and the loop re-arms it. Measured at
//!    TLS keep-alive `-c 10` against nginx (0.4 sleeps per response): 0.15 µs of kernel time per
//!    response. The alarm is as precise as the timerfd (no millisecond rounding).

pub mod connect;
pub mod live;
pub mod record;
pub mod run;
pub mod timer;
pub mod timerfd;
pub mod transport;
pub mod verbose;

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::{Interest, Poll, Token};

use crate::engine::raw::{self, Event};

use crate::engine::buf::RecvBuf;
use crate::metrics::{ErrorClass, Phase, Recorder};
pub use connect::Connector;
pub use timer::{TimerKind, TimerTable};
pub use transport::{Failure, Plain, Recv, Refusal, Tls, TlsCtx, Transport};

/// Token of a worker's waker. Slot tokens are `slot | generation << 32` with slot < 2^32, so no
/// slot token is ever this high.
pub const WAKER: Token = Token(usize::MAX);
/// Token of the loop's alarm (rule 7).
pub const ALARM: Token = Token(usize::MAX - 1);

/// The token of a slot's current connection.
#[inline]
pub fn token(slot: usize, gen: u32) -> Token {
    Token(slot | (gen as usize) << 32)
}

/// The slot and generation a token names, or None for the reserved tokens.
#[inline]
pub fn untoken(t: Token) -> Option<(usize, u32)> {
    if t == WAKER || t == ALARM {
        return None;
    }
    Some((t.0 & 0xFFFF_FFFF, (t.0 >> 32) as u32))
}

/// Where a slot's connection is, as far as the core is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// No socket.
    Closed,
    /// `connect()` called, waiting for the socket to become writable.
    Connecting,
    /// TCP established, TLS handshake in progress.
    Handshaking,
    /// TCP (and TLS) up: the session owns the bytes.
    Up,
}

/// Why a connection is lost (or could not be made).
#[derive(Debug)]
pub enum Lost {
    /// The TCP connect failed or timed out (already classified; the fall-back policy has moved
    /// the slot to its next address where it applies).
    Connect(ErrorClass),
    /// The TLS handshake failed, timed out, or the peer closed during it.
    Handshake(ErrorClass),
    /// The peer reset the connection (ECONNRESET, EPIPE, ECONNABORTED) during the TLS
    /// handshake: it accepted TCP, then refused. HTTP and WebSocket count it as
    /// `tls_handshake` like any handshake failure; the probe as `connect_reset`.
    HandshakeReset,
    /// The peer closed (FIN, or TLS close_notify). The receive buffer still holds what was
    /// pending.
    Eof,
    /// A socket error after the connection was up (reset, broken pipe, …).
    Io(io::Error),
    /// The session's framer rejected the bytes, or they outgrew the receive buffer: why.
    Protocol(Refusal),
    /// TLS failed after the handshake (a fatal alert, a bad record).
    Tls(ErrorClass),
}

/// How to close a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Close {
    /// An orderly close: FIN after whatever was written.
    Fin,
    /// SO_LINGER 0: an RST, no TIME_WAIT left behind, unsent bytes discarded.
    Rst,
}

/// How `open` went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// `connect()` is in progress; the session hears back through `on_ready` or `on_lost`.
    Connecting,
    /// Connect pacing deferred it: the slot's [`TimerKind::Reopen`] fires at this instant.
    Deferred(Instant),
    /// `connect()` failed at once (already classified, e.g. EMFILE or EADDRNOTAVAIL); nothing
    /// to close.
    Failed(ErrorClass),
}

struct Slot<T> {
    gen: u32,
    link: Link,
    sock: Option<mio::net::TcpStream>,
    transport: Option<T>,
    rb: RecvBuf,
    /// When `connect()` was called.
    t_connect: Instant,
    /// When TCP completed.
    t_established: Instant,
    /// Index into the connector's addresses this slot connects to.
    addr_idx: usize,
}

/// The socket side of a worker: slots, sockets, transports, timers, the recorder.
pub struct Net<T: Transport> {
    poll: Poll,
    slots: Vec<Slot<T>>,
    /// Every deadline of the worker (rule 5 of the timer module: nothing here reads a clock).
    pub timers: TimerTable,
    /// What the worker measured.
    pub rec: Recorder,
    ctx: T::Ctx,
    connector: Connector,
    connect_timeout: Duration,
    open: u64,
    /// Receive buffer limit of every slot ([`Net::set_recv_max`]).
    recv_max: usize,
    /// `--busy-poll`: [`Driver::poll_io`] never sleeps (rule 6).
    spin: bool,
    /// SO_BUSY_POLL in µs, set on every new socket (rule 6).
    so_busy_poll_us: Option<u32>,
    /// The latest clock reading made while handling the current wait's events (rule 1).
    latest: Option<Instant>,
}

impl<T: Transport> Net<T> {
    /// A worker's net with `slots` slots (more can be added with [`Net::add_slot`]).
    pub fn new(
        poll: Poll,
        slots: usize,
        ctx: T::Ctx,
        connector: Connector,
        connect_timeout: Duration,
    ) -> Net<T> {
        let now = Instant::now();
        Net {
            poll,
            slots: (0..slots).map(|_| Slot::new(now)).collect(),
            timers: TimerTable::new(slots),
            rec: Recorder::new(),
            ctx,
            connector,
            connect_timeout,
            open: 0,
            recv_max: crate::engine::buf::MAX_CAPACITY,
            spin: false,
            so_busy_poll_us: None,
            latest: None,
        }
    }

    /// Now, read for a measurement (a request's send instant); also the loop's latest reading
    /// (rule 1).
    #[inline]
    pub fn now(&mut self) -> Instant {
        let t = Instant::now();
        self.latest = Some(t);
        t
    }

    /// The latest clock reading made since the last wait began, if any (rule 1); taking it
    /// forgets it.
    #[inline]
    pub fn take_latest(&mut self) -> Option<Instant> {
        self.latest.take()
    }

    /// Spin instead of sleeping (rule 6): every wait for events is an `epoll_wait` with a zero
    /// timeout, and every new socket gets SO_BUSY_POLL of `so_busy_poll_us` when given (the
    /// caller checked that the kernel allows it; see [`crate::engine::socket::busy_poll_allowed`]).
    pub fn set_busy_poll(&mut self, so_busy_poll_us: Option<u32>) {
        self.spin = true;
        self.so_busy_poll_us = so_busy_poll_us;
    }

    /// Let every slot's receive buffer grow to `max` bytes (WebSocket: the largest message
    /// accepted plus its frame header).
    pub fn set_recv_max(&mut self, max: usize) {
        self.recv_max = max;
        for s in &mut self.slots {
            s.rb.set_max(max);
        }
    }

    /// One more slot; returns its index.
    pub fn add_slot(&mut self) -> usize {
        let mut slot = Slot::new(Instant::now());
        slot.rb.set_max(self.recv_max);
        self.slots.push(slot);
        self.timers.add_slot();
        self.slots.len() - 1
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The poll (to register a session's own timerfd).
    pub fn poll(&self) -> &Poll {
        &self.poll
    }

    /// Connections with a socket (connecting, handshaking or up).
    pub fn open_count(&self) -> u64 {
        self.open
    }

    /// Where the slot's connection is.
    #[inline]
    pub fn link(&self, slot: usize) -> Link {
        self.slots[slot].link
    }

    /// The slot's current generation (changes when its connection closes).
    #[inline]
    pub fn gen(&self, slot: usize) -> u32 {
        self.slots[slot].gen
    }

    /// Bytes received on the slot and not yet consumed by the session.
    pub fn pending(&self, slot: usize) -> &[u8] {
        self.slots[slot].rb.pending()
    }

    /// The index (into the connector's addresses) the slot's next `open` connects to.
    pub fn addr_idx(&self, slot: usize) -> usize {
        self.slots[slot].addr_idx
    }

    /// Make the slot's next `open` connect to address `idx` (modulo the number of addresses):
    /// for a session that applies the fall-back policy its own way (the probe sends every new
    /// connection to the address that worked, `connect` module doc).
    pub fn set_addr_idx(&mut self, slot: usize, idx: usize) {
        self.slots[slot].addr_idx = idx;
    }

    /// The slot's receive buffer (and the recorder) outside a read, for bytes a session left
    /// unconsumed because they came before it could use them: plaintext that arrived with the
    /// TLS handshake's last flight is delivered to `on_data` before `on_ready`.
    pub fn unread(&mut self, slot: usize) -> (&mut RecvBuf, &mut Recorder) {
        (&mut self.slots[slot].rb, &mut self.rec)
    }

    /// When the slot's `connect()` was called.
    pub fn connect_started(&self, slot: usize) -> Instant {
        self.slots[slot].t_connect
    }

    /// When the slot's TCP connection was established (where the TLS phase starts).
    pub fn established_at(&self, slot: usize) -> Instant {
        self.slots[slot].t_established
    }

    /// The slot's transport, once TCP is established.
    pub fn transport(&self, slot: usize) -> Option<&T> {
        self.slots[slot].transport.as_ref()
    }

    /// Start a connection in a closed slot: connect pacing first, then a non-blocking
    /// `connect()` from the slot's source to its current address; the connect timeout is armed.
    pub fn open(&mut self, slot: usize, now: Instant) -> Opened {
        debug_assert_eq!(self.slots[slot].link, Link::Closed);
        if let Some(at) = self.connector.admit(now) {
            self.timers.set(slot, TimerKind::Reopen, at);
            return Opened::Deferred(at);
        }
        let s = &mut self.slots[slot];
        s.t_connect = Instant::now();
        self.rec.counters.connections_opened += 1;
        let res = self.connector.connect(slot, s.addr_idx);
        let mut sock = match res {
            Ok(sock) => sock,
            Err(e) => {
                let class = ErrorClass::from_connect_error(&e);
                s.addr_idx = self.connector.fall_back(s.addr_idx, class);
                return Opened::Failed(class);
            }
        };
        if let Some(us) = self.so_busy_poll_us {
            // Checked once before the run (rule 6); a refusal here changes nothing but the
            // kernel's own polling, so the connection goes on without it.
            let _ = socket2::SockRef::from(&sock).set_busy_poll(us);
        }
        let token = token(slot, s.gen);
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut sock, token, Interest::READABLE | Interest::WRITABLE)
        {
            return Opened::Failed(ErrorClass::from_connect_error(&e));
        }
        s.sock = Some(sock);
        s.link = Link::Connecting;
        self.open += 1;
        self.timers
            .set(slot, TimerKind::Connect, s.t_connect + self.connect_timeout);
        Opened::Connecting
    }

    /// Send on an up connection; what the socket refuses is queued by the transport. Errors are
    /// the caller's to classify (it knows whether a request was outstanding).
    pub fn send(&mut self, slot: usize, data: &[u8]) -> io::Result<()> {
        let s = &mut self.slots[slot];
        let (Some(sock), Some(t)) = (s.sock.as_mut(), s.transport.as_mut()) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let n = t.send(sock, data)?;
        self.rec.counters.bytes_out += n;
        Ok(())
    }

    /// Write whatever the transport has queued; `Ok(true)` when nothing is left.
    pub fn flush(&mut self, slot: usize) -> io::Result<bool> {
        let s = &mut self.slots[slot];
        let (Some(sock), Some(t)) = (s.sock.as_mut(), s.transport.as_mut()) else {
            return Ok(true);
        };
        let (done, n) = t.flush(sock)?;
        self.rec.counters.bytes_out += n;
        Ok(done)
    }

    /// Close the slot's connection (if any): the generation moves on, its timers are forgotten,
    /// its buffers are emptied for the next connection.
    pub fn close(&mut self, slot: usize, how: Close) {
        let s = &mut self.slots[slot];
        if let Some(sock) = s.sock.take() {
            if how == Close::Rst {
                let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
            }
            self.open -= 1;
        }
        s.transport = None;
        s.rb.clear();
        s.gen = s.gen.wrapping_add(1);
        s.link = Link::Closed;
        self.timers.clear_slot(slot);
    }
}

impl<T> Slot<T> {
    fn new(now: Instant) -> Slot<T> {
        Slot {
            gen: 0,
            link: Link::Closed,
            sock: None,
            transport: None,
            rb: RecvBuf::new(),
            t_connect: now,
            t_established: now,
            addr_idx: 0,
        }
    }
}

/// What a connection does once it is up: HTTP, WebSocket, the probe.
pub trait Session<T: Transport> {
    /// TCP (and TLS) are up at `now` (the connect and TLS phases are recorded): the session
    /// writes its first bytes.
    fn on_ready(&mut self, net: &mut Net<T>, slot: usize, now: Instant);

    /// Plaintext arrived at `now` (called inside the read; the net is busy): frame it, record
    /// what it completes, remember what to do about it.
    fn on_data(
        &mut self,
        slot: usize,
        rb: &mut RecvBuf,
        now: Instant,
        rec: &mut Recorder,
    ) -> Result<(), Failure>;

    /// The read of this event is over (every `on_data` of it happened): act on what was framed.
    /// Not called when the read ended the connection (`on_lost` is).
    fn after_read(&mut self, net: &mut Net<T>, slot: usize, now: Instant);

    /// Whether the slot's connection may still carry bytes the session wants. False once the
    /// server has said the last response is its last (HTTP `Connection: close`): the read then
    /// stops at the short read instead of reading on to the FIN the event announced, which
    /// would only prove what the server already said (one `recv()` per new connection).
    fn wants_more(&self, _slot: usize) -> bool {
        true
    }

    /// The connection is lost or could not be made (rule 3).
    fn on_lost(&mut self, net: &mut Net<T>, slot: usize, lost: Lost, now: Instant);

    /// A deadline of the slot fired ([`TimerKind::Connect`] is the core's own and never comes
    /// here; the core turns it into `on_lost`).
    fn on_timer(&mut self, net: &mut Net<T>, slot: usize, kind: TimerKind, now: Instant);

    /// The run starts at `now`: open the first connections, start schedules.
    fn on_start(&mut self, _net: &mut Net<T>, _now: Instant) {}

    /// The warm-up ended at `now`: the core has reset the recorder; requests sent before now
    /// must not be recorded when they complete.
    fn on_warm(&mut self, _now: Instant) {}

    /// What the live progress line counts as done work (responses; WebSocket: messages in).
    fn progress(&self, rec: &Recorder) -> u64 {
        rec.counters.responses
    }

    /// The session has done all it was asked (`-n` sent and answered): the run ends.
    fn finished(&self) -> bool {
        false
    }

    /// Once per loop turn, after the events and the timers.
    fn on_turn(&mut self, _net: &mut Net<T>, _now: Instant) {}

    /// The earliest instant the session needs a turn, beyond its slots' timers: the loop's
    /// alarm wakes it then, to the microsecond (rule 7), so pacing needs no timer of its own.
    fn wake_at(&self) -> Option<Instant> {
        None
    }
}

/// A socket error during the TLS handshake: a reset is the peer refusing a connection it had
/// accepted ([`Lost::HandshakeReset`]); anything else fails the handshake.
fn handshake_io(e: &io::Error) -> Lost {
    match e.raw_os_error() {
        Some(libc::ECONNRESET) | Some(libc::EPIPE) | Some(libc::ECONNABORTED) => {
            Lost::HandshakeReset
        }
        _ => Lost::Handshake(ErrorClass::TlsHandshake),
    }
}

/// A net and the session driving it: the event loop's body, one step at a time.
pub struct Driver<T: Transport, S: Session<T>> {
    /// The sockets.
    pub net: Net<T>,
    /// What they carry.
    pub session: S,
    /// The batch `epoll_wait` writes (the raw call, not mio's: [`crate::engine::raw`]).
    events: Vec<libc::epoll_event>,
    /// The loop's deadline (rule 7), made and registered on first use.
    alarm: Option<timerfd::Timerfd>,
}

impl<T: Transport, S: Session<T>> Driver<T, S> {
    /// A driver with room for 1024 events per wait.
    pub fn new(net: Net<T>, session: S) -> Driver<T, S> {
        Driver {
            net,
            session,
            events: raw::event_buffer(1024),
            alarm: None,
        }
    }

    /// The earliest instant anything is due: a slot's deadline or the session's wake-up.
    pub fn next_wake(&mut self) -> Option<Instant> {
        let t = self.net.timers.next_deadline();
        match (t, self.session.wake_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Wait for socket events (at most `timeout`; not at all when busy polling, rule 6) and
    /// handle them. Interrupted waits return.
    pub fn poll_io(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = if self.net.spin {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        self.net.latest = None;
        let n = match raw::epoll_wait(self.net.poll.as_raw_fd(), &mut self.events, timeout) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        };
        for i in 0..n {
            let ev = Event::from_epoll(&self.events[i]);
            self.on_event(ev);
        }
        Ok(())
    }

    /// Wait for socket events until `wake` at the latest (rule 7): a wait with no timeout and
    /// the alarm armed no later than `wake`; `now` is the loop's clock. Busy polling and a wake
    /// instant already reached do not sleep. Should the timerfd fail, the wait takes the
    /// timeout instead.
    pub fn poll_until(&mut self, wake: Instant, now: Instant) -> io::Result<()> {
        if self.net.spin || wake <= now {
            return self.poll_io(Some(Duration::ZERO));
        }
        match self.alarm_at_most(wake, now) {
            Ok(()) => self.poll_io(None),
            Err(_) => self.poll_io(Some(wake - now)),
        }
    }

    /// The instant the alarm is armed for, if it has not fired yet (rule 7).
    pub fn alarm(&self) -> Option<Instant> {
        self.alarm.as_ref().and_then(|a| a.armed())
    }

    fn alarm_at_most(&mut self, wake: Instant, now: Instant) -> io::Result<()> {
        let alarm = match &mut self.alarm {
            Some(a) => a,
            None => {
                let a = timerfd::Timerfd::new()?;
                self.net.poll.registry().register(
                    &mut mio::unix::SourceFd(&a.raw_fd()),
                    ALARM,
                    Interest::READABLE,
                )?;
                self.alarm.insert(a)
            }
        };
        match alarm.armed() {
            // Armed for an instant still ahead and no later than needed: it wakes the loop in
            // time (early, at worst).
            Some(at) if now < at && at <= wake => Ok(()),
            _ => alarm.arm(wake, now),
        }
    }

    /// Fire every deadline due at `now`.
    pub fn fire_timers(&mut self, now: Instant) {
        while let Some((slot, kind)) = self.net.timers.pop_expired(now) {
            if kind == TimerKind::Connect {
                self.connect_timed_out(slot, now);
            } else {
                self.session.on_timer(&mut self.net, slot, kind, now);
            }
        }
    }

    /// One whole loop turn at `now`: deadlines, then the session's turn.
    pub fn turn(&mut self, now: Instant) {
        self.fire_timers(now);
        self.session.on_turn(&mut self.net, now);
    }

    fn connect_timed_out(&mut self, slot: usize, now: Instant) {
        match self.net.slots[slot].link {
            Link::Connecting => {
                let class = ErrorClass::ConnectTimeout;
                let s = &mut self.net.slots[slot];
                s.addr_idx = self.net.connector.fall_back(s.addr_idx, class);
                self.lose(slot, Lost::Connect(class), now);
            }
            Link::Handshaking => self.lose(slot, Lost::Handshake(ErrorClass::TlsHandshake), now),
            Link::Up | Link::Closed => {}
        }
    }

    fn on_event(&mut self, ev: Event) {
        let Some((slot, gen)) = untoken(ev.token) else {
            if ev.token == ALARM {
                if let Some(a) = &mut self.alarm {
                    a.fired();
                }
            }
            return;
        };
        let Some(s) = self.net.slots.get(slot) else {
            return;
        };
        if s.gen != gen {
            return; // an event for a socket this slot already replaced (rule 4)
        }
        let closed = ev.is_read_closed() || ev.is_error();
        let link = s.link;
        match link {
            Link::Connecting => {
                if ev.is_writable() || closed || ev.is_write_closed() {
                    self.on_connect_event(slot, ev.into());
                }
                // Rule 2: the same event may already carry the server's bytes or its close.
                let s = &self.net.slots[slot];
                if s.gen == gen && s.link != Link::Connecting && (ev.is_readable() || closed) {
                    self.read(slot, closed);
                }
            }
            Link::Handshaking | Link::Up => {
                if ev.is_writable() {
                    if let Err(e) = self.net.flush(slot) {
                        let lost = match link {
                            Link::Handshaking => handshake_io(&e),
                            _ => Lost::Io(e),
                        };
                        return self.lose(slot, lost, Instant::now());
                    }
                }
                if ev.is_readable() || closed {
                    self.read(slot, closed);
                }
            }
            Link::Closed => {}
        }
    }

    fn on_connect_event(&mut self, slot: usize, ev: crate::engine::socket::ConnectEvent) {
        use crate::engine::socket::{connect_proved_by_event, is_connected};
        let s = &mut self.net.slots[slot];
        let sock = s.sock.as_ref().expect("a connecting slot has a socket");
        // Socket rule 1: a clean writable event proves the connect without two more syscalls.
        let connected = if connect_proved_by_event(ev) {
            Ok(true)
        } else {
            is_connected(sock)
        };
        match connected {
            Ok(false) => {}
            Ok(true) => {
                let now = Instant::now();
                s.t_established = now;
                self.net
                    .rec
                    .record(Phase::Connect, (now - s.t_connect).as_nanos() as u64);
                match T::start(&self.net.ctx) {
                    Ok(t) => {
                        let handshaking = t.is_handshaking();
                        s.transport = Some(t);
                        if handshaking {
                            s.link = Link::Handshaking;
                            // The handshake is bounded by the connect timeout, from now.
                            self.net.timers.set(
                                slot,
                                TimerKind::Connect,
                                now + self.net.connect_timeout,
                            );
                            if let Err(e) = self.net.flush(slot) {
                                self.lose(slot, handshake_io(&e), now);
                            }
                        } else {
                            self.up(slot, now);
                        }
                    }
                    Err(f) => self.lose(slot, Self::lost_of(Link::Handshaking, f), now),
                }
            }
            Err(e) => {
                let class = ErrorClass::from_connect_error(&e);
                s.addr_idx = self.net.connector.fall_back(s.addr_idx, class);
                self.lose(slot, Lost::Connect(class), Instant::now());
            }
        }
    }

    /// TCP (and TLS) up at `now`.
    fn up(&mut self, slot: usize, now: Instant) {
        let s = &mut self.net.slots[slot];
        s.link = Link::Up;
        self.net.timers.stop(slot, TimerKind::Connect);
        self.net.rec.counters.connections_established += 1;
        if let Some(t) = &s.transport {
            match t.resumed() {
                Some(true) => self.net.rec.counters.handshakes_resumed += 1,
                Some(false) => self.net.rec.counters.handshakes_full += 1,
                None => {}
            }
            if t.resumed().is_some() && !self.net.rec.tls.is_known() {
                t.describe(&mut self.net.rec.tls);
            }
        }
        self.session.on_ready(&mut self.net, slot, now);
    }

    fn read(&mut self, slot: usize, to_eof: bool) {
        let gen = self.net.slots[slot].gen;
        let net = &mut self.net;
        let s = &mut net.slots[slot];
        let (Some(sock), Some(t)) = (s.sock.as_mut(), s.transport.as_mut()) else {
            return;
        };
        let session = &mut self.session;
        let rec = &mut net.rec;
        let res = t.recv(&mut net.ctx, sock, &mut s.rb, to_eof, |rb, now| {
            session.on_data(slot, rb, now, rec)?;
            Ok(session.wants_more(slot))
        });
        let link = s.link;
        let recv = match res {
            Ok(r) => r,
            Err(f) => {
                return self.lose(slot, Self::lost_of(link, f), Instant::now());
            }
        };
        self.net.rec.counters.bytes_in += recv.bytes;
        // The instant of the last read stands for "now" (nothing but framing ran since); a
        // fresh clock read only when nothing was read.
        let now = recv.last_read.unwrap_or_else(Instant::now);
        self.net.latest = Some(now);
        if let Some(done) = recv.handshake_done {
            let s = &self.net.slots[slot];
            let tls = (done - s.t_established).as_nanos() as u64;
            self.net.rec.record(Phase::Tls, tls);
            // Full and resumed handshakes also apart: they cost different things.
            match s.transport.as_ref().and_then(|t| t.resumed()) {
                Some(true) => self.net.rec.record(Phase::TlsResumed, tls),
                Some(false) => self.net.rec.record(Phase::TlsFull, tls),
                None => {}
            }
            self.up(slot, done);
            if self.net.slots[slot].gen != gen {
                return;
            }
        }
        if recv.eof {
            let lost = if self.net.slots[slot].link == Link::Handshaking {
                Lost::Handshake(ErrorClass::TlsHandshake)
            } else {
                Lost::Eof
            };
            return self.lose(slot, lost, now);
        }
        self.session.after_read(&mut self.net, slot, now);
        // TLS may have queued records of its own (handshake flights, alerts, key updates).
        let s = &self.net.slots[slot];
        if s.gen == gen && s.sock.is_some() {
            if let Err(e) = self.net.flush(slot) {
                self.lose(slot, Lost::Io(e), now);
            }
        }
    }

    fn lost_of(link: Link, f: Failure) -> Lost {
        match f {
            Failure::Tls(class) if link == Link::Handshaking => Lost::Handshake(class),
            Failure::Tls(class) => Lost::Tls(class),
            Failure::Io(e) if link == Link::Handshaking => handshake_io(&e),
            Failure::Io(e) => Lost::Io(e),
            Failure::Protocol(why) => Lost::Protocol(why),
        }
    }

    /// Rule 3: tell the session, then close unless it already did.
    fn lose(&mut self, slot: usize, lost: Lost, now: Instant) {
        let gen = self.net.slots[slot].gen;
        self.session.on_lost(&mut self.net, slot, lost, now);
        let s = &self.net.slots[slot];
        if s.gen == gen && s.link != Link::Closed {
            self.net.close(slot, Close::Fin);
        }
    }

    /// Give the parts back.
    pub fn into_parts(self) -> (Net<T>, S) {
        (self.net, self.session)
    }
}

#[cfg(test)]
mod tests {
    //! The core's own API against scripted loopback peers, with a session that only records
    //! what it is told (the HTTP, WebSocket and probe sessions test the rest on top).
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};

    /// Records every loss; never consumes received bytes.
    #[derive(Default)]
    struct Record {
        ready: Vec<usize>,
        lost: Vec<(usize, String)>,
        reads: usize,
    }

    impl<T: Transport> Session<T> for Record {
        fn on_ready(&mut self, _net: &mut Net<T>, slot: usize, _now: Instant) {
            self.ready.push(slot);
        }
        fn on_data(
            &mut self,
            _slot: usize,
            _rb: &mut RecvBuf,
            _now: Instant,
            _rec: &mut Recorder,
        ) -> Result<(), Failure> {
            Ok(())
        }
        fn after_read(&mut self, _net: &mut Net<T>, _slot: usize, _now: Instant) {
            self.reads += 1;
        }
        fn on_lost(&mut self, _net: &mut Net<T>, slot: usize, lost: Lost, _now: Instant) {
            self.lost.push((slot, format!("{lost:?}")));
        }
        fn on_timer(&mut self, _: &mut Net<T>, _: usize, _: TimerKind, _: Instant) {}
    }

    fn net<T: Transport>(addrs: Vec<SocketAddr>, ctx: T::Ctx) -> Driver<T, Record> {
        let net = Net::<T>::new(
            Poll::new().unwrap(),
            1,
            ctx,
            Connector::new(addrs, Vec::new(), 0),
            Duration::from_secs(30),
        );
        Driver::new(net, Record::default())
    }

    fn pump<T: Transport>(d: &mut Driver<T, Record>, done: impl Fn(&Driver<T, Record>) -> bool) {
        let limit = Instant::now() + Duration::from_secs(30);
        while !done(d) {
            assert!(Instant::now() < limit, "condition not reached");
            d.poll_io(Some(Duration::from_millis(10))).unwrap();
        }
    }

    fn accept(l: &TcpListener) -> TcpStream {
        let (s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s
    }

    #[test]
    fn set_addr_idx_chooses_the_address_of_the_next_open() {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = net::<Plain>(vec![a.local_addr().unwrap(), b.local_addr().unwrap()], ());
        assert_eq!(d.net.addr_idx(0), 0);
        d.net.set_addr_idx(0, 1);
        assert_eq!(d.net.addr_idx(0), 1);
        assert_eq!(d.net.open(0, Instant::now()), Opened::Connecting);
        pump(&mut d, |d| d.net.link(0) == Link::Up);
        // TCP is up, so the connection waits in one of the accept queues: the second's.
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        assert!(b.accept().is_ok());
        assert_eq!(
            a.accept().map(|_| ()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "nothing went to the first address"
        );
    }

    /// A plain driver with slot 0 up, and the server's end of its connection.
    fn connected() -> (Driver<Plain, Record>, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = net::<Plain>(vec![l.local_addr().unwrap()], ());
        d.net.open(0, Instant::now());
        let s = accept(&l);
        pump(&mut d, |d| d.net.link(0) == Link::Up);
        (d, s)
    }

    #[test]
    fn unread_hands_back_the_bytes_a_session_left_in_the_buffer() {
        let (mut d, mut s) = connected();
        s.write_all(b"early").unwrap();
        pump(&mut d, |d| d.net.pending(0).len() == 5);
        let (rb, _rec) = d.net.unread(0);
        assert_eq!(rb.pending(), b"early");
        rb.consume(5);
        assert!(d.net.pending(0).is_empty());
    }

    #[test]
    fn the_loops_now_is_the_latest_clock_reading_its_events_made() {
        let (mut d, mut s) = connected();
        // A wait whose events read nothing leaves the loop to read the clock itself.
        d.poll_io(Some(Duration::from_millis(1))).unwrap();
        assert_eq!(d.net.take_latest(), None);
        // A read's instant is the loop's now, once.
        let before = Instant::now();
        s.write_all(b"abc").unwrap();
        pump(&mut d, |d| d.session.reads == 1);
        let after = Instant::now();
        let latest = d.net.take_latest().expect("the read's instant");
        assert!(before <= latest && latest <= after);
        assert_eq!(d.net.take_latest(), None, "taking it forgets it");
        // So is a measurement read through Net::now (a request's send instant) ...
        let t = d.net.now();
        assert_eq!(d.net.take_latest(), Some(t));
        // ... until the next wait begins.
        d.net.now();
        d.poll_io(Some(Duration::from_millis(1))).unwrap();
        assert_eq!(d.net.take_latest(), None, "a reading from before the wait");
    }

    #[test]
    fn the_alarm_is_armed_only_when_the_loop_must_wake_earlier_and_wakes_it() {
        // Rule 7. Each wait below has a byte to read, so it returns at once with the alarm
        // armed as the rule says.
        let (mut d, mut s) = connected();
        let now = Instant::now();
        let wait = |d: &mut Driver<Plain, Record>, s: &mut TcpStream, wake: Instant| {
            let reads = d.session.reads;
            s.write_all(b"x").unwrap();
            let limit = Instant::now() + Duration::from_secs(30);
            while d.session.reads == reads {
                assert!(Instant::now() < limit, "the byte was never read");
                d.poll_until(wake, now).unwrap();
            }
        };
        wait(&mut d, &mut s, now + Duration::from_secs(10));
        assert_eq!(
            d.alarm(),
            Some(now + Duration::from_secs(10)),
            "first arming"
        );
        wait(&mut d, &mut s, now + Duration::from_secs(20));
        assert_eq!(
            d.alarm(),
            Some(now + Duration::from_secs(10)),
            "a later wake keeps the earlier alarm"
        );
        wait(&mut d, &mut s, now + Duration::from_secs(5));
        assert_eq!(
            d.alarm(),
            Some(now + Duration::from_secs(5)),
            "an earlier wake re-arms"
        );
        // Nothing to read: the wait (no timeout of its own) ends when the alarm fires, never
        // before, and the alarm's event is consumed.
        let t = Instant::now();
        let wake = t + Duration::from_millis(30);
        let limit = t + Duration::from_secs(30);
        while d.alarm().is_some() {
            assert!(Instant::now() < limit, "the alarm never fired");
            d.poll_until(wake, t).unwrap();
        }
        assert!(
            Instant::now() >= wake,
            "woke {:?} early",
            wake - Instant::now()
        );
        // A wake instant already reached does not sleep and arms nothing.
        let t = Instant::now();
        d.poll_until(t, t).unwrap();
        assert_eq!(d.alarm(), None);
    }

    #[test]
    fn a_busy_polling_driver_never_sleeps_in_poll_io() {
        // Nothing will ever happen on this net: a sleeping poll_io waits the whole 30 s it is
        // given; a spinning one returns at once, every time.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut d = net::<Plain>(vec![l.local_addr().unwrap()], ());
        d.net.set_busy_poll(None);
        let t0 = Instant::now();
        for _ in 0..3 {
            d.poll_io(Some(Duration::from_secs(30))).unwrap();
            let now = Instant::now();
            d.poll_until(now + Duration::from_secs(30), now).unwrap();
        }
        assert_eq!(d.alarm(), None, "a spinning loop arms no alarm");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "poll_io slept {:?}",
            t0.elapsed()
        );
    }

    /// Arms one deadline at the start, counts the loop's turns, finishes when it fires.
    struct OneDeadline {
        after: Duration,
        deadline: Option<Instant>,
        fired_at: Option<Instant>,
        turns: u64,
    }

    impl Session<Plain> for OneDeadline {
        fn on_ready(&mut self, _: &mut Net<Plain>, _: usize, _: Instant) {}
        fn on_data(
            &mut self,
            _: usize,
            _: &mut RecvBuf,
            _: Instant,
            _: &mut Recorder,
        ) -> Result<(), Failure> {
            Ok(())
        }
        fn after_read(&mut self, _: &mut Net<Plain>, _: usize, _: Instant) {}
        fn on_lost(&mut self, _: &mut Net<Plain>, _: usize, _: Lost, _: Instant) {}
        fn on_timer(&mut self, _: &mut Net<Plain>, _: usize, kind: TimerKind, now: Instant) {
            assert_eq!(kind, TimerKind::Request);
            self.fired_at = Some(now);
        }
        fn on_start(&mut self, net: &mut Net<Plain>, now: Instant) {
            let at = now + self.after;
            net.timers.set(0, TimerKind::Request, at);
            self.deadline = Some(at);
        }
        fn on_turn(&mut self, _: &mut Net<Plain>, _: Instant) {
            self.turns += 1;
        }
        fn finished(&self) -> bool {
            self.fired_at.is_some()
        }
    }

    /// A driver whose session sets one deadline `after` its start (and the listener its net
    /// points at, kept open by the caller).
    fn one_deadline(after: Duration) -> (TcpListener, Driver<Plain, OneDeadline>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let net = Net::<Plain>::new(
            Poll::new().unwrap(),
            1,
            (),
            Connector::new(vec![l.local_addr().unwrap()], Vec::new(), 0),
            Duration::from_secs(30),
        );
        let session = OneDeadline {
            after,
            deadline: None,
            fired_at: None,
            turns: 0,
        };
        (l, Driver::new(net, session))
    }

    fn ctl(live: live::Live, warmup: Duration, run_for: Option<Duration>) -> run::RunCtl {
        run::RunCtl {
            stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            live: std::sync::Arc::new(live),
            warmup,
            run_for,
        }
    }

    #[test]
    fn the_loop_starts_at_the_runs_start_not_when_its_thread_got_to_run() {
        // A worker thread that got the CPU late (a loaded machine) started its schedules at
        // its own first instant: `--conn-rate 200 -d 2s` counted 200·δ fewer connections due
        // in the window instead of showing the client's lateness as open lag.
        let (_l, mut d) = one_deadline(Duration::from_millis(300));
        let live = live::Live::default();
        let start = Instant::now() - Duration::from_millis(200);
        live.start.set(start).unwrap();
        let ctl = ctl(live, Duration::ZERO, None);
        let end = d.run(&ctl);
        assert_eq!(end.started, start);
        assert_eq!(d.session.deadline, Some(start + Duration::from_millis(300)));
    }

    #[test]
    fn a_timed_loop_ends_at_its_deadline_without_waiting_for_the_stop_flag() {
        // The stop flag reaches a worker some time after the deadline (the coordinator naps,
        // the thread waits for the CPU): `--conn-rate 200 -d 2s` opened 406 connections, more
        // than the 401 the window owed.
        let (_l, mut d) = one_deadline(Duration::from_secs(600));
        let ctl = ctl(
            live::Live::default(),
            Duration::from_millis(50),
            Some(Duration::from_millis(100)),
        );
        let end = d.run(&ctl);
        // Never set, and the session never finishes: only the deadline can end the loop.
        assert!(end.warm);
        assert!(end.finished_at >= end.started + Duration::from_millis(150));
        assert_eq!(d.session.fired_at, None);
    }

    #[test]
    fn a_busy_polling_loop_fires_its_timers_from_the_table_while_spinning() {
        let (_l, mut d) = one_deadline(Duration::from_millis(200));
        d.net.set_busy_poll(None);
        let ctl = ctl(live::Live::default(), Duration::ZERO, None);
        let t0 = Instant::now();
        d.run(&ctl);
        let (deadline, fired) = (d.session.deadline.unwrap(), d.session.fired_at.unwrap());
        assert!(fired >= deadline, "fired {:?} early", deadline - fired);
        // Well before the loop's longest sleep (1 s) would have ended a blocked wait.
        assert!(t0.elapsed() < Duration::from_secs(20));
        // A sleeping loop turns two or three times here (start, the deadline); a spinning one
        // turns on every empty epoll_wait for 200 ms.
        assert!(
            d.session.turns > 50,
            "{} turns: the loop slept instead of spinning",
            d.session.turns
        );
    }

    /// A TLS net whose peer accepts TCP and then does `then` with the socket.
    fn tls_handshake_against(then: impl FnOnce(TcpStream)) -> Vec<(usize, String)> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let plan = crate::plan::TlsPlan {
            insecure: true,
            ..Default::default()
        };
        let config = crate::tls::client_config(&plan).unwrap();
        let name = crate::tls::server_name(&plan, "127.0.0.1").unwrap();
        let mut d = net::<Tls>(vec![l.local_addr().unwrap()], TlsCtx::new(config, name));
        d.net.open(0, Instant::now());
        let s = accept(&l);
        pump(&mut d, |d| d.net.link(0) == Link::Handshaking);
        then(s);
        pump(&mut d, |d| !d.session.lost.is_empty());
        assert!(d.session.ready.is_empty());
        d.session.lost
    }

    #[test]
    fn a_reset_during_the_tls_handshake_is_handshake_reset_and_a_fin_a_handshake_failure() {
        let lost = tls_handshake_against(|s| {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        });
        assert_eq!(lost, vec![(0, "HandshakeReset".to_string())]);
        let lost = tls_handshake_against(|mut s| {
            // Read the ClientHello first, so the close is a FIN, not an RST for unread data.
            let mut hello = [0u8; 5];
            s.read_exact(&mut hello).unwrap();
            assert_eq!(hello[0], 22, "a TLS handshake record");
            let mut rest = vec![0u8; u16::from_be_bytes([hello[3], hello[4]]) as usize];
            s.read_exact(&mut rest).unwrap();
            s.shutdown(std::net::Shutdown::Both).unwrap();
        });
        assert_eq!(lost, vec![(0, "Handshake(TlsHandshake)".to_string())]);
    }
}
