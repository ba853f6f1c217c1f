//! The run plan: everything a run needs, as plain data, validated before any I/O happens.
//!
//! `cli` builds a [`HttpPlan`] from the command line (or tests build one directly); `engine::run`
//! executes it. Nothing here opens a socket or reads a clock. Later load shapes (constant rate,
//! stages) and WebSocket sessions extend this data, not the engine's signature.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP.
    Http,
    /// TLS over TCP.
    Https,
}

/// The command that made a run, as reports name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `connbench http`.
    Http,
    /// `connbench ws`.
    Ws,
    /// `connbench probe`.
    Probe,
}

impl Mode {
    /// Stable name used in reports: "http", "ws", "probe".
    pub fn name(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Ws => "ws",
            Mode::Probe => "probe",
        }
    }

    /// Parse what [`Mode::name`] returns.
    pub fn parse(s: &str) -> Option<Mode> {
        [Mode::Http, Mode::Ws, Mode::Probe]
            .into_iter()
            .find(|m| m.name() == s)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A resolved target.
#[derive(Clone, Debug)]
pub struct Target {
    /// Scheme.
    pub scheme: Scheme,
    /// Host as written in the URL (no brackets for IPv6), used for SNI and Host.
    pub host: String,
    /// Port (explicit or the scheme's default).
    pub port: u16,
    /// Path and query, at least "/".
    pub path: String,
    /// Value of the Host header: host, plus ":port" when not the default.
    pub authority: String,
    /// Resolved addresses; connections go to the first, in order.
    pub addrs: Vec<SocketAddr>,
    /// The URL as the user gave it (reports redact it).
    pub url: String,
}

/// TLS settings (used only for https).
#[derive(Clone, Debug, Default)]
pub struct TlsPlan {
    /// Extra trust anchors (PEM file) on top of webpki-roots.
    pub ca_file: Option<PathBuf>,
    /// Extra trust anchors given in memory (the in-process target's certificate).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Skip chain and name verification (signatures are still checked).
    pub insecure: bool,
    /// Server name to send and verify instead of the URL host.
    pub sni: Option<String>,
    /// Allow session resumption (tickets / session ids).
    pub resume: bool,
}

/// What ends the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// After this long (measured from the end of the warm-up).
    Duration(Duration),
    /// After exactly this many requests were sent and answered or failed.
    Requests(u64),
}

/// Which CPUs the workers run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pinning {
    /// No affinity set.
    None,
    /// Worker i is pinned to `cpus[i]`.
    Cpus(Vec<usize>),
}

/// A complete HTTP load run.
#[derive(Clone, Debug)]
pub struct HttpPlan {
    /// Where to send requests.
    pub target: Target,
    /// TLS settings, used when the scheme is https.
    pub tls: TlsPlan,
    /// Request method.
    pub method: String,
    /// Extra headers, in order.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Vec<u8>,
    /// Concurrent connections across all workers.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// CPU pinning of the workers.
    pub pinning: Pinning,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// What ends the run.
    pub stop: Stop,
    /// Warm-up excluded from the results.
    pub warmup: Duration,
    /// A request with no complete response after this long fails as a read timeout.
    pub timeout: Duration,
    /// A TCP connect not complete after this long fails as a connect timeout.
    pub connect_timeout: Duration,
    /// Show a live progress line on stderr (only when stderr is a terminal).
    pub progress: bool,
    /// Collect one-second interval histograms (for `--hlog`).
    pub intervals: bool,
    /// Constant-rate mode: requests per second across all workers, and their spacing.
    pub rate: Option<(f64, Arrival)>,
    /// Ramp profile (`--stages`, `--scenario`); empty: all connections from the start.
    pub stages: Vec<Stage>,
    /// Local source addresses, taken round-robin by global connection index (`--source`);
    /// empty: the kernel picks (no bind). All of the target address family.
    pub sources: Vec<IpAddr>,
    /// `--start-at`: open the first connection at this wall-clock instant, after everything
    /// else is prepared (the measured window starts there, after any warm-up).
    pub start_at: Option<SystemTime>,
}

impl HttpPlan {
    /// How many connections worker `w` drives (the first workers take the remainder).
    pub fn connections_of(&self, w: usize) -> usize {
        share(self.connections as u64, self.threads, w) as usize
    }

    /// How many requests worker `w` must send under `-n` (None when time-bounded).
    pub fn requests_of(&self, w: usize) -> Option<u64> {
        match self.stop {
            Stop::Requests(n) => Some(share(n, self.threads, w)),
            Stop::Duration(_) => None,
        }
    }
}

/// Split `total` over `parts` as evenly as possible; part `i` gets one extra while remainder lasts.
pub fn share(total: u64, parts: usize, i: usize) -> u64 {
    let parts = parts.max(1) as u64;
    let i = i as u64;
    total / parts + u64::from(i < total % parts)
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn share_splits_exactly() {
        for total in [0u64, 1, 7, 1000, 1001] {
            for parts in 1..6 {
                let sum: u64 = (0..parts).map(|i| share(total, parts, i)).sum();
                assert_eq!(sum, total, "total {total} parts {parts}");
                let max = (0..parts).map(|i| share(total, parts, i)).max().unwrap();
                let min = (0..parts).map(|i| share(total, parts, i)).min().unwrap();
                assert!(max - min <= 1);
            }
        }
    }
}

/// What a WebSocket connection does once upgraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsMode {
    /// Receive what the server pushes after the subscriptions.
    Stream,
    /// Send `send_rate` messages per second per connection, each carrying its send time, and
    /// time their echoes.
    Echo,
    /// Send protocol pings every `ping_interval` and time the pongs.
    Ping,
}

impl WsMode {
    /// Stable name used on the command line and in reports: "stream", "echo", "ping".
    pub fn name(self) -> &'static str {
        match self {
            WsMode::Stream => "stream",
            WsMode::Echo => "echo",
            WsMode::Ping => "ping",
        }
    }

    /// Parse what [`WsMode::name`] returns.
    pub fn parse(s: &str) -> Option<WsMode> {
        [WsMode::Stream, WsMode::Echo, WsMode::Ping]
            .into_iter()
            .find(|m| m.name() == s)
    }
}

impl Heartbeat {
    /// How reports show it: "off", "ping", or "text:MSG" (the caller redacts MSG).
    pub fn describe(&self, redact: impl Fn(&str) -> String) -> String {
        match self {
            Heartbeat::Off => "off".to_string(),
            Heartbeat::Ping => "ping".to_string(),
            Heartbeat::Text(t) => format!("text:{}", redact(t)),
        }
    }

    /// Parse what [`Heartbeat::describe`] returns.
    pub fn parse(s: &str) -> Option<Heartbeat> {
        match s {
            "off" => Some(Heartbeat::Off),
            "ping" => Some(Heartbeat::Ping),
            _ => s
                .strip_prefix("text:")
                .map(|t| Heartbeat::Text(t.to_string())),
        }
    }
}

/// A client heartbeat sent every `heartbeat_interval` while a connection is open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heartbeat {
    /// None.
    Off,
    /// A protocol ping frame.
    Ping,
    /// A text message, e.g. `ping` (OKX) or `{"op":"ping"}` (Bybit).
    Text(String),
}

/// A complete WebSocket run.
#[derive(Clone, Debug)]
pub struct WsPlan {
    /// Where to connect (ws → plain, wss → TLS).
    pub target: Target,
    /// TLS settings for wss.
    pub tls: TlsPlan,
    /// Extra headers on the upgrade request.
    pub headers: Vec<(String, String)>,
    /// Concurrent connections across all workers.
    pub connections: usize,
    /// Worker threads.
    pub threads: usize,
    /// CPU pinning of the workers.
    pub pinning: Pinning,
    /// How long to run (after the warm-up).
    pub duration: Duration,
    /// Warm-up excluded from the results.
    pub warmup: Duration,
    /// TCP connect, TLS handshake and upgrade must each finish within this.
    pub connect_timeout: Duration,
    /// Live progress line.
    pub progress: bool,
    /// Collect one-second interval histograms (for `--hlog`).
    pub intervals: bool,
    /// What each connection does, and how it recovers (what the report shows of the run).
    pub session: WsSession,
    /// Local source addresses, taken round-robin by global connection index (`--source`);
    /// empty: the kernel picks (no bind). All of the target address family.
    pub sources: Vec<IpAddr>,
    /// `--start-at`: open the first connection at this wall-clock instant, after everything
    /// else is prepared (the measured window starts there, after any warm-up).
    pub start_at: Option<SystemTime>,
}

/// What a WebSocket connection does and how it recovers: the settings of a `ws` run that its
/// report shows, declared once (the plan carries them, the report renders them, `merge` reads
/// them back).
#[derive(Clone, Debug, PartialEq)]
pub struct WsSession {
    /// Subscription messages, in order; `{conn}` is replaced by the connection's index.
    pub subscriptions: Vec<String>,
    /// What the connection does once upgraded.
    pub mode: WsMode,
    /// Echo mode: messages per second per connection.
    pub send_rate: f64,
    /// Echo mode: size of each message in bytes.
    pub message_size: usize,
    /// Ping mode: interval between pings.
    pub ping_interval: Duration,
    /// JSON path of the server timestamp in each message (one-way latency).
    pub ts_field: Option<crate::proto::jsonfield::FieldPath>,
    /// Unit of that timestamp (None: inferred from its magnitude).
    pub ts_unit: Option<crate::proto::jsonfield::TsUnit>,
    /// JSON path of a sequence number (gap detection).
    pub seq_field: Option<crate::proto::jsonfield::FieldPath>,
    /// JSON path of the stream name that sequence numbers belong to.
    pub stream_field: crate::proto::jsonfield::FieldPath,
    /// Validate text messages as UTF-8.
    pub utf8_check: bool,
    /// Largest message accepted.
    pub max_message: usize,
    /// Reconnect backoff.
    pub backoff: BackoffPolicy,
    /// At most this many reconnects per period (split evenly over the workers).
    pub reconnect_budget: Option<(u32, Duration)>,
    /// No data message for this long: the connection is replaced. Replies to the client's own
    /// heartbeat are not data (they prove the connection, not the feed).
    pub stale_after: Option<Duration>,
    /// Client heartbeat.
    pub heartbeat: Heartbeat,
    /// Interval of the client heartbeat.
    pub heartbeat_interval: Duration,
    /// Protocol pings (heartbeat or ping mode): a ping unanswered for this long means the peer
    /// is gone, and the connection is replaced (`pong_timeout`). None: never.
    pub pong_timeout: Option<Duration>,
    /// Messages kept while a connection is down (echo mode), sent after resubscribing.
    pub send_buffer: usize,
}

#[cfg(test)]
impl WsSession {
    /// A session of `mode` for tests: no subscriptions, no timestamps, nothing optional on.
    pub(crate) fn example(mode: WsMode) -> WsSession {
        WsSession {
            subscriptions: Vec::new(),
            mode,
            send_rate: 0.0,
            message_size: 64,
            ping_interval: Duration::from_secs(1),
            ts_field: None,
            ts_unit: None,
            seq_field: None,
            stream_field: crate::proto::jsonfield::FieldPath::parse("stream")
                .expect("a valid path"),
            utf8_check: true,
            max_message: 1 << 20,
            backoff: BackoffPolicy::default(),
            reconnect_budget: None,
            stale_after: None,
            heartbeat: Heartbeat::Off,
            heartbeat_interval: Duration::from_secs(20),
            pong_timeout: None,
            send_buffer: 100,
        }
    }
}

/// One stage of a ramp profile: ramp to `connections` over `ramp`, then hold for `hold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Connections at the end of the ramp (and during the hold).
    pub connections: usize,
    /// Ramp duration (from the previous stage's count).
    pub ramp: Duration,
    /// Sustained duration.
    pub hold: Duration,
}

/// One reported window of a staged run: a stage's ramp or its hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageWindow {
    /// 1-based stage number.
    pub stage: usize,
    /// "ramp" or "hold".
    pub kind: &'static str,
    /// Offset from the start of the run.
    pub start: Duration,
    /// Length.
    pub length: Duration,
    /// Connections at the start of the window.
    pub from: usize,
    /// Connections at the end of the window.
    pub to: usize,
}

/// The seed's three scenarios: light 50@10s+30s, medium 200@20s+45s, heavy 500@30s+60s.
pub fn scenario(name: &str) -> Option<Stage> {
    let (connections, ramp, hold) = match name {
        "light" => (50, 10, 30),
        "medium" => (200, 20, 45),
        "heavy" => (500, 30, 60),
        _ => return None,
    };
    Some(Stage {
        connections,
        ramp: Duration::from_secs(ramp),
        hold: Duration::from_secs(hold),
    })
}

/// The ramp and hold windows of a stage list, in time order (zero-length windows omitted).
pub fn stage_windows(stages: &[Stage]) -> Vec<StageWindow> {
    let mut out = Vec::new();
    let mut t = Duration::ZERO;
    let mut prev = 0;
    for (i, s) in stages.iter().enumerate() {
        for (kind, length, from, to) in [
            ("ramp", s.ramp, prev, s.connections),
            ("hold", s.hold, s.connections, s.connections),
        ] {
            if !length.is_zero() {
                out.push(StageWindow {
                    stage: i + 1,
                    kind,
                    start: t,
                    length,
                    from,
                    to,
                });
            }
            t += length;
        }
        prev = s.connections;
    }
    out
}

/// Connections a staged run wants open `t` into the run: linear over each ramp, rounded
/// towards the stage's count (so the count is reached within the ramp, as the seed's stepped
/// ramp does), flat over each hold, the last stage's count after the end.
pub fn stage_target(stages: &[Stage], t: Duration) -> usize {
    let mut start = Duration::ZERO;
    let mut prev = 0usize;
    for s in stages {
        if t < start + s.ramp {
            let f = (t - start).as_secs_f64() / s.ramp.as_secs_f64();
            let step = (s.connections.abs_diff(prev) as f64 * f).ceil() as usize;
            return if s.connections >= prev {
                prev + step
            } else {
                prev - step
            };
        }
        start += s.ramp;
        if t < start + s.hold {
            return s.connections;
        }
        start += s.hold;
        prev = s.connections;
    }
    prev
}

#[cfg(test)]
mod stage_tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn targets_ramp_linearly_and_hold() {
        let st = [
            Stage {
                connections: 50,
                ramp: secs(10.0),
                hold: secs(30.0),
            },
            Stage {
                connections: 200,
                ramp: secs(20.0),
                hold: secs(45.0),
            },
        ];
        assert_eq!(stage_target(&st, secs(0.0)), 0);
        assert_eq!(stage_target(&st, secs(5.0)), 25);
        assert_eq!(stage_target(&st, secs(10.0)), 50);
        assert_eq!(stage_target(&st, secs(39.9)), 50);
        assert_eq!(stage_target(&st, secs(50.0)), 125);
        assert_eq!(stage_target(&st, secs(70.0)), 200);
        assert_eq!(stage_target(&st, secs(500.0)), 200);
        // ramping down
        let down = [
            Stage {
                connections: 10,
                ramp: secs(0.0),
                hold: secs(1.0),
            },
            Stage {
                connections: 0,
                ramp: secs(1.0),
                hold: secs(0.0),
            },
        ];
        assert_eq!(stage_target(&down, secs(0.5)), 10);
        assert_eq!(stage_target(&down, secs(1.5)), 5);
    }

    #[test]
    fn windows_cover_the_run_in_order() {
        let st = [
            Stage {
                connections: 4,
                ramp: secs(1.0),
                hold: secs(2.0),
            },
            Stage {
                connections: 8,
                ramp: secs(0.0),
                hold: secs(1.0),
            },
        ];
        let w = stage_windows(&st);
        assert_eq!(w.len(), 3);
        assert_eq!(
            (w[0].kind, w[0].from, w[0].to, w[0].start),
            ("ramp", 0, 4, secs(0.0))
        );
        assert_eq!(
            (w[1].kind, w[1].start, w[1].length),
            ("hold", secs(1.0), secs(2.0))
        );
        assert_eq!(
            (w[2].stage, w[2].kind, w[2].from, w[2].start),
            (2, "hold", 8, secs(3.0))
        );
    }

    #[test]
    fn scenarios_are_the_seeds() {
        assert_eq!(scenario("medium").unwrap().connections, 200);
        assert_eq!(scenario("heavy").unwrap().hold, secs(60.0));
        assert!(scenario("extreme").is_none());
    }
}

/// How a delay is drawn from the backoff window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jitter {
    /// `sleep = rand(0, min(cap, base·2^attempt))`: the least total work in Brooker's comparison.
    Full,
    /// `sleep = min(cap, rand(base, prev·3))`, `prev` starting at `base`: never shorter than `base`.
    Decorrelated,
}

impl Jitter {
    /// The name used on the command line: "full" or "decorrelated".
    pub fn name(self) -> &'static str {
        match self {
            Jitter::Full => "full",
            Jitter::Decorrelated => "decorrelated",
        }
    }

    /// Parse "full" or "decorrelated".
    pub fn parse(s: &str) -> Option<Jitter> {
        match s {
            "full" => Some(Jitter::Full),
            "decorrelated" => Some(Jitter::Decorrelated),
            _ => None,
        }
    }
}

/// What a reconnecting connection does. A `base` above `cap` makes every delay `cap` (full jitter:
/// at most `cap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// How the delay is drawn.
    pub jitter: Jitter,
    /// The first window (full) or the shortest delay (decorrelated).
    pub base: Duration,
    /// The longest delay.
    pub cap: Duration,
    /// Attempts allowed between two successes; `None` retries forever.
    pub max_retries: Option<u32>,
}

impl Default for BackoffPolicy {
    /// Full jitter, 100 ms base, 10 s cap, unlimited retries.
    fn default() -> Self {
        BackoffPolicy {
            jitter: Jitter::Full,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
            max_retries: None,
        }
    }
}

/// How intended send times are spaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Exactly 1/rate apart.
    Uniform,
    /// Exponential gaps with mean 1/rate (a Poisson process).
    Poisson,
}

impl Arrival {
    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Arrival::Uniform => "uniform",
            Arrival::Poisson => "poisson",
        }
    }

    /// Parse what [`Arrival::name`] returns.
    pub fn parse(s: &str) -> Option<Arrival> {
        [Arrival::Uniform, Arrival::Poisson]
            .into_iter()
            .find(|a| a.name() == s)
    }
}

/// What makes a connection count as established (`engine::probe` rule 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Establish {
    /// TCP connected (and, for https, the TLS handshake completed).
    Connect,
    /// Then one GET answered with a complete response whose status is below 400.
    Request,
    /// Then a WebSocket upgrade answered with a valid 101.
    WebSocket,
}

impl Establish {
    /// Stable name used in reports: "connect", "request", "websocket".
    pub fn name(self) -> &'static str {
        match self {
            Establish::Connect => "connect",
            Establish::Request => "request",
            Establish::WebSocket => "websocket",
        }
    }
}

/// Everything a probe needs, validated by `app`.
#[derive(Clone, Debug)]
pub struct ProbePlan {
    /// Where to connect (http/https; ws/wss map to the same schemes).
    pub target: Target,
    /// TLS settings, used for https/wss.
    pub tls: TlsPlan,
    /// Extra request headers (the GET of `--request`/`--keepalive`, or the upgrade).
    pub headers: Vec<(String, String)>,
    /// New connections per second.
    pub connect_rate: f64,
    /// Most connections to attempt (at least 1).
    pub max: usize,
    /// How long to keep everything open after the ramp ended, to check survival.
    pub hold: Duration,
    /// A connection lost this soon after it was established counts as not established.
    pub settle: Duration,
    /// What makes a connection established.
    pub establish: Establish,
    /// Send a request (or a ping) on every held connection this often; one unanswered for
    /// `max(keepalive, connect_timeout)` is a silent drop.
    pub keepalive: Option<Duration>,
    /// Each step of establishing a connection (TCP connect, TLS handshake, the request or the
    /// upgrade) must finish within this, or the connection fails (its class says which step).
    pub connect_timeout: Duration,
    /// `--confirm`: re-test below and at the limit, pausing this long between passes.
    pub confirm: Option<Duration>,
    /// `--start-at`: open the first connection at this wall-clock instant, after everything
    /// else is prepared (the measured window starts there, after any warm-up).
    pub start_at: Option<SystemTime>,
}
