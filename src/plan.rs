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

/// When the live progress line is drawn on stderr (`--progress`, cargo's `auto|always|never`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProgressWhen {
    /// When stderr is a terminal (redrawn in place).
    #[default]
    Auto,
    /// Always: redrawn in place on a terminal, else one newline-ended line a second (CI logs).
    Always,
    /// Never (`--quiet` implies it unless `--progress` is given).
    Never,
}

impl ProgressWhen {
    /// The name `--progress` takes.
    pub fn name(self) -> &'static str {
        match self {
            ProgressWhen::Auto => "auto",
            ProgressWhen::Always => "always",
            ProgressWhen::Never => "never",
        }
    }

    /// Parse what [`ProgressWhen::name`] returns.
    pub fn parse(s: &str) -> Option<ProgressWhen> {
        [
            ProgressWhen::Auto,
            ProgressWhen::Always,
            ProgressWhen::Never,
        ]
        .into_iter()
        .find(|w| w.name() == s)
    }
}

/// The live progress line of a load run: when it is drawn, and where the run stands in a
/// series (`--scenario all`, repeated `--stages`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// When it is drawn.
    pub when: ProgressWhen,
    /// In a series: which run this is.
    pub series: Option<SeriesPos>,
}

impl Progress {
    /// Drawn as `when` says, not in a series.
    pub fn new(when: ProgressWhen) -> Progress {
        Progress { when, series: None }
    }
}

/// One run's place in a series of runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesPos {
    /// 1-based.
    pub index: usize,
    /// Runs in the series.
    pub of: usize,
    /// The run's name (the scenario's, or its `--stages` list).
    pub name: String,
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
    /// The live progress line on stderr (`--progress`).
    pub progress: Progress,
    /// Collect one-second interval histograms (for `--hlog`).
    pub intervals: bool,
    /// Constant-rate mode: requests per second across all workers, and their spacing. With
    /// per-stage rates ([`Stage::rate`]) this is their time-weighted mean ([`mean_rate`]), what
    /// the report compares the whole run with; each stage is paced at its own.
    pub rate: Option<(f64, Arrival)>,
    /// Ramp profile (`--stages`, `--scenario`); empty: all connections from the start.
    pub stages: Vec<Stage>,
    /// Local source addresses, taken round-robin by global connection index (`--source`);
    /// empty: the kernel picks (no bind). All of the target address family.
    pub sources: Vec<IpAddr>,
    /// Requests each connection carries before connbench closes it and opens the next one in
    /// its place (`--requests-per-conn`; `--no-keepalive` is 1; `--conn-rate` defaults to 1).
    /// None: keep-alive, a connection carries requests until the run ends or the server closes.
    pub requests_per_conn: Option<u64>,
    /// Connection-rate mode (`--conn-rate`): new connections per second across all workers, on
    /// an open-loop schedule (connection k due at start + k/R); each carries
    /// `requests_per_conn` requests, then closes. `connections` caps how many are open at once.
    pub conn_rate: Option<f64>,
    /// How connbench closes a connection it is done with (`--close`).
    pub close: CloseMode,
    /// `--busy-poll`: the workers spin instead of sleeping.
    pub busy_poll: Option<BusyPoll>,
    /// `-v`: show what the first connections receive (and, for WebSocket, every
    /// reconnection) on stderr while the run goes.
    pub verbose: bool,
    /// `--start-at`: open the first connection at this wall-clock instant, after everything
    /// else is prepared (the measured window starts there, after any warm-up).
    pub start_at: Option<SystemTime>,
}

/// How connbench closes a connection it has finished with (`--close`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CloseMode {
    /// An orderly close (FIN): the side that closes first keeps the 4-tuple in TIME_WAIT for
    /// 60 s (Linux), here the client.
    #[default]
    Fin,
    /// SO_LINGER 0: the close sends an RST and leaves no TIME_WAIT behind.
    Rst,
}

impl CloseMode {
    /// Stable name used on the command line and in reports: "fin", "rst".
    pub fn name(self) -> &'static str {
        match self {
            CloseMode::Fin => "fin",
            CloseMode::Rst => "rst",
        }
    }

    /// Parse "fin" or "rst".
    pub fn parse(s: &str) -> Option<CloseMode> {
        match s {
            "fin" => Some(CloseMode::Fin),
            "rst" => Some(CloseMode::Rst),
            _ => None,
        }
    }
}

/// `--busy-poll`: the workers spin in `epoll_wait(…, 0)` instead of sleeping (the core's rule
/// 6), and what the kernel allowed of SO_BUSY_POLL, found out before the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusyPoll {
    /// SO_BUSY_POLL set on every socket, µs; `Err`: why the kernel refused it (the workers
    /// spin all the same).
    pub so_busy_poll: Result<u32, String>,
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
    /// The live progress line on stderr (`--progress`).
    pub progress: Progress,
    /// Collect one-second interval histograms (for `--hlog`).
    pub intervals: bool,
    /// What each connection does, and how it recovers (what the report shows of the run).
    pub session: WsSession,
    /// Local source addresses, taken round-robin by global connection index (`--source`);
    /// empty: the kernel picks (no bind). All of the target address family.
    pub sources: Vec<IpAddr>,
    /// `--busy-poll`: the workers spin instead of sleeping.
    pub busy_poll: Option<BusyPoll>,
    /// `-v`: show what the first connections receive (and, for WebSocket, every
    /// reconnection) on stderr while the run goes.
    pub verbose: bool,
    /// Ramp profile (`--stages`, `--scenario`): connections opened and closed as the stages
    /// say (`connections` is then the busiest stage's, `duration` their sum); empty: every
    /// connection from the start. Stream and ping modes only; no stage rates.
    pub stages: Vec<Stage>,
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

/// One stage of a ramp profile: ramp to `connections` over `ramp`, then hold for `hold`;
/// `CONNS@RAMP+HOLD[@RATE]` on the command line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    /// Connections at the end of the ramp (and during the hold).
    pub connections: usize,
    /// Ramp duration (from the previous stage's count).
    pub ramp: Duration,
    /// Sustained duration.
    pub hold: Duration,
    /// Requests per second in total during the whole stage (ramp and hold), on an open-loop
    /// schedule as `-R` paces a run; None: closed loop (or the run's `-R`).
    pub rate: Option<f64>,
}

impl Stage {
    /// Ramp plus hold.
    pub fn length(&self) -> Duration {
        self.ramp + self.hold
    }
}

impl std::fmt::Display for Stage {
    /// As the command line writes it: `50@10s+30s`, `4@300ms+1.5s@200/s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{}+{}",
            self.connections,
            spec_duration(self.ramp),
            spec_duration(self.hold)
        )?;
        match self.rate {
            Some(r) => write!(f, "@{r}/s"),
            None => Ok(()),
        }
    }
}

/// A stage list as the command line writes it: `50@10s+30s,200@20s+45s`.
pub fn stages_spec(stages: &[Stage]) -> String {
    stages
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A duration as `--stages` takes it: `10s`, `300ms`, `1.5s`, `250us`.
fn spec_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_nanos().is_multiple_of(1_000) {
        format!("{}us", d.as_micros())
    } else {
        format!("{}ns", d.as_nanos())
    }
}

/// Whether a stage window ramps the connections or holds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    /// From the previous stage's connections to this one's.
    Ramp,
    /// This stage's connections, held.
    Hold,
}

impl WindowKind {
    /// Stable name used in reports: "ramp" or "hold".
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Ramp => "ramp",
            WindowKind::Hold => "hold",
        }
    }
}

/// One reported window of a staged run: a stage's ramp or its hold.
#[derive(Clone, Debug, PartialEq)]
pub struct StageWindow {
    /// 1-based stage number.
    pub stage: usize,
    /// The stage's ramp or its hold.
    pub kind: WindowKind,
    /// Offset from the start of the run.
    pub start: Duration,
    /// Length.
    pub length: Duration,
    /// Connections at the start of the window.
    pub from: usize,
    /// Connections at the end of the window.
    pub to: usize,
    /// The stage's rate ([`Stage::rate`]), requests per second in total.
    pub rate: Option<f64>,
}

/// A named load shape of the seed: its stages, run as one `--stages` list.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The name `--scenario` takes, as the seed names it.
    pub name: &'static str,
    /// Its stages.
    pub stages: Vec<Stage>,
}

/// The seed's HTTP scenarios ("Light Load", "Medium Load", "Heavy Load"): connections, ramp
/// and sustained seconds, ramped as its `run_ramp_test` does.
pub const HTTP_SCENARIOS: [(&str, usize, u64, u64); 3] = [
    ("light", 50, 10, 30),
    ("medium", 200, 20, 45),
    ("heavy", 500, 30, 60),
];

/// The seed's WebSocket scenarios ("WebSocket Scenario 1: 25 connections", 2, 3): every
/// connection opened at once (no ramp), then held for the scenario's duration.
pub const WS_SCENARIOS: [(&str, usize, u64, u64); 3] =
    [("1", 25, 0, 60), ("2", 100, 0, 90), ("3", 250, 0, 60)];

/// The seed's scenarios of a command (`ws`: [`WS_SCENARIOS`], else [`HTTP_SCENARIOS`]) that
/// `name` selects, in the seed's order: one, or every one for `all`. None for another name.
pub fn scenarios(mode: Mode, name: &str) -> Option<Vec<Scenario>> {
    let table = match mode {
        Mode::Ws => &WS_SCENARIOS,
        _ => &HTTP_SCENARIOS,
    };
    let picked: Vec<Scenario> = table
        .iter()
        .filter(|(n, ..)| name == "all" || *n == name)
        .map(|&(name, connections, ramp, hold)| Scenario {
            name,
            stages: vec![Stage {
                connections,
                ramp: Duration::from_secs(ramp),
                hold: Duration::from_secs(hold),
                rate: None,
            }],
        })
        .collect();
    (!picked.is_empty()).then_some(picked)
}

/// The ramp and hold windows of a stage list, in time order (zero-length windows omitted).
pub fn stage_windows(stages: &[Stage]) -> Vec<StageWindow> {
    let mut out = Vec::new();
    let mut t = Duration::ZERO;
    let mut prev = 0;
    for (i, s) in stages.iter().enumerate() {
        for (kind, length, from, to) in [
            (WindowKind::Ramp, s.ramp, prev, s.connections),
            (WindowKind::Hold, s.hold, s.connections, s.connections),
        ] {
            if !length.is_zero() {
                out.push(StageWindow {
                    stage: i + 1,
                    kind,
                    start: t,
                    length,
                    from,
                    to,
                    rate: s.rate,
                });
            }
            t += length;
        }
        prev = s.connections;
    }
    out
}

/// Per-stage rates (`…@RATE`): each stage's start offset and total rate, when every stage has
/// one (validation refuses a list where only some do); None for a list without rates or no
/// list.
pub fn rate_steps(stages: &[Stage]) -> Option<Vec<(Duration, f64)>> {
    if stages.is_empty() {
        return None;
    }
    let mut t = Duration::ZERO;
    let mut out = Vec::with_capacity(stages.len());
    for s in stages {
        out.push((t, s.rate?));
        t += s.length();
    }
    Some(out)
}

/// The run's asked rate with per-stage rates: requests due over the whole run ÷ its length
/// (the time-weighted mean of the stages' rates); None without rates or with no length.
pub fn mean_rate(stages: &[Stage]) -> Option<f64> {
    let total: Duration = stages.iter().map(Stage::length).sum();
    if total.is_zero() {
        return None;
    }
    let due: f64 = stages
        .iter()
        .map(|s| s.rate.map(|r| r * s.length().as_secs_f64()))
        .sum::<Option<f64>>()?;
    Some(due / total.as_secs_f64())
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
                rate: None,
            },
            Stage {
                connections: 200,
                ramp: secs(20.0),
                hold: secs(45.0),
                rate: None,
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
                rate: None,
            },
            Stage {
                connections: 0,
                ramp: secs(1.0),
                hold: secs(0.0),
                rate: None,
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
                rate: None,
            },
            Stage {
                connections: 8,
                ramp: secs(0.0),
                hold: secs(1.0),
                rate: None,
            },
        ];
        let w = stage_windows(&st);
        assert_eq!(w.len(), 3);
        assert_eq!(
            (w[0].kind, w[0].from, w[0].to, w[0].start),
            (WindowKind::Ramp, 0, 4, secs(0.0))
        );
        assert_eq!(
            (w[1].kind, w[1].start, w[1].length),
            (WindowKind::Hold, secs(1.0), secs(2.0))
        );
        assert_eq!(
            (w[2].stage, w[2].kind, w[2].from, w[2].start),
            (2, WindowKind::Hold, 8, secs(3.0))
        );
    }

    #[test]
    fn scenarios_are_the_seeds() {
        let one = |mode, name| {
            let mut v = scenarios(mode, name).unwrap();
            assert_eq!(v.len(), 1);
            let sc = v.remove(0);
            assert_eq!(sc.name, name);
            assert_eq!(sc.stages.len(), 1);
            sc.stages[0]
        };
        let stage = |connections, ramp, hold| Stage {
            connections,
            ramp: secs(ramp),
            hold: secs(hold),
            rate: None,
        };
        // The seed's HTTP scenarios ramp, then sustain.
        assert_eq!(one(Mode::Http, "light"), stage(50, 10.0, 30.0));
        assert_eq!(one(Mode::Http, "medium"), stage(200, 20.0, 45.0));
        assert_eq!(one(Mode::Http, "heavy"), stage(500, 30.0, 60.0));
        // Its WebSocket scenarios open every connection at once and hold them.
        assert_eq!(one(Mode::Ws, "1"), stage(25, 0.0, 60.0));
        assert_eq!(one(Mode::Ws, "2"), stage(100, 0.0, 90.0));
        assert_eq!(one(Mode::Ws, "3"), stage(250, 0.0, 60.0));
        // `all`: every one, in the seed's order, each its own run.
        let names = |mode| {
            scenarios(mode, "all")
                .unwrap()
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Mode::Http), ["light", "medium", "heavy"]);
        assert_eq!(names(Mode::Ws), ["1", "2", "3"]);
        for (mode, bad) in [
            (Mode::Http, "extreme"),
            (Mode::Http, "1"),
            (Mode::Ws, "light"),
        ] {
            assert!(scenarios(mode, bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn stage_lists_print_as_the_command_line_writes_them() {
        let st = [
            Stage {
                connections: 50,
                ramp: secs(10.0),
                hold: secs(30.0),
                rate: Some(50.0),
            },
            Stage {
                connections: 4,
                ramp: secs(0.3),
                hold: secs(1.5),
                rate: Some(12.5),
            },
            Stage {
                connections: 0,
                ramp: Duration::from_micros(250),
                hold: Duration::ZERO,
                rate: None,
            },
        ];
        assert_eq!(
            stages_spec(&st),
            "50@10s+30s@50/s,4@300ms+1500ms@12.5/s,0@250us+0s"
        );
    }

    #[test]
    fn stage_rates_step_at_each_stage_and_average_over_the_run() {
        let st = [
            Stage {
                connections: 50,
                ramp: secs(10.0),
                hold: secs(30.0),
                rate: Some(50.0),
            },
            Stage {
                connections: 100,
                ramp: secs(0.0),
                hold: secs(20.0),
                rate: Some(200.0),
            },
        ];
        assert_eq!(
            rate_steps(&st),
            Some(vec![(secs(0.0), 50.0), (secs(40.0), 200.0)])
        );
        // 40 s × 50/s + 20 s × 200/s over 60 s
        assert_eq!(mean_rate(&st), Some(6000.0 / 60.0));
        let w = stage_windows(&st);
        assert_eq!(
            w.iter().map(|w| w.rate).collect::<Vec<_>>(),
            [Some(50.0), Some(50.0), Some(200.0)]
        );
        let mut unpaced = st;
        unpaced[1].rate = None;
        assert_eq!(rate_steps(&unpaced), None);
        assert_eq!(mean_rate(&unpaced), None);
        assert_eq!(rate_steps(&[]), None);
        assert_eq!(mean_rate(&[]), None);
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
    /// When the live progress line is drawn (`--progress`).
    pub progress: ProgressWhen,
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

/// Where `connbench floor` measures each layer, for one pinning (the built-in target runs
/// twice: pinned apart from the client, and not pinned).
#[derive(Clone, Debug)]
pub struct FloorEndpoints {
    /// TCP connect and HTTP keep-alive TTFB (its path).
    pub http: Target,
    /// The TLS handshakes; `Err`: why there are none (a plain http:// URL).
    pub tls: Result<Target, String>,
    /// The raw TCP round trip's echo service; `Err`: why there is none.
    pub echo: Result<SocketAddr, String>,
    /// The WebSocket echo round trip; `Err`: why there is none.
    pub ws: Result<Target, String>,
    /// TLS trust for these endpoints (the built-in target's certificate, or `--ca`, `-k`,
    /// `--sni`); `resume` is set per layer (full, resumed).
    pub trust: TlsPlan,
}

/// A `connbench floor` run.
#[derive(Clone, Debug)]
pub struct FloorPlan {
    /// The pinned rows: the client's CPU and what it measures against; `Err`: why no row is
    /// pinned (one CPU for client and built-in target).
    pub pinned: Result<(usize, FloorEndpoints), String>,
    /// The rows not pinned.
    pub unpinned: FloorEndpoints,
    /// How long each measurement runs.
    pub measure_for: Duration,
    /// What the busy-poll rows set of SO_BUSY_POLL.
    pub busy_poll: BusyPoll,
}
