//! The one narrow interface between the event loop and the bytes on a socket: plain TCP or TLS.
//!
//! The worker is generic over [`Transport`], so TLS is chosen once, at compile time of the
//! worker instance, and the loop never branches on it (wrk `net.h`'s `struct sock`, made static).
//!
//! Rules for both implementations (libs.md §2–§3):
//! 1. The socket is registered once, edge-triggered. `recv` reads until the socket is drained:
//!    `WouldBlock`, or a *short read*, which on a stream socket means the receive queue was empty
//!    at that instant (epoll(7)); data arriving later raises a new edge. The short-read rule saves
//!    one `read()` returning EAGAIN per response. It does not hold when the event also said the
//!    peer closed or failed (`closed`: mio's `is_read_closed()` / `is_error()`, i.e. RDHUP, HUP
//!    or ERR): the FIN or RST is already queued behind the data and no new edge will announce
//!    it, so `recv` reads on until EOF, the error, or `WouldBlock`, and the close is classified
//!    in this call instead of after a timeout.
//! 2. Every plaintext chunk is handed to the framer (`on_data`) as soon as it is in the buffer,
//!    with the timestamp taken right after the `read()` that delivered it, so TTFB is the first
//!    *plaintext* byte (TLS 1.3 session tickets carry none).
//! 3. TLS is pumped by hand: one socket read into a per-worker scratch buffer, fed to rustls in
//!    slices (never an empty slice: that means EOF), decrypted plaintext drained after every
//!    `process_new_packets` so rustls' 16 KiB plaintext limit is never hit.
//! 4. Writes go straight to the socket; only what the socket refuses is kept for the next
//!    writable edge (plain) or left in rustls' queue (TLS).

use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustls::client::ClientConnection;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};

use super::buf::RecvBuf;
use crate::metrics::{ErrorClass, TlsFacts};
use crate::proto::http1::ProtoError;
use crate::proto::ws::WsError;

/// How a `recv` call ended without failing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Recv {
    /// The peer closed its side (TCP FIN or TLS close_notify).
    pub eof: bool,
    /// The TLS handshake completed during this call, at this instant.
    pub handshake_done: Option<Instant>,
}

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
                super::buf::MAX_CAPACITY / 1024
            ),
            Refusal::Unsolicited => write!(f, "server sent bytes while no request was outstanding"),
        }
    }
}

/// Plain TCP or TLS, as seen by the worker.
pub trait Transport: Sized {
    /// What every connection of a worker needs to start (TLS: config and server name).
    type Ctx;

    /// Start on a freshly established TCP connection.
    fn start(ctx: &Self::Ctx) -> Result<Self, Failure>;

    /// True while a handshake is in progress (never for plain TCP).
    fn is_handshaking(&self) -> bool;

    /// After a handshake: whether it resumed a session. `None` for plain TCP.
    fn resumed(&self) -> Option<bool>;

    /// Fill `facts` from the negotiated session (called once per worker).
    fn describe(&self, facts: &mut TlsFacts);

    /// Send `data` (rule 4). `pending` holds plain bytes the socket refused earlier.
    fn send(
        &mut self,
        sock: &mut TcpStream,
        data: &[u8],
        pending: &mut Vec<u8>,
        bytes_out: &mut u64,
    ) -> io::Result<()>;

    /// Write queued output. `Ok(true)` when nothing is left queued.
    fn flush(
        &mut self,
        sock: &mut TcpStream,
        pending: &mut Vec<u8>,
        bytes_out: &mut u64,
    ) -> io::Result<bool>;

    /// Read until drained (rules 1–3), handing plaintext to `on_data` as it arrives. `closed`:
    /// the readiness event said the peer closed or the socket failed, so a short read does not
    /// end the call (rule 1).
    fn recv<F>(
        &mut self,
        sock: &mut TcpStream,
        scratch: &mut [u8],
        rb: &mut RecvBuf,
        bytes_in: &mut u64,
        closed: bool,
        on_data: F,
    ) -> Result<Recv, Failure>
    where
        F: FnMut(&mut RecvBuf, Instant) -> Result<(), Failure>;
}

/// Count a completed handshake as full or resumed, and note what it negotiated the first time.
/// Nothing for plain TCP.
pub fn record_handshake<T: Transport>(rec: &mut crate::metrics::Recorder, t: &T) {
    match t.resumed() {
        Some(true) => rec.counters.handshakes_resumed += 1,
        Some(false) => rec.counters.handshakes_full += 1,
        None => return,
    }
    if !rec.tls.is_known() {
        t.describe(&mut rec.tls);
    }
}

/// Plain TCP: no state beyond the socket.
#[derive(Debug)]
pub struct Plain;

impl Transport for Plain {
    type Ctx = ();

    fn start(_: &()) -> Result<Plain, Failure> {
        Ok(Plain)
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
    fn send(
        &mut self,
        sock: &mut TcpStream,
        data: &[u8],
        pending: &mut Vec<u8>,
        bytes_out: &mut u64,
    ) -> io::Result<()> {
        if !pending.is_empty() {
            pending.extend_from_slice(data);
            return self.flush(sock, pending, bytes_out).map(|_| ());
        }
        loop {
            return match sock.write(data) {
                Ok(n) => {
                    *bytes_out += n as u64;
                    if n < data.len() {
                        pending.extend_from_slice(&data[n..]);
                    }
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    pending.extend_from_slice(data);
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    #[inline]
    fn flush(
        &mut self,
        sock: &mut TcpStream,
        pending: &mut Vec<u8>,
        bytes_out: &mut u64,
    ) -> io::Result<bool> {
        while !pending.is_empty() {
            match sock.write(pending) {
                Ok(n) => {
                    *bytes_out += n as u64;
                    pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    #[inline]
    fn recv<F>(
        &mut self,
        sock: &mut TcpStream,
        _scratch: &mut [u8],
        rb: &mut RecvBuf,
        bytes_in: &mut u64,
        closed: bool,
        mut on_data: F,
    ) -> Result<Recv, Failure>
    where
        F: FnMut(&mut RecvBuf, Instant) -> Result<(), Failure>,
    {
        loop {
            let spare = rb.spare();
            let want = spare.len();
            if want == 0 {
                return Err(Failure::Protocol(Refusal::BufferFull));
            }
            match sock.read(spare) {
                Ok(0) => {
                    return Ok(Recv {
                        eof: true,
                        handshake_done: None,
                    })
                }
                Ok(n) => {
                    let now = Instant::now();
                    rb.filled(n);
                    *bytes_in += n as u64;
                    on_data(rb, now)?;
                    if n < want && !closed {
                        return Ok(Recv::default());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Recv::default()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Failure::Io(e)),
            }
        }
    }
}

/// What a TLS connection needs: the worker's config (its own session store) and the name.
#[derive(Clone, Debug)]
pub struct TlsCtx {
    /// The worker's client config.
    pub config: Arc<ClientConfig>,
    /// SNI / verified name.
    pub name: ServerName<'static>,
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
    fn send(
        &mut self,
        sock: &mut TcpStream,
        data: &[u8],
        pending: &mut Vec<u8>,
        bytes_out: &mut u64,
    ) -> io::Result<()> {
        self.conn.writer().write_all(data)?;
        self.flush(sock, pending, bytes_out).map(|_| ())
    }

    #[inline]
    fn flush(
        &mut self,
        sock: &mut TcpStream,
        _pending: &mut Vec<u8>,
        bytes_out: &mut u64,
    ) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(sock) {
                Ok(n) => *bytes_out += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    fn recv<F>(
        &mut self,
        sock: &mut TcpStream,
        scratch: &mut [u8],
        rb: &mut RecvBuf,
        bytes_in: &mut u64,
        closed: bool,
        mut on_data: F,
    ) -> Result<Recv, Failure>
    where
        F: FnMut(&mut RecvBuf, Instant) -> Result<(), Failure>,
    {
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
            *bytes_in += n as u64;
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
            if out.eof || (n < scratch.len() && !closed) {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// A connected non-blocking client socket whose peer has already sent `bytes` and then
    /// ended the connection (FIN, or RST with `reset`): both are queued on the client before
    /// it reads, as when one readiness event carries them.
    fn bytes_then_close(bytes: &[u8], reset: bool) -> TcpStream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        server.write_all(bytes).expect("write");
        if reset {
            socket2::SockRef::from(&server)
                .set_linger(Some(Duration::ZERO))
                .expect("linger 0");
        } else {
            server.shutdown(std::net::Shutdown::Write).expect("FIN");
        }
        drop(server);
        let mut pfd = libc::pollfd {
            fd: client.as_raw_fd(),
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, alive for the whole call.
        let ready = unsafe { libc::poll(&mut pfd, 1, 5000) };
        assert_eq!(ready, 1, "the close did not arrive within 5 s");
        client.set_nonblocking(true).expect("nonblocking");
        TcpStream::from_std(client)
    }

    /// Runs `Plain::recv` once; returns its result and every byte handed to `on_data`.
    fn recv_once(sock: &mut TcpStream, closed: bool) -> (Result<Recv, Failure>, Vec<u8>) {
        let mut rb = RecvBuf::new();
        let mut got = Vec::new();
        let mut bytes_in = 0;
        let res = Plain.recv(sock, &mut [], &mut rb, &mut bytes_in, closed, |rb, _| {
            got.extend_from_slice(rb.pending());
            let n = rb.pending().len();
            rb.consume(n);
            Ok(())
        });
        assert_eq!(bytes_in, got.len() as u64);
        (res, got)
    }

    #[test]
    fn a_short_read_ends_recv_unless_the_event_said_closed() {
        // Without the hint, the short read stops the call (one read per response saved)...
        let mut sock = bytes_then_close(b"HTTP/1.1 200 OK\r\n\r\nbody", false);
        let (res, got) = recv_once(&mut sock, false);
        assert!(!res.expect("ok").eof, "the short read ended the call");
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nbody");
        // ...with it, the FIN behind the bytes is read in the same call.
        let mut sock = bytes_then_close(b"HTTP/1.1 200 OK\r\n\r\nbody", false);
        let (res, got) = recv_once(&mut sock, true);
        assert!(res.expect("ok").eof, "the FIN is seen at once");
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\nbody");
    }

    #[test]
    fn a_reset_behind_the_last_bytes_is_seen_when_the_event_said_closed() {
        let mut sock = bytes_then_close(b"partial", true);
        let (res, got) = recv_once(&mut sock, true);
        assert_eq!(got, b"partial", "the bytes before the reset are delivered");
        match res {
            Err(Failure::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET)),
            other => panic!("expected the reset, got {other:?}"),
        }
    }
}
