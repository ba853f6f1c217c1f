//! `connbench floor`: the client-side floor of this machine, one layer at a time, each in
//! four modes (sleeping or busy-polling, pinned or not), then the verdict: what connbench
//! adds over the raw round trip, and its CPU per request.
//!
//! Without a URL it starts the built-in target twice in this process: once pinned to a CPU
//! apart from the client (for the pinned rows), once not pinned (for the rest). With a URL
//! every layer goes to that host; `--echo` and `--ws` name the services a plain HTTP host
//! lacks, and the layers without one say so ("n/a") instead of measuring something else.
//! Every destination is reached once before anything is measured: an unreachable one is a
//! one-line error (exit 2, like a host that does not resolve), never a table of failures.
//!
//! HTTP TTFB and the WebSocket echo are the `http` and `ws` engines at one connection; the
//! rest are `engine::floor`'s, each run on a thread of its own, pinned or not.

#[allow(unused_imports)]
use super::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use crate::cli::FloorArgs;
use crate::engine::floor::{self as measure, Wait, STEP_TIMEOUT};
use crate::metrics::floor::{FloorResult, Layer, LayerResult, Measured, Mode, Row};
use crate::metrics::{ErrorClass, Phase, Recorder};
use crate::plan::{BusyPoll, FloorEndpoints, FloorPlan};
use crate::report::floor::FloorMeta;

/// WebSocket echo messages per second at one connection: spaced far wider than a round
/// trip, so each is timed alone.
pub const WS_SEND_RATE: f64 = 2000.0;
/// Bytes of each WebSocket echo message.
pub const WS_MESSAGE_BYTES: usize = 64;

pub(super) fn floor(a: FloorArgs, argv: Vec<String>) -> Result<i32, AppError> {
    let checked = validate::check_floor(&a)?;
    let trust = TlsPlan {
        ca_file: a.ca.clone(),
        extra_ca_pem: None,
        insecure: a.insecure,
        sni: a.sni.clone(),
        resume: true,
    };
    if let Some(host) = checked.tls_host() {
        check_tls_files(&trust, host)?;
    }
    let builtin = checked.endpoint.is_builtin();
    let allowed = crate::sys::allowed_cpus();
    let cpus = plan_cpus(&allowed, Some(1), None, false, 1, builtin)?;
    let client_cpu = match &cpus.pinning {
        Pinning::Cpus(c) => c.first().copied(),
        Pinning::None => None,
    };
    crate::sys::raise_fd_limit();
    let mut servers = Vec::new();
    let (pinned, unpinned, target_cpus) = match checked.endpoint {
        Endpoint::Builtin { path, .. } => {
            let pinned = match client_cpu {
                Some(cpu) if !cpus.target_cpus.is_empty() => {
                    let s = start_builtin(cpus.target_cpus.clone())?;
                    let e = builtin_endpoints(&s, &path)?;
                    servers.push(s);
                    Ok((cpu, e))
                }
                _ => Err(format!(
                    "{} CPU(s) for this process: the client cannot be pinned apart from the \
                     built-in target",
                    allowed.len()
                )),
            };
            let free = start_builtin(Vec::new())?;
            let unpinned = builtin_endpoints(&free, &path)?;
            servers.push(free);
            let target_cpus = if pinned.is_ok() {
                cpus.target_cpus.clone()
            } else {
                Vec::new()
            };
            (pinned, unpinned, target_cpus)
        }
        Endpoint::Url(parts) => {
            let e = url_endpoints(parts, checked.echo, checked.ws, trust)?;
            let pinned = client_cpu
                .map(|cpu| (cpu, e.clone()))
                .ok_or_else(|| "this process may not pin threads".to_string());
            (pinned, e, Vec::new())
        }
    };
    let plan = FloorPlan {
        pinned,
        unpinned,
        measure_for: a.duration,
        busy_poll: busy_poll_plan(),
    };
    let meta = FloorMeta {
        url: plan.unpinned.http.url.clone(),
        builtin,
        command_line: argv,
        measure_for: plan.measure_for,
        verdict_busy_poll: a.busy_poll,
        client_cpu: plan.pinned.as_ref().ok().map(|(cpu, _)| *cpu),
        target_cpus,
        busy_poll: plan.busy_poll.clone(),
        echo: (!builtin)
            .then(|| plan.unpinned.echo.as_ref().ok().map(|a| a.to_string()))
            .flatten(),
        ws_url: (!builtin)
            .then(|| plan.unpinned.ws.as_ref().ok().map(|t| t.url.clone()))
            .flatten(),
        insecure: a.insecure,
        ws_send_rate: WS_SEND_RATE,
        ws_message_bytes: WS_MESSAGE_BYTES,
    };
    if a.insecure {
        eprintln!("warning: --insecure: server certificates are NOT verified (chain and name)");
    }
    if !a.quiet {
        let n = Layer::ALL.len() * Mode::ALL.len() - 2;
        eprintln!(
            "connbench: floor, up to {n} measurements of {:?} (about {:.0} s) against {}{}",
            plan.measure_for,
            (plan.measure_for * n as u32).as_secs_f64().ceil(),
            report::redact::url(&meta.url),
            if builtin { " (built-in target)" } else { "" },
        );
    }
    crate::sys::install_interrupt_handler();
    let result = measure_all(&plan, !a.quiet && crate::sys::stderr_is_tty());
    for s in servers {
        s.stop();
    }
    let text = report::floor::text(&meta, &result);
    if a.json.as_deref() == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(dest) = a.json.as_deref() {
        let host = report::host::HostFacts::collect();
        let v = report::floor::render(&meta, &result, &host);
        report::json::write(dest, &v)
            .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
    }
    Ok(if result.interrupted {
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    })
}

/// The built-in target with a raw echo listener, its threads pinned to `cpus` (or not).
fn start_builtin(cpus: Vec<usize>) -> Result<ServerHandle, AppError> {
    crate::serve::start(ServeConfig {
        echo_port: Some(0),
        cpus,
        ..ServeConfig::default()
    })
    .map_err(AppError::Serve)
}

/// Every layer of the built-in target: plain HTTP at `path`, TLS on its TLS port (its
/// certificate trusted in memory), its raw echo listener, WebSocket `/echo`.
fn builtin_endpoints(s: &ServerHandle, path: &str) -> Result<FloorEndpoints, AppError> {
    let (Some(http), Some(https), Some(echo)) = (s.http_addr(), s.https_addr(), s.echo_addr())
    else {
        unreachable!("the built-in target listens on every port it was asked for");
    };
    Ok(FloorEndpoints {
        http: parse_url(&format!("http://{http}{path}"), false)?.0,
        tls: Ok(parse_url(&format!("https://{https}{path}"), false)?.0),
        echo: Ok(echo),
        ws: Ok(parse_url(&format!("ws://{http}/echo"), true)?.0),
        trust: TlsPlan {
            extra_ca_pem: Some(s.ca_pem().as_bytes().to_vec()),
            resume: true,
            ..TlsPlan::default()
        },
    })
}

/// A URL's layers: each destination resolved once and reached once before anything is
/// measured; what the host lacks is a reason, not a measurement.
fn url_endpoints(
    parts: validate::UrlParts,
    echo: Option<(String, u16)>,
    ws: Option<validate::UrlParts>,
    trust: TlsPlan,
) -> Result<FloorEndpoints, AppError> {
    let http = resolve(parts)?;
    reach(&http.addrs, &http.url)?;
    let host = http.host.clone();
    let tls = match http.scheme {
        Scheme::Https => Ok(http.clone()),
        Scheme::Http => Err(format!(
            "{} is plain http://: no TLS handshake to measure (give an https:// URL)",
            report::redact::url(&http.url)
        )),
    };
    let echo = match echo {
        Some((h, port)) => {
            let addrs: Vec<SocketAddr> = match (h.as_str(), port).to_socket_addrs() {
                Ok(a) => a.collect(),
                Err(e) => {
                    return usage(format!(
                        "cannot resolve --echo host {h:?}: {e} (check the address)"
                    ))
                }
            };
            if addrs.is_empty() {
                return usage(format!(
                    "--echo host {h:?} resolved to no address (check the address)"
                ));
            }
            Ok(echoes(&addrs, &format!("{h}:{port}"))?)
        }
        None => Err(format!(
            "no raw TCP echo service given for {host}: add --echo HOST:PORT (e.g. run \
             `connbench serve --echo 7007` there)"
        )),
    };
    let ws = match ws {
        Some(parts) => {
            let t = resolve(parts)?;
            reach(&t.addrs, &t.url)?;
            Ok(t)
        }
        None => Err(
            "no WebSocket echo endpoint given: add --ws ws://HOST:PORT/PATH (e.g. the built-in \
             target's /echo)"
                .to_string(),
        ),
    };
    Ok(FloorEndpoints {
        http,
        tls,
        echo,
        ws,
        trust,
    })
}

/// Connect once to one of `addrs` (bounded by [`STEP_TIMEOUT`]), or say why nothing can be
/// measured there.
fn reach(addrs: &[SocketAddr], what: &str) -> Result<TcpStream, AppError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, STEP_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some((addr, e)),
        }
    }
    let (addr, e) = last.expect("a resolved target has an address");
    Err(AppError::Unreachable(format!(
        "cannot connect to {} ({addr}: {e}): nothing to measure (is the server up? check the \
         URL and port)",
        report::redact::url(what)
    )))
}

/// `--echo`: reach it and check that it echoes (8 bytes out, the same 8 back); its address.
fn echoes(addrs: &[SocketAddr], what: &str) -> Result<SocketAddr, AppError> {
    let mut s = reach(addrs, what)?;
    let addr = s.peer_addr().map_err(|e| {
        AppError::Unreachable(format!("--echo {what}: {e} (check the address and port)"))
    })?;
    let probe = *b"connbnch";
    let mut back = [0u8; 8];
    let check = s
        .set_read_timeout(Some(STEP_TIMEOUT))
        .and_then(|()| s.write_all(&probe))
        .and_then(|()| s.read_exact(&mut back));
    match check {
        Ok(()) if back == probe => Ok(addr),
        Ok(()) => Err(AppError::Unreachable(format!(
            "--echo {what} answered 8 bytes with other bytes: not a raw TCP echo service \
             (run `connbench serve --echo PORT` there)"
        ))),
        Err(e) => Err(AppError::Unreachable(format!(
            "--echo {what} did not echo 8 bytes within {STEP_TIMEOUT:?} ({e}): not a raw TCP \
             echo service (run `connbench serve --echo PORT` there)"
        ))),
    }
}

/// Every layer in every mode, in report order; after Ctrl-C the remaining rows say so.
fn measure_all(plan: &FloorPlan, progress: bool) -> FloorResult {
    let started_at = std::time::SystemTime::now();
    let t0 = Instant::now();
    let mut interrupted = false;
    let mut layers = Vec::with_capacity(Layer::ALL.len());
    for layer in Layer::ALL {
        if let Err(why) = available(&plan.unpinned, layer) {
            layers.push(LayerResult {
                layer,
                rows: Err(why),
            });
            continue;
        }
        if progress {
            eprint!("\r\x1b[Kconnbench: floor: {}…", layer.title());
        }
        let mut rows = Vec::with_capacity(Mode::ALL.len());
        for mode in Mode::ALL {
            interrupted |= crate::sys::interrupted();
            let outcome = if interrupted {
                Err("not measured: interrupted (Ctrl-C)".to_string())
            } else if mode.busy_poll && !layer.waits() {
                Err("nothing waits here: sleeping and busy-polling run the same code".to_string())
            } else {
                match (&plan.pinned, mode.pinned) {
                    (Err(why), true) => Err(why.clone()),
                    (Ok((cpu, e)), true) => measure_row(plan, layer, mode, e, Some(*cpu)),
                    (_, false) => measure_row(plan, layer, mode, &plan.unpinned, None),
                }
            };
            rows.push(Row { mode, outcome });
        }
        layers.push(LayerResult {
            layer,
            rows: Ok(rows),
        });
    }
    if progress {
        eprint!("\r\x1b[K");
    }
    FloorResult {
        layers,
        started_at,
        elapsed: t0.elapsed(),
        interrupted: interrupted || crate::sys::interrupted(),
        peak_rss_bytes: crate::sys::peak_rss_bytes(),
    }
}

/// Whether the destination has what `layer` needs.
fn available(e: &FloorEndpoints, layer: Layer) -> Result<(), String> {
    match layer {
        Layer::RawRtt => e.echo.as_ref().map(drop).map_err(Clone::clone),
        Layer::TlsFull | Layer::TlsResumed => e.tls.as_ref().map(drop).map_err(Clone::clone),
        Layer::WsEcho => e.ws.as_ref().map(drop).map_err(Clone::clone),
        Layer::Connect | Layer::HttpTtfb | Layer::ClockRead | Layer::TimerLateness => Ok(()),
    }
}

/// Run `f` on a thread of its own, pinned to `cpu` when given.
fn on_thread<R: Send + 'static>(
    cpu: Option<usize>,
    f: impl FnOnce() -> Result<R, String> + Send + 'static,
) -> Result<R, String> {
    std::thread::Builder::new()
        .name("connbench-floor".into())
        .spawn(move || {
            if let Some(c) = cpu {
                if !crate::sys::pin_current_thread(c) {
                    return Err(format!("cannot pin the client to CPU {c}"));
                }
            }
            f()
        })
        .map_err(|e| format!("cannot start a thread: {e}"))?
        .join()
        .unwrap_or_else(|_| Err("the measurement panicked (a connbench defect)".to_string()))
}

/// One layer in one mode against `e`, the client on `cpu` (or not pinned).
fn measure_row(
    plan: &FloorPlan,
    layer: Layer,
    mode: Mode,
    e: &FloorEndpoints,
    cpu: Option<usize>,
) -> Result<Measured, String> {
    let d = plan.measure_for;
    let wait = if mode.busy_poll {
        Wait::Spin {
            so_busy_poll_us: plan.busy_poll.so_busy_poll.as_ref().ok().copied(),
        }
    } else {
        Wait::Sleep
    };
    let busy_poll = mode.busy_poll.then(|| plan.busy_poll.clone());
    let m = match layer {
        Layer::RawRtt => {
            let addr = e.echo.clone()?;
            on_thread(cpu, move || measure::ping_pong(addr, wait, d))?
        }
        Layer::Connect => {
            let addrs = e.http.addrs.clone();
            let c = on_thread(cpu, move || {
                measure::churn::<crate::engine::core::Plain>((), addrs, None, wait, d)
                    .map_err(|e| e.to_string())
            })?;
            Measured {
                hist: c.connect,
                ops: c.connections,
                cpu_ns: c.cpu_ns,
                errors: c.errors,
                error_note: c.error_note,
            }
        }
        Layer::TlsFull | Layer::TlsResumed => tls_row(e, layer == Layer::TlsResumed, wait, d, cpu)?,
        Layer::HttpTtfb => http_row(e, busy_poll, d, cpu)?,
        Layer::WsEcho => ws_row(e, busy_poll, d, cpu)?,
        Layer::ClockRead => on_thread(cpu, move || Ok(measure::clock_cost(d)))?,
        Layer::TimerLateness => on_thread(cpu, move || measure::timer_lateness(wait, d))?,
    };
    if m.hist.is_empty() {
        return Err(match &m.error_note {
            Some(why) => format!("no sample in {d:?}: {why}"),
            None => format!("no sample in {d:?} (a busy machine? try a longer -d)"),
        });
    }
    Ok(m)
}

/// Full or resumed TLS handshakes, one connection at a time; each sends one GET and reads its
/// response before the close, so the server's tickets arrive (`engine::floor` rule 2).
fn tls_row(
    e: &FloorEndpoints,
    resume: bool,
    wait: Wait,
    d: Duration,
    cpu: Option<usize>,
) -> Result<Measured, String> {
    let t = e.tls.clone()?;
    let trust = TlsPlan {
        resume,
        ..e.trust.clone()
    };
    let request: Arc<[u8]> =
        crate::proto::http1::encode_request("GET", &t.path, &t.authority, &[], &[])
            .map_err(|e| e.to_string())?
            .into();
    let make_ctx =
        crate::engine::core::TlsCtx::factory(&trust, &t.host).map_err(|e| e.to_string())?;
    let ctx = make_ctx(0);
    let addrs = t.addrs.clone();
    let c = on_thread(cpu, move || {
        measure::churn::<crate::engine::core::Tls>(ctx, addrs, Some(request), wait, d)
            .map_err(|e| e.to_string())
    })?;
    let (hist, other) = if resume {
        (c.resumed, c.full.len())
    } else {
        (c.full, c.resumed.len())
    };
    // The resumed layer's first handshake is full (no ticket yet); more full ones mean the
    // server did not resume them.
    let unexpected = if resume {
        other.saturating_sub(1)
    } else {
        other
    };
    let note = match (unexpected, c.error_note) {
        (0, note) => note,
        (n, note) => Some(
            [
                Some(format!(
                    "{n} of {} handshakes were {}",
                    c.connections,
                    if resume {
                        "full (not resumed)"
                    } else {
                        "resumed"
                    }
                )),
                note,
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; "),
        ),
    };
    Ok(Measured {
        ops: c.connections,
        hist,
        cpu_ns: c.cpu_ns,
        errors: c.errors,
        error_note: note,
    })
}

/// What a load run's failures were, by class: `read_timeout 2, connect_refused 1`.
fn error_note(rec: &Recorder) -> Option<String> {
    let parts: Vec<String> = ErrorClass::ALL
        .iter()
        .filter(|c| rec.counters.errors[c.index()] > 0)
        .map(|c| format!("{} {}", c.name(), rec.counters.errors[c.index()]))
        .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A load run's samples of `phase` with its worker's CPU.
fn from_run(r: &report::RunResult, phase: Phase) -> Measured {
    let hist = r.recorder.histogram(phase).clone();
    Measured {
        ops: hist.len(),
        hist,
        cpu_ns: r.workers.iter().map(|w| w.cpu_user_ns + w.cpu_sys_ns).sum(),
        errors: r.recorder.counters.total_errors(),
        error_note: error_note(&r.recorder),
    }
}

fn pinning(cpu: Option<usize>) -> Pinning {
    cpu.map_or(Pinning::None, |c| Pinning::Cpus(vec![c]))
}

/// HTTP keep-alive TTFB: the `http` engine at one connection.
fn http_row(
    e: &FloorEndpoints,
    busy_poll: Option<BusyPoll>,
    d: Duration,
    cpu: Option<usize>,
) -> Result<Measured, String> {
    let plan = HttpPlan {
        target: e.http.clone(),
        tls: e.trust.clone(),
        method: "GET".into(),
        headers: Vec::new(),
        body: Vec::new(),
        connections: 1,
        threads: 1,
        pinning: pinning(cpu),
        pipeline: 1,
        stop: Stop::Duration(d),
        warmup: Duration::ZERO,
        timeout: STEP_TIMEOUT,
        connect_timeout: STEP_TIMEOUT,
        progress: crate::plan::Progress::new(crate::plan::ProgressWhen::Never),
        intervals: false,
        rate: None,
        stages: Vec::new(),
        sources: Vec::new(),
        requests_per_conn: None,
        conn_rate: None,
        close: Default::default(),
        busy_poll,
        verbose: false,
        start_at: None,
    };
    let r = engine::run(&plan).map_err(|e| e.to_string())?;
    Ok(from_run(&r, Phase::Ttfb))
}

/// WebSocket echo round trip: the `ws` engine at one connection, echo mode.
fn ws_row(
    e: &FloorEndpoints,
    busy_poll: Option<BusyPoll>,
    d: Duration,
    cpu: Option<usize>,
) -> Result<Measured, String> {
    let target = e.ws.clone()?;
    let plan = WsPlan {
        target,
        tls: e.trust.clone(),
        headers: Vec::new(),
        connections: 1,
        threads: 1,
        pinning: pinning(cpu),
        duration: d,
        warmup: Duration::ZERO,
        connect_timeout: STEP_TIMEOUT,
        progress: crate::plan::Progress::new(crate::plan::ProgressWhen::Never),
        intervals: false,
        session: crate::plan::WsSession {
            subscriptions: Vec::new(),
            mode: WsMode::Echo,
            send_rate: WS_SEND_RATE,
            message_size: WS_MESSAGE_BYTES,
            ping_interval: Duration::from_secs(1),
            ts_field: None,
            ts_unit: None,
            seq_field: None,
            stream_field: crate::proto::jsonfield::FieldPath::parse("stream")
                .expect("a valid field path"),
            utf8_check: true,
            max_message: 1 << 20,
            backoff: BackoffPolicy::default(),
            reconnect_budget: None,
            stale_after: None,
            heartbeat: Heartbeat::Off,
            heartbeat_interval: Duration::from_secs(20),
            pong_timeout: None,
            send_buffer: 1000,
        },
        sources: Vec::new(),
        stages: Vec::new(),
        busy_poll,
        verbose: false,
        start_at: None,
    };
    let r = engine::run_ws(&plan).map_err(|e| e.to_string())?;
    Ok(from_run(&r, Phase::Rtt))
}
