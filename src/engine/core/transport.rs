//! The one narrow interface between the core and the bytes on a socket: plain TCP or TLS. Each
//! transport owns its buffers (plain: the bytes the socket refused; TLS: the sealed records the
//! socket has not taken and the start of a record still arriving), so the core hands it nothing
//! but the socket, the receive buffer and, for TLS, the worker's read scratch in its context.
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
//!    `--timeout` later. Unless `on_data` said it wants nothing more from this connection (it
//!    returns whether it does: the server said its last response was its last), when the FIN
//!    only proves what the server already said ([`Recv::done`]).
//! 3. Every plaintext chunk goes to `on_data` as soon as it is in the buffer, with the instant
//!    taken right after the `read()` that delivered it, so TTFB is the first *plaintext* byte
//!    (TLS 1.3 session tickets carry none).
//! 4. TLS reads go into the worker's scratch. During the handshake the bytes go on to rustls'
//!    unbuffered connection (`process_tls_records` over the connection's `carry`); after it,
//!    each complete record is opened in place in the scratch ([`super::record`]) and its
//!    plaintext copied once into the receive buffer; the start of a record still arriving waits
//!    in `carry` and is put back in front of the next read.
//! 5. Writes go straight to the socket; only what the socket refuses is kept for the next
//!    writable edge (plain: the bytes; TLS: the sealed records, in the connection's `out`).
//! 6. No allocation per request in steady state, over TLS too: rustls 0.23 allocates a record
//!    `Vec` per application-data record in each direction, even through its unbuffered API, so
//!    after the handshake rustls hands its keys over (`dangerous_into_kernel_connection`, the
//!    kTLS interface; its `KernelConnection` still stores TLS 1.3 session tickets and computes
//!    key updates) and [`super::record`] seals requests straight into `out` and opens responses
//!    where they were read. `out`, `carry` and the scratch keep their capacity.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::kernel::KernelConnection;
use rustls::pki_types::ServerName;
use rustls::unbuffered::{ConnectionState, EncodeError, InsufficientSizeError, UnbufferedStatus};
use rustls::{
    AlertDescription, CipherSuite, ClientConfig, ContentType, HandshakeKind, HandshakeType,
    NamedGroup, ProtocolVersion, SupportedCipherSuite,
};

use super::record::{self, record_len, Records, Version};

use crate::engine::buf::RecvBuf;
use crate::engine::raw;
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
    /// When the last bytes were read (the instant `on_data` was handed), if any were: the
    /// caller's "now" after the read, so it need not read the clock again.
    pub last_read: Option<Instant>,
    /// `on_data` wanted nothing more and the socket was drained, so the read stopped there
    /// even though the event announced the peer's close (rule 2).
    pub done: bool,
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
        F: FnMut(&mut RecvBuf, Instant) -> Result<bool, Failure>;
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
            return match raw::send(sock.as_raw_fd(), data) {
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
            match raw::send(sock.as_raw_fd(), &self.pending) {
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
        F: FnMut(&mut RecvBuf, Instant) -> Result<bool, Failure>,
    {
        let mut out = Recv::default();
        loop {
            let spare = rb.spare();
            let want = spare.len();
            if want == 0 {
                return Err(Failure::Protocol(Refusal::BufferFull));
            }
            match raw::recv(sock.as_raw_fd(), spare) {
                Ok(0) => {
                    out.eof = true;
                    return Ok(out);
                }
                Ok(n) => {
                    let now = Instant::now();
                    out.last_read = Some(now);
                    rb.filled(n);
                    out.bytes += n as u64;
                    let more = on_data(rb, now)?;
                    if n < want && (!to_eof || !more) {
                        out.done = !more;
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
        // The record layer needs the keys rustls hands over only when told to (rule 6).
        let config = if config.enable_secret_extraction {
            config
        } else {
            let mut c = (*config).clone();
            c.enable_secret_extraction = true;
            Arc::new(c)
        };
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

/// What the handshake negotiated, kept for [`Transport::describe`] and [`Transport::resumed`]
/// once rustls' connection object has given way to the record layer.
#[derive(Debug, Default)]
struct Negotiated {
    resumed: bool,
    version: Option<ProtocolVersion>,
    suite: Option<CipherSuite>,
    group: Option<NamedGroup>,
    alpn: Option<Box<[u8]>>,
}

/// Where a TLS connection is.
enum Phase {
    /// rustls' unbuffered connection drives the handshake over `Tls::carry`.
    Handshake(Box<UnbufferedClientConnection>),
    /// The handshake is over: records are sealed and opened in place ([`record`]); rustls'
    /// `KernelConnection` keeps what it still owns (session tickets, key updates).
    Traffic(Box<Traffic>),
    /// In between, or after a failure: nothing more is read or written.
    Gone,
}

/// The established half of a TLS connection.
struct Traffic {
    records: Records,
    kernel: KernelConnection<ClientConnectionData>,
    /// A post-handshake handshake message the peer split over records (rare: rustls' and most
    /// servers' tickets fit in one).
    hs: Vec<u8>,
    /// Records sealable under one sending key (the suite's confidentiality limit, with a
    /// margin): TLS 1.3 updates its key before, TLS 1.2 gives up.
    tx_limit: u64,
}

/// Largest post-handshake handshake message accepted (a ticket is a few hundred bytes).
const MAX_HS_MESSAGE: usize = 64 * 1024;

/// TLS over TCP: rustls' unbuffered API for the handshake, then an in-place record layer, so a
/// request or response in steady state allocates nothing (rule 6 at the top).
pub struct Tls {
    phase: Phase,
    /// Ciphertext not yet taken by the socket, from `out_at` on (handshake flights, sealed
    /// requests, alerts). Cleared, never shrunk, when written out.
    out: Vec<u8>,
    out_at: usize,
    /// Received bytes not yet consumed: during the handshake, what rustls has not discarded;
    /// after it, the start of a record whose end has not arrived.
    carry: Vec<u8>,
    /// Plaintext rustls decrypted before the handshake was over, for the receive buffer.
    early: Vec<u8>,
    negotiated: Negotiated,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("handshaking", &self.is_handshaking())
            .field("unsent", &(self.out.len() - self.out_at))
            .field("carry", &self.carry.len())
            .field("negotiated", &self.negotiated)
            .finish()
    }
}

/// How far one [`drive_handshake`] call got.
pub(crate) enum HsStep {
    /// rustls needs more bytes from the peer.
    Blocked,
    /// The handshake is complete and nothing of it is left to encode.
    Done,
    /// The peer sent close_notify.
    PeerClosed,
}

/// Run rustls' handshake over `carry` until it needs more bytes or is done: handshake records go
/// to `out`, plaintext that came with the last flight to `early`.
pub(crate) fn drive_handshake(
    conn: &mut UnbufferedClientConnection,
    carry: &mut Vec<u8>,
    out: &mut Vec<u8>,
    early: &mut Vec<u8>,
) -> Result<HsStep, rustls::Error> {
    loop {
        let UnbufferedStatus { mut discard, state } = conn.process_tls_records(&mut carry[..]);
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                carry.drain(..discard);
                return Err(e);
            }
        };
        let step = match state {
            ConnectionState::EncodeTlsData(mut s) => {
                encode_into(out, |buf| s.encode(buf));
                None
            }
            // `out` is written by `flush`: it is "transmitted" as far as rustls is concerned.
            ConnectionState::TransmitTlsData(s) => {
                s.done();
                None
            }
            ConnectionState::ReadTraffic(mut r) => {
                while let Some(rec) = r.next_record() {
                    let rec = rec?;
                    discard += rec.discard;
                    early.extend_from_slice(rec.payload);
                }
                None
            }
            ConnectionState::BlockedHandshake => Some(HsStep::Blocked),
            ConnectionState::WriteTraffic(_) => Some(HsStep::Done),
            ConnectionState::PeerClosed | ConnectionState::Closed => Some(HsStep::PeerClosed),
            _ => {
                return Err(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::UnexpectedMessage("early data to a client"),
                ))
            }
        };
        carry.drain(..discard);
        if let Some(step) = step {
            return Ok(step);
        }
    }
}

/// Append what `encode` writes to `out`, growing it to the size rustls asks for.
fn encode_into(out: &mut Vec<u8>, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
    let mut room = 1024;
    loop {
        let at = out.len();
        out.resize(at + room, 0);
        match encode(&mut out[at..]) {
            Ok(n) => return out.truncate(at + n),
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                out.truncate(at);
                room = required_size;
            }
            Err(_) => return out.truncate(at),
        }
    }
}

impl Tls {
    /// The handshake is over: take what it negotiated and hand the keys to the record layer.
    fn enter_traffic(&mut self) -> Result<(), rustls::Error> {
        let Phase::Handshake(conn) = std::mem::replace(&mut self.phase, Phase::Gone) else {
            return Err(rustls::Error::HandshakeNotComplete);
        };
        self.negotiated = Negotiated {
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
            version: conn.protocol_version(),
            suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
            group: conn.negotiated_key_exchange_group().map(|g| g.name()),
            alpn: conn.alpn_protocol().map(Box::from),
        };
        let (secrets, kernel) = (*conn).dangerous_into_kernel_connection()?;
        let version = match kernel.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            _ => Version::Tls12,
        };
        let limit = match kernel.negotiated_cipher_suite() {
            SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
        };
        let records = Records::new(
            version,
            (secrets.tx.0, &secrets.tx.1),
            (secrets.rx.0, &secrets.rx.1),
        )?;
        self.phase = Phase::Traffic(Box::new(Traffic {
            records,
            kernel,
            hs: Vec::new(),
            // rustls itself refreshes keys this far ahead of the limit.
            tx_limit: limit.saturating_sub(limit / 16),
        }));
        Ok(())
    }

    /// After a handshake error: get the alert rustls queued onto the wire, if the socket takes
    /// it at once.
    fn send_alert(&mut self, sock: &mut TcpStream) {
        if let Phase::Handshake(conn) = &mut self.phase {
            let st = conn.process_tls_records(&mut []);
            if let Ok(ConnectionState::EncodeTlsData(mut s)) = st.state {
                encode_into(&mut self.out, |buf| s.encode(buf));
            }
        }
        let _ = self.flush(sock);
    }

    /// Open every complete record at the start of `buf`, handing plaintext to `on_data`; returns
    /// the bytes consumed (what follows is the start of a record still arriving).
    fn open_records<F>(
        &mut self,
        buf: &mut [u8],
        rb: &mut RecvBuf,
        now: Instant,
        out: &mut Recv,
        on_data: &mut F,
    ) -> Result<usize, Failure>
    where
        F: FnMut(&mut RecvBuf, Instant) -> Result<bool, Failure>,
    {
        let Phase::Traffic(t) = &mut self.phase else {
            return Ok(0);
        };
        let mut at = 0;
        while let Some(len) = record_len(&buf[at..]).map_err(tls_failure)? {
            let rec = &mut buf[at..at + len];
            at += len;
            let (typ, range) = t.records.open(rec).map_err(tls_failure)?;
            let plain = &rec[range];
            match typ {
                ContentType::ApplicationData => {
                    if !deliver(plain, rb, now, on_data)? {
                        out.done = true;
                    }
                }
                ContentType::Alert => {
                    if t.on_alert(plain)? {
                        out.eof = true;
                        return Ok(at);
                    }
                }
                ContentType::Handshake => t.on_handshake(plain, &mut self.out)?,
                _ => {
                    return Err(tls_failure(rustls::Error::InvalidMessage(
                        rustls::InvalidMessage::InvalidContentType,
                    )))
                }
            }
        }
        Ok(at)
    }
}

/// Copy `plain` into the receive buffer, handing it to `on_data` as it fills.
fn deliver<F>(
    mut plain: &[u8],
    rb: &mut RecvBuf,
    now: Instant,
    on_data: &mut F,
) -> Result<bool, Failure>
where
    F: FnMut(&mut RecvBuf, Instant) -> Result<bool, Failure>,
{
    let mut more = true;
    while !plain.is_empty() {
        let spare = rb.spare();
        if spare.is_empty() {
            return Err(Failure::Protocol(Refusal::BufferFull));
        }
        let k = spare.len().min(plain.len());
        spare[..k].copy_from_slice(&plain[..k]);
        rb.filled(k);
        plain = &plain[k..];
        more = on_data(rb, now)?;
    }
    Ok(more)
}

/// A rustls error after the handshake, classified as rustls' own were.
fn tls_failure(e: rustls::Error) -> Failure {
    Failure::Tls(crate::tls::classify(&e))
}

impl Traffic {
    /// An alert record: `Ok(true)` for close_notify, `Ok(false)` for a warning that changes
    /// nothing, an error for the rest (as rustls treats them).
    fn on_alert(&mut self, plain: &[u8]) -> Result<bool, Failure> {
        let &[level, desc] = plain else {
            return Err(tls_failure(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::MessageTooShort,
            )));
        };
        let desc = AlertDescription::from(desc);
        if desc == AlertDescription::CloseNotify {
            return Ok(true);
        }
        let warning = level == 1;
        match self.records.version() {
            Version::Tls13 if desc == AlertDescription::UserCanceled => Ok(false),
            Version::Tls12 if warning => Ok(false),
            _ => Err(tls_failure(rustls::Error::AlertReceived(desc))),
        }
    }

    /// Handshake messages after the handshake: TLS 1.3 session tickets (to rustls' store, for
    /// resumption) and key updates; a TLS 1.2 HelloRequest is ignored (no renegotiation).
    fn on_handshake(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        if self.hs.is_empty() {
            let used = self.handshake_messages(plain, out)?;
            self.hs.extend_from_slice(&plain[used..]);
        } else {
            let mut hs = std::mem::take(&mut self.hs);
            hs.extend_from_slice(plain);
            let used = self.handshake_messages(&hs, out)?;
            hs.drain(..used);
            self.hs = hs;
        }
        if self.hs.len() > MAX_HS_MESSAGE {
            return Err(tls_failure(rustls::Error::InvalidMessage(
                rustls::InvalidMessage::HandshakePayloadTooLarge,
            )));
        }
        Ok(())
    }

    /// Handle the complete messages at the start of `buf`; returns the bytes they took.
    fn handshake_messages(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, Failure> {
        let mut at = 0;
        while let [typ, a, b, c, rest @ ..] = &buf[at..] {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            if len > MAX_HS_MESSAGE {
                return Err(tls_failure(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::HandshakePayloadTooLarge,
                )));
            }
            if rest.len() < len {
                break;
            }
            let body = &rest[..len];
            at += 4 + len;
            match (HandshakeType::from(*typ), self.records.version()) {
                (HandshakeType::NewSessionTicket, Version::Tls13) => self
                    .kernel
                    .handle_new_session_ticket(body)
                    .map_err(tls_failure)?,
                (HandshakeType::KeyUpdate, Version::Tls13) => {
                    // A new key applies from the next record: nothing may follow in this one.
                    if at != buf.len() {
                        return Err(tls_failure(rustls::Error::PeerMisbehaved(
                            rustls::PeerMisbehaved::KeyEpochWithPendingFragment,
                        )));
                    }
                    self.key_update(body, out)?;
                }
                (HandshakeType::HelloRequest, Version::Tls12) if body.is_empty() => {}
                _ => {
                    return Err(tls_failure(rustls::Error::InvalidMessage(
                        rustls::InvalidMessage::UnexpectedMessage("post-handshake message"),
                    )))
                }
            }
        }
        Ok(at)
    }

    /// The peer's TLS 1.3 KeyUpdate: its next records use a new key; when it asks, ours do too
    /// (after telling it, under the old key).
    fn key_update(&mut self, body: &[u8], out: &mut Vec<u8>) -> Result<(), Failure> {
        let requested = match body {
            [0] => false,
            [1] => true,
            _ => {
                return Err(tls_failure(rustls::Error::InvalidMessage(
                    rustls::InvalidMessage::InvalidKeyUpdate,
                )))
            }
        };
        let (seq, secrets) = self.kernel.update_rx_secret().map_err(tls_failure)?;
        self.records.rekey_rx(seq, &secrets).map_err(tls_failure)?;
        if requested {
            self.update_tx(out)?;
        }
        Ok(())
    }

    /// Send KeyUpdate(update_not_requested) and switch to the next sending key.
    fn update_tx(&mut self, out: &mut Vec<u8>) -> Result<(), Failure> {
        const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [24, 0, 0, 1, 0];
        self.records
            .seal(ContentType::Handshake, &KEY_UPDATE_NOT_REQUESTED, out);
        let (seq, secrets) = self.kernel.update_tx_secret().map_err(tls_failure)?;
        self.records.rekey_tx(seq, &secrets).map_err(tls_failure)
    }

    /// Seal a request into `out`, updating the sending key first when it has sealed as many
    /// records as it safely may.
    fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let records = data.len().div_ceil(record::MAX_FRAGMENT).max(1) as u64;
        if self.records.tx_seq() + records >= self.tx_limit {
            if self.records.version() == Version::Tls12 {
                return Err(io::Error::other(
                    "TLS 1.2 traffic key exhausted (the cipher suite's confidentiality limit)",
                ));
            }
            self.update_tx(out)
                .map_err(|_| io::Error::other("TLS 1.3 key update failed"))?;
        }
        self.records.seal(ContentType::ApplicationData, data, out);
        Ok(())
    }
}

impl Transport for Tls {
    type Ctx = TlsCtx;

    fn start(ctx: &TlsCtx) -> Result<Tls, Failure> {
        let conn = UnbufferedClientConnection::new(ctx.config.clone(), ctx.name.clone())
            .map_err(tls_failure)?;
        let mut t = Tls {
            phase: Phase::Handshake(Box::new(conn)),
            out: Vec::new(),
            out_at: 0,
            carry: Vec::new(),
            early: Vec::new(),
            negotiated: Negotiated::default(),
        };
        // The ClientHello, for the core's first flush.
        if let Phase::Handshake(conn) = &mut t.phase {
            drive_handshake(conn, &mut t.carry, &mut t.out, &mut t.early).map_err(tls_failure)?;
        }
        Ok(t)
    }

    #[inline]
    fn is_handshaking(&self) -> bool {
        matches!(self.phase, Phase::Handshake(_))
    }

    fn resumed(&self) -> Option<bool> {
        Some(self.negotiated.resumed)
    }

    fn describe(&self, facts: &mut TlsFacts) {
        let n = &self.negotiated;
        facts.version = n.version.map(|v| format!("{v:?}"));
        facts.cipher_suite = n.suite.map(|s| format!("{s:?}"));
        facts.kx_group = n.group.map(|g| format!("{g:?}"));
        facts.alpn = n
            .alpn
            .as_deref()
            .map(|p| String::from_utf8_lossy(p).into_owned());
    }

    #[inline]
    fn send(&mut self, sock: &mut TcpStream, data: &[u8]) -> io::Result<u64> {
        let Phase::Traffic(t) = &mut self.phase else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
        }
        t.seal(data, &mut self.out)?;
        self.flush(sock).map(|(_, n)| n)
    }

    #[inline]
    fn flush(&mut self, sock: &mut TcpStream) -> io::Result<(bool, u64)> {
        let mut sent = 0;
        while self.out_at < self.out.len() {
            match raw::send(sock.as_raw_fd(), &self.out[self.out_at..]) {
                Ok(n) => {
                    sent += n as u64;
                    self.out_at += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, sent)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_at = 0;
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
        F: FnMut(&mut RecvBuf, Instant) -> Result<bool, Failure>,
    {
        let scratch = &mut ctx.scratch[..];
        let mut out = Recv::default();
        loop {
            // After the handshake, a record's first part waits in `carry`: the read goes after
            // it, so every record is opened whole, in place.
            let kept = if self.is_handshaking() {
                0
            } else {
                let k = self.carry.len();
                scratch[..k].copy_from_slice(&self.carry);
                k
            };
            let want = scratch.len() - kept;
            let n = match raw::recv(sock.as_raw_fd(), &mut scratch[kept..]) {
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
            out.last_read = Some(now);
            out.bytes += n as u64;
            if let Phase::Handshake(conn) = &mut self.phase {
                self.carry.extend_from_slice(&scratch[..n]);
                let step = drive_handshake(conn, &mut self.carry, &mut self.out, &mut self.early);
                match step {
                    Ok(HsStep::Blocked) => {}
                    Ok(HsStep::PeerClosed) => out.eof = true,
                    Ok(HsStep::Done) => {
                        out.handshake_done = Some(Instant::now());
                        if let Err(e) = self.enter_traffic() {
                            return Err(tls_failure(e));
                        }
                    }
                    Err(e) => {
                        // Tell the server why (the alert rustls queued), then give up.
                        self.send_alert(sock);
                        return Err(tls_failure(e));
                    }
                }
                if !self.early.is_empty() {
                    let early = std::mem::take(&mut self.early);
                    if !deliver(&early, rb, now, &mut on_data)? {
                        out.done = true;
                    }
                }
                if !self.is_handshaking() && !self.carry.is_empty() {
                    // Records that followed the server's last flight in the same read.
                    let mut rest = std::mem::take(&mut self.carry);
                    let used = self.open_records(&mut rest, rb, now, &mut out, &mut on_data)?;
                    rest.drain(..used);
                    self.carry = rest;
                }
            } else {
                self.carry.clear();
                let end = kept + n;
                let used =
                    self.open_records(&mut scratch[..end], rb, now, &mut out, &mut on_data)?;
                if !out.eof {
                    self.carry.extend_from_slice(&scratch[used..end]);
                }
            }
            if out.eof || (n < want && (!to_eof || out.done)) {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The record layer against rustls itself: a buffered rustls `ServerConnection` in memory is
    //! the oracle that opens what the client seals and seals what the client opens, for every
    //! suite of both versions, with the input whole, byte by byte, and followed by the start of
    //! the next record.
    use super::*;
    use rustls::crypto::ring::cipher_suite as cs;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection, SupportedProtocolVersion};
    use std::io::{Read, Write};

    struct Pair {
        traffic: Traffic,
        server: ServerConnection,
        /// Records from the server the client has not opened yet (tickets, at first).
        s2c: Vec<u8>,
    }

    fn server_config(
        suite: SupportedCipherSuite,
        version: &'static SupportedProtocolVersion,
    ) -> Arc<ServerConfig> {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = CryptoProvider {
            cipher_suites: vec![suite],
            ..rustls::crypto::ring::default_provider()
        };
        let cfg = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.cert.der().to_vec())], key)
            .unwrap();
        Arc::new(cfg)
    }

    /// Feed `bytes` to the server; returns the plaintext it opened from them.
    fn to_server(server: &mut ServerConnection, mut bytes: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        while !bytes.is_empty() {
            server.read_tls(&mut bytes).unwrap();
            server.process_new_packets().unwrap();
            match server.reader().read_to_end(&mut plain) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("the server's reader: {other:?}"),
            }
        }
        plain
    }

    fn from_server(server: &mut ServerConnection, into: &mut Vec<u8>) {
        while server.wants_write() {
            server.write_tls(into).unwrap();
        }
    }

    /// A handshake in memory through the transport's own `drive_handshake`, then the hand-over.
    fn pair(suite: SupportedCipherSuite, version: &'static SupportedProtocolVersion) -> Pair {
        let plan = crate::plan::TlsPlan {
            insecure: true,
            ..Default::default()
        };
        let config = crate::tls::client_config(&plan).unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut server = ServerConnection::new(server_config(suite, version)).unwrap();
        let mut client = UnbufferedClientConnection::new(config, name).unwrap();
        let (mut c_in, mut c_out, mut early) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..20 {
            let step = drive_handshake(&mut client, &mut c_in, &mut c_out, &mut early).unwrap();
            to_server(&mut server, &c_out);
            c_out.clear();
            if matches!(step, HsStep::Done) {
                break;
            }
            from_server(&mut server, &mut c_in);
        }
        assert!(!client.is_handshaking(), "handshake completed");
        assert!(early.is_empty());
        let (secrets, kernel) = client.dangerous_into_kernel_connection().unwrap();
        let v = match kernel.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            _ => Version::Tls12,
        };
        let records = Records::new(
            v,
            (secrets.tx.0, &secrets.tx.1),
            (secrets.rx.0, &secrets.rx.1),
        )
        .unwrap();
        // Whatever the server sent after its Finished (TLS 1.3 tickets) is still to be opened.
        let mut s2c = c_in;
        from_server(&mut server, &mut s2c);
        Pair {
            traffic: Traffic {
                records,
                kernel,
                hs: Vec::new(),
                tx_limit: u64::MAX,
            },
            server,
            s2c,
        }
    }

    fn suites() -> Vec<(SupportedCipherSuite, &'static SupportedProtocolVersion)> {
        use rustls::version::{TLS12, TLS13};
        vec![
            (cs::TLS13_AES_128_GCM_SHA256, &TLS13),
            (cs::TLS13_AES_256_GCM_SHA384, &TLS13),
            (cs::TLS13_CHACHA20_POLY1305_SHA256, &TLS13),
            (cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, &TLS12),
            (cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, &TLS12),
            (cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, &TLS12),
        ]
    }

    /// Open every complete record at the front of `buf` the way `Tls::open_records` does:
    /// application data is collected, handshake messages go to the `Traffic`, alerts are
    /// returned. Returns the bytes consumed.
    fn open_front(
        t: &mut Traffic,
        buf: &mut [u8],
        plain: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<usize, Failure> {
        let mut at = 0;
        while let Some(len) = record_len(&buf[at..]).map_err(tls_failure)? {
            let rec = &mut buf[at..at + len];
            at += len;
            let (typ, range) = t.records.open(rec).map_err(tls_failure)?;
            match typ {
                ContentType::ApplicationData => plain.extend_from_slice(&rec[range]),
                ContentType::Handshake => t.on_handshake(&rec[range], out)?,
                ContentType::Alert => {
                    if t.on_alert(&rec[range])? {
                        plain.extend_from_slice(b"<close_notify>");
                    }
                }
                other => panic!("unexpected record type {other:?}"),
            }
        }
        Ok(at)
    }

    #[test]
    fn records_sealed_in_place_are_what_rustls_opens_for_every_suite() {
        for (suite, version) in suites() {
            let mut p = pair(suite, version);
            // One small request, and one that takes three records.
            let big: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
            for data in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &big[..]] {
                let mut wire = Vec::new();
                p.traffic
                    .records
                    .seal(ContentType::ApplicationData, data, &mut wire);
                let got = to_server(&mut p.server, &wire);
                assert!(got == data, "{suite:?}: rustls opened other bytes");
            }
        }
    }

    #[test]
    fn records_rustls_sealed_open_in_place_whole_byte_by_byte_and_with_trailing_bytes() {
        for (suite, version) in suites() {
            let mut p = pair(suite, version);
            let body: Vec<u8> = (0..20_000u32).map(|i| (i % 241) as u8).collect();
            p.server.writer().write_all(&body).unwrap();
            let mut wire = std::mem::take(&mut p.s2c);
            from_server(&mut p.server, &mut wire);
            // The first record of a second response, which must stay unconsumed.
            p.server.writer().write_all(b"next").unwrap();
            let mut next = Vec::new();
            from_server(&mut p.server, &mut next);
            let cut = next.len() / 2;

            // Whole, with trailing bytes: split copies, since opening is in place.
            let mut whole = pair(suite, version);
            whole.server.writer().write_all(&body).unwrap();
            let mut w = std::mem::take(&mut whole.s2c);
            from_server(&mut whole.server, &mut w);
            let full = w.len();
            w.extend_from_slice(&next[..cut]);
            let (mut plain, mut hs_out) = (Vec::new(), Vec::new());
            let used = open_front(&mut whole.traffic, &mut w, &mut plain, &mut hs_out).unwrap();
            assert_eq!(used, full, "{suite:?}: the partial record is left alone");
            assert!(
                plain == body,
                "{suite:?}: whole input opened to other bytes"
            );

            // Byte by byte: nothing is opened before a record is complete.
            let (mut pending, mut plain) = (Vec::new(), Vec::new());
            for &b in &wire {
                pending.push(b);
                let used =
                    open_front(&mut p.traffic, &mut pending, &mut plain, &mut hs_out).unwrap();
                pending.drain(..used);
            }
            assert!(pending.is_empty());
            assert!(
                plain == body,
                "{suite:?}: byte by byte opened to other bytes"
            );
            assert!(hs_out.is_empty(), "nothing to answer");
        }
    }

    #[test]
    fn a_tampered_record_fails_as_rustls_would_classify_it_and_close_notify_is_the_end() {
        let mut p = pair(cs::TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13);
        p.server.writer().write_all(b"response").unwrap();
        let mut wire = std::mem::take(&mut p.s2c);
        from_server(&mut p.server, &mut wire);
        let mut bad = wire.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (mut plain, mut hs_out) = (Vec::new(), Vec::new());
        match open_front(&mut p.traffic, &mut bad, &mut plain, &mut hs_out) {
            Err(Failure::Tls(class)) => assert_eq!(class, ErrorClass::TlsHandshake),
            other => panic!("a bad tag must fail: {other:?}"),
        }
        let mut p = pair(cs::TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13);
        p.server.send_close_notify();
        let mut wire = std::mem::take(&mut p.s2c);
        from_server(&mut p.server, &mut wire);
        let mut plain = Vec::new();
        open_front(&mut p.traffic, &mut wire, &mut plain, &mut hs_out).unwrap();
        assert_eq!(plain, b"<close_notify>");
    }

    #[test]
    fn a_key_update_the_server_requests_rekeys_both_directions() {
        let mut p = pair(cs::TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13);
        let mut wire = std::mem::take(&mut p.s2c);
        let (mut plain, mut answer) = (Vec::new(), Vec::new());
        let used = open_front(&mut p.traffic, &mut wire, &mut plain, &mut answer).unwrap();
        assert_eq!(used, wire.len());
        // The server updates its key and asks for ours; then it sends under the new key.
        p.server.refresh_traffic_keys().unwrap();
        p.server.writer().write_all(b"after").unwrap();
        let mut wire = Vec::new();
        from_server(&mut p.server, &mut wire);
        open_front(&mut p.traffic, &mut wire, &mut plain, &mut answer).unwrap();
        assert_eq!(plain, b"after", "opened under the server's new key");
        assert!(
            !answer.is_empty(),
            "the client answers with its own KeyUpdate"
        );
        // Our answer, then a request under our new key: rustls opens both.
        p.traffic
            .records
            .seal(ContentType::ApplicationData, b"request", &mut answer);
        assert_eq!(to_server(&mut p.server, &answer), b"request");
    }

    #[test]
    fn garbage_records_are_refused_without_a_panic_for_every_suite() {
        use rand::rngs::StdRng;
        use rand::{RngExt, SeedableRng};
        let mut rng = StdRng::seed_from_u64(11);
        for (suite, version) in suites() {
            let mut p = pair(suite, version);
            let mut hs_out = Vec::new();
            for _ in 0..500 {
                let len = rng.random_range(0..600usize);
                let mut rec = vec![0u8; record::HEADER + len];
                for b in rec.iter_mut() {
                    *b = rng.random();
                }
                rec[0] = [20u8, 21, 22, 23][rng.random_range(0..4usize)];
                rec[3..5].copy_from_slice(&(len as u16).to_be_bytes());
                let mut plain = Vec::new();
                let r = open_front(&mut p.traffic, &mut rec, &mut plain, &mut hs_out);
                assert!(
                    matches!(r, Err(Failure::Tls(_))),
                    "{suite:?}: random bytes were accepted: {r:?}"
                );
                assert!(plain.is_empty());
            }
        }
    }

    /// A loopback connection whose server sent `data` and its FIN, with both already in the
    /// client's receive queue (the event announcing the close has been seen).
    fn queued_with_fin(data: &[u8]) -> (TcpStream, mio::Poll) {
        use mio::{Events, Interest, Token};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let mut sock = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        server.write_all(data).expect("server writes");
        server
            .shutdown(std::net::Shutdown::Write)
            .expect("server FIN");
        let mut poll = mio::Poll::new().expect("poll");
        poll.registry()
            .register(&mut sock, Token(0), Interest::READABLE)
            .expect("register");
        let mut events = Events::with_capacity(4);
        let limit = Instant::now() + std::time::Duration::from_secs(30);
        while !events.iter().any(|e| e.is_read_closed()) {
            assert!(Instant::now() < limit, "the FIN never arrived");
            poll.poll(&mut events, Some(std::time::Duration::from_millis(100)))
                .expect("poll");
        }
        (sock, poll)
    }

    #[test]
    fn a_read_the_session_is_done_with_stops_before_the_announced_fin() {
        let data = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
        // The session wants more: the read goes on to the FIN in the same call (rule 2).
        let (mut sock, _poll) = queued_with_fin(data);
        let mut rb = RecvBuf::new();
        let mut seen = 0;
        let out = Plain::default()
            .recv(&mut (), &mut sock, &mut rb, true, |rb, _| {
                seen = rb.pending().len();
                Ok(true)
            })
            .expect("read");
        assert_eq!(
            (out.bytes, out.eof, out.done),
            (data.len() as u64, true, false)
        );
        assert_eq!(seen, data.len());

        // The session has all it wants: the read stops at the short read, FIN unread.
        let (mut sock, _poll) = queued_with_fin(data);
        let mut rb = RecvBuf::new();
        let out = Plain::default()
            .recv(&mut (), &mut sock, &mut rb, true, |_, _| Ok(false))
            .expect("read");
        assert_eq!(
            (out.bytes, out.eof, out.done),
            (data.len() as u64, false, true)
        );
        assert_eq!(rb.pending(), data);
        // The FIN is still there for whoever reads next.
        let out = Plain::default()
            .recv(&mut (), &mut sock, &mut rb, true, |_, _| Ok(true))
            .expect("read");
        assert_eq!((out.bytes, out.eof, out.done), (0, true, false));

        // Without the announced close, a session that wants more stops at the short read too.
        let (mut sock, _poll) = queued_with_fin(data);
        let out = Plain::default()
            .recv(&mut (), &mut sock, &mut RecvBuf::new(), false, |_, _| {
                Ok(true)
            })
            .expect("read");
        assert_eq!((out.eof, out.done), (false, false));
    }

    #[test]
    fn a_tls_read_the_session_is_done_with_stops_before_the_announced_fin() {
        let data = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
        let plan = crate::plan::TlsPlan {
            insecure: true,
            ..Default::default()
        };
        let name = ServerName::try_from("localhost").unwrap();
        let mut ctx = TlsCtx::new(crate::tls::client_config(&plan).unwrap(), name);
        // The server's tickets, then the response in a record, then (TCP) its FIN.
        let connection = || {
            let mut p = pair(cs::TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13);
            p.server.writer().write_all(data).unwrap();
            from_server(&mut p.server, &mut p.s2c);
            let tls = Tls {
                phase: Phase::Traffic(Box::new(p.traffic)),
                out: Vec::new(),
                out_at: 0,
                carry: Vec::new(),
                early: Vec::new(),
                negotiated: Negotiated::default(),
            };
            let (sock, poll) = queued_with_fin(&p.s2c);
            (tls, sock, poll)
        };
        for wants_more in [true, false] {
            let (mut tls, mut sock, _poll) = connection();
            let mut rb = RecvBuf::new();
            let out = tls
                .recv(&mut ctx, &mut sock, &mut rb, true, |_, _| Ok(wants_more))
                .expect("read");
            assert_eq!(rb.pending(), data);
            // Wanting more, the read goes on to the FIN; done, it stops with the FIN unread.
            assert_eq!((out.eof, out.done), (wants_more, !wants_more));
            if !wants_more {
                let out = tls
                    .recv(&mut ctx, &mut sock, &mut rb, true, |_, _| Ok(true))
                    .expect("read");
                assert_eq!((out.bytes, out.eof), (0, true), "the FIN is still there");
            }
        }
    }
}
