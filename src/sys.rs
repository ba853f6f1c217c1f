//! Thin wrappers over the few OS facilities connbench needs outside mio: the file-descriptor
//! limit, per-thread CPU time, peak RSS, Ctrl-C, whether stderr is a terminal, and the TIME_WAIT
//! sockets towards a target (NETLINK_SOCK_DIAG, else `/proc/net/tcp`, `/proc/net/tcp6`).
//!
//! Rules:
//! 1. Nothing here is called on the hot path (per request); workers read their CPU time once,
//!    at the end.
//! 2. The SIGINT handler only stores to an atomic (async-signal-safe); the coordinator polls it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Install a SIGINT (and SIGTERM) handler that makes [`interrupted`] return true. A second
/// Ctrl-C still ends the run the same way: the report of what was measured is always written.
pub fn install_interrupt_handler() {
    // SAFETY: the handler only performs an atomic store, which is async-signal-safe; the
    // sigaction struct is fully initialised before use.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigint as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut());
    }
}

/// True once Ctrl-C (SIGINT) or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

/// User and system CPU time of the calling thread.
pub fn thread_cpu_time() -> (Duration, Duration) {
    rusage(libc::RUSAGE_THREAD)
}

/// User and system CPU time of the whole process.
pub fn process_cpu_time() -> (Duration, Duration) {
    rusage(libc::RUSAGE_SELF)
}

fn rusage(who: libc::c_int) -> (Duration, Duration) {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(who, &mut ru) != 0 {
            return (Duration::ZERO, Duration::ZERO);
        }
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    (tv(ru.ru_utime), tv(ru.ru_stime))
}

/// Peak resident set size of the process, in bytes.
pub fn peak_rss_bytes() -> u64 {
    // SAFETY: as above.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0;
        }
        ru.ru_maxrss as u64 * 1024
    }
}

/// True when stderr is a terminal (the live progress line is drawn only then).
pub fn stderr_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(libc::STDERR_FILENO) == 1 }
}

/// The logical CPUs this process may run on, in OS numbering. Call before pinning any thread:
/// afterwards the calling thread's own mask would be reported (core_affinity_rs#3).
pub fn allowed_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Pin the calling thread to one CPU. Returns false when the OS refused.
pub fn pin_current_thread(cpu: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
}

/// The TCP state number of TIME_WAIT in `/proc/net/tcp` (`TCP_TIME_WAIT` in the kernel).
const TCP_TIME_WAIT: u8 = 6;

/// Sockets of this host (its network namespace) in TIME_WAIT whose remote end is one of
/// `remotes`: the local ports a client that closed first still holds towards a target, 60 s
/// each on Linux; every process's sockets count, not only this one's. Asked of the kernel's
/// socket diagnostics ([`diag::time_wait_towards`]: only TIME_WAIT sockets come back, as
/// binary records), else read from `/proc/net/tcp` and `/proc/net/tcp6`, which print every TCP
/// socket of the host as text: after a new-connection run with thousands of TIME_WAIT rows
/// that cost up to 125 µs of client CPU per connection of the run, counted twice per run.
pub fn time_wait_towards(remotes: &[SocketAddr]) -> std::io::Result<u64> {
    match diag::time_wait_towards(remotes) {
        Ok(n) => Ok(n),
        Err(_) => time_wait_from_proc(remotes),
    }
}

/// [`time_wait_towards`] from `/proc/net/tcp` and `/proc/net/tcp6` (a missing tcp6, IPv6
/// disabled, counts as none).
pub fn time_wait_from_proc(remotes: &[SocketAddr]) -> std::io::Result<u64> {
    let mut n = 0;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match std::fs::read_to_string(path) {
            Ok(table) => n += count_time_wait(&table, remotes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.ends_with('6') => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The rows of a `/proc/net/tcp` or `/proc/net/tcp6` table in state TIME_WAIT (`06`) whose
/// remote address is one of `remotes` (an IPv4-mapped IPv6 remote matches its IPv4 address).
/// Rows that do not parse are skipped.
pub fn count_time_wait(table: &str, remotes: &[SocketAddr]) -> u64 {
    let mut n = 0;
    for line in table.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(_sl), Some(_local), Some(remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if u8::from_str_radix(state, 16) != Ok(TCP_TIME_WAIT) {
            continue;
        }
        if let Some(addr) = parse_proc_addr(remote) {
            if remotes.iter().any(|r| same_endpoint(*r, addr)) {
                n += 1;
            }
        }
    }
    n
}

fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canon(a.ip()) == canon(b.ip())
}

/// `0100007F:1F90` (IPv4) or 32 hex digits `:PORT` (IPv6): the kernel prints each 32-bit word
/// of the address as the integer it holds in memory (network byte order read as a host u32),
/// so its bytes come back with `to_ne_bytes`; the port is plain hex.
fn parse_proc_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |hex: &str| u32::from_str_radix(hex, 16).ok().map(u32::to_ne_bytes);
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(ip)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_exact_mut(4).enumerate() {
                chunk.copy_from_slice(&word(ip.get(i * 8..i * 8 + 8)?)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The kernel's socket diagnostics (`NETLINK_SOCK_DIAG`, what `ss` uses): a dump of the TCP
/// sockets in one state, filtered by the kernel, as fixed binary records.
pub mod diag {
    use std::io;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::{same_endpoint, TCP_TIME_WAIT};

    // linux/netlink.h, linux/sock_diag.h, linux/inet_diag.h.
    const NETLINK_SOCK_DIAG: libc::c_int = 4;
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_DUMP: u16 = 0x300;
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    /// `struct nlmsghdr`: len u32, type u16, flags u16, seq u32, pid u32.
    const NLMSG_HDR: usize = 16;
    /// `struct inet_diag_req_v2`: family, protocol, ext, pad, states u32, `inet_diag_sockid`.
    const REQ_LEN: usize = 8 + SOCKID_LEN;
    /// `struct inet_diag_sockid`: sport, dport (big-endian u16), src[16], dst[16], if u32,
    /// cookie[2] u32.
    const SOCKID_LEN: usize = 48;
    /// `struct inet_diag_msg` up to the end of its sockid: family, state, timer, retrans, sockid.
    const MSG_MIN: usize = 4 + SOCKID_LEN;

    /// TIME_WAIT sockets towards any of `remotes`, IPv4 and IPv6 (an IPv6 dump the kernel
    /// refuses, IPv6 disabled, counts as none).
    pub fn time_wait_towards(remotes: &[SocketAddr]) -> io::Result<u64> {
        let mut n = dump_count(libc::AF_INET as u8, remotes)?;
        match dump_count(libc::AF_INET6 as u8, remotes) {
            Ok(m) => n += m,
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {}
            Err(e) => return Err(e),
        }
        Ok(n)
    }

    /// The dump request for the TCP sockets of `family` in TIME_WAIT.
    pub fn request(family: u8) -> [u8; NLMSG_HDR + REQ_LEN] {
        let mut m = [0u8; NLMSG_HDR + REQ_LEN];
        m[0..4].copy_from_slice(&((NLMSG_HDR + REQ_LEN) as u32).to_ne_bytes());
        m[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        m[8..12].copy_from_slice(&1u32.to_ne_bytes());
        m[NLMSG_HDR] = family;
        m[NLMSG_HDR + 1] = libc::IPPROTO_TCP as u8;
        m[NLMSG_HDR + 4..NLMSG_HDR + 8].copy_from_slice(&(1u32 << TCP_TIME_WAIT).to_ne_bytes());
        m
    }

    fn dump_count(family: u8, remotes: &[SocketAddr]) -> io::Result<u64> {
        // SAFETY: plain socket(2); the fd is owned (and closed) by `fd` from here on.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let req = request(family);
        // SAFETY: a zeroed sockaddr_nl with its family set addresses the kernel (pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `req` and `kernel` outlive the call; lengths are theirs.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut count = Count::default();
        loop {
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "sock_diag dump ended without NLMSG_DONE",
                ));
            }
            if count.feed(&buf[..n as usize], remotes)? {
                return Ok(count.n);
            }
        }
    }

    /// A dump read one datagram at a time.
    #[derive(Default, Debug)]
    pub struct Count {
        /// TIME_WAIT sockets towards the remotes so far.
        pub n: u64,
    }

    impl Count {
        /// Count the records of one datagram; true once the dump is done. A netlink error
        /// record is returned as the error it carries; a malformed datagram is InvalidData.
        pub fn feed(&mut self, mut dgram: &[u8], remotes: &[SocketAddr]) -> io::Result<bool> {
            let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
            while dgram.len() >= NLMSG_HDR {
                let len = u32::from_ne_bytes(dgram[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes(dgram[4..6].try_into().unwrap());
                if len < NLMSG_HDR || len > dgram.len() {
                    return Err(bad("sock_diag: a record's length runs past its datagram"));
                }
                let body = &dgram[NLMSG_HDR..len];
                match kind {
                    NLMSG_DONE => return Ok(true),
                    NLMSG_ERROR => {
                        let code = body
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                            .ok_or_else(|| bad("sock_diag: a short error record"))?;
                        return Err(io::Error::from_raw_os_error(-code));
                    }
                    _ => {
                        if body.len() < MSG_MIN {
                            return Err(bad("sock_diag: a short socket record"));
                        }
                        if body[1] == TCP_TIME_WAIT {
                            if let Some(remote) = remote_of(body) {
                                if remotes.iter().any(|r| same_endpoint(*r, remote)) {
                                    self.n += 1;
                                }
                            }
                        }
                    }
                }
                // Records are 4-byte aligned (NLMSG_ALIGN).
                let next = (len + 3) & !3;
                dgram = dgram.get(next..).unwrap_or(&[]);
            }
            Ok(false)
        }
    }

    /// The remote end of an `inet_diag_msg`: dport at sockid offset 2, dst at 20.
    fn remote_of(msg: &[u8]) -> Option<SocketAddr> {
        let id = &msg[4..4 + SOCKID_LEN];
        let port = u16::from_be_bytes([id[2], id[3]]);
        let ip = match i32::from(msg[0]) {
            libc::AF_INET => IpAddr::V4(Ipv4Addr::new(id[20], id[21], id[22], id[23])),
            libc::AF_INET6 => {
                let b: [u8; 16] = id[20..36].try_into().ok()?;
                IpAddr::V6(Ipv6Addr::from(b))
            }
            _ => return None,
        };
        Some(SocketAddr::new(ip, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taken from this project's (x86_64, little-endian) machine: a listener on
    /// 127.0.0.1:55185 and a client socket in TIME_WAIT towards it, then the same over ::1
    /// port 45467, plus an IPv4-mapped TIME_WAIT and one towards another port.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:D791 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3561941 1 000000001adcb004 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 577 1 00000000f4326cba 100 0 0 10 0
   2: 0100007F:88A6 0100007F:D791 06 00000000:00000000 03:00001760 00000000     0        0 0 3 0000000041f47053
   3: 0100007F:88A8 0100007F:D791 01 00000000:00000000 00:00000000 00000000     0        0 3561950 1 000000001adcb010 20 4 30 10 -1
   4: 0100007F:88AA 0100007F:D792 06 00000000:00000000 03:00001760 00000000     0        0 0 3 0000000041f47054
   5: 0100007F:D791 0100007F:88AC 06 00000000:00000000 03:00001760 00000000     0        0 0 3 0000000041f47055
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:B19B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3561944 1 000000002e4b3286 100 0 0 10 0
   1: 00000000000000000000000001000000:988C 00000000000000000000000001000000:B19B 06 00000000:00000000 03:0000176A 00000000     0        0 0 3 000000001b363213
   2: 0000000000000000FFFF00000100007F:988E 0000000000000000FFFF00000100007F:D791 06 00000000:00000000 03:0000176A 00000000     0        0 0 3 000000001b363214
";

    /// Three connections to a fresh listener, each closed by the client first: three client
    /// sockets in TIME_WAIT towards the listener's address. Also returns how many TIME_WAIT
    /// sockets towards that address were there before (another process's, or an earlier
    /// test's, from when the port last served: they linger 60 s, and may expire meanwhile).
    fn three_time_waits() -> (SocketAddr, u64) {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let before = time_wait_from_proc(&[addr]).unwrap();
        for _ in 0..3 {
            let c = std::net::TcpStream::connect(addr).unwrap();
            let (mut s, _) = l.accept().unwrap();
            drop(c);
            // The server sees the FIN and closes: the client side moves to TIME_WAIT.
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).unwrap(), 0);
        }
        (addr, before)
    }

    #[test]
    fn the_kernel_dump_counts_the_time_wait_sockets_proc_shows() {
        let (addr, before) = three_time_waits();
        // Ours are 3; older ones towards the same port may still be there (or expire while
        // we look), so the count is 3 to 3 + before. The last close may take a moment to
        // reach TIME_WAIT; both must agree once it has.
        let ours = |n: u64| (3..=3 + before).contains(&n);
        let limit = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let netlink = diag::time_wait_towards(&[addr]).expect("sock_diag dump");
            let proc = time_wait_from_proc(&[addr]).unwrap();
            if netlink == proc && ours(netlink) {
                break;
            }
            assert!(
                std::time::Instant::now() < limit,
                "netlink {netlink}, /proc {proc}, want 3 (+ up to {before} older)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // (Filtering by remote is checked on crafted records below: another port of this busy
        // machine may hold TIME_WAIT sockets of other tests.)
        assert!(ours(time_wait_towards(&[addr]).unwrap()));
    }

    /// One `inet_diag_msg` record (72 bytes of body as the kernel sends: the sockid and the
    /// fields after it) in state `state` towards `remote`.
    fn record(state: u8, remote: SocketAddr) -> Vec<u8> {
        let mut body = vec![0u8; 72];
        body[1] = state;
        let id = &mut body[4..52];
        id[2..4].copy_from_slice(&remote.port().to_be_bytes());
        match remote.ip() {
            IpAddr::V4(v4) => {
                id[20..24].copy_from_slice(&v4.octets());
                body[0] = libc::AF_INET as u8;
            }
            IpAddr::V6(v6) => {
                id[20..36].copy_from_slice(&v6.octets());
                body[0] = libc::AF_INET6 as u8;
            }
        }
        nl(20, &body)
    }

    fn nl(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn a_dump_counts_time_wait_records_towards_the_remotes_across_datagrams() {
        let t: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let t6: SocketAddr = "[::1]:8080".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:8080".parse().unwrap();
        let mut first = record(6, t);
        first.extend(record(6, "127.0.0.1:8081".parse().unwrap()));
        first.extend(record(1, t));
        first.extend(record(6, mapped));
        let mut c = diag::Count::default();
        assert!(!c.feed(&first, &[t]).unwrap(), "no NLMSG_DONE yet");
        assert_eq!(c.n, 2, "TIME_WAIT towards :8080, IPv4 and IPv4-mapped");
        let mut second = record(6, t6);
        second.extend(nl(3, &[0u8; 4]));
        second.extend(record(6, t));
        assert!(c.feed(&second, &[t, t6]).unwrap());
        assert_eq!(c.n, 3, "nothing after NLMSG_DONE counts");
    }

    #[test]
    fn a_dump_error_or_a_damaged_record_is_an_error_not_a_count() {
        let t: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let err = diag::Count::default()
            .feed(&nl(2, &(-libc::EPERM).to_ne_bytes()), &[t])
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM));
        let mut long = record(6, t);
        long[0..4].copy_from_slice(&200u32.to_ne_bytes());
        let err = diag::Count::default().feed(&long, &[t]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        let short = nl(20, &[0u8; 10]);
        let err = diag::Count::default().feed(&short, &[t]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn the_dump_request_asks_for_tcp_sockets_in_time_wait_only() {
        let r = diag::request(libc::AF_INET6 as u8);
        assert_eq!(
            u32::from_ne_bytes(r[0..4].try_into().unwrap()) as usize,
            r.len()
        );
        assert_eq!(r.len(), 16 + 56);
        assert_eq!(u16::from_ne_bytes([r[4], r[5]]), 20, "SOCK_DIAG_BY_FAMILY");
        assert_eq!(u16::from_ne_bytes([r[6], r[7]]), 0x301, "request | dump");
        assert_eq!(r[16], libc::AF_INET6 as u8);
        assert_eq!(r[17], libc::IPPROTO_TCP as u8);
        assert_eq!(u32::from_ne_bytes(r[20..24].try_into().unwrap()), 1 << 6);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn time_wait_rows_towards_the_target_are_counted_from_a_proc_sample() {
        let v4: SocketAddr = "127.0.0.1:55185".parse().unwrap();
        let v6: SocketAddr = "[::1]:45467".parse().unwrap();
        // Row 2 (TIME_WAIT towards :55185) counts; the listener (0A), the established row (01),
        // the one towards :55186 and the server side (local :55185, row 5) do not.
        assert_eq!(count_time_wait(TCP, &[v4]), 1);
        assert_eq!(count_time_wait(TCP6, &[v6]), 1);
        // An IPv4-mapped remote is the IPv4 target.
        assert_eq!(count_time_wait(TCP6, &[v4]), 1);
        assert_eq!(
            count_time_wait(TCP, &[v4, "127.0.0.1:55186".parse().unwrap()]),
            2
        );
        assert_eq!(
            count_time_wait(TCP, &["127.0.0.2:55185".parse().unwrap()]),
            0
        );
        assert_eq!(count_time_wait(TCP, &[]), 0);
        // Damaged rows are skipped, not miscounted.
        assert_eq!(
            count_time_wait("header\n 0: zz:1 0100007F:D791 06\n 1: x\n", &[v4]),
            1
        );
        assert_eq!(
            count_time_wait("header\n 0: a b 0100007F:D791 06\n", &[v4]),
            0
        );
    }

    #[test]
    fn proc_addresses_parse_in_host_word_order() {
        let a = |ip: [u8; 4]| u32::from_ne_bytes(ip);
        let s = format!("{:08X}:1F90", a([127, 1, 2, 3]));
        assert_eq!(parse_proc_addr(&s), Some("127.1.2.3:8080".parse().unwrap()));
        let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let hex: String = v6
            .octets()
            .chunks_exact(4)
            .map(|w| format!("{:08X}", u32::from_ne_bytes(w.try_into().unwrap())))
            .collect();
        assert_eq!(
            parse_proc_addr(&format!("{hex}:0050")),
            Some(SocketAddr::new(v6.into(), 80))
        );
        for bad in [
            "",
            "0100007F",
            "0100007F:",
            "0100007F:XYZ",
            "01007F:0050",
            "G100007F:0050",
        ] {
            assert_eq!(parse_proc_addr(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_client_that_closes_first_shows_up_in_time_wait_towards_its_server() {
        use std::io::Read;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = l.local_addr().unwrap();
        let before = time_wait_towards(&[target]).unwrap();
        let c = std::net::TcpStream::connect(target).unwrap();
        let (mut s, _) = l.accept().unwrap();
        drop(c); // the client closes first ...
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        assert_eq!(s.read(&mut [0u8; 1]).unwrap(), 0, "the server sees the FIN");
        drop(s); // ... and its port waits once the server has closed too
        let limit = std::time::Instant::now() + Duration::from_secs(30);
        while time_wait_towards(&[target]).unwrap() == before {
            assert!(std::time::Instant::now() < limit, "no TIME_WAIT appeared");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(time_wait_towards(&[target]).unwrap(), before + 1);
    }

    #[test]
    fn fd_limit_is_raised_to_at_least_the_old_soft_limit() {
        let mut before: libc::rlimit = unsafe { std::mem::zeroed() };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) };
        let now = raise_fd_limit();
        // An unprivileged process may always raise its soft limit to the hard one.
        assert_eq!(now, before.rlim_max);
    }

    #[test]
    fn thread_cpu_time_grows_with_work() {
        let (u0, s0) = thread_cpu_time();
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let (u1, s1) = thread_cpu_time();
        assert!(u1 + s1 > u0 + s0);
    }

    #[test]
    fn allowed_cpus_is_not_empty_and_rss_is_known() {
        assert!(!allowed_cpus().is_empty());
        assert!(peak_rss_bytes() > 0);
    }
}
