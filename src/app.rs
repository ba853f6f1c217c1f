//! Executes the commands: turns validated arguments into a plan (resolving the host, reading
//! the body file, choosing CPUs, starting the built-in target when no URL is given), runs the
//! engine, and writes the reports.
//!
//! Every error that stops a command before it runs is an [`AppError`] whose message names the
//! problem and the fix; `main` prints it on one line and exits with [`AppError::exit_code`].

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use crate::cli::validate::{self, Endpoint, LoadTarget, UrlParts};
use crate::cli::{
    self, Command, Given, HttpArgs, JitterArg, LoadArgs, OverLimitArg, ProbeArgs, ServeArgs,
    TlsArgs, UsageError, WsArgs, WsModeArg,
};
use crate::engine::pace::Arrival;
use crate::engine::reconnect::{BackoffPolicy, Jitter};
use crate::engine::{self, EngineError};
use crate::plan::{Heartbeat, HttpPlan, Pinning, Scheme, Stop, Target, TlsPlan, WsMode, WsPlan};
use crate::proto::jsonfield::TsUnit;
use crate::report::{self, RunMeta, WsMeta};
use crate::serve::{self, OverLimit, ServeConfig, ServeError, ServerHandle};

/// Exit code of a completed run.
pub const EXIT_OK: i32 = 0;
/// Exit code of bad input or configuration.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of a run ended by Ctrl-C (the report is still written).
pub const EXIT_INTERRUPTED: i32 = 130;
/// A worker thread panicked: a defect of connbench. The report is still printed and written,
/// with the panic in it, but it lacks that worker's measurements (EX_SOFTWARE).
pub const EXIT_WORKER_PANIC: i32 = 70;

/// Why a command could not run.
#[derive(Debug)]
pub enum AppError {
    /// Bad command-line input.
    Usage(UsageError),
    /// The engine refused the plan.
    Engine(EngineError),
    /// The built-in target could not start.
    Serve(ServeError),
    /// The report could not be written.
    Report(String),
}

impl AppError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Usage(_) | AppError::Engine(_) | AppError::Serve(_) => EXIT_USAGE,
            AppError::Report(_) => 1,
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Usage(e) => write!(f, "{e}"),
            AppError::Engine(e) => write!(f, "{e}"),
            AppError::Serve(e) => write!(f, "{e}"),
            AppError::Report(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AppError {}

impl From<UsageError> for AppError {
    fn from(e: UsageError) -> Self {
        AppError::Usage(e)
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        AppError::Engine(e)
    }
}

fn usage<T>(msg: impl Into<String>) -> Result<T, AppError> {
    Err(AppError::Usage(UsageError(msg.into())))
}

/// Run a parsed command line (from [`cli::parse`], so that `given` is filled in); returns the
/// exit code.
pub fn run(cli: cli::Cli, argv: Vec<String>) -> Result<i32, AppError> {
    let given = cli.given;
    match cli.command {
        Command::Http(a) => http(*a, argv),
        Command::Ws(a) => ws(*a, &given, argv),
        Command::Probe(a) => probe(*a, &given, argv),
        Command::Serve(a) => serve(*a, &given),
        Command::Autobahn(a) => autobahn(a),
        Command::Merge(a) => merge(a, argv),
    }
}

/// `connbench merge`: print the merged summary, write the merged report; bad or incompatible
/// input is a usage error (exit 2) naming the file and the problem. Reports are read and
/// folded one at a time, so memory does not grow with their number.
fn merge(a: cli::MergeArgs, argv: Vec<String>) -> Result<i32, AppError> {
    use report::merge::{self, MergeOptions, Merger};
    let bad = |e: merge::MergeError| AppError::Usage(UsageError(e.to_string()));
    let mut merger = Merger::new(MergeOptions {
        allow_disjoint: a.allow_disjoint,
        allow_mixed: a.allow_mixed,
    });
    for file in &a.reports {
        let doc = merge::load(file).map_err(bad)?;
        merger.add(file, &doc).map_err(bad)?;
    }
    let merged = merger.finish(argv).map_err(bad)?;
    let text = merge::render_text(&merged);
    if a.json.as_deref() == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(dest) = &a.json {
        report::json::write(dest, &merged.json)
            .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
    }
    Ok(EXIT_OK)
}

/// `connbench autobahn`: exit 0 when every case ran, 1 when some did not or the fuzzing server
/// could not be reached or misbehaved, 2 on bad input.
fn autobahn(a: cli::AutobahnArgs) -> Result<i32, AppError> {
    use crate::autobahn::AutobahnError;
    let cases = a.cases.as_ref().map(|c| c.0.as_slice());
    match crate::autobahn::run(&a.url, &a.agent, cases) {
        Ok(summary) => {
            println!("{summary}");
            Ok(if summary.ran == summary.cases {
                EXIT_OK
            } else {
                1
            })
        }
        Err(AutobahnError::Url(e)) => usage(e),
        Err(e) => {
            eprintln!("connbench: error: {e}");
            Ok(1)
        }
    }
}

/// Where the workers and the in-process target run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlan {
    /// Worker threads.
    pub threads: usize,
    /// Worker pinning.
    pub pinning: Pinning,
    /// CPUs for the in-process target (empty: not pinned).
    pub target_cpus: Vec<usize>,
}

/// Choose worker threads and CPUs. `allowed` is this process's CPU mask (read before any
/// pinning). With an in-process target and at least two CPUs, the target gets the first CPU
/// and the workers the rest, so client and server never share a core.
pub fn plan_cpus(
    allowed: &[usize],
    threads: Option<usize>,
    cpus: Option<&[usize]>,
    no_pin: bool,
    connections: usize,
    builtin: bool,
) -> Result<CpuPlan, UsageError> {
    if let Some(list) = cpus {
        if let Some(bad) = list.iter().find(|c| !allowed.contains(c)) {
            return Err(UsageError(format!(
                "--cpus: CPU {bad} is not available to this process (allowed: {})",
                allowed
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
    }
    let (pool, target_cpus): (Vec<usize>, Vec<usize>) = match cpus {
        Some(list) => {
            let rest: Vec<usize> = allowed
                .iter()
                .copied()
                .filter(|c| !list.contains(c))
                .collect();
            let target = if builtin && !rest.is_empty() {
                vec![rest[0]]
            } else {
                vec![]
            };
            (list.to_vec(), target)
        }
        None if builtin && allowed.len() >= 2 && !no_pin => {
            (allowed[1..].to_vec(), vec![allowed[0]])
        }
        None => (allowed.to_vec(), vec![]),
    };
    let threads = threads.unwrap_or(pool.len().max(1)).min(connections).max(1);
    let pinning = if no_pin || threads > pool.len() {
        Pinning::None
    } else {
        Pinning::Cpus(pool[..threads].to_vec())
    };
    Ok(CpuPlan {
        threads,
        pinning,
        target_cpus,
    })
}

/// Parse and resolve an http(s) target URL.
pub fn parse_target(raw: &str) -> Result<(Target, Option<(String, String)>), AppError> {
    parse_url(raw, false)
}

/// Parse and resolve a target URL: http/https, or ws/wss when `websocket` (then http/https
/// are refused with a hint). The parsing is [`validate::parse_url`]'s (no host, no DNS).
pub fn parse_url(
    raw: &str,
    websocket: bool,
) -> Result<(Target, Option<(String, String)>), AppError> {
    let parts = validate::parse_url(raw, websocket)?;
    let credentials = parts.credentials.clone();
    Ok((resolve(parts)?, credentials))
}

/// Resolve a parsed URL's host: the one DNS lookup of a run.
fn resolve(parts: UrlParts) -> Result<Target, AppError> {
    let host = &parts.host;
    let addrs: Vec<_> = match (host.as_str(), parts.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return usage(format!("cannot resolve host {host:?}: {e} (check the URL)")),
    };
    if addrs.is_empty() {
        return usage(format!(
            "host {host:?} resolved to no address (check the URL)"
        ));
    }
    Ok(Target {
        scheme: parts.scheme,
        host: parts.host,
        port: parts.port,
        path: parts.path,
        authority: parts.authority,
        addrs,
        url: parts.raw,
    })
}

/// What every load command sets up the same way before building its plan.
struct Prepared {
    /// The run uses the in-process built-in target.
    builtin: bool,
    cpus: CpuPlan,
    fd_limit: u64,
    /// `-H` headers, plus Basic auth from URL credentials.
    headers: Vec<(String, String)>,
    /// The in-process target, stopped after the run.
    server: Option<ServerHandle>,
    target: Target,
    /// `--source` addresses (empty: none given).
    sources: Vec<std::net::IpAddr>,
    tls: TlsPlan,
}

/// `--source`: every address must be one this host can send from (the kernel says so through a
/// bind that reserves no port), checked before anything starts.
fn check_sources(sources: &[std::net::IpAddr]) -> Result<(), AppError> {
    for &ip in sources {
        if let Err(e) = engine::socket::check_source(ip) {
            return usage(format!(
                "--source {ip} cannot be used: {e} (give addresses of this host, e.g. \
                 127.0.0.1-127.0.0.16 on loopback)"
            ));
        }
    }
    Ok(())
}

/// `--source`: connect only to the target addresses of the sources' family, and refuse when the
/// target has none (e.g. IPv4 sources for an IPv6-only host).
fn keep_source_family(sources: &[std::net::IpAddr], target: &mut Target) -> Result<(), AppError> {
    let Some(first) = sources.first() else {
        return Ok(());
    };
    let v4 = first.is_ipv4();
    target.addrs.retain(|a| a.is_ipv4() == v4);
    if target.addrs.is_empty() {
        let (have, want) = if v4 {
            ("IPv4", "IPv6")
        } else {
            ("IPv6", "IPv4")
        };
        return usage(format!(
            "--source addresses are {have} but {} has only {want} addresses; give {want} \
             sources or a target with an {have} address",
            target.host
        ));
    }
    Ok(())
}

/// Check the TLS settings that need I/O (reading `--ca`) before anything starts: the engine
/// builds the same configuration again once the target is known.
fn check_tls_files(plan: &TlsPlan, host: &str) -> Result<(), AppError> {
    crate::tls::client_config(plan).map_err(EngineError::Tls)?;
    crate::tls::server_name(plan, host).map_err(EngineError::Tls)?;
    Ok(())
}

/// After the pure checks ([`validate`]): check `--ca`, choose CPUs, check the fd limit and the
/// `--source` addresses, then start the built-in target (for [`Endpoint::Builtin`]) or resolve
/// the URL's host, and build the TLS settings. Every usage error comes before the target
/// starts and before the DNS lookup.
fn prepare(
    load: &LoadArgs,
    tls: &TlsArgs,
    checked: LoadTarget,
    websocket: bool,
) -> Result<Prepared, AppError> {
    cli::validate_load(load)?;
    let LoadTarget { endpoint, headers } = checked;
    let builtin = endpoint.is_builtin();
    let (plain, secure) = if websocket {
        ("ws", "wss")
    } else {
        ("http", "https")
    };
    let mut tls_plan = TlsPlan {
        ca_file: tls.ca.clone(),
        extra_ca_pem: None,
        insecure: tls.insecure,
        sni: tls.sni.clone(),
        resume: !tls.no_resume,
    };
    if endpoint.is_tls() {
        check_tls_files(&tls_plan, endpoint.tls_host())?;
    }
    let cpus = plan_cpus(
        &crate::sys::allowed_cpus(),
        load.threads,
        load.cpus.as_ref().map(|c| c.0.as_slice()),
        load.no_pin,
        load.connections,
        builtin,
    )?;
    let fd_limit = engine::check_fd_limit(load.connections, if builtin { 2 } else { 1 })?;
    let sources = load
        .source
        .as_ref()
        .map(|l| l.0.clone())
        .unwrap_or_default();
    check_sources(&sources)?;
    // The built-in target runs in this process, on CPUs apart from the workers, until the run
    // ends; its certificate is trusted in memory.
    let mut server = None;
    let mut target = match endpoint {
        Endpoint::Builtin { path, tls: use_tls } => {
            let handle = serve::start(ServeConfig {
                http_port: (!use_tls).then_some(0),
                https_port: use_tls.then_some(0),
                cpus: cpus.target_cpus.clone(),
                ..ServeConfig::default()
            })
            .map_err(AppError::Serve)?;
            let url = match (handle.http_addr(), handle.https_addr()) {
                (_, Some(addr)) if use_tls => {
                    tls_plan.extra_ca_pem = Some(handle.ca_pem().as_bytes().to_vec());
                    format!("{secure}://{addr}{path}")
                }
                (Some(addr), _) => format!("{plain}://{addr}{path}"),
                _ => unreachable!("the built-in target listens on the port it was asked for"),
            };
            server = Some(handle);
            parse_url(&url, websocket)?.0
        }
        Endpoint::Url(parts) => resolve(parts)?,
    };
    keep_source_family(&sources, &mut target)?;
    Ok(Prepared {
        builtin,
        cpus,
        fd_limit,
        headers,
        server,
        target,
        sources,
        tls: tls_plan,
    })
}

impl Prepared {
    /// The report's description of the run, from what every command shares.
    fn meta(&self, mode: &str, load: &LoadArgs, argv: Vec<String>) -> RunMeta {
        RunMeta {
            mode: mode.to_string(),
            url: self.target.url.clone(),
            builtin_target: self.builtin,
            command_line: argv,
            method: "GET".to_string(),
            headers: self.headers.clone(),
            body_len: 0,
            connections: load.connections,
            threads: self.cpus.threads,
            worker_cpus: match &self.cpus.pinning {
                Pinning::Cpus(c) => c.clone(),
                Pinning::None => vec![],
            },
            target_cpus: if self.server.is_some() {
                self.cpus.target_cpus.clone()
            } else {
                vec![]
            },
            pipeline: 1,
            duration: None,
            requests: None,
            warmup: load.warmup,
            timeout: load.connect_timeout,
            connect_timeout: load.connect_timeout,
            tls: self.target.scheme == Scheme::Https,
            insecure: self.tls.insecure,
            resume: self.tls.resume,
            sni: self.tls.sni.clone(),
            ca_file: self.tls.ca_file.as_ref().map(|p| p.display().to_string()),
            fd_limit: self.fd_limit,
            ws: None,
            rate: None,
            sources: self.sources.clone(),
        }
    }

    /// Warn, announce, run, stop the in-process target, report.
    fn execute(
        mut self,
        meta: &RunMeta,
        load: &LoadArgs,
        what: &str,
        run: impl FnOnce() -> Result<report::RunResult, EngineError>,
    ) -> Result<i32, AppError> {
        if self.tls.insecure {
            eprintln!("warning: --insecure: server certificates are NOT verified (chain and name)");
        }
        if !load.quiet {
            eprintln!(
                "connbench: {} {what}, {} worker(s), {} against {}{}",
                load.connections,
                self.cpus.threads,
                match (meta.requests, meta.duration) {
                    (Some(n), _) => format!("{n} requests"),
                    (None, Some(d)) => format!("{d:?}"),
                    (None, None) => "until interrupted".to_string(),
                },
                report::redact::url(&self.target.url),
                if self.builtin {
                    " (built-in target)"
                } else {
                    ""
                },
            );
        }
        crate::sys::install_interrupt_handler();
        let result = run();
        if let Some(s) = self.server.take() {
            s.stop();
        }
        let result = result?;
        // Written before `finish` consumes the result, but a failure is reported after the
        // summary and the JSON report, so a bad --hlog path never costs the user the run.
        let hlog = load
            .hlog
            .as_deref()
            .map(|path| (path, report::hlog::write(path, &result, &meta.phases())));
        let code = finish(meta, result, load.json.as_deref())?;
        if let Some((path, Err(e))) = hlog {
            return Err(AppError::Report(format!("cannot write --hlog {path}: {e}")));
        }
        Ok(code)
    }
}

fn http(a: HttpArgs, argv: Vec<String>) -> Result<i32, AppError> {
    let checked = validate::check_http(&a)?;
    let body = match (&a.body, &a.body_file) {
        (Some(b), _) => b.clone().into_bytes(),
        (None, Some(path)) => std::fs::read(path).map_err(|e| {
            AppError::Usage(UsageError(format!(
                "cannot read --body-file {}: {e}",
                path.display()
            )))
        })?,
        (None, None) => Vec::new(),
    };
    validate::check_request(&a.method, &checked, &body)?;
    let stages = match (&a.stages, &a.scenario) {
        (Some(st), _) => st.0.clone(),
        (None, Some(name)) => vec![crate::plan::scenario(name).ok_or_else(|| {
            AppError::Usage(UsageError(format!(
                "unknown --scenario {name:?} (light, medium or heavy)"
            )))
        })?],
        (None, None) => Vec::new(),
    };
    let mut load = a.load;
    if !stages.is_empty() {
        if !load.warmup.is_zero() {
            return usage(
                "--warmup does not combine with --stages or --scenario: the first ramp is the \
                 warm-up",
            );
        }
        // The slots: as many as the busiest stage.
        load.connections = stages.iter().map(|s| s.connections).max().unwrap_or(1);
    }
    let p = prepare(&load, &a.tls, checked, false)?;
    let stop = match (a.requests, a.duration) {
        _ if !stages.is_empty() => Stop::Duration(stages.iter().map(|s| s.ramp + s.hold).sum()),
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let plan = HttpPlan {
        target: p.target.clone(),
        tls: p.tls.clone(),
        method: a.method.clone(),
        headers: p.headers.clone(),
        body,
        connections: load.connections,
        threads: p.cpus.threads,
        pinning: p.cpus.pinning.clone(),
        pipeline: a.pipeline,
        stop,
        warmup: load.warmup,
        timeout: a.timeout,
        connect_timeout: load.connect_timeout,
        progress: !load.quiet,
        intervals: load.hlog.is_some(),
        stages,
        rate: a.rate.map(|r| {
            (
                r,
                match a.arrival {
                    cli::ArrivalArg::Uniform => Arrival::Uniform,
                    cli::ArrivalArg::Poisson => Arrival::Poisson,
                },
            )
        }),
        sources: p.sources.clone(),
    };
    let meta = RunMeta {
        rate: plan
            .rate
            .map(|(r, arrival)| (r, arrival.name().to_string())),
        method: plan.method.clone(),
        body_len: plan.body.len(),
        pipeline: plan.pipeline,
        duration: match stop {
            Stop::Duration(d) => Some(d),
            Stop::Requests(_) => None,
        },
        requests: match stop {
            Stop::Requests(n) => Some(n),
            Stop::Duration(_) => None,
        },
        timeout: plan.timeout,
        ..p.meta("http", &load, argv)
    };
    p.execute(&meta, &load, "connections", || engine::run(&plan))
}

fn ws(a: WsArgs, given: &Given, argv: Vec<String>) -> Result<i32, AppError> {
    let (checked, fields) = validate::check_ws(&a, given)?;
    if a.duration.is_zero() {
        return usage("-d must be longer than 0 (e.g. -d 10s)");
    }
    // -R is a total over the connections; each connection keeps its share of the schedule.
    let send_rate = a
        .rate
        .map_or(a.send_rate, |r| r / a.load.connections.max(1) as f64);
    if a.mode == WsModeArg::Echo && !(send_rate > 0.0 && send_rate.is_finite()) {
        return usage("--send-rate / -R must be a positive number of messages per second");
    }
    if a.mode == WsModeArg::Ping && a.ping_interval.is_zero() {
        return usage("--ping-interval must be longer than 0");
    }
    if a.backoff_base.is_zero() || a.backoff_cap < a.backoff_base {
        return usage("--backoff-base must be > 0 and not above --backoff-cap");
    }
    let ts_unit = match &a.ts_unit {
        None => None,
        Some(u) => Some(TsUnit::parse(u).ok_or_else(|| {
            AppError::Usage(UsageError(format!(
                "invalid --ts-unit {u:?} (use s, ms, us or ns)"
            )))
        })?),
    };
    let heartbeat = match a.heartbeat.as_deref() {
        None | Some("off") => Heartbeat::Off,
        Some("ping") => Heartbeat::Ping,
        Some(h) => match h.strip_prefix("text:") {
            Some(t) if !t.is_empty() => Heartbeat::Text(t.to_string()),
            _ => {
                return usage(format!(
                    "invalid --heartbeat {h:?} (use ping, or text:MESSAGE such as text:ping)"
                ))
            }
        },
    };
    // Ping mode is a protocol-ping heartbeat at --ping-interval.
    let (heartbeat, heartbeat_interval) = match a.mode {
        WsModeArg::Ping => (Heartbeat::Ping, a.ping_interval),
        _ => (heartbeat, a.heartbeat_interval),
    };
    if heartbeat != Heartbeat::Off && heartbeat_interval.is_zero() {
        return usage("--heartbeat-interval must be longer than 0");
    }
    // A ping unanswered when the next one is due means the peer is gone (the default of
    // --heartbeat ping). Ping mode measures pongs: cutting slow ones off would hide the tail
    // it is there to show, so it has no timeout unless asked.
    let pong_timeout =
        match a.pong_timeout {
            Some(_) if heartbeat != Heartbeat::Ping => return usage(
                "--pong-timeout needs protocol pings: add --heartbeat ping (or use --mode ping)",
            ),
            Some(t) if t.is_zero() => return usage("--pong-timeout must be longer than 0"),
            Some(t) => Some(t),
            None if a.mode == WsModeArg::Ping => None,
            None => (heartbeat == Heartbeat::Ping).then_some(heartbeat_interval),
        };
    let reconnect_budget = match &a.reconnect_budget {
        None => None,
        Some(b) => Some(
            engine::reconnect::parse_budget(b)
                .map_err(|e| AppError::Usage(UsageError(format!("--reconnect-budget: {e}"))))?,
        ),
    };
    let p = prepare(&a.load, &a.tls, checked, true)?;
    let ts_field = fields.ts_field.as_ref().map(|(name, _)| name.clone());
    let seq_field = fields.seq_field.as_ref().map(|(name, _)| name.clone());
    let plan = WsPlan {
        target: p.target.clone(),
        tls: p.tls.clone(),
        headers: p.headers.clone(),
        connections: a.load.connections,
        threads: p.cpus.threads,
        pinning: p.cpus.pinning.clone(),
        duration: a.duration,
        warmup: a.load.warmup,
        connect_timeout: a.load.connect_timeout,
        progress: !a.load.quiet,
        intervals: a.load.hlog.is_some(),
        subscriptions: fields.subscriptions,
        mode: match a.mode {
            WsModeArg::Stream => WsMode::Stream,
            WsModeArg::Echo => WsMode::Echo,
            WsModeArg::Ping => WsMode::Ping,
        },
        send_rate,
        message_size: a.message_size,
        ping_interval: a.ping_interval,
        ts_field: fields.ts_field.map(|(_, path)| path),
        ts_unit,
        seq_field: fields.seq_field.map(|(_, path)| path),
        stream_field: fields.stream_field,
        utf8_check: !a.no_utf8_check,
        max_message: a.max_message.max(125),
        backoff: BackoffPolicy {
            jitter: match a.backoff {
                JitterArg::Full => Jitter::Full,
                JitterArg::Decorrelated => Jitter::Decorrelated,
            },
            base: a.backoff_base,
            cap: a.backoff_cap,
            max_retries: a.max_retries,
        },
        reconnect_budget,
        stale_after: a.stale_after,
        heartbeat: heartbeat.clone(),
        heartbeat_interval,
        pong_timeout,
        send_buffer: a.send_buffer,
        sources: p.sources.clone(),
    };
    let meta = RunMeta {
        duration: Some(plan.duration),
        // Echo mode is open-loop: corrected latency and send lag are reported.
        rate: (plan.mode == WsMode::Echo).then(|| {
            (
                plan.send_rate * plan.connections as f64,
                "uniform".to_string(),
            )
        }),
        ws: Some(WsMeta {
            mode: format!("{:?}", a.mode).to_lowercase(),
            subscriptions: plan.subscriptions.clone(),
            send_rate: plan.send_rate,
            message_size: plan.message_size,
            ping_interval: plan.ping_interval,
            ts_field,
            ts_unit: a.ts_unit.clone(),
            seq_field,
            stream_field: a.stream_field.clone(),
            stale_after: plan.stale_after,
            heartbeat: match &heartbeat {
                Heartbeat::Off => "off".to_string(),
                Heartbeat::Ping => "ping".to_string(),
                Heartbeat::Text(t) => format!("text:{}", report::redact::message(t)),
            },
            heartbeat_interval,
            pong_timeout,
            backoff: format!("{:?}", a.backoff).to_lowercase(),
            backoff_base: a.backoff_base,
            backoff_cap: a.backoff_cap,
            max_retries: a.max_retries,
            reconnect_budget,
            send_buffer: a.send_buffer,
            utf8_check: plan.utf8_check,
            max_message: plan.max_message,
            connections: plan.connections,
        }),
        ..p.meta("ws", &a.load, argv)
    };
    p.execute(&meta, &a.load, "WebSocket connections", || {
        engine::run_ws(&plan)
    })
}

/// Print the summary, write the JSON report, choose the exit code.
fn finish(meta: &RunMeta, result: report::RunResult, json: Option<&str>) -> Result<i32, AppError> {
    let text = report::text::render(meta, &result);
    if json == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
        // Why connections failed, where known, also where a user watching stderr sees it.
        for line in report::text::reason_lines(&result.recorder.reasons) {
            eprintln!("connbench: {line}");
        }
    }
    if let Some(dest) = json {
        let host = report::host::HostFacts::collect();
        let v = report::json::render(meta, &result, &host);
        report::json::write(dest, &v)
            .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
    }
    for p in &result.worker_panics {
        eprintln!("connbench: error: {}", p.describe());
    }
    Ok(if !result.worker_panics.is_empty() {
        EXIT_WORKER_PANIC
    } else if result.interrupted {
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    })
}

/// `connbench probe`: one thread, the built-in target when no URL is given, a text summary and
/// optionally the JSON report. Exit 0 whatever the probe found (finding a limit is success),
/// 130 on Ctrl-C.
fn probe(a: ProbeArgs, given: &Given, argv: Vec<String>) -> Result<i32, AppError> {
    use crate::engine::probe::{Establish, ProbePlan};
    let (checked, websocket) = validate::check_probe(&a, given)?;
    // The shared preparation wants load flags; a probe is one thread, unpinned, and must not
    // be refused for a --max above the fd limit (finding that limit is its job), so the fd
    // check is asked for a single connection.
    let load = LoadArgs {
        connections: 1,
        threads: Some(1),
        warmup: Duration::ZERO,
        connect_timeout: a.connect_timeout,
        headers: a.headers.clone(),
        no_pin: true,
        cpus: None,
        json: a.json.clone(),
        hlog: None,
        source: None,
        quiet: a.quiet,
    };
    let mut p = prepare(&load, &a.tls, checked, websocket)?;
    // The in-process target holds the other end of every connection in this process.
    let fds_per_conn = if p.builtin { 2 } else { 1 };
    let max = a.max.unwrap_or_else(|| {
        let spare = p.fd_limit.saturating_sub(engine::FD_RESERVE) / fds_per_conn;
        usize::try_from(spare).unwrap_or(usize::MAX).max(1)
    });
    let establish = if websocket {
        Establish::WebSocket
    } else if a.request {
        Establish::Request
    } else {
        Establish::Connect
    };
    let plan = ProbePlan {
        target: p.target.clone(),
        tls: p.tls.clone(),
        headers: p.headers.clone(),
        connect_rate: a.connect_rate,
        max,
        hold: a.hold,
        settle: a.settle,
        establish,
        keepalive: a.keepalive,
        connect_timeout: a.connect_timeout,
        confirm: a.confirm.then_some(a.confirm_pause),
    };
    let meta = RunMeta {
        connections: max,
        ..p.meta("probe", &load, argv)
    };
    let probe_meta = report::probe::ProbeMeta {
        establish,
        connect_rate: a.connect_rate,
        max,
        max_from_fd_limit: a.max.is_none(),
        hold: a.hold,
        settle: a.settle,
        keepalive: a.keepalive,
        confirm_pause: plan.confirm,
    };
    if p.tls.insecure {
        eprintln!("warning: --insecure: server certificates are NOT verified (chain and name)");
    }
    if !a.quiet {
        eprintln!(
            "connbench: probing {}{} at {} conn/s up to {max} connections (established = {}; fd limit {})",
            report::redact::url(&p.target.url),
            if p.builtin { " (built-in target)" } else { "" },
            a.connect_rate,
            establish.name(),
            p.fd_limit,
        );
    }
    crate::sys::install_interrupt_handler();
    let result = engine::probe::run(&plan);
    if let Some(s) = p.server.take() {
        s.stop();
    }
    let result = result?;
    let text = report::probe::text(&meta, &probe_meta, &result);
    if a.json.as_deref() == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(dest) = a.json.as_deref() {
        let host = report::host::HostFacts::collect();
        let v = report::probe::json(&meta, &probe_meta, &result, &host);
        report::json::write(dest, &v)
            .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
    }
    Ok(if result.interrupted {
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    })
}

fn serve(a: ServeArgs, given: &Given) -> Result<i32, AppError> {
    if a.threads == 0 {
        return usage("--threads must be at least 1");
    }
    if a.max_conns == Some(0) {
        return usage("--max-conns must be at least 1");
    }
    if a.close_after == Some(0) {
        return usage("--close-after must be at least 1");
    }
    if !(a.ws_rate >= 0.0 && a.ws_rate.is_finite()) {
        return usage("--ws-rate must be a number of messages per second (0 or more)");
    }
    if a.ws_gap_every == Some(0) {
        return usage("--ws-gap-every must be at least 1");
    }
    if a.ws_greeting
        .as_ref()
        .is_some_and(|g| g.len() > serve::MAX_GREETING)
    {
        return usage(format!(
            "--ws-greeting must be at most {} bytes",
            serve::MAX_GREETING
        ));
    }
    if a.stall_for.is_some_and(|d| d.is_zero()) {
        return usage("--stall-for must be longer than 0 (e.g. --stall-at 2s --stall-for 500ms)");
    }
    validate::check_serve(&a, given, &crate::sys::allowed_cpus())?;
    if a.drip.is_some_and(|d| d.is_zero()) {
        return usage("--drip must be longer than 0 (e.g. --drip 1ms)");
    }
    let cfg = ServeConfig {
        bind: a.bind,
        http_port: (!a.no_http).then_some(a.http),
        https_port: (!a.no_https).then_some(a.https),
        threads: a.threads,
        cpus: a.cpus.map(|c| c.0).unwrap_or_default(),
        max_conns: a.max_conns,
        over_limit: match a.over_limit {
            OverLimitArg::Refuse => OverLimit::Refuse,
            OverLimitArg::TooMany => OverLimit::TooMany,
            OverLimitArg::Close => OverLimit::Close,
        },
        close_after: a.close_after,
        cert_out: a.cert_out.clone(),
        ws_rate: a.ws_rate,
        ws_drop_every: a.ws_drop_every,
        ws_drop_rst: a.ws_drop_mode == Some(crate::cli::WsDropModeArg::Rst),
        ws_gap_every: a.ws_gap_every,
        ws_stall_after: a.ws_stall_after,
        ws_ping_every: a.ws_ping_every,
        ws_pong_timeout: a.ws_pong_timeout,
        http_stall: a.stall_at.zip(a.stall_for),
        ws_greeting: a.ws_greeting.clone(),
        ws_ignore_pings: a.ws_no_pong,
        drip: a.drip,
    };
    crate::sys::raise_fd_limit();
    let handle = serve::start(cfg).map_err(AppError::Serve)?;
    if let Some(addr) = handle.http_addr() {
        println!("http   http://{addr}/");
    }
    if let Some(addr) = handle.https_addr() {
        println!("https  https://{addr}/   (self-signed; SANs 127.0.0.1, ::1, localhost)");
        match &a.cert_out {
            Some(p) => println!("cert   {} (use --ca {})", p.display(), p.display()),
            None => print!("{}", handle.ca_pem()),
        }
    }
    println!("routes / /bytes/N /chunked/N /delay/MICROS /status/CODE /exchanges/EX/trades?symbol=S&limit=N /headers/N /garbage");
    println!("faults /close/fin/N /close/rst/N /truncate/fin/N /truncate/rst/N (bytes, then the connection ends)");
    println!(
        "ws     /ws (subscribe, then {}/s per connection)  /echo",
        a.ws_rate
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    crate::sys::install_interrupt_handler();
    let start = Instant::now();
    while !crate::sys::interrupted() && a.run_for.is_none_or(|d| start.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = handle.stats();
    handle.stop();
    println!(
        "served {} requests on {} connections ({} rejected); {} WebSocket upgrades, {} messages sent, {} gaps, {} drops",
        stats.requests,
        stats.accepted,
        stats.rejected,
        stats.ws_upgrades,
        stats.ws_messages_sent,
        stats.ws_gaps,
        stats.ws_drops
    );
    if a.stall_at.is_some() {
        println!(
            "stall  {} requests were held by --stall-at/--stall-for",
            stats.http_stalled_requests
        );
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_target_gets_its_own_cpu() {
        let p = plan_cpus(&[0, 1], None, None, false, 10, true).unwrap();
        assert_eq!(p.threads, 1);
        assert_eq!(p.pinning, Pinning::Cpus(vec![1]));
        assert_eq!(p.target_cpus, vec![0]);
    }

    #[test]
    fn threads_never_exceed_connections() {
        let p = plan_cpus(&[0, 1, 2, 3], None, None, false, 2, false).unwrap();
        assert_eq!(p.threads, 2);
        assert_eq!(p.pinning, Pinning::Cpus(vec![0, 1]));
    }

    #[test]
    fn explicit_cpus_must_be_allowed() {
        let e = plan_cpus(&[0, 1], None, Some(&[5]), false, 10, false).unwrap_err();
        assert!(e.0.contains("CPU 5"), "{e}");
        let p = plan_cpus(&[0, 1, 2, 3], None, Some(&[2, 3]), false, 10, true).unwrap();
        assert_eq!(p.pinning, Pinning::Cpus(vec![2, 3]));
        assert_eq!(p.target_cpus, vec![0]);
    }

    #[test]
    fn more_threads_than_cpus_are_not_pinned() {
        let p = plan_cpus(&[0, 1], Some(4), None, false, 10, false).unwrap();
        assert_eq!(p.threads, 4);
        assert_eq!(p.pinning, Pinning::None);
        let p = plan_cpus(&[0, 1], None, None, true, 10, true).unwrap();
        assert_eq!(p.pinning, Pinning::None);
        assert!(p.target_cpus.is_empty());
    }

    #[test]
    fn urls_parse_and_resolve() {
        let (t, cred) = parse_target("http://127.0.0.1:8080/a/b?x=1").unwrap();
        assert_eq!(t.scheme, Scheme::Http);
        assert_eq!(t.port, 8080);
        assert_eq!(t.path, "/a/b?x=1");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert!(cred.is_none());
        let (t, _) = parse_target("https://[::1]/").unwrap();
        assert_eq!(t.port, 443);
        assert_eq!(t.authority, "[::1]");
        assert_eq!(t.host, "::1");
        let (_, cred) = parse_target("http://us%40er:p%3Ass@127.0.0.1/").unwrap();
        assert_eq!(cred, Some(("us@er".into(), "p:ss".into())));
    }

    #[test]
    fn bad_urls_are_usage_errors() {
        for bad in [
            "not a url",
            "ftp://127.0.0.1/",
            "http://",
            "ws://127.0.0.1/",
        ] {
            let e = parse_target(bad).unwrap_err();
            assert_eq!(e.exit_code(), EXIT_USAGE, "{bad}");
        }
        // Credentials in a rejected URL are not echoed back.
        let e = parse_target("http://user:hunter2@:80/").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
