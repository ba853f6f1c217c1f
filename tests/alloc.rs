//! No heap allocation per request (HTTP) or per message (WebSocket) in steady state, checked by
//! counting.
//!
//! Its own test binary (not part of `tests/tests.rs`) because it installs a counting global
//! allocator and must be the only thing running in its process: two runs of different lengths
//! against the in-process target are counted, and the difference divided by the difference in
//! requests is the allocations per request of client *and* target together. Connection setup,
//! histograms and threads cost the same in both runs and cancel out.

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
        progress: false,
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
    let server = serve::start(ServeConfig::default()).expect("target");
    let url = format!("http://{}/", server.http_addr().unwrap());
    let per = allocs_per_request(&url, None);
    let tls_url = format!("https://localhost:{}/", server.https_addr().unwrap().port());
    let tls_per = allocs_per_request(&tls_url, Some(server.ca_pem().as_bytes().to_vec()));
    server.stop();
    eprintln!("allocations per request: plain {per:.4}, tls {tls_per:.4} (client + target)");
    assert!(
        per < 0.01,
        "plain keep-alive allocates {per} times per request"
    );
    // TLS: rustls' buffered connections allocate one Vec per record in each direction, on
    // each side (4 in all). Nothing of connbench's own may add to that.
    assert!(
        tls_per < 4.5,
        "TLS keep-alive allocates {tls_per} times per request"
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

fn ws_plan(url: &str, duration: Duration) -> connbench::plan::WsPlan {
    use connbench::engine::reconnect::BackoffPolicy;
    use connbench::plan::{Heartbeat, WsMode, WsPlan, WsSession};
    use connbench::proto::jsonfield::FieldPath;
    let (target, _) = connbench::app::parse_url(url, true).expect("url");
    WsPlan {
        target,
        tls: TlsPlan::default(),
        headers: vec![],
        connections: 2,
        threads: 1,
        pinning: Pinning::None,
        duration,
        warmup: Duration::ZERO,
        connect_timeout: Duration::from_secs(5),
        progress: false,
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
    let count = |d: Duration| {
        let before = ALLOCS.load(Ordering::Relaxed);
        let r = connbench::engine::run_ws(&ws_plan(&url, d)).expect("run");
        let after = ALLOCS.load(Ordering::Relaxed);
        (after - before, r.recorder.counters.ws.messages_in)
    };
    count(Duration::from_millis(300));
    let (a, ma) = count(Duration::from_millis(300));
    let (b, mb) = count(Duration::from_millis(1300));
    server.stop();
    assert!(
        mb > ma + 10_000,
        "the longer run received more: {ma} vs {mb}"
    );
    let per = (b as f64 - a as f64) / (mb - ma) as f64;
    eprintln!("allocations per WebSocket message: {per:.4} (client + target)");
    assert!(per < 0.01, "{per} allocations per message");
}
