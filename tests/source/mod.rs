//! `--source`: connections leave from the given local addresses, round-robin, for `http` and
//! `ws`; without it nothing is bound; bad lists and foreign or mismatched addresses are usage
//! errors. Peers are observed from outside the client: a tiny accept loop records the peer
//! address of every connection, or the kernel's socket table (`/proc/net/tcp`) is read while a
//! run against the built-in target is in progress.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::{assert_usage_error, connbench, connbench_raw, serve};

/// A minimal HTTP/1.1 server that answers every request head with an empty 200 and records the
/// peer address of each connection it accepts. Stops (and joins) on `stop()`, or by itself
/// after 20 s so a broken test cannot hang.
struct PeerRecorder {
    addr: SocketAddr,
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeerRecorder {
    fn start() -> PeerRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peers.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut conns = Vec::new();
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((sock, peer)) => {
                        p.lock().unwrap().push(peer);
                        conns.push(std::thread::spawn(move || answer(sock)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        PeerRecorder {
            addr,
            peers,
            stop,
            thread: Some(thread),
        }
    }

    /// Stop accepting, wait for the connection threads, return the peers seen.
    fn stop(mut self) -> Vec<SocketAddr> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("accept loop");
        }
        let peers = self.peers.lock().unwrap().clone();
        peers
    }
}

/// Answer each complete request head (GET, no body) until EOF, an error or a 10 s silence.
fn answer(mut sock: std::net::TcpStream) {
    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let _ = sock.set_nonblocking(false);
    let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = [0u8; 4096];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = match sock.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        carry.extend_from_slice(&buf[..n]);
        while let Some(end) = carry.windows(4).position(|w| w == b"\r\n\r\n") {
            carry.drain(..end + 4);
            if sock.write_all(OK).is_err() {
                return;
            }
        }
    }
}

fn count_by_ip(peers: &[SocketAddr]) -> BTreeMap<IpAddr, usize> {
    let mut m = BTreeMap::new();
    for p in peers {
        *m.entry(p.ip()).or_insert(0) += 1;
    }
    m
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn http_connections_leave_from_every_source_round_robin() {
    let server = PeerRecorder::start();
    let url = format!("http://{}/", server.addr);
    // Two workers: the round-robin runs over global connection numbers, so 4 connections over
    // 2 sources give exactly 2 each whatever the split between workers.
    let r = connbench(&[
        "http",
        &url,
        "-c",
        "4",
        "-t",
        "2",
        "--no-pin",
        "-n",
        "40",
        "--source",
        "127.0.0.2,127.0.0.3",
    ]);
    let peers = server.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/responses/2xx"), 40);
    assert_eq!(r.u64("/counters/connections_opened"), 4);
    let by_ip = count_by_ip(&peers);
    assert_eq!(
        by_ip,
        BTreeMap::from([(ip("127.0.0.2"), 2), (ip("127.0.0.3"), 2)]),
        "peers {peers:?}"
    );
    assert_eq!(
        r.report()["config"]["sources"],
        serde_json::json!(["127.0.0.2", "127.0.0.3"])
    );
}

#[test]
fn without_source_nothing_is_bound() {
    let server = PeerRecorder::start();
    let url = format!("http://{}/", server.addr);
    let r = connbench(&["http", &url, "-c", "3", "-n", "30", "--no-pin"]);
    let peers = server.stop();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.u64("/responses/2xx"), 30);
    assert_eq!(
        count_by_ip(&peers),
        BTreeMap::from([(ip("127.0.0.1"), 3)]),
        "the kernel picks the loopback address itself"
    );
    assert_eq!(r.report()["config"]["sources"], serde_json::json!([]));
}

/// Local addresses of the established IPv4 connections to `port`, from `/proc/net/tcp`
/// (`ADDR:PORT` in hex; state 01 = ESTABLISHED).
fn established_sources_to(port: u16) -> BTreeMap<IpAddr, usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut m = BTreeMap::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 4 || f[3] != "01" {
            continue;
        }
        let (Some((local, _)), Some((_, rport))) = (f[1].split_once(':'), f[2].split_once(':'))
        else {
            continue;
        };
        if u16::from_str_radix(rport, 16) != Ok(port) {
            continue;
        }
        if let Ok(raw) = u32::from_str_radix(local, 16) {
            // The kernel prints the network-order address as a native u32: its native bytes
            // are the address bytes in order.
            let addr = std::net::Ipv4Addr::from(raw.to_ne_bytes());
            *m.entry(IpAddr::V4(addr)).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn ws_connections_to_the_builtin_target_come_from_both_sources() {
    let s = serve(|_| {});
    let addr = s.http_addr().expect("plain port");
    let url = format!("ws://{addr}/ws");
    let child = std::process::Command::new(crate::util::bin())
        .args([
            "ws",
            &url,
            "-c",
            "4",
            "-d",
            "3s",
            "-q",
            "--no-pin",
            "--source",
            "127.0.0.2-127.0.0.3",
            // No subscription, so no data: only where the connections come from matters.
            "--allow-nothing-measured",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn connbench");
    // Poll the socket table (bounded: 60 × 50 ms) until all four connections are up.
    let mut seen = BTreeMap::new();
    for _ in 0..60 {
        seen = established_sources_to(addr.port());
        if seen.values().sum::<usize>() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("connbench ends");
    let stats = s.stats();
    s.stop();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stats.ws_upgrades, 4);
    assert_eq!(
        seen,
        BTreeMap::from([(ip("127.0.0.2"), 2), (ip("127.0.0.3"), 2)])
    );
}

#[test]
fn bad_or_unusable_sources_are_usage_errors() {
    let url = "http://127.0.0.1:9/";
    for (list, needle) in [
        ("127.0.0.1,::1", "mixes"),
        ("127.0.0.5-127.0.0.1", "ends before"),
        ("nonsense", "invalid --source"),
        ("0.0.0.0", "cannot be a source"),
        // TEST-NET-1: never an address of this host.
        ("192.0.2.1", "cannot be used"),
        // An IPv6 source for an IPv4 target.
        ("::1", "IPv4"),
    ] {
        assert_usage_error(
            &connbench_raw(&["http", url, "-n", "1", "--source", list]),
            needle,
        );
    }
    assert_usage_error(
        &connbench_raw(&["ws", "ws://127.0.0.1:9/ws", "-d", "1s", "--source", "::1"]),
        "IPv4",
    );
}
