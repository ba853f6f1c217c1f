//! No heap allocation per request (HTTP) or per message (WebSocket) in steady state, checked by
//! counting.
//!
//! Its own test binary (not part of `tests/tests.rs`) because it installs a counting global
//! allocator and must be the only thing running in its process: two runs of different lengths
//! are counted, and the difference divided by the difference in requests (messages) is the
//! allocations per request. Connection setup, handshakes, histograms and threads cost the same
//! in both runs and cancel out.
//!
//! What is counted:
//! - plain HTTP and plain WebSocket: client *and* target together (the target runs in-process).
//! - TLS (HTTP and WebSocket): the client alone. The target runs out of process (`connbench
//!   serve`, the built binary), because its TLS side still uses rustls' buffered
//!   `ServerConnection`, which allocates a record buffer per record in each direction; the
//!   client's transport opens and seals records in place (`engine::core::record`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use connbench::plan::{HttpPlan, Pinning, Stop, TlsPlan};
use connbench::serve::{self, ServeConfig};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// The counter is process-wide: the tests of this binary take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn plan(url: &str, ca: Option<Vec<u8>>, requests: u64) -> HttpPlan {
    let (target, _) = connbench::app::parse_target(url).expect("url");
    HttpPlan {
        target,
        tls: TlsPlan {
            extra_ca_pem: ca,
            resume: true,
            ..TlsPlan::default()
        },
        method: "GET".into(),
        headers: vec![],
        body: vec![],
        connections: 4,
        threads: 1,
        pinning: Pinning::None,
        pipeline: 1,
        stop: Stop::Requests(requests),
        warmup: Duration::ZERO,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        // The live line on (its recent-sample hand-over and its drawing): still 0 per request.
        progress: connbench::plan::Progress::new(connbench::plan::ProgressWhen::Always),
        intervals: false,
        rate: None,
        stages: vec![],
        sources: vec![],
        requests_per_conn: None,
        conn_rate: None,
        close: Default::default(),
        busy_poll: None,
        verbose: false,
        start_at: None,
    }
}

fn allocs_per_request(url: &str, ca: Option<Vec<u8>>) -> f64 {
    let (short, long) = (2_000u64, 22_000u64);
    let count = |n: u64| {
        let before = ALLOCS.load(Ordering::Relaxed);
        let r = connbench::engine::run(&plan(url, ca.clone(), n)).expect("run");
        let after = ALLOCS.load(Ordering::Relaxed);
        assert_eq!(r.recorder.counters.responses, n, "every request answered");
        after - before
    };
    count(short); // warm every lazy initialisation once
    let a = count(short);
    let b = count(long);
    (b as f64 - a as f64) / (long - short) as f64
}

#[test]
fn plain_keep_alive_allocates_nothing_per_request() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve::start(ServeConfig {
        https_port: None,
        ..ServeConfig::default()
    })
    .expect("target");
    let url = format!("http://{}/", server.http_addr().unwrap());
    let per = allocs_per_request(&url, None);
    server.stop();
    eprintln!("allocations per request: plain {per:.4} (client + target)");
    assert!(
        per < 0.01,
        "plain keep-alive allocates {per} times per request"
    );
}

/// `connbench serve` in a child process, killed when dropped (also when a test fails).
struct OutOfProcess {
    child: std::process::Child,
    https: String,
    ca: Vec<u8>,
}

impl OutOfProcess {
    fn start(extra: &[&str]) -> OutOfProcess {
        use std::io::BufRead;
        let dir = std::env::temp_dir().join(format!("connbench-alloc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cert = dir.join("cert.pem");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_connbench"))
            .args([
                "serve",
                "--no-http",
                "--https",
                "0",
                "--for",
                "300s",
                "--cert-out",
            ])
            .arg(&cert)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn connbench serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut https = None;
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref().take(10) {
            let line = line.expect("serve output");
            if line.starts_with("https ") {
                https = line.split_whitespace().nth(1).map(str::to_string);
                break;
            }
        }
        // Keep reading what it prints, so it never writes into a closed pipe (it would die).
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        let mut server = OutOfProcess {
            child,
            https: String::new(),
            ca: Vec::new(),
        };
        server.https = https.expect("serve prints its https URL");
        server.ca = std::fs::read(&cert).expect("serve wrote its certificate");
        let _ = std::fs::remove_dir_all(&dir);
        server
    }

    /// host:port of the TLS listener.
    fn authority(&self) -> &str {
        self.https
            .trim_start_matches("https://")
            .trim_end_matches('/')
    }
}

impl Drop for OutOfProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_keep_alive_allocates_nothing_per_request_in_the_client() {
    // rustls' buffered ClientConnection allocated a record Vec per request and one per
    // response; the record layer in the transport now works in the connection's own buffers.
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = OutOfProcess::start(&[]);
    let url = format!("https://{}/", server.authority());
    let per = allocs_per_request(&url, Some(server.ca.clone()));
    drop(server);
    eprintln!("allocations per TLS request: {per:.4} (client only)");
    assert!(
        per < 0.01,
        "TLS keep-alive allocates {per} times per request"
    );
}

#[test]
fn many_header_fields_allocate_nothing_per_request() {
    // Heads past the decoder's 64 stack slots go to heap slots that are allocated once per
    // connection and reused (and the target writes them into its reused buffer).
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve::start(ServeConfig {
        https_port: None,
        ..ServeConfig::default()
    })
    .expect("target");
    let url = format!("http://{}/headers/300", server.http_addr().unwrap());
    let per = allocs_per_request(&url, None);
    server.stop();
    eprintln!("allocations per 300-field response: {per:.4} (client + target)");
    assert!(per < 0.01, "{per} allocations per 300-field response");
}

fn ws_plan(url: &str, ca: Option<Vec<u8>>, duration: Duration) -> connbench::plan::WsPlan {
    use connbench::engine::reconnect::BackoffPolicy;
    use connbench::plan::{Heartbeat, WsMode, WsPlan, WsSession};
    use connbench::proto::jsonfield::FieldPath;
    let (target, _) = connbench::app::parse_url(url, true).expect("url");
    WsPlan {
        target,
        tls: TlsPlan {
            extra_ca_pem: ca,
            ..TlsPlan::default()
        },
        headers: vec![],
        connections: 2,
        threads: 1,
        pinning: Pinning::None,
        duration,
        warmup: Duration::ZERO,
        connect_timeout: Duration::from_secs(5),
        // The live line on (its recent-sample hand-over and its drawing): still 0 per request.
        progress: connbench::plan::Progress::new(connbench::plan::ProgressWhen::Always),
        intervals: false,
        session: WsSession {
            subscriptions: vec![r#"{"op":"subscribe","symbol":"BTCUSDT"}"#.into()],
            mode: WsMode::Stream,
            send_rate: 0.0,
            message_size: 64,
            ping_interval: Duration::from_secs(1),
            ts_field: Some(FieldPath::parse("timestamp").unwrap()),
            ts_unit: None,
            seq_field: Some(FieldPath::parse("seq").unwrap()),
            stream_field: FieldPath::parse("stream").unwrap(),
            utf8_check: true,
            max_message: 1 << 20,
            backoff: BackoffPolicy::default(),
            reconnect_budget: None,
            stale_after: None,
            heartbeat: Heartbeat::Off,
            heartbeat_interval: Duration::from_secs(20),
            pong_timeout: None,
            send_buffer: 100,
        },
        sources: vec![],
        busy_poll: None,
        verbose: false,
        stages: vec![],
        start_at: None,
    }
}

/// Allocations per WebSocket message received from `url`, counted over two stream runs.
fn allocs_per_message(url: &str, ca: Option<Vec<u8>>) -> f64 {
    let count = |d: Duration| {
        let before = ALLOCS.load(Ordering::Relaxed);
        let r = connbench::engine::run_ws(&ws_plan(url, ca.clone(), d)).expect("run");
        let after = ALLOCS.load(Ordering::Relaxed);
        (after - before, r.recorder.counters.ws.messages_in)
    };
    count(Duration::from_millis(300));
    let (a, ma) = count(Duration::from_millis(300));
    let (b, mb) = count(Duration::from_millis(1300));
    assert!(
        mb > ma + 10_000,
        "the longer run received more: {ma} vs {mb}"
    );
    (b as f64 - a as f64) / (mb - ma) as f64
}

#[test]
fn websocket_stream_allocates_nothing_per_message() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = serve::start(ServeConfig {
        ws_rate: 20_000.0,
        https_port: None,
        ..ServeConfig::default()
    })
    .expect("target");
    let url = format!("ws://{}/ws", server.http_addr().unwrap());
    let per = allocs_per_message(&url, None);
    server.stop();
    eprintln!("allocations per WebSocket message: {per:.4} (client + target)");
    assert!(per < 0.01, "{per} allocations per message");
}

#[test]
fn websocket_over_tls_allocates_nothing_per_message_in_the_client() {
    // The same rustls record Vecs as for HTTP, once per received message.
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let server = OutOfProcess::start(&["--ws-rate", "20000"]);
    let url = format!("wss://{}/ws", server.authority());
    let per = allocs_per_message(&url, Some(server.ca.clone()));
    drop(server);
    eprintln!("allocations per WebSocket-over-TLS message: {per:.4} (client only)");
    assert!(per < 0.01, "{per} allocations per message over TLS");
}
