//! Listening sockets for the target, built with socket2 because std and mio hard-code a listen
//! backlog of 128, which drops SYNs in connection storms and shows up as 1 s / 3 s connect
//! outliers in the client's histograms (libs.md §3).
//!
//! One group per port: one non-blocking listener per event-loop thread. With more than one
//! thread every listener sets SO_REUSEPORT so the kernel spreads accepted connections; the first
//! binds the requested port (possibly 0) and the rest bind the port it got. This module only
//! creates sockets; it never accepts.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use super::ServeError;

/// Listen backlog; `somaxconn` (4096 on the reference machine) caps it anyway.
const BACKLOG: i32 = 4096;

/// The listeners for one port, one per thread, and the address they share.
pub(super) struct Group {
    pub(super) addr: SocketAddr,
    pub(super) listeners: Vec<mio::net::TcpListener>,
}

/// Binds `threads` listeners on `addr` (port 0 = ephemeral, shared by all of them).
pub(super) fn bind_group(addr: SocketAddr, threads: usize) -> Result<Group, ServeError> {
    let reuse_port = threads > 1;
    let first = bind_one(addr, reuse_port)?;
    let bound = first
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let mut listeners = Vec::with_capacity(threads);
    listeners.push(first);
    for _ in 1..threads {
        listeners.push(bind_one(bound, true)?);
    }
    Ok(Group {
        addr: bound,
        listeners,
    })
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> Result<mio::net::TcpListener, ServeError> {
    let err = |source| ServeError::Bind { addr, source };
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(err)?;
    // SO_REUSEADDR lets `connbench serve` restart on a fixed port while old connections sit in
    // TIME_WAIT; it does not allow two live listeners (that is SO_REUSEPORT's job).
    sock.set_reuse_address(true).map_err(err)?;
    if reuse_port {
        sock.set_reuse_port(true).map_err(err)?;
    }
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(BACKLOG).map_err(err)?;
    Ok(mio::net::TcpListener::from_std(sock.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn group_shares_one_ephemeral_port() {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let g = bind_group(addr, 3).expect("bind");
        assert_ne!(g.addr.port(), 0);
        assert_eq!(g.listeners.len(), 3);
        for l in &g.listeners {
            assert_eq!(l.local_addr().expect("local addr"), g.addr);
        }
    }

    #[test]
    fn port_in_use_is_a_bind_error() {
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let g = bind_group(addr, 1).expect("bind");
        // Without SO_REUSEPORT on the first listener, a second bind must fail.
        match bind_group(g.addr, 1) {
            Err(ServeError::Bind { addr, .. }) => assert_eq!(addr, g.addr),
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("second bind on a used port succeeded"),
        }
    }
}
