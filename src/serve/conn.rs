//! One accepted connection: its transport (plain or rustls), its reused input and output
//! buffers, the queue of replies owed in request order, and the pump that moves bytes between
//! them. After a `101` it pumps WebSocket frames through the same buffers instead (decoder from
//! `ws`, behaviour from `session`). The event loop calls [`Conn::drive`] on every readiness
//! event and timer; this module never registers, polls or sleeps.
//!
//! Edge-triggered contract (mio always uses EPOLLET, libs.md §3), as rules:
//! 1. Every `drive` reads until `WouldBlock` (or a short read on a plain stream socket, which
//!    epoll(7) allows as proof of "drained" — unless the peer hung up, where EOF must be read),
//!    and writes until `WouldBlock` or nothing is left.
//! 2. Reading may stop early only for back-pressure (too many replies queued, or the close
//!    reply queued). Back-pressure always has a wakeup behind it: a writable edge when output is
//!    blocked, or a timer when the head of the queue is a delayed reply.
//! 3. A connection that used its round budget returns [`Outcome::Again`]; the loop revisits it
//!    without waiting for epoll, because no new edge would come for bytes already buffered.
//! 4. WebSocket output is bounded: reading pauses while more than [`WS_OUT_MAX`] bytes wait to
//!    be written (the writable edge resumes it), and data messages are dropped past that bound,
//!    so a client that stops reading costs at most about 2 MiB and never blocks the loop.
//! 5. A WebSocket connection keeps at most one wake-up in the loop's timer heap ahead of the
//!    one it needs (`WsConn::armed`), however many messages per second it sends.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::TcpStream;
use rustls::ServerConnection;

use super::http::{self, HeadError, Request};
use super::routes::{self, Body, ConnHeader, Cut, Reply, Route};
use super::session::{Flow, Kind, Output, Session, Tally};
use super::ws::{self, Decoder};
use super::{Shared, ThreadCounters};

/// Initial input buffer; grows to [`http::MAX_HEAD`] only for a large head.
const IN_INITIAL: usize = 4 * 1024;
/// Output bytes gathered before a write: several pipelined responses go out in one syscall, and
/// bodies larger than this stream straight from the static fill buffer.
const HIGH_WATER: usize = 16 * 1024;
/// Replies queued per connection before reading pauses (pipelining back-pressure).
const MAX_PIPELINE: usize = 64;
/// Read/write rounds per `drive` before yielding to other connections.
const MAX_ROUNDS: usize = 32;
/// How long a closing connection keeps discarding input before the socket is dropped, so the
/// final response is not destroyed by a reset triggered by unread request bytes.
const LINGER: Duration = Duration::from_secs(2);
/// WebSocket output waiting for the socket before reading pauses and data messages are dropped
/// (rule 4).
const WS_OUT_MAX: usize = 1 << 20;
/// Written output bytes at the front of `out` worth a compaction: a client that keeps up only
/// partially must not make the buffer creep forward forever.
const OUT_COMPACT_AT: usize = 64 * 1024;
/// Output capacity kept once drained; a burst (a 1 MiB echo, a back-pressure episode) returns
/// the rest to the allocator.
const OUT_KEEP: usize = 64 * 1024;

/// Everything a connection needs from its loop for one `drive` call.
pub(super) struct Ctx<'a> {
    /// Loop time taken right after `poll` returned.
    pub(super) now: Instant,
    /// The event carried EPOLLRDHUP: the peer closed its side, so a short read is not proof of
    /// drained (the EOF behind the data must still be read).
    pub(super) rdhup: bool,
    pub(super) shared: &'a Shared,
    pub(super) counters: &'a ThreadCounters,
    /// Per-thread formatting buffer (trades JSON, small bodies).
    pub(super) scratch: &'a mut Vec<u8>,
    /// Deadlines this call asks the loop to wake the connection at.
    pub(super) timers: &'a mut Vec<Instant>,
}

/// What the loop should do with the connection after `drive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Wait for the next event or timer.
    Keep,
    /// Round budget used with work left: drive again in this loop iteration's tail.
    Again,
    /// Drop the connection (closes the socket).
    Close,
}

/// Where the connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading requests and answering them.
    Open,
    /// A `101` is queued (behind any earlier replies): no more HTTP is parsed, since the bytes
    /// after the upgrade request are WebSocket frames.
    Upgrading,
    /// Upgraded: frames in, frames out.
    WebSocket,
    /// The last reply (close, error, 429, close_after) or the WebSocket close frame is queued;
    /// no more requests or messages are parsed.
    Finishing,
    /// Write side shut after the last reply; input is discarded until EOF or the deadline.
    Lingering { until: Instant },
    /// A raw echo connection (the echo listener's): no protocol, every byte goes back.
    Echo,
}

/// The byte stream under HTTP: the loop never branches on TLS, only this enum does.
pub(super) enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// A rustls server session over a non-blocking socket.
pub(super) struct TlsStream {
    sock: TcpStream,
    tls: ServerConnection,
}

impl Transport {
    /// Wraps an accepted socket; `tls` is the server config when it came in on the TLS port.
    pub(super) fn new(
        sock: TcpStream,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> io::Result<Transport> {
        Ok(match tls {
            None => Transport::Plain(sock),
            Some(cfg) => {
                let tls = ServerConnection::new(Arc::clone(cfg)).map_err(io::Error::other)?;
                Transport::Tls(Box::new(TlsStream { sock, tls }))
            }
        })
    }

    fn sock(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }

    /// Plaintext in. `Ok(0)` is EOF; `WouldBlock` means drained.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) => t.read(buf),
        }
    }

    /// Plaintext out; accepts at least one byte or fails (`WouldBlock` when full).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self {
            Transport::Plain(s) => s.write(buf)?,
            Transport::Tls(t) => t.write(buf)?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(n)
    }

    /// Pushes buffered TLS records to the socket (`WouldBlock` if some remain).
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(_) => Ok(()),
            Transport::Tls(t) => t.flush(),
        }
    }

    /// TLS records are still waiting for the socket.
    fn pending(&self) -> bool {
        match self {
            Transport::Plain(_) => false,
            Transport::Tls(t) => t.tls.wants_write(),
        }
    }

    /// A short read proves the socket drained only when no TLS layer sits between.
    fn short_read_means_drained(&self) -> bool {
        matches!(self, Transport::Plain(_))
    }

    /// Best-effort end of our direction: close_notify for TLS, then a TCP FIN.
    fn close_write(&mut self) {
        if let Transport::Tls(t) = self {
            t.tls.send_close_notify();
            let _ = t.flush();
        }
        let _ = self.sock().shutdown(Shutdown::Write);
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // TCP EOF without close_notify: clients do it all the time; for a server it
                // only means "no more requests".
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // The reader is empty, so rustls will accept more ciphertext (it refuses while more
            // than 16 KiB of plaintext is unread, libs.md §2).
            if self.tls.read_tls(&mut self.sock)? == 0 {
                // EOF is recorded; the next reader() call reports it.
                continue;
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Send the alert rustls queued, then give up on the connection.
                let _ = self.tls.write_tls(&mut self.sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tls.writer().write(buf)?;
        if n > 0 {
            return Ok(n);
        }
        // rustls' outgoing buffer is at its limit: make room, then try once more.
        self.flush()?;
        self.tls.writer().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut self.sock)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

/// The WebSocket half of an upgraded connection (boxed: plain HTTP connections do not pay for
/// it).
struct WsConn {
    decoder: Decoder,
    session: Session,
    /// The earliest wake-up this connection has in the loop's timer heap (rule 5).
    armed: Option<Instant>,
    /// Once a close frame is queued: give up on a client that does not read it by then.
    close_by: Option<Instant>,
}

/// One connection's state; see the module docs for the pumping rules.
pub(super) struct Conn {
    transport: Transport,
    state: State,
    /// Input bytes live in `inbuf[in_start..in_end]`.
    inbuf: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// Bytes after `in_start` already scanned for the end of the head.
    scanned: usize,
    /// Request body bytes still to skip before the next head.
    discard: u64,
    /// Output bytes live in `out[out_pos..]`; the vector is reused for the connection's life.
    out: Vec<u8>,
    out_pos: usize,
    /// The body of the reply whose head is already in `out`.
    body: Option<Body>,
    /// Replies not yet serialized, in request order.
    replies: VecDeque<Reply>,
    /// Requests parsed on this connection (for `close_after`).
    requests: u64,
    /// The peer sent EOF: answer what was received, then close.
    read_eof: bool,
    /// Some event carried EPOLLRDHUP. Remembered because that edge is delivered once: a later
    /// drive (writable edge, timer) must still read until EOF instead of trusting a short read.
    peer_hup: bool,
    /// Admitted past `max_conns` in `TooMany` mode: the first request gets 429.
    over_limit: bool,
    /// Counted in `Shared::open` (and must be uncounted on close).
    pub(super) admitted: bool,
    /// Set by the `101`: the connection speaks WebSocket from then on.
    ws: Option<Box<WsConn>>,
    /// A fault route is the last reply: end the connection this way right after its last byte
    /// instead of the orderly close (close_notify, FIN, linger).
    cut: Option<Cut>,
    /// `drip`: the next byte may not be written before this instant.
    drip_at: Option<Instant>,
}

impl Conn {
    pub(super) fn new(transport: Transport, admitted: bool) -> Conn {
        Conn {
            transport,
            state: State::Open,
            inbuf: vec![0; IN_INITIAL],
            in_start: 0,
            in_end: 0,
            scanned: 0,
            discard: 0,
            out: Vec::new(),
            out_pos: 0,
            body: None,
            replies: VecDeque::new(),
            requests: 0,
            read_eof: false,
            peer_hup: false,
            over_limit: !admitted,
            admitted,
            ws: None,
            cut: None,
            drip_at: None,
        }
    }

    /// A connection of the raw echo listener (plain TCP, counted in `Shared::open`).
    pub(super) fn echo(transport: Transport) -> Conn {
        Conn {
            state: State::Echo,
            ..Conn::new(transport, true)
        }
    }

    /// `OverLimit::Close`: end the connection before any byte with a TCP FIN (no TLS either),
    /// then discard what the client sends until it closes or [`LINGER`] runs out. Returns the
    /// linger deadline, for the loop's timer.
    pub(super) fn close_at_once(&mut self, now: Instant) -> Instant {
        // Shut down rather than close: a request that already arrived unread would turn the
        // close into a reset, and this fault is the clean FIN.
        let _ = self.transport.sock().shutdown(Shutdown::Write);
        let until = now + LINGER;
        self.state = State::Lingering { until };
        until
    }

    /// Handles readiness or a timer: reads, parses, answers, and decides what happens next.
    pub(super) fn drive(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        if let State::Lingering { until } = self.state {
            return self.linger(ctx.now, until);
        }
        self.peer_hup |= ctx.rdhup;
        if self.state == State::Echo {
            return self.drive_echo(ctx);
        }
        if self.ws.is_some() {
            return self.drive_ws(ctx);
        }
        let mut may_read = true;
        let mut rounds = 0;
        loop {
            let read = match self.pump_in(ctx, &mut may_read) {
                Ok(p) => p,
                Err(_) => return Outcome::Close,
            };
            let wrote = match self.pump_out(ctx) {
                Ok(p) => p,
                Err(_) => return Outcome::Close,
            };
            if self.ws.is_some() {
                // The 101 went into `out`: frames the client pipelined behind the upgrade
                // request are already in `inbuf`, and the WebSocket pump takes them from there.
                return self.drive_ws(ctx);
            }
            if !read && !wrote {
                break;
            }
            rounds += 1;
            if rounds == MAX_ROUNDS {
                return Outcome::Again;
            }
        }
        let idle = self.replies.is_empty()
            && self.body.is_none()
            && self.out_pos == self.out.len()
            && !self.transport.pending();
        if !idle {
            return Outcome::Keep;
        }
        if self.state == State::Finishing && self.cut == Some(Cut::Rst) {
            // The reset leaves right behind the last byte.
            return self.reset();
        }
        if self.read_eof {
            // Nothing owed and nothing more will come.
            return Outcome::Close;
        }
        if self.state == State::Finishing {
            if self.cut == Some(Cut::Fin) {
                // The FIN leaves right behind the last byte; no close_notify (the fault is a
                // dropped connection, not a closed TLS session).
                let _ = self.transport.sock().shutdown(Shutdown::Write);
            } else {
                self.transport.close_write();
            }
            let until = ctx.now + LINGER;
            self.state = State::Lingering { until };
            ctx.timers.push(until);
            return self.linger(ctx.now, until);
        }
        Outcome::Keep
    }

    /// The echo listener's pump: what is still owed goes out first; then every read is written
    /// straight back from the input buffer, and only what the socket refuses is kept in `out`
    /// (reading pauses until the writable edge takes it: back-pressure, rule 2). EOF: once
    /// everything owed is written, the connection closes.
    fn drive_echo(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        for _ in 0..MAX_ROUNDS {
            while self.out_pos < self.out.len() {
                match self.transport.write(&self.out[self.out_pos..]) {
                    Ok(n) => self.wrote_out(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Outcome::Close,
                }
            }
            if self.read_eof {
                return Outcome::Close;
            }
            let n = match self.transport.read(&mut self.inbuf) {
                Ok(0) => {
                    self.read_eof = true;
                    continue;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Outcome::Close,
            };
            ctx.counters
                .echo_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
            let taken = loop {
                match self.transport.write(&self.inbuf[..n]) {
                    Ok(m) => break m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Outcome::Close,
                }
            };
            self.out.extend_from_slice(&self.inbuf[taken..n]);
            if n < self.inbuf.len() && !self.peer_hup && self.out_pos == self.out.len() {
                // A short read on a plain socket: drained (rule 1).
                return Outcome::Keep;
            }
        }
        Outcome::Again
    }

    /// Reads and parses until drained, back-pressured, or finished. Returns whether anything
    /// was consumed.
    fn pump_in(&mut self, ctx: &mut Ctx<'_>, may_read: &mut bool) -> io::Result<bool> {
        let mut progress = self.parse_buffered(ctx);
        while *may_read
            && self.state == State::Open
            && !self.read_eof
            && self.replies.len() < MAX_PIPELINE
        {
            self.make_room();
            let spare = self.inbuf.len() - self.in_end;
            if spare == 0 {
                // Full of parsed-but-unanswerable input; the queue draining frees it (rule 2).
                break;
            }
            match self.transport.read(&mut self.inbuf[self.in_end..]) {
                Ok(0) => {
                    self.read_eof = true;
                    progress = true;
                }
                Ok(n) => {
                    self.in_end += n;
                    progress = true;
                    if n < spare && !self.peer_hup && self.transport.short_read_means_drained() {
                        *may_read = false;
                    }
                    self.parse_buffered(ctx);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *may_read = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Compacts the input buffer, and grows it when an unfinished head fills it.
    fn make_room(&mut self) {
        if self.in_end < self.inbuf.len() {
            return;
        }
        if self.in_start > 0 {
            self.inbuf.copy_within(self.in_start..self.in_end, 0);
            self.in_end -= self.in_start;
            self.in_start = 0;
        } else if self.inbuf.len() < http::MAX_HEAD {
            let len = (self.inbuf.len() * 2).min(http::MAX_HEAD);
            self.inbuf.resize(len, 0);
        }
    }

    /// Turns buffered bytes into queued replies. Returns whether anything was consumed.
    fn parse_buffered(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let mut progress = false;
        while self.state == State::Open && self.replies.len() < MAX_PIPELINE {
            let avail = self.in_end - self.in_start;
            if self.discard > 0 {
                let skip = self.discard.min(avail as u64) as usize;
                if skip == 0 {
                    break;
                }
                self.in_start += skip;
                self.discard -= skip as u64;
                progress = true;
                continue;
            }
            let buf = &self.inbuf[self.in_start..self.in_end];
            let Some(len) = http::find_head_end(buf, self.scanned) else {
                self.scanned = buf.len();
                if buf.len() >= http::MAX_HEAD {
                    self.count_request(ctx);
                    self.queue_last(Route::Status(HeadError::TooLarge.status()), ctx);
                    progress = true;
                }
                break;
            };
            let parsed = http::parse_head(&buf[..len]);
            self.in_start += len;
            self.scanned = 0;
            progress = true;
            self.count_request(ctx);
            match parsed {
                Ok(req) => self.queue_request(&req, ctx),
                Err(e) => self.queue_last(Route::Status(e.status()), ctx),
            }
        }
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        }
        progress
    }

    fn count_request(&mut self, ctx: &Ctx<'_>) {
        self.requests += 1;
        ctx.counters.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn queue_request(&mut self, req: &Request, ctx: &mut Ctx<'_>) {
        let route = if self.over_limit {
            Route::Status(429)
        } else if let Some(status) = failing(ctx) {
            Route::Status(status)
        } else {
            req.route
        };
        let stalled = self.stalled_until(ctx);
        if let Route::Upgrade { .. } = route {
            // `close_after` counts HTTP exchanges; an upgraded connection lives by WebSocket
            // rules instead, so the upgrade is answered even when it is the N-th request.
            self.replies.push_back(Reply {
                route,
                head_only: false,
                http10: false,
                conn: ConnHeader::Default,
                not_before: stalled,
            });
            self.state = State::Upgrading;
            return;
        }
        let last = self.over_limit
            || !req.keep_alive
            || ctx.shared.close_after.is_some_and(|n| self.requests >= n)
            || route.cut().is_some()
            // A malformed head can only be followed by the close.
            || route == Route::Garbage;
        self.cut = route.cut();
        let delayed = match route {
            // The cap in `routes::route` keeps this from overflowing; `checked_add` makes sure.
            Route::Delay(us) => match ctx.now.checked_add(Duration::from_micros(us)) {
                Some(t) => {
                    ctx.timers.push(t);
                    Some(t)
                }
                None => return self.queue_last(Route::Status(400), ctx),
            },
            _ => None,
        };
        // A delay runs from the request's arrival; a stall only postpones what is due earlier.
        let not_before = delayed.max(stalled);
        let conn = if last {
            ConnHeader::Close
        } else if req.http10 {
            ConnHeader::KeepAlive
        } else {
            ConnHeader::Default
        };
        self.replies.push_back(Reply {
            route,
            head_only: req.head_only,
            http10: req.http10,
            conn,
            not_before,
        });
        self.discard = req.body_len;
        if last {
            self.state = State::Finishing;
        }
    }

    /// Queues an error answer that ends the connection.
    fn queue_last(&mut self, route: Route, ctx: &mut Ctx<'_>) {
        let not_before = self.stalled_until(ctx);
        self.replies.push_back(Reply {
            route,
            head_only: false,
            http10: false,
            conn: ConnHeader::Close,
            not_before,
        });
        self.state = State::Finishing;
    }

    /// `http_stall`: a request that arrives inside the window is answered when it ends (and,
    /// since replies leave in order, so is everything queued behind it). One wake-up per
    /// connection and window is enough: the loop drives the whole queue when it fires.
    fn stalled_until(&self, ctx: &mut Ctx<'_>) -> Option<Instant> {
        let (after, len) = ctx.shared.http_stall?;
        // `validate` bounds both durations, so these additions cannot overflow.
        let first = *ctx.shared.first_request.get_or_init(|| ctx.now);
        let (from, until) = (first + after, first + after + len);
        if ctx.now < from || ctx.now >= until {
            return None;
        }
        ctx.counters
            .http_stalled_requests
            .fetch_add(1, Ordering::Relaxed);
        let armed = self
            .replies
            .iter()
            .any(|r| r.not_before.is_some_and(|t| t >= until));
        if !armed {
            ctx.timers.push(until);
        }
        Some(until)
    }

    /// Serializes due replies and writes until blocked or done. Returns whether bytes moved.
    fn pump_out(&mut self, ctx: &mut Ctx<'_>) -> io::Result<bool> {
        let mut progress = false;
        loop {
            // `drip`: one byte per write, each `drip` after the previous one; the timer armed
            // with each byte wakes the connection for the next.
            let most = match ctx.shared.drip {
                Some(_) if self.drip_at.is_some_and(|t| ctx.now < t) => break,
                Some(_) => 1,
                None => usize::MAX,
            };
            self.fill(ctx);
            let result = if self.out_pos < self.out.len() {
                let end = self.out.len().min(self.out_pos.saturating_add(most));
                self.transport
                    .write(&self.out[self.out_pos..end])
                    .map(|n| self.wrote_out(n))
            } else if let Some(body) = &mut self.body {
                // `fill` stopped because the next piece is larger than the gather limit: send it
                // straight from the static buffer, no copy.
                let piece = body.direct();
                let piece = &piece[..piece.len().min(most)];
                match self.transport.write(piece) {
                    Ok(n) => {
                        body.advance(n, &mut self.out);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            } else {
                break;
            };
            match result {
                Ok(()) => {
                    progress = true;
                    if let Some(gap) = ctx.shared.drip {
                        let next = ctx.now + gap;
                        self.drip_at = Some(next);
                        ctx.timers.push(next);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        match self.transport.flush() {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e),
            _ => Ok(progress),
        }
    }

    fn wrote_out(&mut self, n: usize) {
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
            if self.out.capacity() > 4 * OUT_KEEP {
                self.out.shrink_to(OUT_KEEP);
            }
        } else if self.out_pos >= OUT_COMPACT_AT {
            self.out.drain(..self.out_pos);
            self.out_pos = 0;
        }
    }

    /// Moves due replies (heads, small bodies) into `out` up to [`HIGH_WATER`] pending bytes.
    fn fill(&mut self, ctx: &mut Ctx<'_>) {
        let limit = self.out_pos + HIGH_WATER;
        loop {
            if let Some(body) = &mut self.body {
                if !body.fill(&mut self.out, limit) {
                    return;
                }
                self.body = None;
            }
            if self.out.len() >= limit {
                return;
            }
            let Some(front) = self.replies.front() else {
                return;
            };
            // A delayed reply holds back the ones behind it: responses leave in request order.
            if front.not_before.is_some_and(|t| ctx.now < t) {
                return;
            }
            let Some(reply) = self.replies.pop_front() else {
                return;
            };
            self.body = routes::write_reply(
                &reply,
                &ctx.shared.index_response,
                &mut self.out,
                ctx.scratch,
            );
            if let Route::Upgrade { kind, .. } = reply.route {
                // The 101 is the last reply: parsing stopped at the upgrade request.
                self.start_ws(kind, ctx);
                return;
            }
        }
    }

    /// Switches to WebSocket once the 101 is in `out`; the session's clock starts now.
    fn start_ws(&mut self, kind: Kind, ctx: &mut Ctx<'_>) {
        self.state = State::WebSocket;
        self.ws = Some(Box::new(WsConn {
            decoder: Decoder::default(),
            session: Session::new(kind, ctx.shared.ws, ctx.now),
            armed: None,
            close_by: None,
        }));
        if let Some(greeting) = &ctx.shared.ws_greeting {
            // Behind the 101 in the same buffer: both leave in one write (`ws_greeting`).
            self.out.extend_from_slice(greeting);
        }
        ctx.counters.ws_upgrades.fetch_add(1, Ordering::Relaxed);
    }

    /// The WebSocket counterpart of [`Conn::drive`]. Counts are batched in a [`Tally`] and
    /// published before the bytes they describe are written, so a client that has seen an
    /// effect (a gap, a 1008, a drop) also sees it counted in `stats()`.
    fn drive_ws(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let mut tally = Tally::default();
        let outcome = self.pump_ws(ctx, &mut tally);
        publish(ctx.counters, &mut tally);
        outcome
    }

    fn pump_ws(&mut self, ctx: &mut Ctx<'_>, tally: &mut Tally) -> Outcome {
        // One wall-clock read per wake: every message sent in it is stamped with it.
        let wall_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut may_read = true;
        let mut rounds = 0;
        loop {
            let read = match self.ws_pump_in(ctx, &mut may_read, tally) {
                Ok(p) => p,
                Err(_) => return Outcome::Close,
            };
            if self.state == State::WebSocket {
                match self.ws_tick(ctx, wall_us, tally) {
                    Flow::Continue => {}
                    Flow::Close => self.state = State::Finishing,
                    Flow::Drop => {
                        publish(ctx.counters, tally);
                        return self.drop_abnormally(ctx);
                    }
                }
            }
            publish(ctx.counters, tally);
            let wrote = match self.pump_out(ctx) {
                Ok(p) => p,
                Err(_) => return Outcome::Close,
            };
            if !read && !wrote {
                break;
            }
            rounds += 1;
            if rounds == MAX_ROUNDS {
                return Outcome::Again;
            }
        }
        if self.state == State::Finishing {
            return self.finish_ws(ctx);
        }
        self.arm_timer(ctx);
        Outcome::Keep
    }

    /// Reads and decodes frames until drained or back-pressured (rule 4).
    fn ws_pump_in(
        &mut self,
        ctx: &mut Ctx<'_>,
        may_read: &mut bool,
        tally: &mut Tally,
    ) -> io::Result<bool> {
        let mut progress = self.ws_decode(ctx, tally);
        while *may_read
            && self.state == State::WebSocket
            && self.out.len() - self.out_pos < WS_OUT_MAX
        {
            self.make_room();
            let spare = self.inbuf.len() - self.in_end;
            if spare == 0 {
                // Unreachable: the decoder consumes every whole header, and a control frame
                // (≤ 131 bytes) always fits after compaction.
                return Err(io::ErrorKind::InvalidData.into());
            }
            match self.transport.read(&mut self.inbuf[self.in_end..]) {
                // The peer went away without a close frame.
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    self.in_end += n;
                    progress = true;
                    if n < spare && !self.peer_hup && self.transport.short_read_means_drained() {
                        *may_read = false;
                    }
                    self.ws_decode(ctx, tally);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => *may_read = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(progress)
    }

    /// Turns buffered bytes into events and answers them. Returns whether anything was used.
    fn ws_decode(&mut self, ctx: &mut Ctx<'_>, tally: &mut Tally) -> bool {
        let Some(wsc) = self.ws.as_deref_mut() else {
            return false;
        };
        let limit = self.out_pos + WS_OUT_MAX;
        let mut progress = false;
        while self.state == State::WebSocket {
            let step = match wsc
                .decoder
                .decode(&mut self.inbuf[self.in_start..self.in_end])
            {
                Ok(step) => step,
                Err(fault) => {
                    ws::push_close(&mut self.out, Some(fault.code()), fault.reason());
                    self.state = State::Finishing;
                    return true;
                }
            };
            self.in_start += step.consumed;
            let Some(event) = step.event else {
                if step.consumed == 0 {
                    break;
                }
                progress = true;
                continue;
            };
            progress = true;
            let mut o = Output {
                out: &mut self.out,
                limit,
                scratch: ctx.scratch,
            };
            if wsc.session.on_event(event, ctx.now, &mut o, tally) == Flow::Close {
                self.state = State::Finishing;
            }
        }
        if self.in_start == self.in_end {
            self.in_start = 0;
            self.in_end = 0;
        }
        progress
    }

    fn ws_tick(&mut self, ctx: &mut Ctx<'_>, wall_us: u64, tally: &mut Tally) -> Flow {
        let Some(wsc) = self.ws.as_deref_mut() else {
            return Flow::Continue;
        };
        let mut o = Output {
            out: &mut self.out,
            limit: self.out_pos + WS_OUT_MAX,
            scratch: ctx.scratch,
        };
        wsc.session.tick(ctx.now, wall_us, &mut o, tally)
    }

    /// A close frame is queued: once it is written, FIN and linger; a client that does not read
    /// it within [`LINGER`] is cut off.
    fn finish_ws(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        let idle = self.out_pos == self.out.len() && !self.transport.pending();
        if idle {
            self.transport.close_write();
            let until = ctx.now + LINGER;
            self.state = State::Lingering { until };
            ctx.timers.push(until);
            return self.linger(ctx.now, until);
        }
        let Some(wsc) = self.ws.as_deref_mut() else {
            return Outcome::Close;
        };
        match wsc.close_by {
            Some(t) if ctx.now >= t => Outcome::Close,
            Some(_) => Outcome::Keep,
            None => {
                let t = ctx.now + LINGER;
                wsc.close_by = Some(t);
                ctx.timers.push(t);
                Outcome::Keep
            }
        }
    }

    /// `ws_drop_every`: end the TCP connection without a close frame. Output the socket has
    /// not taken is discarded; what it took still arrives, followed by a clean FIN, or by a
    /// reset with `ws_drop_rst`.
    fn drop_abnormally(&mut self, ctx: &mut Ctx<'_>) -> Outcome {
        self.out.clear();
        self.out_pos = 0;
        if ctx.shared.ws_drop_rst {
            return self.reset();
        }
        self.transport.close_write();
        let until = ctx.now + LINGER;
        self.state = State::Lingering { until };
        ctx.timers.push(until);
        self.linger(ctx.now, until)
    }

    /// Asks the loop for a wake-up at the session's next deadline, unless one at or before it
    /// is already pending (rule 5).
    fn arm_timer(&mut self, ctx: &mut Ctx<'_>) {
        let Some(wsc) = self.ws.as_deref_mut() else {
            return;
        };
        let Some(next) = wsc.session.next_deadline() else {
            return;
        };
        if wsc.armed.is_some_and(|a| a > ctx.now && a <= next) {
            return;
        }
        // Strictly in the future, so the loop's timer pass cannot spin on it.
        let next = next.max(ctx.now + Duration::from_micros(1));
        wsc.armed = Some(next);
        ctx.timers.push(next);
    }

    /// End the connection with a TCP RST now: SO_LINGER 0, and the loop drops the socket.
    /// Bytes the socket already took have left (loopback sends them at once); anything still
    /// queued is discarded by the kernel.
    fn reset(&mut self) -> Outcome {
        let _ = socket2::SockRef::from(self.transport.sock()).set_linger(Some(Duration::ZERO));
        Outcome::Close
    }

    /// Discards input after our last reply until EOF, an error, or the deadline.
    fn linger(&mut self, now: Instant, until: Instant) -> Outcome {
        if now >= until {
            return Outcome::Close;
        }
        for _ in 0..MAX_ROUNDS {
            match Read::read(&mut self.transport.sock(), &mut self.inbuf) {
                Ok(0) => return Outcome::Close,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Outcome::Close,
            }
        }
        Outcome::Again
    }
}

/// Moves batched WebSocket counts to the thread's counters and zeroes the batch (zero adds are
/// skipped: they would still be atomic read-modify-writes).
fn publish(c: &ThreadCounters, t: &mut Tally) {
    for (counter, n) in [
        (&c.ws_messages_sent, t.sent),
        (&c.ws_gaps, t.gaps),
        (&c.ws_messages_dropped, t.dropped),
        (&c.ws_subscriptions, t.subscriptions),
        (&c.ws_drops, t.drops),
        (&c.ws_pong_timeouts, t.pong_timeouts),
    ] {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
    *t = Tally::default();
}

/// `http_fail_after`: the status this request gets instead of its route, once the first `n`
/// requests of the whole target were routed (one shared counter, touched only with the fault).
fn failing(ctx: &Ctx<'_>) -> Option<u16> {
    let (n, status) = ctx.shared.http_fail_after?;
    let before = ctx.shared.http_routed.fetch_add(1, Ordering::Relaxed);
    if before < n {
        return None;
    }
    ctx.counters.http_failed.fetch_add(1, Ordering::Relaxed);
    Some(status)
}
