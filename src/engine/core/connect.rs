//! Making connections: which address a slot connects to (the one fall-back policy), from which
//! source address, and the pacing that keeps a connect storm from starving the event loop.
//!
//! The fall-back policy (one, for every command):
//! 1. A slot starts on the first resolved address, in resolver order.
//! 2. A connect that is refused or times out moves that slot to the next address (round
//!    robin) for its next attempt: `localhost` works whichever
//!    of 127.0.0.1 and ::1 the server listens on, and a dead address of a round-robin name is
//!    left behind. Any other failure (a reset by an accepting server, a local limit) says
//!    nothing about the address, and the slot stays.
//! 3. A slot that works stays on its address.
//!
//! The probe applies the policy only until a first connection was established (after that a
//! refusal is the limit it is looking for, not a dead address); that choice is the probe's.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::net::TcpStream;

use crate::engine::socket::{self, ConnectPacer};
use crate::metrics::ErrorClass;

/// Addresses, sources and pacing of one worker's connects.
#[derive(Debug)]
pub struct Connector {
    addrs: Vec<SocketAddr>,
    sources: Vec<IpAddr>,
    first_conn: usize,
    pacer: ConnectPacer,
}

impl Connector {
    /// `addrs`: the resolved target (at least one); `sources`: `--source` addresses, used
    /// round-robin by global connection index (`first_conn` + slot).
    pub fn new(addrs: Vec<SocketAddr>, sources: Vec<IpAddr>, first_conn: usize) -> Connector {
        assert!(
            !addrs.is_empty(),
            "a target resolves to at least one address"
        );
        Connector {
            addrs,
            sources,
            first_conn,
            pacer: ConnectPacer::new(Instant::now()),
        }
    }

    /// Without connect pacing ([`ConnectPacer::unpaced`]): for the sessions' unit tests.
    #[cfg(test)]
    pub fn unpaced(mut self) -> Connector {
        self.pacer = ConnectPacer::unpaced(Instant::now());
        self
    }

    /// The resolved addresses.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// May a connect start at `now`? `None`: yes; `Some(at)`: defer it until `at`.
    pub fn admit(&mut self, now: Instant) -> Option<Instant> {
        self.pacer.admit(now)
    }

    /// Start a non-blocking connect of `slot` to address `addr_idx`.
    pub fn connect(&mut self, slot: usize, addr_idx: usize) -> io::Result<TcpStream> {
        let addr = self.addrs[addr_idx % self.addrs.len()];
        let source = socket::source_for(&self.sources, self.first_conn + slot);
        self.pacer.started(Instant::now());
        let res = socket::connect_from(addr, source);
        self.pacer.done(Instant::now());
        res
    }

    /// The address a slot tries next after a connect that failed with `class` (rule 2).
    pub fn fall_back(&self, addr_idx: usize, class: ErrorClass) -> usize {
        if moves_on(class) {
            (addr_idx + 1) % self.addrs.len()
        } else {
            addr_idx
        }
    }
}

/// Rule 2: the failures that say something about the address.
pub fn moves_on(class: ErrorClass) -> bool {
    matches!(
        class,
        ErrorClass::ConnectRefused | ErrorClass::ConnectTimeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(n: usize) -> Connector {
        let addrs = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)))
            .collect();
        Connector::new(addrs, Vec::new(), 0)
    }

    #[test]
    fn refused_and_timed_out_move_on_round_robin() {
        let c = connector(3);
        for class in [ErrorClass::ConnectRefused, ErrorClass::ConnectTimeout] {
            assert_eq!(c.fall_back(0, class), 1);
            assert_eq!(c.fall_back(2, class), 0, "wraps around");
        }
    }

    #[test]
    fn other_failures_keep_the_address() {
        let c = connector(3);
        for class in [
            ErrorClass::ConnectReset,
            ErrorClass::AddrNotAvailable,
            ErrorClass::FdLimit,
            ErrorClass::Io,
            ErrorClass::TlsHandshake,
        ] {
            assert_eq!(c.fall_back(1, class), 1, "{class:?}");
        }
    }

    #[test]
    fn one_address_stays_one_address() {
        let c = connector(1);
        assert_eq!(c.fall_back(0, ErrorClass::ConnectRefused), 0);
    }

    #[test]
    fn a_refused_first_address_falls_back_to_the_listening_second() {
        // Address 0: a port nobody listens on (bound, then closed); address 1: a listener.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = Connector::new(vec![dead_addr, live.local_addr().unwrap()], Vec::new(), 0);
        let sock = c.connect(0, 0).unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let mut sock = sock;
        poll.registry()
            .register(&mut sock, mio::Token(0), mio::Interest::WRITABLE)
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        let err = loop {
            poll.poll(&mut events, Some(std::time::Duration::from_secs(30)))
                .unwrap();
            match socket::is_connected(&sock) {
                Ok(false) => continue,
                Ok(true) => panic!("connected to a closed port"),
                Err(e) => break e,
            }
        };
        let class = ErrorClass::from_connect_error(&err);
        assert_eq!(class, ErrorClass::ConnectRefused);
        let next = c.fall_back(0, class);
        assert_eq!(next, 1);
        assert!(c.connect(0, next).is_ok());
        assert!(live.accept().is_ok());
    }
}
