//! Executes the commands: turns validated arguments into a plan (resolving the host, reading
//! the body file, choosing CPUs, starting the built-in target when no URL is given), runs the
//! engine, and writes the reports.
//!
//! Every error that stops a command before it runs is an [`AppError`] whose message names the
//! problem and the fix; `main` prints it on one line and exits with [`AppError::exit_code`].
//!
//! One file per command (`http`, `ws`, `probe`, `serve`, `merge`, `compare`, `autobahn`,
//! `floor`); `prepare` is what the load commands share: CPUs, the URL and its one DNS lookup,
//! the built-in target.
//! Flag validation is pure and runs first ([`crate::cli::validate`]): no banner, no DNS, no
//! target start before a usage error.

mod autobahn;
mod compare;
mod floor;
mod http;
mod measure;
mod merge;
mod plot;
mod prepare;
mod probe;
mod series;
mod serve;
mod ws;

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use crate::cli::validate::{self, Endpoint, LoadTarget, UrlParts};
use crate::cli::{
    self, Command, Given, HttpArgs, JitterArg, LoadArgs, OverLimitArg, ProbeArgs, ServeArgs,
    TlsArgs, UsageError, WsArgs, WsModeArg,
};
use crate::engine::reconnect::{BackoffPolicy, Jitter};
use crate::engine::{self, EngineError};
use crate::plan::{
    Arrival, Heartbeat, HttpPlan, Mode, Pinning, Scheme, Stop, Target, TlsPlan, WsMode, WsPlan,
    WsSession,
};
use crate::proto::jsonfield::TsUnit;
use crate::report::{self, threshold, RunMeta};
use crate::serve::{OverLimit, ServeConfig, ServeError, ServerHandle};

/// Exit code of a completed run that measured something and met every `--threshold` and
/// `--targets` target.
pub const EXIT_OK: i32 = 0;
/// A `--threshold` or a `--targets` target failed (the report is still printed and written,
/// with a FAIL line for each), or `compare --fail-on-regression` found a regression.
pub const EXIT_THRESHOLDS_FAILED: i32 = 1;
/// Exit code of bad input or configuration.
pub const EXIT_USAGE: i32 = 2;
/// The run measured nothing (every connection refused, every response an error, no WebSocket
/// data, a probe that never connected; `report::threshold` rule 5), unless
/// `--allow-nothing-measured`. The report is still printed and written, saying why.
pub const EXIT_NOTHING_MEASURED: i32 = 3;
/// The run completed but its report (`--json`, `--hlog`) could not be written (EX_IOERR).
pub const EXIT_REPORT_WRITE: i32 = 74;
/// Exit code of a run ended by Ctrl-C (the report is still written).
pub const EXIT_INTERRUPTED: i32 = 130;
/// A worker thread panicked: a defect of connbench. The report is still printed and written,
/// with the panic in it, but it lacks that worker's measurements (EX_SOFTWARE).
pub const EXIT_WORKER_PANIC: i32 = 70;

/// Every exit code and the name of its constant: the README's "Exit codes" table has a row for
/// each (a test checks it).
pub const EXIT_CODES: [(i32, &str); 7] = [
    (EXIT_OK, "EXIT_OK"),
    (EXIT_THRESHOLDS_FAILED, "EXIT_THRESHOLDS_FAILED"),
    (EXIT_USAGE, "EXIT_USAGE"),
    (EXIT_NOTHING_MEASURED, "EXIT_NOTHING_MEASURED"),
    (EXIT_WORKER_PANIC, "EXIT_WORKER_PANIC"),
    (EXIT_REPORT_WRITE, "EXIT_REPORT_WRITE"),
    (EXIT_INTERRUPTED, "EXIT_INTERRUPTED"),
];

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
    /// The target cannot be reached (refused, timed out): nothing can be measured. The user
    /// fixes it like a host that does not resolve (exit code 2).
    Unreachable(String),
}

impl AppError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            AppError::Engine(EngineError::InterruptedBeforeStart) => EXIT_INTERRUPTED,
            AppError::Usage(_)
            | AppError::Engine(_)
            | AppError::Serve(_)
            | AppError::Unreachable(_) => EXIT_USAGE,
            AppError::Report(_) => EXIT_REPORT_WRITE,
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
            AppError::Unreachable(e) => write!(f, "{e}"),
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
        Command::Http(a) => http::http(*a, argv, measure::Sink::Command),
        Command::Ws(a) => ws::ws(*a, &given, argv, measure::Sink::Command),
        Command::Probe(a) => probe::probe(*a, &given, argv),
        Command::Serve(a) => serve::serve(*a, &given),
        Command::Autobahn(a) => autobahn::autobahn(a),
        Command::Merge(a) => merge::merge(a, argv),
        Command::Compare(a) => compare::compare(a),
        Command::Floor(a) => floor::floor(*a, argv),
        Command::Plot(a) => plot::plot(a),
    }
}

pub use measure::{measure, Measured};
#[allow(unused_imports)]
use prepare::*;
pub use prepare::{parse_target, parse_url, plan_cpus, CpuPlan};

/// Print the summary, write the JSON report and the HTML page, choose the exit code.
fn finish(
    meta: &RunMeta,
    result: report::RunResult,
    json: Option<&str>,
    verbose: bool,
    html: Option<&str>,
) -> Result<i32, AppError> {
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
    if let Some(dest) = html {
        let host = report::host::HostFacts::collect();
        let doc = report::json::report(meta, &result, &host);
        let title = html_title(meta.mode.name(), &meta.url, &doc.started_at);
        let source = report::plot::Source {
            label: "this run".to_string(),
            doc: report::plot::Doc::Run(Box::new(doc)),
            timeline: Some(report::plot::Timeline::from_intervals(&result.intervals)),
        };
        report::html::write(dest, &report::html::run_page(&title, &text, &[source]))
            .map_err(|e| AppError::Report(format!("cannot write --html {dest}: {e}")))?;
    }
    for p in &result.worker_panics {
        eprintln!("connbench: error: {}", p.describe());
    }
    let outcomes = threshold::evaluate(&threshold::Source::Run(meta, &result));
    if verbose {
        // -v: each evaluation, with what it compared.
        for o in &outcomes {
            eprintln!("{}", threshold::describe(o));
        }
    }
    let nothing = threshold::nothing_measured(meta, &result);
    Ok(exit_code(
        meta,
        !result.worker_panics.is_empty(),
        result.interrupted,
        nothing.as_deref(),
        &outcomes,
    ))
}

/// The exit code of a finished run (load or probe), and the one line on stderr that says why
/// it is not 0. A panic or Ctrl-C outranks the verdict; a run that measured nothing outranks
/// its thresholds (which then fail for want of samples).
fn exit_code(
    meta: &RunMeta,
    panicked: bool,
    interrupted: bool,
    nothing_measured: Option<&str>,
    outcomes: &[threshold::Outcome],
) -> i32 {
    if panicked {
        return EXIT_WORKER_PANIC;
    }
    if interrupted {
        return EXIT_INTERRUPTED;
    }
    if let Some(why) = nothing_measured {
        if meta.checks.allow_nothing_measured {
            eprintln!("connbench: warning: nothing measured: {why} (exit code 0: --allow-nothing-measured)");
        } else {
            eprintln!("connbench: error: nothing measured: {why}");
            return EXIT_NOTHING_MEASURED;
        }
    }
    match threshold::failure_line(outcomes) {
        Some(line) => {
            eprintln!("connbench: {line}");
            EXIT_THRESHOLDS_FAILED
        }
        None => EXIT_OK,
    }
}

/// The title of an `--html` page: command, redacted URL, start.
fn html_title(mode: &str, url: &str, started_at: &str) -> String {
    format!(
        "connbench {mode} {} — {started_at}",
        report::redact::url(url)
    )
}
