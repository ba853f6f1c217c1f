//! `cargo bench --bench endpoints`: named endpoints measured through the same library the
//! `connbench http` and `connbench ws` commands use ([`crate::app::measure`]), in interleaved
//! rounds, compared with the first endpoint of their kind and with their own previous run (or
//! a saved baseline) by `connbench compare`'s statistics, every run saved as connbench JSON
//! reports under cargo's build directory ([`store`]).
//!
//! `benches/endpoints.rs` is a thin `main` over [`main`]. Rules:
//! 1. With `--bench` (what `cargo bench` passes) the endpoints are `connbench-bench.toml`'s
//!    (or `$CONNBENCH_BENCH_CONFIG`'s, [`config`]); with no configuration file, the built-in
//!    target, started in this process on loopback and stopped by its handle: `plain`, `tls`
//!    (full and resumed handshakes) and `ws`.
//! 2. Without `--bench` (`cargo test --all-targets` runs bench binaries so) a smoke run: the
//!    built-in target only (never the configured endpoints), one short round, stored in a
//!    temporary directory that is removed; it fails (exit 1) unless every phase table is
//!    produced. It takes a few seconds.
//! 3. Rounds interleave the endpoints (A B C A B C …, [`schedule`]): machine drift during the
//!    run falls on every endpoint alike. An endpoint's rounds are merged exactly (histograms
//!    added) into one report.
//! 4. Arguments follow cargo bench/criterion: `--save-baseline NAME`, `--baseline NAME`,
//!    positional filters (substring of the endpoint name; `--exact`: the whole name),
//!    `--list`, plus `--fail-on-regression` (exit 1 when a phase got slower than the previous
//!    run or baseline beyond noise) and `--rounds N`, `--round-duration D`. An unknown
//!    argument is one line on stderr and exit 2, as is a bad configuration.
//! 5. Everything printed or saved is redacted (`crate::redact`): URLs, headers, command lines.

pub mod config;
pub mod store;
pub mod table;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::app::{self, Measured, EXIT_OK, EXIT_THRESHOLDS_FAILED, EXIT_USAGE};
use crate::report::{self, compare};
use crate::serve::{ServeConfig, ServerHandle};
use config::{Config, Endpoint, Kind, Settings};
use store::Store;

/// The arguments a bench run understood (rule 4).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    /// `--bench`: a real run (else the smoke run, rule 2).
    pub bench: bool,
    /// `--list`: name the endpoints and measure nothing.
    pub list: bool,
    /// `--save-baseline NAME`.
    pub save_baseline: Option<String>,
    /// `--baseline NAME`: compare with this instead of the previous run.
    pub baseline: Option<String>,
    /// `--fail-on-regression`.
    pub fail_on_regression: bool,
    /// `--rounds N`.
    pub rounds: Option<u32>,
    /// `--round-duration D`.
    pub round_duration: Option<Duration>,
    /// `--exact`: filters match whole names.
    pub exact: bool,
    /// Positional filters.
    pub filters: Vec<String>,
}

/// A bad argument or configuration, or a run that could not be made: one line, exit 2.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

fn bad<T>(msg: impl Into<String>) -> Result<T, BenchError> {
    Err(BenchError(msg.into()))
}

const USAGE: &str = "--bench, --list, --save-baseline NAME, --baseline NAME, \
                     --fail-on-regression, --rounds N, --round-duration D, --exact, FILTER";

/// Parse the arguments after the program name (rule 4).
pub fn parse_args(argv: &[String]) -> Result<Args, BenchError> {
    let mut a = Args::default();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, BenchError> {
            match inline.clone().or_else(|| it.next().cloned()) {
                Some(v) if !v.is_empty() => Ok(v),
                _ => bad(format!("{flag} needs {what} (e.g. {flag} main)")),
            }
        };
        match flag {
            "--bench" => a.bench = true,
            "--list" => a.list = true,
            "--exact" => a.exact = true,
            "--fail-on-regression" => a.fail_on_regression = true,
            "--save-baseline" | "--baseline" => {
                let name = value("a baseline name")?;
                config::check_name(&name).map_err(|p| BenchError(format!("{flag}: {p}")))?;
                if flag == "--baseline" {
                    a.baseline = Some(name);
                } else {
                    a.save_baseline = Some(name);
                }
            }
            "--rounds" => {
                let v = value("a number")?;
                match v.parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => a.rounds = Some(n),
                    _ => {
                        return bad(format!(
                            "--rounds {v:?}: give a whole number from 1 to 1000"
                        ))
                    }
                }
            }
            "--round-duration" => {
                let v = value("a duration")?;
                match crate::cli::parse_duration(&v) {
                    Ok(d) if !d.is_zero() => a.round_duration = Some(d),
                    Ok(_) => return bad("--round-duration must be longer than 0 (e.g. 2s)"),
                    Err(e) => return bad(format!("--round-duration: {e}")),
                }
            }
            f if f.starts_with('-') => {
                return bad(format!("unknown argument {f:?} (known: {USAGE})"));
            }
            _ => a.filters.push(arg.clone()),
        }
    }
    if a.save_baseline.is_some() && a.baseline.is_some() {
        return bad(
            "--save-baseline and --baseline together: compare with a baseline (--baseline) or \
             save this run as one (--save-baseline), not both",
        );
    }
    if !a.bench {
        for (given, flag) in [
            (a.save_baseline.is_some(), "--save-baseline"),
            (a.baseline.is_some(), "--baseline"),
            (a.fail_on_regression, "--fail-on-regression"),
        ] {
            if given {
                return bad(format!(
                    "{flag} needs a real run: cargo bench --bench endpoints -- {flag} … (without \
                     --bench this is the smoke run, which keeps nothing)"
                ));
            }
        }
    }
    Ok(a)
}

/// The order endpoints are measured in (rule 3): round by round, every endpoint in order.
pub fn schedule(endpoints: usize, rounds: u32) -> Vec<(u32, usize)> {
    (0..rounds)
        .flat_map(|r| (0..endpoints).map(move |e| (r, e)))
        .collect()
}

/// True when `name` passes the filters (none: everything).
pub fn selected(name: &str, filters: &[String], exact: bool) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            if exact {
                name == f
            } else {
                name.contains(f.as_str())
            }
        })
}

/// The built-in target the default endpoints measure (rule 1), stopped by [`Builtin::stop`]
/// (or when dropped).
pub struct Builtin {
    handle: ServerHandle,
    ca: PathBuf,
}

/// The subscription the built-in target's `/ws` answers with a stream (its messages carry a
/// `timestamp` in µs).
pub const BUILTIN_SUBSCRIBE: &str =
    r#"{"op":"subscribe","exchange":"binance","channel":"trades","symbol":"BTCUSDT"}"#;

impl Builtin {
    /// Start it on loopback with `cfg` (ports ephemeral) and write its CA to `ca` (for `tls`).
    pub fn start(mut cfg: ServeConfig, ca: &Path) -> Result<Builtin, BenchError> {
        cfg.http_port = Some(0);
        cfg.https_port = Some(0);
        let handle = crate::serve::start(cfg)
            .map_err(|e| BenchError(format!("cannot start the built-in target: {e}")))?;
        if let Some(dir) = ca.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| BenchError(format!("cannot create {}: {e}", dir.display())))?;
        }
        std::fs::write(ca, handle.ca_pem())
            .map_err(|e| BenchError(format!("cannot write {}: {e}", ca.display())))?;
        Ok(Builtin {
            handle,
            ca: ca.to_path_buf(),
        })
    }

    /// The default endpoints against it: `plain` (`path` on plain HTTP), `tls` (the same over
    /// TLS) and `ws` (a stream with server timestamps).
    pub fn endpoints(&self, s: &Settings, path: &str) -> Vec<Endpoint> {
        let http = self.handle.http_addr().expect("asked for a plain port");
        let https = self.handle.https_addr().expect("asked for a TLS port");
        let base = |name: &str, kind: Kind, url: String| Endpoint {
            name: name.into(),
            kind,
            url,
            headers: vec![],
            connections: s.connections,
            duration: s.round_duration,
            requests_per_conn: (kind == Kind::Http)
                .then_some(s.requests_per_conn)
                .flatten(),
            subscribe: vec![],
            ts_field: None,
            ts_unit: None,
            ca: None,
            insecure: false,
            args: vec![],
        };
        vec![
            base("plain", Kind::Http, format!("http://{http}{path}")),
            Endpoint {
                ca: Some(self.ca.clone()),
                ..base("tls", Kind::Http, format!("https://{https}{path}"))
            },
            Endpoint {
                subscribe: vec![BUILTIN_SUBSCRIBE.into()],
                ts_field: Some("timestamp".into()),
                ts_unit: Some("us".into()),
                ..base("ws", Kind::Ws, format!("ws://{http}/ws"))
            },
        ]
    }

    /// The server's settings for the default endpoints: a WebSocket stream fast enough to give
    /// message latency samples in a short round.
    pub fn serve_config() -> ServeConfig {
        ServeConfig {
            ws_rate: 200.0,
            ..ServeConfig::default()
        }
    }

    /// Stop the target.
    pub fn stop(self) {
        self.handle.stop();
    }
}

/// Merge an endpoint's rounds into one run (rule 3): histograms and counters added, windows
/// summed, the first round's description with the total duration.
pub fn merge_rounds(rounds: Vec<Measured>) -> Measured {
    let mut it = rounds.into_iter();
    let mut acc = it.next().expect("at least one round");
    for m in it {
        let (a, b) = (&mut acc.result, m.result);
        a.recorder.merge(&b.recorder);
        a.elapsed += b.elapsed;
        a.interrupted |= b.interrupted;
        a.peak_rss_bytes = a.peak_rss_bytes.max(b.peak_rss_bytes);
        a.peak_open = a.peak_open.max(b.peak_open);
        a.worker_panics.extend(b.worker_panics);
        for (i, w) in b.workers.into_iter().enumerate() {
            match a.workers.get_mut(i) {
                Some(x) => {
                    x.cpu_user_ns += w.cpu_user_ns;
                    x.cpu_sys_ns += w.cpu_sys_ns;
                    x.max_stall_ns = x.max_stall_ns.max(w.max_stall_ns);
                }
                None => a.workers.push(w),
            }
        }
        a.time_wait = match (a.time_wait, b.time_wait) {
            (Some(x), Some(y)) => Some(crate::metrics::run::TimeWait {
                at_start: x.at_start,
                at_end: y.at_end,
            }),
            _ => None,
        };
        if let (Some(d), Some(e)) = (acc.meta.duration, m.meta.duration) {
            acc.meta.duration = Some(d + e);
        }
    }
    acc
}

/// The JSON report of a run, as `--json` writes it (redacted, histograms included).
pub fn report_of(m: &Measured) -> Value {
    report::json::render(&m.meta, &m.result, &report::host::HostFacts::collect())
}

/// What a bench run is asked to do, resolved: the endpoints (filtered), the store, the
/// comparison and the settings.
pub struct Plan {
    /// The endpoints to measure, in order.
    pub endpoints: Vec<Endpoint>,
    /// Rounds.
    pub rounds: u32,
    /// `--fail-on-regression`'s threshold (None: not asked).
    pub gate: Option<f64>,
    /// `--baseline NAME`.
    pub baseline: Option<String>,
    /// `--save-baseline NAME`.
    pub save_baseline: Option<String>,
}

/// What a bench run did.
#[derive(Debug)]
pub struct Outcome {
    /// The run's id in the store.
    pub run_id: String,
    /// The tables as computed.
    pub tables: table::Tables,
    /// The tables as printed.
    pub text: String,
    /// The exit code: [`EXIT_OK`], or [`EXIT_THRESHOLDS_FAILED`] for a regression.
    pub code: i32,
}

/// Measure the plan's endpoints in interleaved rounds, save every report, compare, print the
/// tables to `out` and progress to `log` (rules 3–5).
pub fn run(
    plan: &Plan,
    store: &Store,
    run_id: &str,
    out: &mut dyn Write,
    log: &mut dyn Write,
) -> Result<Outcome, BenchError> {
    if let Some(b) = &plan.baseline {
        check_baseline(store, b)?;
    }
    let n = plan.endpoints.len();
    let _ = writeln!(
        log,
        "connbench-bench: {n} endpoint(s) × {} round(s), interleaved ({}), run {run_id}",
        plan.rounds,
        plan.endpoints
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut rounds: Vec<Vec<Measured>> = (0..n).map(|_| Vec::new()).collect();
    for (r, i) in schedule(n, plan.rounds) {
        let e = &plan.endpoints[i];
        let m = measure_once(e)?;
        let _ = writeln!(
            log,
            "  round {}/{}  {:<12} {}",
            r + 1,
            plan.rounds,
            e.name,
            round_line(&m)
        );
        rounds[i].push(m);
    }
    let before_label = match &plan.baseline {
        Some(b) => format!("baseline {b}"),
        None => "previous run".to_string(),
    };
    let mut subjects = Vec::new();
    for (e, r) in plan.endpoints.iter().zip(rounds) {
        let merged = merge_rounds(r);
        let doc = report_of(&merged);
        let path = store
            .save_run(run_id, &e.name, &doc)
            .map_err(|err| BenchError(format!("cannot save the {} report: {err}", e.name)))?;
        let now = compare::load(&path.display().to_string())
            .map_err(|err| BenchError(format!("{}: {err}", e.name)))?;
        let before_path = match &plan.baseline {
            Some(b) => store.baseline(b, &e.name),
            None => store.previous(run_id, &e.name),
        };
        let before = match before_path {
            None => None,
            Some(p) => match compare::load(&p.display().to_string()) {
                Ok(i) => Some(i),
                Err(err) => {
                    let _ = writeln!(log, "connbench-bench: warning: {err} (not compared)");
                    None
                }
            },
        };
        if let Some(b) = &plan.save_baseline {
            store
                .save_baseline(b, &e.name, &doc)
                .map_err(|err| BenchError(format!("cannot save baseline {b}: {err}")))?;
        }
        subjects.push(table::Subject {
            name: e.name.clone(),
            now,
            before,
        });
    }
    let tables = table::build(&subjects, &before_label, plan.gate);
    let text = table::render(&tables);
    let _ = out.write_all(text.as_bytes());
    let _ = store.save_text(run_id, "tables.txt", &text);
    let _ = writeln!(
        log,
        "connbench-bench: reports saved in {}{}",
        store.run_dir(run_id).display(),
        match &plan.save_baseline {
            Some(b) => format!(" and as baseline {b} ({})", store.baseline_dir(b).display()),
            None => String::new(),
        }
    );
    let code = match &tables.regression {
        Some(r) if !r.passed() => EXIT_THRESHOLDS_FAILED,
        _ => EXIT_OK,
    };
    Ok(Outcome {
        run_id: run_id.to_string(),
        tables,
        text,
        code,
    })
}

/// `--baseline NAME` must name a saved baseline.
fn check_baseline(store: &Store, b: &str) -> Result<(), BenchError> {
    if store.has_baseline(b) {
        return Ok(());
    }
    let saved = store.baselines();
    bad(format!(
        "baseline {b:?} not found in {} (saved: {}; save one with --save-baseline {b})",
        store.root().join("baselines").display(),
        if saved.is_empty() {
            "none".to_string()
        } else {
            saved.join(", ")
        }
    ))
}

/// One round of one endpoint, through `connbench http|ws`'s own path.
fn measure_once(e: &Endpoint) -> Result<Measured, BenchError> {
    let argv = e.argv();
    let fail = |msg: String| BenchError(format!("endpoint {}: {}", e.name, msg));
    let cli = crate::cli::try_parse_from(&argv).map_err(|err| {
        // clap's message spans lines (usage, hint): its first line names the problem.
        let msg = err.to_string();
        fail(crate::redact::message(
            msg.lines()
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: "),
        ))
    })?;
    app::measure(cli, argv).map_err(|err| fail(crate::redact::message(&err.to_string())))
}

/// A round's one-line summary: what it measured, and why it measured nothing if so.
fn round_line(m: &Measured) -> String {
    let c = &m.result.recorder.counters;
    let what = match &m.meta.ws {
        Some(_) => format!(
            "{} messages",
            m.result
                .recorder
                .histogram(crate::metrics::Phase::Latency)
                .len()
                + m.result
                    .recorder
                    .histogram(crate::metrics::Phase::Rtt)
                    .len()
        ),
        None => format!("{} responses", c.responses),
    };
    let mut line = format!(
        "{:.2} s  {what}, {} errors",
        m.result.elapsed.as_secs_f64(),
        c.total_errors()
    );
    if let Some(why) = report::threshold::nothing_measured(&m.meta, &m.result) {
        line.push_str(&format!("  (nothing measured: {why})"));
    }
    line
}

/// Read the configuration (rule 1): `$CONNBENCH_BENCH_CONFIG` (which must exist), else
/// `connbench-bench.toml` if present, else None.
pub fn load_config(
    env: &dyn Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<Option<Config>, BenchError> {
    let (path, must) = match env(config::CONFIG_ENV).filter(|p| !p.is_empty()) {
        Some(p) => (PathBuf::from(p), true),
        None => (cwd.join(config::DEFAULT_FILE), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must => return Ok(None),
        Err(e) => {
            return bad(format!(
                "cannot read {} (from {}): {e}",
                path.display(),
                config::CONFIG_ENV
            ))
        }
    };
    config::parse(&path.display().to_string(), &text, env)
        .map(Some)
        .map_err(|e| BenchError(e.to_string()))
}

/// The bench binary's `main` (rules 1–5): returns the exit code.
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match main_with(&argv, &|k| std::env::var(k).ok()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("connbench-bench: error: {e}");
            EXIT_USAGE
        }
    }
}

fn main_with(argv: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<i32, BenchError> {
    let args = parse_args(argv)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let pid = std::process::id();
    if !args.bench {
        return smoke(&args);
    }
    let config = load_config(env, &cwd)?;
    let exe = std::env::current_exe().ok();
    let target_dir = env("CARGO_TARGET_DIR");
    let store = Store::new(store::default_root(target_dir.as_deref(), exe.as_deref()));
    let mut settings = config
        .as_ref()
        .map(|c| c.settings.clone())
        .unwrap_or_default();
    if let Some(r) = args.rounds {
        settings.rounds = r;
    }
    if let Some(d) = args.round_duration {
        settings.round_duration = d;
    }
    if let Some(b) = &args.baseline {
        // Before the built-in target starts or anything is measured.
        check_baseline(&store, b)?;
    }
    let mut builtin = None;
    let endpoints = match &config {
        Some(c) => c
            .endpoints
            .iter()
            .cloned()
            .map(|mut e| {
                if let Some(d) = args.round_duration {
                    e.duration = d;
                }
                e
            })
            .collect(),
        None => {
            if args.list {
                Vec::new()
            } else {
                let b = Builtin::start(
                    Builtin::serve_config(),
                    &store.root().join("builtin-ca.pem"),
                )?;
                let eps = b.endpoints(&settings, "/");
                builtin = Some(b);
                eps
            }
        }
    };
    if args.list {
        if config.is_none() {
            for (name, kind) in [("plain", "http"), ("tls", "http"), ("ws", "ws")] {
                if selected(name, &args.filters, args.exact) {
                    println!("{name}: {kind} (built-in target)");
                }
            }
        }
        for e in endpoints
            .iter()
            .filter(|e| selected(&e.name, &args.filters, args.exact))
        {
            println!(
                "{}: {} {}",
                e.name,
                e.kind.name(),
                crate::redact::url(&e.url)
            );
        }
        return Ok(EXIT_OK);
    }
    let endpoints: Vec<Endpoint> = endpoints
        .into_iter()
        .filter(|e| selected(&e.name, &args.filters, args.exact))
        .collect();
    if endpoints.is_empty() {
        eprintln!("connbench-bench: no endpoint matches {:?}", args.filters);
        return Ok(EXIT_OK);
    }
    let plan = Plan {
        endpoints,
        rounds: settings.rounds,
        gate: args
            .fail_on_regression
            .then_some(settings.fail_threshold_pct),
        baseline: args.baseline.clone(),
        save_baseline: args.save_baseline.clone(),
    };
    let id = store::run_id(SystemTime::now(), pid);
    let result = run(
        &plan,
        &store,
        &id,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    if let Some(b) = builtin {
        b.stop();
    }
    Ok(result?.code)
}

/// The smoke run (rule 2): the built-in target, one short round, a temporary store; fails
/// unless every phase table is produced.
fn smoke(args: &Args) -> Result<i32, BenchError> {
    let dir = std::env::temp_dir().join(format!("connbench-bench-smoke-{}", std::process::id()));
    let store = Store::new(&dir);
    let settings = Settings {
        rounds: args.rounds.unwrap_or(1),
        round_duration: args.round_duration.unwrap_or(Duration::from_millis(200)),
        connections: 1,
        requests_per_conn: Some(10),
        fail_threshold_pct: 0.0,
    };
    eprintln!(
        "connbench-bench: smoke run against the built-in target (cargo bench --bench endpoints \
         measures for real; the configured endpoints are not used here)"
    );
    let outcome = (|| {
        let b = Builtin::start(Builtin::serve_config(), &dir.join("builtin-ca.pem"))?;
        let endpoints: Vec<Endpoint> = b
            .endpoints(&settings, "/")
            .into_iter()
            .filter(|e| selected(&e.name, &args.filters, args.exact))
            .collect();
        if args.list {
            for e in &endpoints {
                println!("{}: {} (built-in target)", e.name, e.kind.name());
            }
            b.stop();
            return Ok(None);
        }
        let plan = Plan {
            endpoints,
            rounds: settings.rounds,
            gate: None,
            baseline: None,
            save_baseline: None,
        };
        if plan.endpoints.is_empty() {
            b.stop();
            return Ok(None);
        }
        let id = store::run_id(SystemTime::now(), std::process::id());
        let r = run(
            &plan,
            &store,
            &id,
            &mut std::io::stdout(),
            &mut std::io::stderr(),
        );
        b.stop();
        r.map(|o| Some((o, plan)))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    let Some((outcome, plan)) = outcome? else {
        return Ok(EXIT_OK);
    };
    let missing = missing_tables(&outcome.tables, &plan.endpoints);
    if missing.is_empty() {
        eprintln!("connbench-bench: smoke run OK: every phase table produced");
        Ok(EXIT_OK)
    } else {
        eprintln!(
            "connbench-bench: smoke run FAILED: no rows for {}",
            missing.join(", ")
        );
        Ok(EXIT_THRESHOLDS_FAILED)
    }
}

/// The `phase: endpoint` rows the built-in endpoints must produce and did not: connect, full
/// TLS, TTFB and total for HTTP (and TLS), upgrade, first message and latency for WebSocket.
pub fn missing_tables(t: &table::Tables, endpoints: &[Endpoint]) -> Vec<String> {
    use crate::metrics::Phase;
    let mut missing = Vec::new();
    for e in endpoints {
        let want: &[Phase] = match (e.kind, e.url.starts_with("https")) {
            (Kind::Http, false) => &[Phase::Connect, Phase::Ttfb, Phase::Total],
            (Kind::Http, true) => &[Phase::Connect, Phase::TlsFull, Phase::Ttfb, Phase::Total],
            (Kind::Ws, _) => &[Phase::Upgrade, Phase::FirstMessage, Phase::Latency],
        };
        for p in want {
            let found = t
                .phases
                .iter()
                .any(|x| x.phase == *p && x.rows.iter().any(|r| r.endpoint == e.name));
            if !found {
                missing.push(format!("{}: {}", p.name(), e.name));
            }
        }
    }
    missing
}

/// The exit code of a bench run's tables: [`EXIT_THRESHOLDS_FAILED`] when
/// `--fail-on-regression` found a regression, else [`EXIT_OK`].
pub fn exit_code(t: &table::Tables) -> i32 {
    match &t.regression {
        Some(r) if !r.passed() => EXIT_THRESHOLDS_FAILED,
        _ => EXIT_OK,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Runs made up from histograms, for the tests of this module and [`super::table`].

    use super::*;
    use crate::metrics::run::{RunResult, WorkerStats};
    use crate::metrics::{Phase, Recorder};
    use crate::plan::Mode;
    use crate::report::compare::stats::SplitMix64;
    use crate::report::RunMeta;

    /// A 1-second run of `mode` with `n` samples (log-normal, shape 0.3) around `median_ns`
    /// in each of its latency phases, from `seed`; 20 connects (and full TLS handshakes).
    pub fn measured(mode: Mode, seed: u64, n: usize, median_ns: f64) -> Measured {
        let mut rec = Recorder::new();
        let mut rng = SplitMix64::new(seed);
        let mut draw = |m: f64| (m * (0.3 * rng.normal()).exp()).round() as u64;
        let phases: &[Phase] = match mode {
            Mode::Ws => &[Phase::Latency],
            _ => &[Phase::Ttfb, Phase::Total],
        };
        for _ in 0..n {
            for p in phases {
                rec.record(*p, draw(median_ns));
            }
            if mode == Mode::Http {
                rec.response(200);
            }
        }
        for _ in 0..20 {
            rec.record(Phase::Connect, draw(50_000.0));
            rec.record(Phase::TlsFull, draw(900_000.0));
            if mode == Mode::Ws {
                rec.record(Phase::Upgrade, draw(80_000.0));
                rec.record(Phase::FirstMessage, draw(200_000.0));
            }
        }
        rec.counters.connections_opened = 20;
        let mut meta = RunMeta::new(mode, "http://127.0.0.1:1/");
        meta.duration = Some(Duration::from_secs(1));
        Measured {
            meta,
            result: RunResult {
                recorder: rec,
                workers: vec![WorkerStats::default()],
                started_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                elapsed: Duration::from_secs(1),
                interrupted: false,
                peak_rss_bytes: 0,
                peak_open: 1,
                intervals: vec![],
                stages: vec![],
                worker_panics: vec![],
                time_wait: None,
            },
        }
    }

    /// That run's report, read back as `compare` reads a file.
    pub fn input(name: &str, m: &Measured) -> compare::Input {
        let bytes = serde_json::to_vec(&report_of(m)).unwrap();
        compare::read(name, bytes.as_slice()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{input, measured};
    use super::*;
    use crate::metrics::Phase;
    use crate::plan::Mode;

    fn args(a: &[&str]) -> Result<Args, BenchError> {
        parse_args(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments_follow_cargo_bench() {
        let a = args(&["--bench", "--save-baseline", "main", "relay", "--rounds=3"]).unwrap();
        assert!(a.bench && !a.list && !a.fail_on_regression);
        assert_eq!(a.save_baseline.as_deref(), Some("main"));
        assert_eq!(a.filters, ["relay"]);
        assert_eq!(a.rounds, Some(3));
        let a = args(&[
            "--bench",
            "--baseline=main",
            "--fail-on-regression",
            "--round-duration",
            "500ms",
            "--exact",
            "x",
        ])
        .unwrap();
        assert_eq!(a.baseline.as_deref(), Some("main"));
        assert!(a.fail_on_regression && a.exact);
        assert_eq!(a.round_duration, Some(Duration::from_millis(500)));
        assert_eq!(args(&[]).unwrap(), Args::default(), "the smoke run");
        assert!(args(&["--list"]).unwrap().list);
    }

    #[test]
    fn bad_arguments_are_one_line_errors() {
        for (a, want) in [
            (
                &["--bench", "--frobnicate"][..],
                "unknown argument \"--frobnicate\" (known: --bench",
            ),
            (
                &["--bench", "--save-baseline"][..],
                "--save-baseline needs a baseline name",
            ),
            (
                &["--bench", "--baseline", "../x"][..],
                "--baseline: \"../x\" is not a usable name",
            ),
            (
                &["--bench", "--baseline", "a", "--save-baseline", "b"][..],
                "--save-baseline and --baseline together",
            ),
            (
                &["--bench", "--rounds", "0"][..],
                "--rounds \"0\": give a whole number",
            ),
            (
                &["--bench", "--round-duration", "soon"][..],
                "--round-duration: invalid duration",
            ),
            (
                &["--save-baseline", "main"][..],
                "--save-baseline needs a real run: cargo bench --bench endpoints",
            ),
            (
                &["--fail-on-regression"][..],
                "--fail-on-regression needs a real run",
            ),
        ] {
            let e = args(a).unwrap_err().to_string();
            assert!(e.starts_with(want), "{a:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn rounds_interleave_the_endpoints() {
        assert_eq!(
            schedule(2, 3),
            [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)],
            "A B A B A B"
        );
        assert_eq!(schedule(3, 1), [(0, 0), (0, 1), (0, 2)]);
        assert!(schedule(2, 0).is_empty());
    }

    #[test]
    fn filters_match_names() {
        let f = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(selected("relay", &[], false));
        assert!(selected("relay_ws", &f(&["relay"]), false));
        assert!(!selected("relay_ws", &f(&["relay"]), true));
        assert!(selected("relay", &f(&["direct", "relay"]), true));
        assert!(!selected("direct", &f(&["relay"]), false));
    }

    #[test]
    fn rounds_merge_exactly() {
        let a = measured(Mode::Http, 1, 1000, 30_000.0);
        let b = measured(Mode::Http, 2, 500, 60_000.0);
        let mut want = a.result.recorder.histogram(Phase::Ttfb).clone();
        want.add(b.result.recorder.histogram(Phase::Ttfb)).unwrap();
        let m = merge_rounds(vec![a, b]);
        assert_eq!(m.result.recorder.histogram(Phase::Ttfb), &want);
        assert_eq!(m.result.recorder.counters.responses, 1500);
        assert_eq!(m.result.elapsed, Duration::from_secs(2));
        assert_eq!(m.meta.duration, Some(Duration::from_secs(2)));
        assert_eq!(m.result.workers.len(), 1);
    }

    #[test]
    fn a_saved_baseline_reads_back_with_its_histograms() {
        let tmp = std::env::temp_dir().join(format!("connbench-bench-rt-{}", std::process::id()));
        let s = Store::new(&tmp);
        let m = measured(Mode::Http, 7, 3000, 40_000.0);
        let p = s.save_baseline("main", "plain", &report_of(&m)).unwrap();
        let back = compare::load(&p.display().to_string()).unwrap();
        let _ = std::fs::remove_dir_all(&tmp);
        for phase in [Phase::Connect, Phase::TlsFull, Phase::Ttfb, Phase::Total] {
            assert_eq!(
                back.samples(phase.name()).unwrap(),
                m.result.recorder.histogram(phase),
                "{phase:?}"
            );
        }
        assert_eq!(back.report.mode, "http");
    }

    #[test]
    fn fail_on_regression_sets_the_exit_code() {
        let base = input("base", &measured(Mode::Http, 1, 20_000, 30_000.0));
        let same = input("same", &measured(Mode::Http, 2, 20_000, 30_000.0));
        let slow = input("slow", &measured(Mode::Http, 3, 20_000, 45_000.0));
        let subject = |now: &compare::Input| table::Subject {
            name: "api".into(),
            now: now.clone(),
            before: Some(base.clone()),
        };
        let t = table::build(&[subject(&same)], "previous run", Some(0.0));
        assert_eq!(exit_code(&t), EXIT_OK, "{}", table::render(&t));
        let t = table::build(&[subject(&slow)], "previous run", Some(0.0));
        assert_eq!(
            exit_code(&t),
            EXIT_THRESHOLDS_FAILED,
            "{}",
            table::render(&t)
        );
        // Not asked: the same slowdown is shown, not failed.
        let t = table::build(&[subject(&slow)], "previous run", None);
        assert_eq!(exit_code(&t), EXIT_OK);
        assert!(table::render(&t).contains("slower"));
    }

    #[test]
    fn the_configuration_file_is_optional_unless_named() {
        let dir = std::env::temp_dir().join(format!("connbench-bench-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let none = |_: &str| None;
        assert_eq!(
            load_config(&none, &dir).unwrap(),
            None,
            "no file: the built-in target"
        );
        let missing = dir.join("nope.toml").display().to_string();
        let named = move |k: &str| (k == config::CONFIG_ENV).then(|| missing.clone());
        let e = load_config(&named, &dir).unwrap_err().to_string();
        assert!(
            e.starts_with("cannot read ") && e.contains("CONNBENCH_BENCH_CONFIG"),
            "{e}"
        );
        std::fs::write(
            dir.join(config::DEFAULT_FILE),
            "[endpoints]\nlocal = \"http://127.0.0.1:9/\"\n",
        )
        .unwrap();
        let c = load_config(&none, &dir).unwrap().unwrap();
        assert_eq!(c.endpoints[0].name, "local");
        std::fs::write(dir.join(config::DEFAULT_FILE), "[endpoints]\nlocal = 1\n").unwrap();
        let e = load_config(&none, &dir).unwrap_err().to_string();
        assert!(e.ends_with("connbench-bench.toml: endpoints.local: must be a URL string or a table with url = \"…\""), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
