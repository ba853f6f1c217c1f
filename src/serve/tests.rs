//! End-to-end tests of the target over real loopback sockets: std blocking clients with read
//! timeouts (every wait is bounded), servers on port 0, each stopped through its handle.

use super::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Upper bound for any single blocking read in these tests.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn serve(cfg: ServeConfig) -> ServerHandle {
    start(cfg).expect("target starts")
}

fn plain_only() -> ServeConfig {
    ServeConfig {
        https_port: None,
        ..ServeConfig::default()
    }
}

#[derive(Debug)]
struct Resp {
    code: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A blocking HTTP/1.1 client that keeps bytes past one response for the next (pipelining).
struct Client<S> {
    s: S,
    buf: Vec<u8>,
}

impl Client<TcpStream> {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Client { s, buf: Vec::new() }
    }
}

impl<S: Read + Write> Client<S> {
    fn send(&mut self, req: &str) {
        self.s.write_all(req.as_bytes()).expect("write");
    }

    fn get(&mut self, path: &str) -> Resp {
        self.send(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        self.response(false)
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.s.read(&mut chunk).expect("read");
        assert!(n > 0, "unexpected EOF; buffered {:?}", self.buf);
        self.buf.extend_from_slice(&chunk[..n]);
    }

    fn need(&mut self, n: usize) {
        while self.buf.len() < n {
            self.fill();
        }
    }

    /// Reads one complete response (`head_only` for answers to HEAD).
    fn response(&mut self, head_only: bool) -> Resp {
        let (code, headers, head_len) = loop {
            let mut h = [httparse::EMPTY_HEADER; 32];
            let mut r = httparse::Response::new(&mut h);
            match r.parse(&self.buf).expect("valid response head") {
                httparse::Status::Complete(n) => {
                    let headers = r
                        .headers
                        .iter()
                        .map(|h| {
                            let v = String::from_utf8_lossy(h.value).into_owned();
                            (h.name.to_string(), v)
                        })
                        .collect::<Vec<_>>();
                    break (r.code.expect("code"), headers, n);
                }
                httparse::Status::Partial => self.fill(),
            }
        };
        self.buf.drain(..head_len);
        let mut resp = Resp {
            code,
            headers,
            body: Vec::new(),
        };
        if head_only || code == 204 || code == 304 {
            return resp;
        }
        if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let (idx, size) = loop {
                    match httparse::parse_chunk_size(&self.buf).expect("chunk size") {
                        httparse::Status::Complete(c) => break c,
                        httparse::Status::Partial => self.fill(),
                    }
                };
                let size = size as usize;
                self.need(idx + size + 2);
                resp.body.extend_from_slice(&self.buf[idx..idx + size]);
                assert_eq!(&self.buf[idx + size..idx + size + 2], b"\r\n");
                self.buf.drain(..idx + size + 2);
                if size == 0 {
                    return resp;
                }
            }
        }
        let len: usize = resp
            .header("content-length")
            .expect("content-length")
            .parse()
            .expect("number");
        self.need(len);
        resp.body = self.buf.drain(..len).collect();
        resp
    }

    /// True if the server closed (EOF or reset) with nothing more buffered.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        match self.s.read(&mut b) {
            Ok(0) => self.buf.is_empty(),
            Ok(_) => false,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        }
    }
}

/// Polls `cond` every few ms for at most `IO_TIMEOUT`.
fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn every_route_answers_with_status_length_and_headers() {
    let h = serve(plain_only());
    let mut c = Client::connect(h.http_addr().expect("http"));

    let r = c.get("/");
    assert_eq!(r.code, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("server"), Some("connbench"));
    assert_eq!(
        r.header("connection"),
        None,
        "HTTP/1.1 keep-alive is implicit"
    );
    assert!((150..=260).contains(&r.body.len()));
    serde_json::from_slice::<serde_json::Value>(&r.body).expect("json");

    for n in [0usize, 1, 5000, 100_000, 3 << 20] {
        let r = c.get(&format!("/bytes/{n}"));
        assert_eq!(r.code, 200);
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert_eq!(r.body.len(), n);
    }
    assert_eq!(c.get("/bytes/67108865").code, 400);

    for n in [0usize, 10, 8192, 50_000] {
        let r = c.get(&format!("/chunked/{n}"));
        assert_eq!(r.code, 200);
        assert_eq!(r.header("transfer-encoding"), Some("chunked"));
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.body.len(), n);
    }

    let t0 = Instant::now();
    let r = c.get("/delay/30000");
    assert_eq!(r.code, 200);
    assert!(t0.elapsed() >= Duration::from_millis(30));
    assert_eq!(r.body, br#"{"delay_us":30000}"#);

    let r = c.get("/status/503");
    assert_eq!(
        (r.code, r.header("content-type")),
        (503, Some("text/plain"))
    );
    assert_eq!(r.body, b"503 Service Unavailable\n");
    let r = c.get("/status/204");
    assert_eq!(r.code, 204);
    assert_eq!(r.header("content-length"), None);
    assert_eq!(c.get("/status/101").code, 400);
    assert_eq!(c.get("/status/999").code, 400);

    let r = c.get("/exchanges/binance/trades?symbol=BTCUSDT&limit=7");
    assert_eq!(r.code, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["exchange"], "binance");
    assert_eq!(v["symbol"], "BTCUSDT");
    assert_eq!(v["trades"].as_array().map(Vec::len), Some(7));
    let r = c.get("/exchanges/binance/trades?symbol=BTCUSDT");
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(v["trades"].as_array().map(Vec::len), Some(100));
    assert_eq!(c.get("/exchanges/binance/trades?limit=3").code, 400);

    let r = c.get("/no/such/route");
    assert_eq!(r.code, 404);
    // Route errors are well-formed requests: the connection stays usable.
    assert_eq!(c.get("/").code, 200);
    h.stop();
}

#[test]
fn head_is_supported_on_every_route() {
    let h = serve(plain_only());
    let mut c = Client::connect(h.http_addr().expect("http"));
    let routes = [
        ("/", 200),
        ("/bytes/12345", 200),
        ("/chunked/20000", 200),
        ("/delay/1000", 200),
        ("/status/418", 418),
        ("/exchanges/x/trades?symbol=Y", 200),
        ("/missing", 404),
    ];
    for (path, code) in routes {
        let get = c.get(path);
        c.send(&format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let head = c.response(true);
        assert_eq!(head.code, code, "{path}");
        assert_eq!(
            head.header("content-length"),
            get.header("content-length"),
            "{path}"
        );
        assert_eq!(
            head.header("transfer-encoding"),
            get.header("transfer-encoding")
        );
        assert_eq!(head.header("content-type"), get.header("content-type"));
    }
    // No stray body bytes were sent after any HEAD answer: the next response parses cleanly.
    assert_eq!(c.get("/bytes/3").body, b"xxx");
    h.stop();
}

#[test]
fn pipelined_requests_come_back_in_order_behind_a_delay() {
    let h = serve(plain_only());
    let mut c = Client::connect(h.http_addr().expect("http"));
    let paths = [
        "/bytes/1",
        "/delay/20000",
        "/bytes/3",
        "/status/201",
        "/chunked/70000",
        "/",
        "/bytes/100000",
        "/status/202",
    ];
    let all: String = paths
        .iter()
        .map(|p| format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n"))
        .collect();
    c.send(&all);
    let got: Vec<(u16, usize)> = paths
        .iter()
        .map(|_| {
            let r = c.response(false);
            (r.code, r.body.len())
        })
        .collect();
    let index_len = c.get("/").body.len();
    assert_eq!(
        got,
        vec![
            (200, 1),
            (200, 18),
            (200, 3),
            (201, 12),
            (200, 70_000),
            (200, index_len),
            (200, 100_000),
            (202, 13),
        ]
    );
    h.stop();
}

#[test]
fn many_pipelined_requests_with_bodies_in_one_write() {
    let h = serve(plain_only());
    let mut c = Client::connect(h.http_addr().expect("http"));
    // More than the per-connection pipeline limit, each with a body to discard.
    let one = "POST /bytes/2 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello";
    c.send(&one.repeat(300));
    for i in 0..300 {
        let r = c.response(false);
        assert_eq!(
            (r.code, r.body.as_slice()),
            (200, &b"xx"[..]),
            "response {i}"
        );
    }
    h.stop();
}

#[test]
fn a_delayed_response_does_not_delay_other_connections() {
    let h = serve(plain_only());
    let addr = h.http_addr().expect("http");
    let mut slow = Client::connect(addr);
    slow.send("GET /delay/200000 HTTP/1.1\r\nHost: t\r\n\r\n");
    // Make sure the server has read the delayed request before timing the fast one.
    assert!(wait_for(|| h.stats().requests >= 1));
    let mut fast = Client::connect(addr);
    let t0 = Instant::now();
    assert_eq!(fast.get("/").code, 200);
    let fast_took = t0.elapsed();
    let r = slow.response(false);
    let slow_took = t0.elapsed();
    assert_eq!(r.code, 200);
    // Huge margin: a blocking server would take ~200 ms for the fast request.
    assert!(fast_took < Duration::from_millis(100), "{fast_took:?}");
    assert!(slow_took > fast_took);
    h.stop();
}

#[test]
fn keep_alive_serves_100_requests_on_one_connection() {
    let h = serve(plain_only());
    let mut c = Client::connect(h.http_addr().expect("http"));
    for i in 0..100 {
        let r = c.get("/");
        assert_eq!(r.code, 200, "request {i}");
        assert_eq!(r.header("connection"), None);
    }
    let s = h.stats();
    assert_eq!((s.requests, s.accepted, s.rejected, s.open), (100, 1, 0, 1));
    drop(c);
    assert!(wait_for(|| h.stats().open == 0), "{:?}", h.stats());
    h.stop();
}

#[test]
fn close_after_marks_the_nth_response_and_closes() {
    let h = serve(ServeConfig {
        close_after: Some(3),
        ..plain_only()
    });
    let mut c = Client::connect(h.http_addr().expect("http"));
    assert_eq!(c.get("/").header("connection"), None);
    assert_eq!(c.get("/").header("connection"), None);
    let third = c.get("/");
    assert_eq!(third.code, 200);
    assert_eq!(third.header("connection"), Some("close"));
    assert!(c.closed(), "connection stays open after close_after");
    h.stop();
}

#[test]
fn fail_after_answers_the_status_once_n_requests_were_routed_over_every_connection() {
    let s = serve(ServeConfig {
        http_fail_after: Some((3, 503)),
        ..plain_only()
    });
    let addr = s.http_addr().expect("plain port");
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    // The count is the target's, not a connection's: 2 on one, then 1 on the other.
    assert_eq!(a.get("/").code, 200);
    assert_eq!(a.get("/status/204").code, 204);
    assert_eq!(b.get("/bytes/10").code, 200);
    for r in [a.get("/"), b.get("/"), a.get("/")] {
        assert_eq!(r.code, 503, "{r:?}");
        // Keep-alive: the connection goes on carrying requests.
        assert_ne!(r.header("connection"), Some("close"), "{r:?}");
    }
    assert_eq!(s.stats().http_failed, 3);
    assert_eq!(s.stats().requests, 6);
    s.stop();
    assert!(start(ServeConfig {
        http_fail_after: Some((1, 99)),
        ..plain_only()
    })
    .is_err());
}

#[test]
fn client_connection_close_and_http10_rules() {
    let h = serve(plain_only());
    let addr = h.http_addr().expect("http");

    let mut c = Client::connect(addr);
    c.send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(c.response(false).header("connection"), Some("close"));
    assert!(c.closed());

    let mut c = Client::connect(addr);
    c.send("GET /chunked/10 HTTP/1.0\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        r.header("content-length"),
        Some("10"),
        "no chunked for HTTP/1.0"
    );
    assert!(c.closed());

    let mut c = Client::connect(addr);
    for _ in 0..3 {
        c.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(c.response(false).header("connection"), Some("keep-alive"));
    }
    h.stop();
}

#[test]
fn half_closed_client_still_gets_its_answers() {
    let h = serve(plain_only());
    let mut c = Client::connect(h.http_addr().expect("http"));
    c.send("GET /delay/10000 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes/4 HTTP/1.1\r\nHost: t\r\n\r\n");
    c.s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    assert_eq!(c.response(false).code, 200);
    assert_eq!(c.response(false).body, b"xxxx");
    assert!(c.closed());
    h.stop();
}

#[test]
fn half_close_behind_a_full_pipeline_is_still_seen() {
    // A delayed request holds back a full pipeline behind it, more requests follow, then EOF.
    // The EPOLLRDHUP edge arrives while reading is paused; the rest is read from the one
    // timer-driven drive, where a short read must not be taken as "drained" or the EOF behind
    // it is never seen and the connection leaks.
    let h = serve(plain_only());
    let mut c = Client::connect(h.http_addr().expect("http"));
    let mut reqs = "GET /delay/20000 HTTP/1.1\r\nHost: t\r\n\r\n".to_string();
    reqs.push_str(&"GET /bytes/1 HTTP/1.1\r\nHost: t\r\n\r\n".repeat(300));
    c.send(&reqs);
    c.s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    for i in 0..301 {
        let r = c.response(false);
        assert_eq!((r.code, r.body.len() == 1), (200, i >= 1), "response {i}");
    }
    assert!(c.closed());
    assert!(wait_for(|| h.stats().open == 0), "{:?}", h.stats());
    h.stop();
}

#[test]
fn malformed_requests_get_400_and_close() {
    let h = serve(plain_only());
    let addr = h.http_addr().expect("http");
    let mut c = Client::connect(addr);
    c.send("THIS IS NOT HTTP\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.code, 400);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());

    // Chunked request bodies are answered 411 (Length Required), then the connection closes.
    let mut c = Client::connect(addr);
    c.send(
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let r = c.response(false);
    assert_eq!((r.code, r.header("connection")), (411, Some("close")));
    assert!(c.closed());

    // An endless head is cut off at the limit with 431 instead of growing without bound.
    let mut c = Client::connect(addr);
    c.send(&format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(40_000)));
    let r = c.response(false);
    assert_eq!((r.code, r.header("connection")), (431, Some("close")));
    assert!(c.closed());

    // The server is unharmed.
    assert_eq!(Client::connect(addr).get("/").code, 200);
    h.stop();
}

#[test]
fn max_conns_refuse_resets_the_extra_connection() {
    let h = serve(ServeConfig {
        max_conns: Some(2),
        over_limit: OverLimit::Refuse,
        ..plain_only()
    });
    let addr = h.http_addr().expect("http");
    let mut a = Client::connect(addr);
    let mut b = Client::connect(addr);
    assert_eq!(a.get("/").code, 200);
    assert_eq!(b.get("/").code, 200);
    let mut c = Client::connect(addr);
    let mut byte = [0u8; 1];
    match c.s.read(&mut byte) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
    let s = h.stats();
    assert_eq!((s.accepted, s.rejected, s.open), (2, 1, 2));
    // A slot frees up when an admitted connection closes.
    drop(a);
    assert!(wait_for(|| h.stats().open == 1));
    assert_eq!(Client::connect(addr).get("/").code, 200);
    assert_eq!(b.get("/").code, 200);
    h.stop();
}

#[test]
fn max_conns_zero_rejects_everything() {
    let h = serve(ServeConfig {
        max_conns: Some(0),
        over_limit: OverLimit::TooMany,
        ..plain_only()
    });
    for _ in 0..3 {
        let mut c = Client::connect(h.http_addr().expect("http"));
        assert_eq!(c.get("/").code, 429);
        assert!(c.closed());
    }
    let s = h.stats();
    assert_eq!((s.accepted, s.rejected, s.open), (0, 3, 0));
    h.stop();
}

#[test]
fn max_conns_too_many_answers_429_then_closes() {
    let h = serve(ServeConfig {
        max_conns: Some(1),
        over_limit: OverLimit::TooMany,
        ..plain_only()
    });
    let addr = h.http_addr().expect("http");
    let mut a = Client::connect(addr);
    assert_eq!(a.get("/").code, 200);
    let mut b = Client::connect(addr);
    let r = b.get("/");
    assert_eq!(r.code, 429);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(b.closed());
    assert_eq!(
        a.get("/").code,
        200,
        "the admitted connection is unaffected"
    );
    let s = h.stats();
    assert_eq!((s.requests, s.accepted, s.rejected, s.open), (3, 1, 1, 1));
    h.stop();
}

/// A rustls client config that trusts only the target's certificate.
fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let roots = root_store(ca_pem);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

type TlsClient = Client<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

fn tls_connect(cfg: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> TlsClient {
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::clone(cfg), name).expect("client conn");
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    Client {
        s: rustls::StreamOwned::new(conn, sock),
        buf: Vec::new(),
    }
}

#[test]
fn tls_requests_and_session_resumption() {
    let h = serve(ServeConfig {
        http_port: None,
        ..ServeConfig::default()
    });
    assert_eq!(h.http_addr(), None);
    let addr = h.https_addr().expect("https");
    let cfg = client_config(h.ca_pem());

    let mut first = tls_connect(&cfg, addr);
    assert_eq!(first.get("/").code, 200);
    assert_eq!(first.get("/bytes/300000").body.len(), 300_000);
    assert_eq!(first.get("/chunked/40000").body.len(), 40_000);
    let conn = &first.s.conn;
    assert_eq!(conn.handshake_kind(), Some(rustls::HandshakeKind::Full));
    assert_eq!(conn.alpn_protocol(), Some(&b"http/1.1"[..]));

    // Tickets came with the first responses; a second connection with the same config resumes.
    let mut second = tls_connect(&cfg, addr);
    assert_eq!(second.get("/").code, 200);
    assert_eq!(
        second.s.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );

    // Pipelined over TLS too.
    second.send(&"GET /bytes/7 HTTP/1.1\r\nHost: t\r\n\r\n".repeat(20));
    for _ in 0..20 {
        assert_eq!(second.response(false).body, b"xxxxxxx");
    }
    let s = h.stats();
    assert_eq!((s.accepted, s.open), (2, 2));
    h.stop();
}

#[test]
fn tls12_clients_resume_too() {
    let h = serve(ServeConfig {
        http_port: None,
        ..ServeConfig::default()
    });
    let addr = h.https_addr().expect("https");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .expect("tls12")
        .with_root_certificates(root_store(h.ca_pem()))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    let mut first = tls_connect(&cfg, addr);
    assert_eq!(first.get("/").code, 200);
    assert_eq!(
        first.s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut second = tls_connect(&cfg, addr);
    assert_eq!(second.get("/").code, 200);
    assert_eq!(
        second.s.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );
    h.stop();
}

fn root_store(ca_pem: &str) -> rustls::RootCertStore {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("pem")).expect("add root");
    }
    roots
}

#[test]
fn cert_out_writes_a_parseable_pem_matching_ca_pem() {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let path = std::env::temp_dir().join(format!("connbench-target-{}.pem", std::process::id()));
    let h = serve(ServeConfig {
        cert_out: Some(path.clone()),
        ..ServeConfig::default()
    });
    let written = std::fs::read_to_string(&path).expect("cert written");
    let _ = std::fs::remove_file(&path);
    assert_eq!(written, h.ca_pem());
    let certs: Vec<_> = CertificateDer::pem_slice_iter(written.as_bytes())
        .collect::<Result<_, _>>()
        .expect("parseable");
    assert_eq!(certs.len(), 1);
    h.stop();
}

#[test]
fn cert_out_to_a_bad_path_is_a_start_error() {
    let bad = std::env::temp_dir()
        .join("connbench-no-such-dir-for-sure")
        .join("cert.pem");
    match start(ServeConfig {
        cert_out: Some(bad.clone()),
        ..ServeConfig::default()
    }) {
        Err(e @ ServeError::CertOut { .. }) => {
            assert!(e.to_string().contains("connbench-no-such-dir-for-sure"))
        }
        other => panic!("expected CertOut, got {other:?}"),
    }
}

#[test]
fn invalid_configs_are_rejected_before_binding() {
    let bad = [
        ServeConfig {
            threads: 0,
            ..ServeConfig::default()
        },
        ServeConfig {
            http_port: None,
            https_port: None,
            ..ServeConfig::default()
        },
        ServeConfig {
            close_after: Some(0),
            ..ServeConfig::default()
        },
        ServeConfig {
            ws_drop_rst: true,
            ..ServeConfig::default()
        },
    ];
    for cfg in bad {
        assert!(matches!(start(cfg), Err(ServeError::Config(_))));
    }
}

#[test]
fn stop_closes_the_ports() {
    let h = serve(ServeConfig::default());
    let http = h.http_addr().expect("http");
    let https = h.https_addr().expect("https");
    let mut idle = Client::connect(http);
    assert_eq!(idle.get("/").code, 200);
    h.stop();
    for addr in [http, https] {
        let err = TcpStream::connect(addr).expect_err("port still open after stop");
        assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    }
    assert!(idle.closed(), "open connections are closed by stop");
}

#[test]
fn several_threads_share_the_ports() {
    let h = serve(ServeConfig {
        threads: 2,
        ..ServeConfig::default()
    });
    let addr = h.http_addr().expect("http");
    let mut clients: Vec<_> = (0..40).map(|_| Client::connect(addr)).collect();
    for c in &mut clients {
        assert_eq!(c.get("/bytes/10").body.len(), 10);
    }
    let cfg = client_config(h.ca_pem());
    let mut t = tls_connect(&cfg, h.https_addr().expect("https"));
    assert_eq!(t.get("/").code, 200);
    let s = h.stats();
    assert_eq!((s.requests, s.accepted, s.open), (41, 41, 41));
    drop(clients);
    drop(t);
    assert!(wait_for(|| h.stats().open == 0));
    h.stop();
}

#[test]
fn pinning_to_an_allowed_cpu_works_and_to_a_missing_one_fails() {
    // Linux always reports the calling thread's allowed CPUs; none would be a defect to see.
    let first = core_affinity::get_core_ids()
        .and_then(|ids| ids.first().copied())
        .expect("sched_getaffinity lists at least one allowed CPU");
    let h = serve(ServeConfig {
        cpus: vec![first.id],
        ..plain_only()
    });
    assert_eq!(
        Client::connect(h.http_addr().expect("http")).get("/").code,
        200
    );
    h.stop();
    match start(ServeConfig {
        cpus: vec![100_000],
        ..plain_only()
    }) {
        Err(ServeError::Config(msg)) => assert!(msg.contains("100000")),
        other => panic!("expected a pinning error, got {other:?}"),
    }
}

#[test]
fn garbage_and_abrupt_clients_never_hurt_the_server() {
    let h = serve(ServeConfig::default());
    let http = h.http_addr().expect("http");
    let https = h.https_addr().expect("https");
    // Plain garbage on the TLS port, a half-sent head on the plain port, and an early reset.
    let mut s = TcpStream::connect(https).expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let mut s2 = TcpStream::connect(http).expect("connect");
    s2.write_all(b"GET /bytes/10 HT").expect("write");
    let s3 = TcpStream::connect(http).expect("connect");
    socket2::SockRef::from(&s3)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(s3);
    let mut b = [0u8; 64];
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    // rustls answers a non-TLS record with an alert or a close; either way the server ends it.
    let _ = s.read(&mut b);
    drop(s2);
    drop(s);
    let cfg = client_config(h.ca_pem());
    assert_eq!(tls_connect(&cfg, https).get("/").code, 200);
    assert_eq!(Client::connect(http).get("/").code, 200);
    assert!(wait_for(|| h.stats().open == 0), "{:?}", h.stats());
    h.stop();
}

#[test]
fn http_stall_holds_every_request_in_the_window_then_answers_them_in_order() {
    let after = Duration::from_millis(300);
    let len = Duration::from_millis(700);
    let h = serve(ServeConfig {
        http_stall: Some((after, len)),
        ..plain_only()
    });
    let addr = h.http_addr().expect("http");
    let mut a = Client::connect(addr);
    // The window is timed from the first request the target reads: it begins no later than
    // `answered + after` and ends no earlier than `sent + after + len`.
    let sent = Instant::now();
    assert_eq!(a.get("/").code, 200, "answered before the stall");
    let answered = Instant::now();
    let window_end = sent + after + len;
    assert_eq!(h.stats().http_stalled_requests, 0);

    std::thread::sleep(
        (answered + after + Duration::from_millis(20)).saturating_duration_since(Instant::now()),
    );
    assert!(
        Instant::now() + Duration::from_millis(200) < window_end,
        "test too slow to time"
    );
    // Three pipelined requests on one connection, one on a fresh connection.
    a.send("GET /bytes/1 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes/2 HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes/3 HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut b = Client::connect(addr);
    b.send("GET /status/503 HTTP/1.1\r\nHost: t\r\n\r\n");
    // Read and queued, not answered.
    assert!(
        wait_for(|| h.stats().http_stalled_requests == 4),
        "{:?}",
        h.stats()
    );
    a.s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    match a.s.read(&mut byte) {
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "{e}"
        ),
        Ok(n) => panic!("answered during the stall ({n} bytes)"),
    }
    a.s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    for n in 1..=3 {
        let r = a.response(false);
        assert_eq!(
            (r.code, r.body.len()),
            (200, n),
            "replies keep request order"
        );
    }
    assert!(
        Instant::now() >= window_end,
        "answered before the window ended"
    );
    assert_eq!(b.response(false).code, 503);
    // After the window, requests are answered at once again and no longer counted.
    let t = Instant::now();
    assert_eq!(a.get("/").code, 200);
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(h.stats().http_stalled_requests, 4);
    h.stop();
}

#[test]
fn http_stall_of_zero_length_is_a_config_error() {
    let cfg = ServeConfig {
        http_stall: Some((Duration::from_secs(1), Duration::ZERO)),
        ..plain_only()
    };
    assert!(matches!(start(cfg), Err(ServeError::Config(_))));
    let cfg = ServeConfig {
        http_stall: Some((Duration::from_secs(u64::MAX / 4), Duration::from_secs(1))),
        ..plain_only()
    };
    assert!(matches!(start(cfg), Err(ServeError::Config(_))));
}

/// How a connection ended after the last byte the client read.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum End {
    /// A read returned 0 (TCP FIN; for TLS, after a close_notify).
    Eof,
    /// A read failed with ECONNRESET.
    Reset,
    /// TLS only: the TCP connection ended without a close_notify.
    EofWithoutCloseNotify,
}

/// Reads until the connection ends; returns every byte and how it ended. A read that times
/// out fails the test.
fn read_to_the_end<S: Read>(s: &mut S) -> (Vec<u8>, End) {
    let mut all = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (all, End::Eof),
            Ok(n) => all.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (all, End::Reset),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return (all, End::EofWithoutCloseNotify)
            }
            Err(e) => panic!("{e} after {} bytes", all.len()),
        }
    }
}

/// Checks one answer of a close fault: status, framing headers, body length, how it ended.
fn check_cut(path: &str, wire: &[u8], end: End, length: Option<&str>, body: usize, want: End) {
    let mut h = [httparse::EMPTY_HEADER; 16];
    let mut r = httparse::Response::new(&mut h);
    let head = match r.parse(wire).expect("valid head") {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("{path}: partial head {wire:?}"),
    };
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    assert_eq!(r.code, Some(200), "{path}");
    assert_eq!(header("content-length").as_deref(), length, "{path}");
    assert_eq!(header("transfer-encoding"), None, "{path}");
    assert_eq!(header("connection").as_deref(), Some("close"), "{path}");
    assert_eq!(wire.len() - head, body, "{path}: body bytes");
    assert!(wire[head..].iter().all(|&b| b == b'x'), "{path}");
    assert_eq!(end, want, "{path}");
}

#[test]
fn close_fault_routes_send_their_bytes_then_a_fin_or_a_reset() {
    let h = serve(ServeConfig::default());
    let cases = [
        ("/close/fin/1000", None, 1000, End::Eof),
        ("/close/rst/1000", None, 1000, End::Reset),
        ("/close/fin/0", None, 0, End::Eof),
        ("/truncate/fin/1000", Some("1000"), 500, End::Eof),
        ("/truncate/rst/1001", Some("1001"), 500, End::Reset),
        ("/truncate/fin/1", Some("1"), 0, End::Eof),
        ("/close/fin/100000", None, 100_000, End::Eof),
    ];
    for (path, length, body, end) in cases {
        let mut c = Client::connect(h.http_addr().expect("http"));
        // A request pipelined behind the fault is never answered: the fault is the last reply.
        c.send(&format!(
            "GET {path} HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n"
        ));
        let (wire, how) = read_to_the_end(&mut c.s);
        check_cut(path, &wire, how, length, body, end);
    }
    // Over TLS the FIN comes without a close_notify (a dropped connection, not a closed
    // session); the reset is a reset.
    let cfg = client_config(h.ca_pem());
    for (path, length, body, end) in [
        ("/close/fin/1000", None, 1000, End::EofWithoutCloseNotify),
        ("/close/rst/1000", None, 1000, End::Reset),
        (
            "/truncate/fin/1000",
            Some("1000"),
            500,
            End::EofWithoutCloseNotify,
        ),
    ] {
        let mut c = tls_connect(&cfg, h.https_addr().expect("https"));
        c.send(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n"));
        let (wire, how) = read_to_the_end(&mut c.s);
        check_cut(path, &wire, how, length, body, end);
    }
    assert!(wait_for(|| h.stats().open == 0), "{:?}", h.stats());
    let mut c = Client::connect(h.http_addr().expect("http"));
    assert_eq!(c.get("/close/other/1").code, 404);
    let mut c = Client::connect(h.http_addr().expect("http"));
    assert_eq!(c.get("/truncate/fin/0").code, 400);
    let mut c = Client::connect(h.http_addr().expect("http"));
    assert_eq!(c.get("/close/rst/67108865").code, 400);
    h.stop();
}

#[test]
fn max_conns_close_ends_the_extra_connection_with_a_fin_before_any_byte() {
    let h = serve(ServeConfig {
        max_conns: Some(1),
        over_limit: OverLimit::Close,
        ..ServeConfig::default()
    });
    let addr = h.http_addr().expect("http");
    let mut a = Client::connect(addr);
    assert_eq!(a.get("/").code, 200);
    for port in [addr, h.https_addr().expect("https")] {
        let mut c = Client::connect(port);
        // Whether the request arrives before or after the server's FIN, the end is a clean EOF
        // (the server discards it instead of resetting), and no byte comes back.
        c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        let (wire, how) = read_to_the_end(&mut c.s);
        assert_eq!((wire.len(), how), (0, End::Eof), "{port}");
    }
    let s = h.stats();
    assert_eq!((s.accepted, s.rejected, s.open), (1, 2, 1));
    assert_eq!(
        a.get("/").code,
        200,
        "the admitted connection is unaffected"
    );
    h.stop();
}

fn with_echo() -> ServeConfig {
    ServeConfig {
        echo_port: Some(0),
        ..plain_only()
    }
}

/// Write `data` in pieces of `piece` bytes and read everything back.
fn echo_round(s: &mut TcpStream, data: &[u8], piece: usize) -> Vec<u8> {
    let mut back = vec![0u8; data.len()];
    for chunk in data.chunks(piece) {
        s.write_all(chunk).expect("write");
    }
    s.read_exact(&mut back).expect("read the echo");
    back
}

#[test]
fn the_echo_listener_sends_every_byte_back_whole_byte_by_byte_and_in_bulk() {
    let h = serve(with_echo());
    let addr = h.echo_addr().expect("echo listener");
    assert_ne!(Some(addr), h.http_addr());
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let ping: Vec<u8> = (0..64u8).collect();
    assert_eq!(echo_round(&mut s, &ping, 64), ping, "whole");
    // A byte at a time, each waited for: every one comes back on its own.
    for &b in &ping {
        assert_eq!(echo_round(&mut s, &[b], 1), [b], "byte {b}");
    }
    // Not HTTP: a request line is echoed, not answered.
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(echo_round(&mut s, req, req.len()), req);
    // 4 MiB written by a thread while this one reads: more than the socket buffers hold, so
    // the target must keep what the socket refuses and resume on the writable edge.
    let bulk: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut writer = s.try_clone().unwrap();
    let sent = bulk.clone();
    let t = std::thread::spawn(move || writer.write_all(&sent).expect("bulk write"));
    let mut back = vec![0u8; bulk.len()];
    s.read_exact(&mut back).expect("bulk echo");
    t.join().unwrap();
    assert!(back == bulk, "4 MiB came back intact");
    // The HTTP port beside it is untouched.
    assert_eq!(Client::connect(h.http_addr().unwrap()).get("/").code, 200);
    let echoed = h.stats().echo_bytes;
    assert_eq!(echoed, (64 + 64 + req.len() + bulk.len()) as u64);
    // The client's FIN: the target closes its side too.
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).expect("EOF"), 0);
    assert!(wait_for(|| h.stats().open == 0));
    h.stop();
}

#[test]
fn echo_connections_past_max_conns_are_reset() {
    let h = serve(ServeConfig {
        max_conns: Some(1),
        over_limit: OverLimit::TooMany,
        ..with_echo()
    });
    let addr = h.echo_addr().unwrap();
    let mut first = TcpStream::connect(addr).unwrap();
    first.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(echo_round(&mut first, b"ok", 2), b"ok");
    let mut second = TcpStream::connect(addr).unwrap();
    second.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // Nothing written: a write that met the reset first would consume its error, and the
    // read would then see EOF.
    let mut byte = [0u8; 1];
    match second.read(&mut byte) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("expected a reset, read {n} bytes"),
    }
    let s = h.stats();
    assert_eq!((s.accepted, s.rejected, s.open), (1, 1, 1));
    h.stop();
}
