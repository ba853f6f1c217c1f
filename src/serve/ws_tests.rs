//! End-to-end WebSocket tests of the target over loopback, with tungstenite's blocking client as
//! the oracle (plain `TcpStream` and rustls `StreamOwned`) and a raw socket where the test must
//! send what tungstenite refuses to (unmasked frames, pipelined frames, silence). Every read has
//! a timeout, every loop a deadline, and every server is stopped through its handle.

use super::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

/// Upper bound for any single blocking read.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A valid `Sec-WebSocket-Key` (the RFC 6455 example) and its accept value.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

fn serve(cfg: ServeConfig) -> ServerHandle {
    start(cfg).expect("target starts")
}

fn plain(cfg: ServeConfig) -> ServeConfig {
    ServeConfig {
        https_port: None,
        ..cfg
    }
}

fn tcp(addr: SocketAddr, timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(timeout)).expect("timeout");
    s
}

/// A tungstenite client over plain TCP.
fn ws_connect(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let (ws, resp) =
        tungstenite::client::client(format!("ws://{addr}{path}"), tcp(addr, IO_TIMEOUT))
            .unwrap_or_else(|e| panic!("handshake failed: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A tungstenite client over rustls, trusting only the target's certificate.
fn wss_connect(h: &ServerHandle, path: &str) -> WebSocket<TlsStream> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let addr = h.https_addr().expect("https");
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(h.ca_pem().as_bytes()) {
        roots.add(cert.expect("pem")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).expect("client conn");
    let stream = rustls::StreamOwned::new(conn, tcp(addr, IO_TIMEOUT));
    let (ws, resp) = tungstenite::client::client(format!("wss://{addr}{path}"), stream)
        .unwrap_or_else(|e| panic!("handshake failed: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut))
}

/// Reads the next message that is not a heartbeat.
fn next_data<S: Read + Write>(ws: &mut WebSocket<S>) -> Message {
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        match ws.read().expect("read") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
    panic!("no message within {IO_TIMEOUT:?}");
}

/// A feed message's fields.
#[derive(Debug)]
struct Data {
    stream: String,
    seq: u64,
    timestamp: u64,
}

fn parse_data(m: &Message) -> Option<Data> {
    let Message::Text(t) = m else { return None };
    let v: serde_json::Value = serde_json::from_str(t.as_str()).ok()?;
    Some(Data {
        stream: v.get("stream")?.as_str()?.to_string(),
        seq: v.get("seq")?.as_u64()?,
        timestamp: v.get("timestamp")?.as_u64()?,
    })
}

/// The stream a subscription acknowledgement names; anything else fails the test.
fn ack_stream(m: &Message) -> String {
    let Message::Text(t) = m else {
        panic!("expected an ack, got {m:?}")
    };
    let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json ack");
    assert_eq!(v["event"], "subscribed", "{v}");
    v["stream"].as_str().expect("stream").to_string()
}

/// Subscribes and checks the acknowledgement.
fn subscribe<S: Read + Write>(ws: &mut WebSocket<S>, request: &str, stream: &str) {
    ws.send(Message::text(request)).expect("send");
    assert_eq!(ack_stream(&next_data(ws)), stream);
}

/// Collects data messages for `window` (reading with a short timeout so the window is kept).
fn collect_for<S: Read + Write>(ws: &mut WebSocket<S>, window: Duration) -> Vec<Data> {
    let end = Instant::now() + window;
    let mut got = Vec::new();
    while Instant::now() < end {
        match ws.read() {
            Ok(m) => got.extend(parse_data(&m)),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A masked client frame built by hand.
fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    assert!(payload.len() < 126, "small frames only");
    out.push(0x80 | payload.len() as u8);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn upgrade_request(path: &str, version: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
}

/// Reads an HTTP response head off a raw socket; returns it and any bytes after it.
fn read_head(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            return (head, buf[end + 4..].to_vec());
        }
        let n = s.read(&mut chunk).expect("read head");
        assert!(n > 0, "EOF before the end of the head: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    }
    panic!("no response head");
}

/// Raw upgrade; returns the socket and the bytes that followed the 101.
fn raw_upgrade(addr: SocketAddr, path: &str, first_frames: &[u8]) -> (TcpStream, Vec<u8>) {
    let mut s = tcp(addr, IO_TIMEOUT);
    let mut req = upgrade_request(path, "13").into_bytes();
    // Frames pipelined in the same write as the upgrade request must not be lost.
    req.extend_from_slice(first_frames);
    s.write_all(&req).expect("write");
    let (head, rest) = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains(&format!("Sec-WebSocket-Accept: {ACCEPT}\r\n")),
        "{head}"
    );
    (s, rest)
}

/// Reads server frames off a raw socket until a close frame or EOF; returns (opcode, payload)
/// of each frame, in order.
fn raw_frames_until_close(s: &mut TcpStream, mut buf: Vec<u8>) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        // Parse every complete (unmasked) frame.
        loop {
            if buf.len() < 2 {
                break;
            }
            assert_eq!(buf[1] & 0x80, 0, "server frames are unmasked");
            let (len, hl) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
                126 => break,
                127 => panic!("unexpected huge frame"),
                n => (usize::from(n), 2),
            };
            if buf.len() < hl + len {
                break;
            }
            let op = buf[0] & 0x0f;
            frames.push((op, buf[hl..hl + len].to_vec()));
            buf.drain(..hl + len);
            if op == 8 {
                return frames;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return frames,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return frames,
            Err(e) => panic!("read: {e}"),
        }
    }
    panic!("no close within {IO_TIMEOUT:?}; frames so far {frames:?}");
}

/// True once the server has closed its side (EOF or reset) within the timeout.
fn sees_eof(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    let deadline = Instant::now() + IO_TIMEOUT;
    while Instant::now() < deadline {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
    false
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

fn close_code(m: &Message) -> Option<u16> {
    match m {
        Message::Close(Some(f)) => Some(u16::from(f.code)),
        _ => None,
    }
}

#[test]
fn upgrade_and_echo_on_both_ports() {
    let h = serve(ServeConfig::default());
    let mut plain = ws_connect(h.http_addr().expect("http"), "/echo?client=1");
    let mut tls = wss_connect(&h, "/echo");
    for text in ["hello", "", "ünïcødé ✓"] {
        plain.send(Message::text(text)).expect("send");
        assert_eq!(next_data(&mut plain), Message::text(text));
        tls.send(Message::text(text)).expect("send");
        assert_eq!(next_data(&mut tls), Message::text(text));
    }
    // Binary of assorted sizes, across the 7/16/64-bit length encodings.
    for len in [1usize, 125, 126, 65_535, 65_536, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        plain.send(Message::binary(payload.clone())).expect("send");
        assert_eq!(next_data(&mut plain), Message::binary(payload.clone()));
        tls.send(Message::binary(payload.clone())).expect("send");
        assert_eq!(next_data(&mut tls), Message::binary(payload));
    }
    assert_eq!(h.stats().ws_upgrades, 2);
    drop(plain);
    drop(tls);
    h.stop();
}

#[test]
fn non_ws_paths_and_plain_gets_are_unaffected() {
    let h = serve(plain(ServeConfig::default()));
    let addr = h.http_addr().expect("http");
    // Upgrade headers on another path: plain HTTP, keep-alive.
    let mut s = tcp(addr, IO_TIMEOUT);
    s.write_all(upgrade_request("/status/204", "13").as_bytes())
        .expect("write");
    let (head, _) = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 204 "), "{head}");
    // A plain GET of /ws is not an upgrade: 400 and close.
    let mut s = tcp(addr, IO_TIMEOUT);
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    let (head, _) = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(head.contains("Connection: close"), "{head}");
    assert!(sees_eof(&mut s));
    assert_eq!(h.stats().ws_upgrades, 0);
    h.stop();
}

#[test]
fn bad_version_gets_426_naming_version_13() {
    let h = serve(plain(ServeConfig::default()));
    let mut s = tcp(h.http_addr().expect("http"), IO_TIMEOUT);
    s.write_all(upgrade_request("/ws", "8").as_bytes())
        .expect("write");
    let (head, _) = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
    assert!(sees_eof(&mut s));
    h.stop();
}

#[test]
fn pipelined_fragments_and_an_interleaved_ping_after_the_upgrade() {
    let h = serve(plain(ServeConfig::default()));
    let mut frames = Vec::new();
    frames.extend(frame(false, 1, b"hel"));
    frames.extend(frame(true, 9, b"mid"));
    frames.extend(frame(false, 0, b"lo "));
    frames.extend(frame(true, 0, "wörld".as_bytes()));
    frames.extend(frame(true, 2, &[0, 255]));
    let (s, rest) = raw_upgrade(h.http_addr().expect("http"), "/echo", &frames);
    let mut ws = WebSocket::from_partially_read(s, rest, Role::Client, None);
    assert_eq!(
        ws.read().expect("pong"),
        Message::Pong(b"mid".to_vec().into())
    );
    assert_eq!(ws.read().expect("text"), Message::text("hello wörld"));
    assert_eq!(ws.read().expect("binary"), Message::binary(vec![0, 255]));
    h.stop();
}

#[test]
fn ping_is_answered_with_the_same_payload() {
    let h = serve(ServeConfig::default());
    let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
    let mut wss = wss_connect(&h, "/ws");
    for payload in [&b""[..], b"x", &[7u8; 125]] {
        ws.send(Message::Ping(payload.to_vec().into()))
            .expect("ping");
        assert_eq!(
            ws.read().expect("pong"),
            Message::Pong(payload.to_vec().into())
        );
        wss.send(Message::Ping(payload.to_vec().into()))
            .expect("ping");
        assert_eq!(
            wss.read().expect("pong"),
            Message::Pong(payload.to_vec().into())
        );
    }
    h.stop();
}

#[test]
fn close_handshake_echoes_the_code_then_the_tcp_connection_ends() {
    let h = serve(ServeConfig::default());
    let mut ws = ws_connect(h.http_addr().expect("http"), "/echo");
    ws.close(Some(CloseFrame {
        code: CloseCode::from(4321),
        reason: "done".into(),
    }))
    .expect("close");
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut echoed = None;
    loop {
        assert!(Instant::now() < deadline, "no close answer");
        match ws.read() {
            Ok(m) => {
                if let Some(code) = close_code(&m) {
                    echoed = Some(code);
                }
            }
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(echoed, Some(4321));
    // tungstenite reports ConnectionClosed only once the server's FIN arrived.
    let mut wss = wss_connect(&h, "/echo");
    wss.close(None).expect("close");
    let mut saw_close = false;
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "no close answer over TLS");
        match wss.read() {
            Ok(Message::Close(_)) => saw_close = true,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(saw_close);
    assert!(wait_for(|| h.stats().open == 0));
    h.stop();
}

#[test]
fn unmasked_client_frame_gets_close_1002() {
    let h = serve(plain(ServeConfig::default()));
    let (mut s, rest) = raw_upgrade(h.http_addr().expect("http"), "/echo", &[]);
    s.write_all(&[0x81, 0x02, b'h', b'i']).expect("write");
    let frames = raw_frames_until_close(&mut s, rest);
    let last = frames.last().expect("a close frame");
    assert_eq!(last.0, 8);
    assert_eq!(&last.1[..2], &1002u16.to_be_bytes());
    assert!(sees_eof(&mut s));
    h.stop();
}

#[test]
fn oversized_message_gets_close_1009_before_its_payload() {
    let h = serve(plain(ServeConfig::default()));
    let (mut s, rest) = raw_upgrade(h.http_addr().expect("http"), "/echo", &[]);
    // A header announcing 2 MiB; no payload follows.
    let mut hdr = vec![0x82, 0x80 | 127];
    hdr.extend_from_slice(&(2u64 << 20).to_be_bytes());
    hdr.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&hdr).expect("write");
    let frames = raw_frames_until_close(&mut s, rest);
    let last = frames.last().expect("a close frame");
    assert_eq!(&last.1[..2], &1009u16.to_be_bytes());
    h.stop();
}

#[test]
fn subscribe_gets_an_ack_then_paced_messages_with_increasing_seq_and_fresh_timestamps() {
    let h = serve(ServeConfig {
        ws_rate: 200.0,
        ..ServeConfig::default()
    });
    for tls in [false, true] {
        let request =
            r#"{"op":"subscribe","exchange":"binance","channel":"trades","symbol":"BTCUSDT"}"#;
        let stream = "binance.trades.BTCUSDT";
        let got = if tls {
            let mut ws = wss_connect(&h, "/ws");
            subscribe(&mut ws, request, stream);
            (0..30)
                .map(|_| parse_data(&next_data(&mut ws)).expect("data"))
                .collect::<Vec<_>>()
        } else {
            let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
            subscribe(&mut ws, request, stream);
            (0..30)
                .map(|_| parse_data(&next_data(&mut ws)).expect("data"))
                .collect::<Vec<_>>()
        };
        let now = now_us();
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d.stream, stream);
            assert_eq!(d.seq, i as u64 + 1);
            assert!(
                d.timestamp <= now && now - d.timestamp < 1_000_000,
                "timestamp {} vs now {now}",
                d.timestamp
            );
        }
    }
    assert_eq!(h.stats().ws_subscriptions, 2);
    assert!(h.stats().ws_messages_sent >= 60);
    h.stop();
}

#[test]
fn two_subscriptions_interleave_each_with_its_own_seq() {
    let h = serve(plain(ServeConfig {
        ws_rate: 400.0,
        ..ServeConfig::default()
    }));
    let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
    subscribe(
        &mut ws,
        r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#,
        "btcusdt@trade",
    );
    // btcusdt's feed starts at its ack, so its messages may come before ethusdt's ack (a loaded
    // machine showed one where the test expected the ack): they count like any other.
    ws.send(Message::text(
        r#"{"method":"SUBSCRIBE","params":["ethusdt@trade"],"id":2}"#,
    ))
    .expect("send");
    let mut last = std::collections::HashMap::new();
    let mut order = Vec::new();
    let mut acked = false;
    while order.len() < 40 {
        let m = next_data(&mut ws);
        let Some(d) = parse_data(&m) else {
            assert_eq!(ack_stream(&m), "ethusdt@trade");
            assert!(!acked, "a second ack: {m:?}");
            acked = true;
            continue;
        };
        assert!(
            acked || d.stream == "btcusdt@trade",
            "ethusdt data before its ack"
        );
        let prev = last.insert(d.stream.clone(), d.seq).unwrap_or(0);
        assert_eq!(d.seq, prev + 1, "{} seq", d.stream);
        order.push(d.stream);
    }
    assert!(acked, "no ack for ethusdt@trade");
    assert!(
        last["btcusdt@trade"] >= 15 && last["ethusdt@trade"] >= 15,
        "{last:?}"
    );
    // Round-robin once both exist: no stream twice in a row.
    let tail = &order[order
        .iter()
        .position(|s| s == "ethusdt@trade")
        .expect("eth")..];
    assert!(tail.windows(2).all(|w| w[0] != w[1]), "{order:?}");
    h.stop();
}

#[test]
fn injected_gaps_seen_by_the_client_equal_the_server_count() {
    // The stall ends the feed at a known point, so the client can drain every sent message.
    let h = serve(plain(ServeConfig {
        ws_rate: 500.0,
        ws_gap_every: Some(7),
        ws_stall_after: Some(Duration::from_millis(400)),
        ..ServeConfig::default()
    }));
    let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
    // Stream a's feed starts with its ack, so its messages may come before b's ack (on a
    // loaded machine the test read one where it expected the ack): every message counts.
    for stream in ["a", "b"] {
        let sub = format!(r#"{{"op":"subscribe","stream":"{stream}"}}"#);
        ws.send(Message::text(sub)).expect("send");
    }
    let mut got = Vec::new();
    let mut acked = Vec::new();
    while acked.len() < 2 {
        let m = next_data(&mut ws);
        match parse_data(&m) {
            Some(d) => got.push(d),
            None => acked.push(ack_stream(&m)),
        }
    }
    assert_eq!(acked, ["a", "b"]);
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    got.extend(collect_for(&mut ws, Duration::from_millis(700)));
    let mut last = std::collections::HashMap::new();
    let mut gaps = 0;
    for d in &got {
        if let Some(prev) = last.insert(d.stream.clone(), d.seq) {
            assert!(d.seq > prev);
            gaps += u64::from(d.seq != prev + 1);
        }
    }
    let stats = h.stats();
    assert!(got.len() > 100, "only {} messages", got.len());
    assert_eq!(stats.ws_messages_sent, got.len() as u64);
    assert!(gaps > 10, "gaps {gaps}");
    assert_eq!(gaps, stats.ws_gaps);
    h.stop();
}

#[test]
fn drop_every_ends_the_connection_without_a_close_frame() {
    let h = serve(ServeConfig {
        ws_rate: 100.0,
        ws_drop_every: Some(Duration::from_millis(300)),
        ..ServeConfig::default()
    });
    for tls in [false, true] {
        let upgraded = Instant::now();
        let result = if tls {
            let mut ws = wss_connect(&h, "/ws");
            subscribe(&mut ws, "subscribe", "sub1");
            read_until_error(&mut ws)
        } else {
            let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
            subscribe(&mut ws, "subscribe", "sub1");
            read_until_error(&mut ws)
        };
        let (messages, err) = result;
        let elapsed = upgraded.elapsed();
        assert!(
            matches!(
                err,
                tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                )
            ),
            "tls {tls}: {err}"
        );
        assert!(
            elapsed >= Duration::from_millis(290) && elapsed < Duration::from_millis(1500),
            "dropped after {elapsed:?}"
        );
        assert!(messages >= 15, "data flowed until the drop: {messages}");
    }
    assert_eq!(h.stats().ws_drops, 2);
    h.stop();
}

#[test]
fn drop_rst_ends_the_connection_with_a_reset_after_the_data() {
    let h = serve(ServeConfig {
        ws_rate: 100.0,
        ws_drop_every: Some(Duration::from_millis(300)),
        ws_drop_rst: true,
        ..ServeConfig::default()
    });
    for tls in [false, true] {
        let (messages, err) = if tls {
            let mut ws = wss_connect(&h, "/ws");
            subscribe(&mut ws, "subscribe", "sub1");
            read_until_error(&mut ws)
        } else {
            let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
            subscribe(&mut ws, "subscribe", "sub1");
            read_until_error(&mut ws)
        };
        assert!(
            matches!(&err, tungstenite::Error::Io(e) if e.kind() == ErrorKind::ConnectionReset),
            "tls {tls}: {err}"
        );
        assert!(messages >= 15, "data flowed until the drop: {messages}");
    }
    assert_eq!(h.stats().ws_drops, 2);
    h.stop();
}

/// Reads until an error; counts the data messages; a close frame fails the test.
fn read_until_error<S: Read + Write>(ws: &mut WebSocket<S>) -> (usize, tungstenite::Error) {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut messages = 0;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(m @ Message::Close(_)) => panic!("got a close frame {m:?}"),
            Ok(m) => messages += usize::from(parse_data(&m).is_some()),
            Err(e) if is_timeout(&e) => panic!("timed out waiting for the drop"),
            Err(e) => return (messages, e),
        }
    }
    panic!("no drop within {IO_TIMEOUT:?}");
}

#[test]
fn stall_stops_data_but_pings_are_still_answered() {
    let h = serve(plain(ServeConfig {
        ws_rate: 200.0,
        ws_stall_after: Some(Duration::from_millis(300)),
        ..ServeConfig::default()
    }));
    let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
    subscribe(&mut ws, "subscribe", "sub1");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let before = collect_for(&mut ws, Duration::from_millis(450));
    assert!(
        before.len() >= 30,
        "data before the stall: {}",
        before.len()
    );
    let after = collect_for(&mut ws, Duration::from_millis(400));
    assert!(after.is_empty(), "{} messages after the stall", after.len());
    ws.get_ref()
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("timeout");
    ws.send(Message::Ping(b"still there?".to_vec().into()))
        .expect("ping");
    assert_eq!(
        ws.read().expect("pong"),
        Message::Pong(b"still there?".to_vec().into())
    );
    ws.send(Message::text("ping")).expect("text ping");
    assert_eq!(ws.read().expect("text pong"), Message::text("pong"));
    h.stop();
}

#[test]
fn server_pings_arrive_and_an_answering_client_stays_connected() {
    let h = serve(ServeConfig {
        ws_ping_every: Some(Duration::from_millis(100)),
        ..ServeConfig::default()
    });
    let mut ws = wss_connect(&h, "/ws");
    ws.get_ref()
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    // tungstenite answers each ping on its next read; five intervals must pass without a close.
    let end = Instant::now() + Duration::from_millis(550);
    let mut pings = Vec::new();
    while Instant::now() < end {
        match ws.read() {
            Ok(Message::Ping(p)) => pings.push(p.to_vec()),
            Ok(m) => panic!("unexpected {m:?}"),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    assert!(pings.len() >= 4, "{} pings", pings.len());
    for (i, p) in pings.iter().enumerate() {
        assert_eq!(p, &(i as u64 + 1).to_be_bytes().to_vec());
    }
    assert_eq!(h.stats().ws_pong_timeouts, 0);
    assert_eq!(h.stats().open, 1);
    h.stop();
}

#[test]
fn a_client_that_never_pongs_gets_1008_and_is_counted() {
    let h = serve(plain(ServeConfig {
        ws_ping_every: Some(Duration::from_millis(100)),
        ..ServeConfig::default()
    }));
    let upgraded = Instant::now();
    let (mut s, rest) = raw_upgrade(h.http_addr().expect("http"), "/ws", &[]);
    let frames = raw_frames_until_close(&mut s, rest);
    let elapsed = upgraded.elapsed();
    assert_eq!(frames.first().map(|f| f.0), Some(9), "a ping came first");
    let last = frames.last().expect("close");
    assert_eq!(last.0, 8);
    assert_eq!(&last.1[..2], &1008u16.to_be_bytes());
    assert_eq!(&last.1[2..], b"pong timeout");
    assert!(
        elapsed >= Duration::from_millis(190),
        "closed after {elapsed:?}"
    );
    assert!(sees_eof(&mut s));
    assert_eq!(h.stats().ws_pong_timeouts, 1);
    h.stop();
}

#[test]
fn pong_timeout_shorter_than_the_interval_is_enforced() {
    // Ping at 300 ms, pong due by 350 ms; without the timeout the close would come at 600 ms.
    let h = serve(plain(ServeConfig {
        ws_ping_every: Some(Duration::from_millis(300)),
        ws_pong_timeout: Some(Duration::from_millis(50)),
        ..ServeConfig::default()
    }));
    let upgraded = Instant::now();
    let (mut s, rest) = raw_upgrade(h.http_addr().expect("http"), "/echo", &[]);
    let frames = raw_frames_until_close(&mut s, rest);
    let elapsed = upgraded.elapsed();
    assert_eq!(frames.iter().filter(|f| f.0 == 9).count(), 1);
    assert!(
        elapsed >= Duration::from_millis(340) && elapsed < Duration::from_millis(550),
        "closed after {elapsed:?}, expected ~350 ms"
    );
    assert_eq!(h.stats().ws_pong_timeouts, 1);
    h.stop();
}

#[test]
fn the_greeting_leaves_in_the_same_write_as_the_101() {
    let h = serve(plain(ServeConfig {
        ws_greeting: Some(r#"{"event":"hello"}"#.into()),
        ..ServeConfig::default()
    }));
    for path in ["/ws", "/echo"] {
        // One write on the server: the bytes after the head are already in the read that
        // completed the head (loopback delivers one write as one segment).
        let (mut s, rest) = raw_upgrade(h.http_addr().expect("http"), path, &[]);
        let mut want = vec![0x81, 17];
        want.extend_from_slice(br#"{"event":"hello"}"#);
        assert_eq!(rest, want, "{path}");
        s.write_all(&frame(true, 8, &1000u16.to_be_bytes()))
            .expect("close");
        let frames = raw_frames_until_close(&mut s, Vec::new());
        assert_eq!(frames.last().map(|f| f.0), Some(8));
    }
    let too_long = "x".repeat(MAX_GREETING + 1);
    match start(ServeConfig {
        ws_greeting: Some(too_long),
        ..ServeConfig::default()
    }) {
        Err(ServeError::Config(msg)) => assert!(msg.contains("ws_greeting"), "{msg}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    h.stop();
}

#[test]
fn ignore_pings_never_pongs_while_data_flows() {
    let h = serve(plain(ServeConfig {
        ws_rate: 200.0,
        ws_ignore_pings: true,
        ..ServeConfig::default()
    }));
    let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
    subscribe(&mut ws, "subscribe", "sub1");
    ws.send(Message::Ping(b"anyone?".to_vec().into()))
        .expect("ping");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let end = Instant::now() + Duration::from_millis(400);
    let (mut data, mut pongs) = (0, 0);
    while Instant::now() < end {
        match ws.read() {
            Ok(Message::Pong(_)) => pongs += 1,
            Ok(Message::Text(_)) => data += 1,
            Ok(m) => panic!("unexpected {m:?}"),
            Err(e) if is_timeout(&e) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    assert_eq!(pongs, 0);
    assert!(data >= 20, "{data} data messages");
    h.stop();
}

#[test]
fn rate_200_for_one_second_is_within_25_percent() {
    let h = serve(plain(ServeConfig {
        ws_rate: 200.0,
        ..ServeConfig::default()
    }));
    let mut ws = ws_connect(h.http_addr().expect("http"), "/ws");
    subscribe(&mut ws, "subscribe", "sub1");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let n = collect_for(&mut ws, Duration::from_secs(1)).len();
    assert!((150..=250).contains(&n), "{n} messages in 1 s at 200/s");
    h.stop();
}

#[test]
fn a_client_that_does_not_read_is_bounded_and_does_not_stall_others() {
    let h = serve(plain(ServeConfig {
        ws_rate: 200_000.0,
        ..ServeConfig::default()
    }));
    let addr = h.http_addr().expect("http");
    let mut lazy = ws_connect(addr, "/ws");
    subscribe(&mut lazy, "subscribe", "sub1");
    // Never read again: the kernel buffers fill, then the server's bound, then drops start.
    assert!(
        wait_for(|| h.stats().ws_messages_dropped > 0),
        "no drops: {:?}",
        h.stats()
    );
    // Another client is served promptly meanwhile.
    let started = Instant::now();
    let mut ws = ws_connect(addr, "/echo");
    ws.send(Message::text("quick")).expect("send");
    assert_eq!(next_data(&mut ws), Message::text("quick"));
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(lazy);
    h.stop();
}

/// Scale check, run by hand: `CONNS` feed connections at
/// `RATE` msg/s each for `SECS`, the in-process clients only draining. Prints the message
/// rate the server sustained and the process CPU it took.
/// `cargo test --release --lib serve::ws_tests::scale -- --ignored --nocapture`
#[test]
#[ignore = "measurement, not a check: run by hand in release"]
fn scale_many_feed_connections() {
    const CONNS: usize = 2000;
    const RATE: f64 = 100.0;
    const SECS: u64 = 3;
    crate::sys::raise_fd_limit();
    let h = serve(plain(ServeConfig {
        ws_rate: RATE,
        ..ServeConfig::default()
    }));
    let addr = h.http_addr().expect("http");
    let mut socks = Vec::with_capacity(CONNS);
    let mut sub = upgrade_request("/ws", "13").into_bytes();
    sub.extend(frame(
        true,
        1,
        br#"{"op":"subscribe","exchange":"x","channel":"trades","symbol":"BTCUSDT"}"#,
    ));
    for _ in 0..CONNS {
        let mut s = tcp(addr, IO_TIMEOUT);
        s.write_all(&sub).expect("write");
        socks.push(s);
    }
    assert!(
        wait_for(|| h.stats().ws_subscriptions == CONNS as u64),
        "{:?}",
        h.stats()
    );
    for s in &socks {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let cpu0 = process_cpu();
    let server0 = server_thread_cpu();
    let sent0 = h.stats().ws_messages_sent;
    let t0 = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0usize;
    while t0.elapsed() < Duration::from_secs(SECS) {
        for s in &mut socks {
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                received += n;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = t0.elapsed().as_secs_f64();
    let sent = h.stats().ws_messages_sent - sent0;
    let cpu = process_cpu() - cpu0;
    let server_cpu = server_thread_cpu() - server0;
    let expected = CONNS as f64 * RATE;
    println!(
        "{CONNS} conns x {RATE} msg/s: {:.0} msg/s sent (expected {expected:.0}), {:.1} MB/s read, \
         server thread CPU {:.0}% of one core, process {:.0}% (with the draining client), \
         dropped {}",
        sent as f64 / secs,
        received as f64 / secs / 1e6,
        server_cpu / secs * 100.0,
        cpu / secs * 100.0,
        h.stats().ws_messages_dropped
    );
    assert!(sent as f64 / secs > expected * 0.9);
    drop(socks);
    h.stop();
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`, clock ticks of 100 Hz).
fn process_cpu() -> f64 {
    stat_cpu("/proc/self/stat")
}

/// The same for the target's event-loop thread(s) (`comm` is cut to 15 bytes by the kernel).
fn server_thread_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("connbench-targe"))
        })
        .map(|t| stat_cpu(&t.path().join("stat").to_string_lossy()))
        .sum()
}

fn stat_cpu(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}
