//! The null client: the cheapest HTTP/1.1 keep-alive client this design allows, the floor that
//! `scripts/compare.sh` puts beside connbench and the peers.
//!
//! One thread, N connections, edge-triggered epoll, and per response exactly one `send` of a
//! fixed GET and one `recv`. No parsing on the hot path: the length of the server's response is
//! learned once, before the measured loop, from the first response's head (status 2xx and a
//! Content-Length); after that a response is "that many bytes received". That rule holds for a
//! server whose responses all have the same length (nginx `return 200 '…'`, the built-in target's
//! `/`), which is what it is for; a response of another length shows as leftover bytes and the
//! run fails instead of miscounting. No clock on the hot path either: a timerfd in the same epoll
//! set ends the run. Only at `-c 1` with `--rtt` is the clock read, twice per round trip, to
//! report the round trip's median and p99 (the reference for connbench's `--busy-poll` goal).
//!
//! `--tls` (with `--ca FILE` or `-k`): the same over TLS 1.3, the floor of connbench's TLS goals.
//! Each connection's handshake and first exchange go through rustls (blocking, before the
//! measured loop; the response length is learned in plaintext); then its traffic keys are taken
//! over (`dangerous_extract_secrets`) and every request is sealed into one record and every
//! response record opened in place (connbench's record layer, `engine::core::record`: ring's
//! AEAD), as any TLS client must: one `send`, one `recv`, one seal and one open per response,
//! nothing else. Post-handshake records (session tickets) are opened and skipped; a key update
//! or an alert fails the run.
//!
//!   cargo build --release --example null_client
//!   target/release/examples/null_client 127.0.0.1:8080 -c 100 -d 5s            # blocking epoll_wait
//!   target/release/examples/null_client 127.0.0.1:8080 -c 1 -d 5s --spin --rtt # epoll_wait(…, 0)
//!   target/release/examples/null_client 127.0.0.1:8443 -c 100 -d 5s --tls --ca ca.pem
//!
//! Output: one JSON line on stdout: mode, connections, responses, elapsed_s, CPU (getrusage,
//! whole process) and, with --rtt, rtt_p50_us / rtt_p99_us. Bad input: one line on stderr,
//! exit 2. A run that fails (refused, reset, a response of another length): exit 1.
//! Loopback only: the address must be in 127.0.0.0/8 or ::1.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connbench::engine::core::record::{record_len, Records, Version};
use connbench::plan::TlsPlan;
use rustls::{ClientConfig, ClientConnection, ContentType, ProtocolVersion};

/// Most samples kept at `--rtt` (a 5 s run at ~25 µs is 200k; beyond the cap the run goes on
/// without recording, and the report says how many were kept).
const RTT_CAP: usize = 4_000_000;
/// One read's buffer: far larger than one small response, so a read is short (drains the
/// socket) unless a server sends something unexpected.
const BUF: usize = 64 * 1024;
/// epoll_wait batch.
const EVENTS: usize = 1024;
/// The timerfd's token; connection tokens are their index.
const TIMER_TOKEN: u64 = u64::MAX;
/// The largest record `record_len` lets through: header and 2^14 + 2048 bytes.
const MAX_RECORD: usize = 5 + (1 << 14) + 2048;

struct Args {
    addr: SocketAddr,
    path: String,
    connections: usize,
    duration: Duration,
    requests: Option<u64>,
    spin: bool,
    rtt: bool,
    /// `--tls`: trust anchors (`--ca`) or none checked (`-k`).
    tls: Option<TlsPlan>,
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("null_client: {msg}");
    ExitCode::from(2)
}

fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return None,
    };
    (!d.is_zero()).then_some(d)
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let mut path = "/".to_string();
    let mut connections = 1usize;
    let mut duration = None;
    let mut requests = None;
    let mut spin = false;
    let mut rtt = false;
    let (mut tls, mut ca, mut insecure) = (false, None, false);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "-c" | "--connections" => {
                let v = val("-c")?;
                connections = v
                    .parse()
                    .ok()
                    .filter(|&n| (1..=60_000).contains(&n))
                    .ok_or(format!(
                        "-c {v:?}: give a whole number of connections, 1-60000"
                    ))?;
            }
            "-d" | "--duration" => {
                let v = val("-d")?;
                duration = Some(
                    parse_duration(&v)
                        .ok_or(format!("-d {v:?}: give a duration such as 500ms, 5s or 1m"))?,
                );
            }
            "-n" | "--requests" => {
                let v = val("-n")?;
                requests = Some(v.parse().ok().filter(|&n: &u64| n > 0).ok_or(format!(
                    "-n {v:?}: give a positive whole number of responses"
                ))?);
            }
            "--path" => {
                path = val("--path")?;
                if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                    return Err(format!("--path {path:?}: give an absolute path such as /"));
                }
            }
            "--spin" => spin = true,
            "--rtt" => rtt = true,
            "--tls" => tls = true,
            "--ca" => ca = Some(std::path::PathBuf::from(val("--ca")?)),
            "-k" | "--insecure" => insecure = true,
            "-h" | "--help" => {
                return Err(
                    "usage: null_client HOST:PORT [-c N] [-d 5s] [-n N] [--path /] \
                            [--spin] [--rtt] [--tls (--ca FILE | -k)] (loopback HOST only)"
                        .into(),
                )
            }
            s if s.starts_with('-') => {
                return Err(format!("unknown option {s}: see --help"));
            }
            s => {
                if addr.is_some() {
                    return Err(format!("second address {s:?}: give one HOST:PORT"));
                }
                let a: SocketAddr = s.parse().map_err(|_| {
                    format!("{s:?} is not an address: give HOST:PORT such as 127.0.0.1:8080")
                })?;
                if !a.ip().is_loopback() {
                    return Err(format!(
                        "{a} is not a loopback address: use 127.0.0.0/8 or [::1]"
                    ));
                }
                addr = Some(a);
            }
        }
    }
    let addr = addr.ok_or("no address: give HOST:PORT such as 127.0.0.1:8080")?;
    if rtt && connections != 1 {
        return Err("--rtt measures one connection's round trip: use it with -c 1".into());
    }
    if duration.is_none() && requests.is_none() {
        duration = Some(Duration::from_secs(5));
    }
    if !tls && (ca.is_some() || insecure) {
        return Err("--ca and -k apply to TLS only: add --tls".into());
    }
    if tls && ca.is_some() && insecure {
        return Err("--ca and -k together: give --ca FILE to verify, or -k to skip it".into());
    }
    if tls && ca.is_none() && !insecure {
        return Err(
            "--tls verifies the server's certificate: give --ca FILE (its CA), or -k to skip it"
                .into(),
        );
    }
    let tls = tls.then(|| TlsPlan {
        ca_file: ca,
        insecure,
        ..TlsPlan::default()
    });
    Ok(Args {
        addr,
        path,
        connections,
        duration: duration.unwrap_or(Duration::from_secs(24 * 3600)),
        requests,
        spin,
        rtt,
        tls,
    })
}

/// Sends one request and reads until one whole response is in; returns its length. The only
/// place that looks inside a response.
fn learn_response_len<S: Read + Write>(s: &mut S, req: &[u8]) -> Result<usize, String> {
    s.write_all(req)
        .map_err(|e| format!("first request: {e}"))?;
    let mut buf = Vec::with_capacity(BUF);
    let mut chunk = [0u8; 4096];
    loop {
        let n = s
            .read(&mut chunk)
            .map_err(|e| format!("first response: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection before a whole response".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            if buf.len() > 16 * 1024 {
                return Err("no end of the response head in 16 KiB".into());
            }
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not text")?;
        if !head.starts_with("HTTP/1.1 2") {
            let line = head.lines().next().unwrap_or("");
            return Err(format!(
                "first response is {line:?}: the null client needs a 2xx"
            ));
        }
        let cl = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .ok_or(
                "the response has no Content-Length: the null client needs fixed-length responses",
            )?;
        if head.to_ascii_lowercase().contains("connection: close") {
            return Err(
                "the server closes after a response: the null client needs keep-alive".into(),
            );
        }
        let total = end + 4 + cl;
        if buf.len() >= total {
            if buf.len() > total {
                return Err("bytes after the first response: nothing may follow it".into());
            }
            return Ok(total);
        }
    }
}

fn cvt(r: libc::c_int, what: &str) -> Result<libc::c_int, String> {
    if r < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

/// A TLS connection's state in the measured loop: connbench's record layer
/// (`engine::core::record`: ring's AEAD, checked against rustls) over the extracted keys.
struct TlsConn {
    records: Records,
    /// The request's record, sealed per send into this reused buffer.
    out: Vec<u8>,
    /// Received record bytes not yet opened (at most one partial record stays between reads).
    rbuf: Vec<u8>,
    have: usize,
}

impl TlsConn {
    fn new(records: Records) -> TlsConn {
        TlsConn {
            records,
            out: Vec::new(),
            rbuf: vec![0u8; MAX_RECORD + BUF],
            have: 0,
        }
    }

    /// Seal the request into one record.
    #[inline]
    fn seal(&mut self, req: &[u8]) -> &[u8] {
        self.out.clear();
        self.records
            .seal(ContentType::ApplicationData, req, &mut self.out);
        &self.out
    }

    /// Open every whole record received, handing each application-data plaintext to `data`.
    #[inline]
    fn open(&mut self, mut data: impl FnMut(&[u8]) -> Result<(), String>) -> Result<(), String> {
        let mut at = 0;
        while let Some(len) = record_len(&self.rbuf[at..self.have])
            .map_err(|e| format!("a record the null client does not expect: {e}"))?
        {
            let rec = &mut self.rbuf[at..at + len];
            let (typ, plain) = self
                .records
                .open(rec)
                .map_err(|e| format!("a record failed to open: {e}"))?;
            let plain = &rec[plain];
            match typ {
                ContentType::ApplicationData => data(plain)?,
                // NewSessionTicket: a handshake message the loop has no use for. A key update
                // (type 24) would change the keys under it.
                ContentType::Handshake if plain.first() == Some(&4) => {}
                ContentType::Handshake => {
                    return Err("a post-handshake message other than a ticket".into())
                }
                ContentType::Alert => return Err("the server sent an alert".into()),
                t => return Err(format!("a record of content type {t:?}")),
            }
            at += len;
        }
        self.rbuf.copy_within(at..self.have, 0);
        self.have -= at;
        Ok(())
    }
}

/// `--tls`: connect, handshake and make the first exchange through rustls (learning the
/// response's length), then take the traffic keys over.
fn tls_connect(
    a: &Args,
    config: &Arc<ClientConfig>,
    req: &[u8],
) -> Result<(TcpStream, TlsConn, usize), String> {
    let mut s = TcpStream::connect(a.addr).map_err(|e| format!("connect {}: {e}", a.addr))?;
    s.set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let name = rustls::pki_types::ServerName::IpAddress(a.addr.ip().into());
    let mut conn =
        ClientConnection::new(config.clone(), name).map_err(|e| format!("TLS client: {e}"))?;
    let len = learn_response_len(&mut rustls::Stream::new(&mut conn, &mut s), req)?;
    if conn.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
        return Err("the server spoke TLS 1.2: the null client's --tls is TLS 1.3 only".into());
    }
    let secrets = conn
        .dangerous_extract_secrets()
        .map_err(|e| format!("taking the traffic keys over: {e}"))?;
    let (tx, rx) = (&secrets.tx, &secrets.rx);
    let records = Records::new(Version::Tls13, (tx.0, &tx.1), (rx.0, &rx.1))
        .map_err(|e| format!("the traffic keys: {e}"))?;
    let t = TlsConn::new(records);
    Ok((s, t, len))
}

struct Conn {
    stream: TcpStream,
    /// Bytes of the current response received so far (plaintext with `--tls`).
    got: usize,
    tls: Option<TlsConn>,
}

struct Outcome {
    responses: u64,
    elapsed: Duration,
    rtt_ns: Vec<u32>,
    rtt_dropped: u64,
}

fn run(a: &Args) -> Result<Outcome, String> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: null_client\r\n\r\n",
        a.path, a.addr
    )
    .into_bytes();
    let mut conns = Vec::with_capacity(a.connections);
    let mut resp_len = 0;
    let config = match &a.tls {
        Some(plan) => Some(connbench::tls::client_config(plan).map_err(|e| e.to_string())?),
        None => None,
    };
    for i in 0..a.connections {
        let (s, tls) = match &config {
            Some(config) => {
                // Every connection makes its first exchange through rustls (it also reads the
                // session tickets that come before it); all must agree on the length.
                let (s, t, len) = tls_connect(a, config, &req)?;
                if i > 0 && len != resp_len {
                    return Err(format!(
                        "connection {i}'s first response has {len} bytes, the first's {resp_len}: \
                         the server's responses differ in length"
                    ));
                }
                resp_len = len;
                (s, Some(t))
            }
            None => {
                let mut s =
                    TcpStream::connect(a.addr).map_err(|e| format!("connect {}: {e}", a.addr))?;
                s.set_nodelay(true)
                    .map_err(|e| format!("TCP_NODELAY: {e}"))?;
                if i == 0 {
                    resp_len = learn_response_len(&mut s, &req)?;
                }
                (s, None)
            }
        };
        s.set_nonblocking(true)
            .map_err(|e| format!("O_NONBLOCK: {e}"))?;
        conns.push(Conn {
            stream: s,
            got: 0,
            tls,
        });
    }

    // SAFETY (all libc calls below): plain syscalls on fds this function owns, with pointers
    // to live, correctly sized locals.
    let ep = cvt(
        unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        "epoll_create1",
    )?;
    let tfd = cvt(
        unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
            )
        },
        "timerfd_create",
    )?;
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: a.duration.as_secs() as libc::time_t,
            tv_nsec: a.duration.subsec_nanos() as libc::c_long,
        },
    };
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: TIMER_TOKEN,
    };
    cvt(
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, tfd, &mut ev) },
        "epoll_ctl timerfd",
    )?;
    for (i, c) in conns.iter().enumerate() {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: i as u64,
        };
        cvt(
            unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), &mut ev) },
            "epoll_ctl",
        )?;
    }

    let mut rtt_ns: Vec<u32> = if a.rtt {
        Vec::with_capacity(RTT_CAP)
    } else {
        Vec::new()
    };
    let mut rtt_dropped = 0u64;
    let mut sent_at = Instant::now();
    let limit = a.requests.unwrap_or(u64::MAX);
    let mut responses = 0u64;
    let mut in_flight = 0u64;
    let mut buf = vec![0u8; BUF];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let timeout = if a.spin { 0 } else { -1 };

    let send = |c: &mut Conn| -> Result<(), String> {
        let bytes = match &mut c.tls {
            Some(t) => t.seal(&req),
            None => &req[..],
        };
        // SAFETY: bytes is a live buffer of bytes.len() bytes.
        let n = unsafe {
            libc::send(
                c.stream.as_raw_fd(),
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        if n == bytes.len() as isize {
            Ok(())
        } else {
            Err(format!(
                "send returned {n} of {} bytes: {}",
                bytes.len(),
                std::io::Error::last_os_error()
            ))
        }
    };

    cvt(
        unsafe { libc::timerfd_settime(tfd, 0, &spec, std::ptr::null_mut()) },
        "timerfd_settime",
    )?;
    let start = Instant::now();
    for c in &mut conns {
        if in_flight < limit {
            send(c)?;
            in_flight += 1;
        }
    }
    if a.rtt {
        sent_at = Instant::now();
    }
    'run: while responses < limit {
        let n =
            unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), EVENTS as libc::c_int, timeout) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("epoll_wait: {e}"));
        }
        for ev in &events[..n as usize] {
            let tok = ev.u64;
            if tok == TIMER_TOKEN {
                break 'run;
            }
            let c = &mut conns[tok as usize];
            // Edge-triggered: act on everything the event says. A short read drained the
            // socket (more data later is a new edge); a full buffer means read again.
            loop {
                let (into, space) = match &mut c.tls {
                    Some(t) => (t.rbuf[t.have..].as_mut_ptr(), t.rbuf.len() - t.have),
                    None => (buf.as_mut_ptr(), BUF),
                };
                let r = unsafe { libc::recv(c.stream.as_raw_fd(), into.cast(), space, 0) };
                if r < 0 {
                    let e = std::io::Error::last_os_error();
                    match e.kind() {
                        std::io::ErrorKind::WouldBlock => break,
                        std::io::ErrorKind::Interrupted => continue,
                        _ => return Err(format!("recv on connection {tok}: {e}")),
                    }
                }
                if r == 0 {
                    return Err(format!(
                        "the server closed connection {tok} after {responses} responses"
                    ));
                }
                let r = r as usize;
                let not_2xx =
                    |got: usize, p: &[u8]| got == 0 && p.len() >= 10 && &p[..10] != b"HTTP/1.1 2";
                match &mut c.tls {
                    None => {
                        if not_2xx(c.got, &buf[..r]) {
                            return Err(format!("connection {tok}: a response that is not a 2xx"));
                        }
                        c.got += r;
                    }
                    Some(t) => {
                        t.have += r;
                        let got = &mut c.got;
                        t.open(|p| {
                            if not_2xx(*got, p) {
                                return Err(format!(
                                    "connection {tok}: a response that is not a 2xx"
                                ));
                            }
                            *got += p.len();
                            Ok(())
                        })?;
                    }
                }
                if c.got > resp_len {
                    return Err(format!(
                        "connection {tok}: {} bytes where one response of {resp_len} was due: \
                         the server's responses differ in length",
                        c.got
                    ));
                }
                if c.got == resp_len {
                    c.got = 0;
                    responses += 1;
                    in_flight -= 1;
                    if a.rtt {
                        let now = Instant::now();
                        if rtt_ns.len() < RTT_CAP {
                            rtt_ns
                                .push(now.duration_since(sent_at).as_nanos().min(u32::MAX as u128)
                                    as u32);
                        } else {
                            rtt_dropped += 1;
                        }
                    }
                    if in_flight + responses < limit {
                        if a.rtt {
                            sent_at = Instant::now();
                        }
                        send(c)?;
                        in_flight += 1;
                    }
                }
                if r < space {
                    break;
                }
            }
        }
    }
    let elapsed = start.elapsed();
    // SAFETY: closing fds this function created and owns.
    unsafe {
        libc::close(tfd);
        libc::close(ep);
    }
    Ok(Outcome {
        responses,
        elapsed,
        rtt_ns,
        rtt_dropped,
    })
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

fn rusage_s() -> (f64, f64) {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (s(ru.ru_utime), s(ru.ru_stime))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => return usage_error(&e),
    };
    let out = match run(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("null_client: {e}");
            return ExitCode::from(1);
        }
    };
    let (user, sys) = rusage_s();
    let mut v = serde_json::json!({
        "mode": if args.spin { "spin" } else { "blocking" },
        "tls": args.tls.is_some(),
        "connections": args.connections,
        "responses": out.responses,
        "elapsed_s": out.elapsed.as_secs_f64(),
        "responses_per_s": out.responses as f64 / out.elapsed.as_secs_f64(),
        "cpu_user_s": user,
        "cpu_sys_s": sys,
        "cpu_per_response_us": if out.responses > 0 { (user + sys) * 1e6 / out.responses as f64 } else { f64::NAN },
    });
    if args.rtt {
        let mut s = out.rtt_ns;
        s.sort_unstable();
        v["rtt_samples"] = s.len().into();
        v["rtt_not_recorded"] = out.rtt_dropped.into();
        v["rtt_p50_us"] = percentile(&s, 0.50).into();
        v["rtt_p99_us"] = percentile(&s, 0.99).into();
    }
    println!("{v}");
    if out.responses == 0 {
        eprintln!("null_client: no response in the run: is the server answering?");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};
    use rustls::ConnectionTrafficSecrets;

    /// Both directions share made-up keys, so what one seals the other opens.
    fn records() -> Records {
        let s = ConnectionTrafficSecrets::Aes256Gcm {
            key: AeadKey::from([7u8; 32]),
            iv: Iv::new([9u8; 12]),
        };
        Records::new(Version::Tls13, (0, &s), (0, &s)).unwrap()
    }

    /// What a server would send: records of (type, content), sealed in order.
    fn wire(msgs: &[(ContentType, &[u8])]) -> Vec<u8> {
        let mut r = records();
        let mut out = Vec::new();
        for (ty, content) in msgs {
            r.seal(*ty, content, &mut out);
        }
        out
    }

    /// Feed `bytes` to a receiving connection in `chunk`-byte reads: the plaintext it handed
    /// on (or its error), and the bytes it still holds.
    fn feed(bytes: &[u8], chunk: usize) -> (Result<Vec<u8>, String>, usize) {
        let mut c = TlsConn::new(records());
        let mut got = Vec::new();
        for part in bytes.chunks(chunk) {
            c.rbuf[c.have..c.have + part.len()].copy_from_slice(part);
            c.have += part.len();
            if let Err(e) = c.open(|p| {
                got.extend_from_slice(p);
                Ok(())
            }) {
                return (Err(e), c.have);
            }
        }
        (Ok(got), c.have)
    }

    const APP: ContentType = ContentType::ApplicationData;
    const TICKET: &[u8] = &[4, 0, 0, 1, 0];

    #[test]
    fn records_open_the_same_whole_byte_by_byte_and_with_a_partial_one_after() {
        let bytes = wire(&[
            (APP, b"HTTP/1.1 200 OK\r\n"),
            (ContentType::Handshake, TICKET),
            (APP, b"\r\nbody"),
        ]);
        let want = b"HTTP/1.1 200 OK\r\n\r\nbody".to_vec();
        assert_eq!(feed(&bytes, bytes.len()), (Ok(want.clone()), 0), "whole");
        assert_eq!(feed(&bytes, 1), (Ok(want.clone()), 0), "byte by byte");
        // Trailing bytes: the start of a next record waits for the rest.
        let mut more = bytes.clone();
        more.extend_from_slice(&wire(&[(APP, b"x"), (APP, b"next")])[..8]);
        assert_eq!(feed(&more, more.len()), (Ok(want), 8), "trailing");
    }

    #[test]
    fn a_record_whose_seal_or_content_is_wrong_fails_the_run() {
        let mut bad = wire(&[(APP, b"HTTP/1.1 200 OK\r\n")]);
        bad[7] ^= 1;
        assert!(feed(&bad, bad.len())
            .0
            .unwrap_err()
            .contains("failed to open"));
        let alert = wire(&[(ContentType::Alert, &[1, 0])]);
        assert!(feed(&alert, alert.len()).0.unwrap_err().contains("alert"));
        let key_update = wire(&[(ContentType::Handshake, &[24, 0, 0, 1, 0])]);
        let e = feed(&key_update, key_update.len()).0.unwrap_err();
        assert!(e.contains("other than a ticket"), "{e}");
        let mut not_tls = wire(&[(APP, b"x")]);
        not_tls[0] = 0x63;
        let e = feed(&not_tls, not_tls.len()).0.unwrap_err();
        assert!(e.contains("does not expect"), "{e}");
    }
}
