//! The reference client of `scripts/ws-compare.sh`: how a market-data stream is usually consumed
//! in Rust — tungstenite over a blocking socket, serde_json to read the timestamp of each message
//! — so connbench's receive path can be measured against it on the same server.
//!
//! Usage: ws_tungstenite URL SECONDS SUBSCRIBE_JSON [serde|jsonfield]
//! `serde` (default) parses each message with serde_json; `jsonfield` reads the timestamp with
//! connbench's own scanner, so framing and parsing costs can be told apart.
//! Prints one JSON line: messages, thread CPU seconds, elapsed seconds, latency p50 (ns).

use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tungstenite::{client, Message};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(4..=5).contains(&args.len()) {
        eprintln!(
            "usage: ws_tungstenite ws://127.0.0.1:PORT/ws SECONDS SUBSCRIBE_JSON [serde|jsonfield]"
        );
        std::process::exit(2);
    }
    let scan = args.get(4).map(String::as_str) == Some("jsonfield");
    let path = connbench::proto::jsonfield::FieldPath::parse("timestamp").unwrap();
    let url = &args[1];
    let secs: f64 = args[2].parse().expect("seconds");
    let addr = url
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .expect("host:port");
    assert!(
        addr.starts_with("127.") || addr.starts_with("[::1]") || addr.starts_with("localhost"),
        "loopback only"
    );
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut ws, _) = client(url.as_str(), stream).expect("upgrade");
    ws.send(Message::text(args[3].clone())).expect("subscribe");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let start = Instant::now();
    let (u0, s0) = connbench::sys::thread_cpu_time();
    let mut messages = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        match ws.read() {
            Ok(Message::Text(t)) => {
                messages += 1;
                let ts = if scan {
                    connbench::proto::jsonfield::find_u64(t.as_bytes(), &path)
                } else {
                    serde_json::from_str::<serde_json::Value>(t.as_str())
                        .ok()
                        .and_then(|v| v.get("timestamp").and_then(|x| x.as_u64()))
                };
                if let Some(ts) = ts {
                    let now_us = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_micros() as u64;
                    hist.saturating_record(now_us.saturating_sub(ts).max(1) * 1000);
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                eprintln!("read: {e}");
                break;
            }
        }
    }
    let (u1, s1) = connbench::sys::thread_cpu_time();
    let cpu = (u1 + s1) - (u0 + s0);
    println!(
        "{{\"messages\":{messages},\"cpu_s\":{:.4},\"elapsed_s\":{:.4},\"latency_p50_ns\":{}}}",
        cpu.as_secs_f64(),
        start.elapsed().as_secs_f64(),
        hist.value_at_quantile(0.5)
    );
}
