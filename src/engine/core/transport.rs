//! The one narrow interface between the core and the bytes on a socket: plain TCP or TLS. Each
//! transport owns its buffers (plain: the bytes the socket refused; TLS: rustls' queues), so the
//! core hands it nothing but the socket, the receive buffer and, for TLS, the worker's read
//! scratch in its context.
//!
//! The core is generic over [`Transport`], so TLS is chosen once, when the worker is built, and
//! the loop never branches on it (wrk `net.h`'s `struct sock`, made static).
//!
//! Rules for both implementations (libs.md §2–§3, DESIGN.md "edge-triggered means act on
//! everything the event says"):
//! 1. Sockets are registered once, edge-triggered. `recv` reads until the socket is drained:
//!    `WouldBlock`, or a *short read*, which on a stream socket means the receive queue was empty
//!    at that instant; data arriving later raises a new edge. The short-read rule saves one
//!    `read()` returning EAGAIN per response.
//! 2. A short read proves the queue was empty, not that the peer is still there. When the event
//!    said the peer closed or errored (`to_eof`), `recv` reads on until EOF, an error or
//!    `WouldBlock`: a FIN or RST that came with the last bytes is seen in the same event, not a
//!    `--timeout` later.
//! 3. Every plaintext chunk goes to `on_data` as soon as it is in the buffer, with the instant
//!    taken right after the `read()` that delivered it, so TTFB is the first *plaintext* byte
//!    (TLS 1.3 session tickets carry none).
//! 4. TLS is pumped by hand: one socket read into the worker's scratch, fed to rustls in slices
//!    (never an empty slice: that means EOF), plaintext drained after every
//!    `process_new_packets` so rustls' 16 KiB plaintext limit is never hit.
//! 5. Writes go straight to the socket; only what the socket refuses is kept for the next
//!    writable edge (plain) or left in rustls' queue (TLS).

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustls::client::ClientConnection;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};

use crate::engine::buf::RecvBuf;
use crate::metrics::{ErrorClass, TlsFacts};
use crate::proto::http1::ProtoError;
use crate::proto::ws::WsError;

/// Size of the per-worker TLS read scratch.
pub const SCRATCH: usize = 64 * 1024;

/// Why a transport operation failed.
#[derive(Debug)]
pub enum Failure {
    /// A socket error; the caller classifies it by the connection's state.
    Io(io::Error),
    /// TLS failed (certificate, alert, protocol), already classified.
    Tls(ErrorClass),
    /// The framer rejected the plaintext, or it outgrew the buffer; the reason goes to the
    /// report ([`crate::metrics::Recorder::reason`]).
    Protocol(Refusal),
}

/// Why the server's bytes were refused: carried as the decoder's own error and formatted only
/// when counted, so a refusal costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The HTTP/1.1 response framer's verdict.
    Http(ProtoError),
    /// The WebSocket frame decoder's verdict.
    Ws(WsError),
    /// The plaintext outgrew the receive buffer before the decoder could take any of it.
    BufferFull,
    /// Response bytes arrived while no request was outstanding.
    Unsolicited,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Http(e) => e.fmt(f),
            Refusal::Ws(e) => e.fmt(f),
            Refusal::BufferFull => write!(
                f,
                "data outgrew the {} KiB receive buffer before it could be decoded",
                crate::engine::buf::MAX_CAPACITY / 1024
            ),
            Refusal::Unsolicited => write!(f, "server sent bytes while no request was outstanding"),
        }
    }
}

/// How a `recv` call ended without failing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recv {
    /// The peer closed its side (TCP FIN, or TLS close_notify).
    pub eof: bool,
    /// The TLS handshake completed during this call, at this instant.
    pub handshake_done: Option<Instant>,
    /// Bytes read from the socket.
    pub bytes: u64,
}

/// Plain TCP or TLS, as the core sees it.
pub trait Transport: Sized {
    /// What every connection of a worker shares (TLS: config, server name, read scratch).
    type Ctx;

    /// Start on a freshly established TCP connection.
    fn start(ctx: &Self::Ctx) -> Result<Self, Failure>;

    /// True while a handshake is in progress (never for plain TCP).
    fn is_handshaking(&self) -> bool;

    /// After a handshake: whether it resumed a session. `None` for plain TCP.
    fn resumed(&self) -> Option<bool>;

    /// Fill `facts` from the negotiated session.
    fn describe(&self, facts: &mut TlsFacts);

    /// Send `data` (rule 5); returns the bytes the socket took.
    fn send(&mut self, sock: &mut TcpStream, data: &[u8]) -> io::Result<u64>;

    /// Write what is queued; returns whether nothing is left, and the bytes written.
    fn flush(&mut self, sock: &mut TcpStream) -> io::Result<(bool, u64)>;

    /// Read until drained (rules 1–4), handing plaintext to `on_data` as it arrives.
    fn recv<F>(
        &mut self,
        ctx: &mut Self::Ctx,
        sock: &mut TcpStream,
        rb: &mut RecvBuf,
        to_eof: bool,
        on_data: F,
    ) -> Result<Recv, Failure>
    where
        F: FnMut(&mut RecvBuf, Instant) -> Result<(), Failure>;
}

/// Plain TCP: the only state is what the socket refused to take.
#[derive(Debug, Default)]
pub struct Plain {
    pending: Vec<u8>,
}

impl Transport for Plain {
    type Ctx = ();

    fn start(_: &()) -> Result<Plain, Failure> {
        Ok(Plain::default())
    }

    #[inline]
    fn is_handshaking(&self) -> bool {
        false
    }

    fn resumed(&self) -> Option<bool> {
        None
    }

    fn describe(&self, _: &mut TlsFacts) {}

    #[inline]
    fn send(&mut self, sock: &mut TcpStream, data: &[u8]) -> io::Result<u64> {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            return self.flush(sock).map(|(_, n)| n);
        }
        loop {
            return match sock.write(data) {
                Ok(n) => {
                    if n < data.len() {
                        self.pending.extend_from_slice(&data[n..]);
                    }
                    Ok(n as u64)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending.extend_from_slice(data);
                    Ok(0)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    #[inline]
    fn flush(&mut self, sock: &mut TcpStream) -> io::Result<(bool, u64)> {
        let mut sent = 0;
        while !self.pending.is_empty() {
            match sock.write(&self.pending) {
                Ok(n) => {
                    sent += n as u64;
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, sent)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((true, sent))
    }

    #[inline]
    fn recv<F>(
        &mut self,
        _: &mut (),
        sock: &mut TcpStream,
        rb: &mut RecvBuf,
        to_eof: bool,
        mut on_data: F,
    ) -> Result<Recv, Failure>
    where
        F: FnMut(&mut RecvBuf, Instant) -> Result<(), Failure>,
    {
        let mut out = Recv::default();
        loop {
            let spare = rb.spare();
            let want = spare.len();
            if want == 0 {
                return Err(Failure::Protocol(Refusal::BufferFull));
            }
            match sock.read(spare) {
                Ok(0) => {
                    out.eof = true;
                    return Ok(out);
                }
                Ok(n) => {
                    let now = Instant::now();
                    rb.filled(n);
                    out.bytes += n as u64;
                    on_data(rb, now)?;
                    if n < want && !to_eof {
                        return Ok(out);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }
}

/// What the TLS connections of one worker share: its client config (with its own session
/// store, so workers never contend on one lock), the server name, and the socket read scratch.
pub struct TlsCtx {
    /// The worker's client config.
    pub config: Arc<ClientConfig>,
    /// SNI / verified name.
    pub name: ServerName<'static>,
    /// Socket read scratch, [`SCRATCH`] bytes.
    pub scratch: Box<[u8]>,
}

impl TlsCtx {
    /// A context for one worker.
    pub fn new(config: Arc<ClientConfig>, name: ServerName<'static>) -> TlsCtx {
        TlsCtx {
            config,
            name,
            scratch: vec![0; SCRATCH].into_boxed_slice(),
        }
    }

    /// The one TLS context factory: checks the settings once (roots, `--ca`, `--insecure`, the
    /// server name) and returns what makes each worker's context: its own copy of the config
    /// with its own session store (`tls::worker_config`), so workers never contend on one lock.
    pub fn factory(
        plan: &crate::plan::TlsPlan,
        host: &str,
    ) -> Result<impl Fn(usize) -> TlsCtx + use<>, crate::tls::TlsError> {
        let base = crate::tls::client_config(plan)?;
        let name = crate::tls::server_name(plan, host)?;
        let resume = plan.resume;
        Ok(move |_worker: usize| {
            TlsCtx::new(crate::tls::worker_config(&base, resume), name.clone())
        })
    }
}

/// TLS over TCP through rustls' buffered `ClientConnection`.
#[derive(Debug)]
pub struct Tls {
    conn: ClientConnection,
}

impl Transport for Tls {
    type Ctx = TlsCtx;

    fn start(ctx: &TlsCtx) -> Result<Tls, Failure> {
        ClientConnection::new(ctx.config.clone(), ctx.name.clone())
            .map(|conn| Tls { conn })
            .map_err(|e| Failure::Tls(crate::tls::classify(&e)))
    }

    #[inline]
    fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    fn resumed(&self) -> Option<bool> {
        Some(self.conn.handshake_kind() == Some(HandshakeKind::Resumed))
    }

    fn describe(&self, facts: &mut TlsFacts) {
        facts.version = self.conn.protocol_version().map(|v| format!("{v:?}"));
        facts.cipher_suite = self
            .conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()));
        facts.kx_group = self
            .conn
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()));
        facts.alpn = self
            .conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned());
    }

    #[inline]
    fn send(&mut self, sock: &mut TcpStream, data: &[u8]) -> io::Result<u64> {
        self.conn.writer().write_all(data)?;
        self.flush(sock).map(|(_, n)| n)
    }

    #[inline]
    fn flush(&mut self, sock: &mut TcpStream) -> io::Result<(bool, u64)> {
        let mut sent = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(n) => sent += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, sent)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((true, sent))
    }

    fn recv<F>(
        &mut self,
        ctx: &mut TlsCtx,
        sock: &mut TcpStream,
        rb: &mut RecvBuf,
        to_eof: bool,
        mut on_data: F,
    ) -> Result<Recv, Failure>
    where
        F: FnMut(&mut RecvBuf, Instant) -> Result<(), Failure>,
    {
        let scratch = &mut ctx.scratch[..];
        let mut out = Recv::default();
        loop {
            let n = match sock.read(scratch) {
                Ok(0) => {
                    out.eof = true;
                    return Ok(out);
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(out),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Failure::Io(e)),
            };
            let now = Instant::now();
            out.bytes += n as u64;
            let mut input = &scratch[..n];
            while !input.is_empty() {
                self.conn.read_tls(&mut input).map_err(Failure::Io)?;
                let was_handshaking = self.conn.is_handshaking();
                if let Err(e) = self.conn.process_new_packets() {
                    // Tell the server why (the alert rustls queued), then give up.
                    let _ = self.conn.write_tls(sock);
                    return Err(Failure::Tls(crate::tls::classify(&e)));
                }
                if was_handshaking && !self.conn.is_handshaking() {
                    out.handshake_done = Some(Instant::now());
                }
                loop {
                    let spare = rb.spare();
                    if spare.is_empty() {
                        return Err(Failure::Protocol(Refusal::BufferFull));
                    }
                    match self.conn.reader().read(spare) {
                        Ok(0) => {
                            // close_notify: no more plaintext will come.
                            out.eof = true;
                            break;
                        }
                        Ok(k) => {
                            rb.filled(k);
                            on_data(rb, now)?;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(Failure::Io(e)),
                    }
                }
            }
            if out.eof || (n < scratch.len() && !to_eof) {
                return Ok(out);
            }
        }
    }
}
