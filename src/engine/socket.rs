//! Client sockets: non-blocking connect with the options a benchmark needs, made with socket2
//! because mio's `TcpStream::connect` cannot set options before `connect()`.
//!
//! Rules (mio `TcpStream` docs, libs.md §3):
//! 1. `connect()` on a non-blocking socket returns EINPROGRESS; completion is confirmed on the
//!    first writable event by `take_error()` being clean and `peer_addr()` succeeding.
//! 2. TCP_NODELAY is set before connect: a request must never wait for Nagle.
//! 3. Errors from `socket()` itself (EMFILE/ENFILE) are local limits and are classified as such
//!    by the caller.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

/// Start a non-blocking TCP connect to `addr`. The socket is usually still connecting when this
/// returns; the caller registers it and confirms completion with [`is_connected`].
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_tcp_nodelay(true)?;
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
