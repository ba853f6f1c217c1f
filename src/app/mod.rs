//! Executes the commands: turns validated arguments into a plan (resolving the host, reading
//! the body file, choosing CPUs, starting the built-in target when no URL is given), runs the
//! engine, and writes the reports.
//!
//! Every error that stops a command before it runs is an [`AppError`] whose message names the
//! problem and the fix; `main` prints it on one line and exits with [`AppError::exit_code`].
//!
//! One file per command (`http`, `ws`, `probe`, `serve`, `merge`, `autobahn`); `prepare` is
//! what the load commands share: CPUs, the URL and its one DNS lookup, the built-in target.
//! Flag validation is pure and runs first ([`crate::cli::validate`]): no banner, no DNS, no
//! target start before a usage error.

mod autobahn;
mod http;
mod merge;
mod plot;
mod prepare;
mod probe;
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
use crate::report::{self, RunMeta};
use crate::serve::{OverLimit, ServeConfig, ServeError, ServerHandle};

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
        Command::Http(a) => http::http(*a, argv),
        Command::Ws(a) => ws::ws(*a, &given, argv),
        Command::Probe(a) => probe::probe(*a, &given, argv),
        Command::Serve(a) => serve::serve(*a, &given),
        Command::Autobahn(a) => autobahn::autobahn(a),
        Command::Merge(a) => merge::merge(a, argv),
        Command::Plot(a) => plot::plot(a),
    }
}

#[allow(unused_imports)]
use prepare::*;
pub use prepare::{parse_target, parse_url, plan_cpus, CpuPlan};

/// Print the summary, write the JSON report and the HTML page, choose the exit code.
fn finish(
    meta: &RunMeta,
    result: report::RunResult,
    json: Option<&str>,
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
    Ok(if !result.worker_panics.is_empty() {
        EXIT_WORKER_PANIC
    } else if result.interrupted {
        EXIT_INTERRUPTED
    } else {
        EXIT_OK
    })
}

/// The title of an `--html` page: command, redacted URL, start.
fn html_title(mode: &str, url: &str, started_at: &str) -> String {
    format!(
        "connbench {mode} {} — {started_at}",
        report::redact::url(url)
    )
}
