//! `connbench http`: keep-alive HTTP/1.1 load, closed loop, constant rate or staged.

#[allow(unused_imports)]
use super::*;
use crate::plan::CloseMode;

pub(super) fn http(
    a: HttpArgs,
    argv: Vec<String>,
    sink: measure::Sink<'_>,
) -> Result<i32, AppError> {
    let checked = validate::check_http(&a)?;
    let verdict = validate::check_verdict(&a.verdict, &validate::http_context(&a, &checked))?;
    check_start_at(a.load.start_at)?;
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
    let runs = series::runs(Mode::Http, &a.stages, a.scenario.as_deref())?;
    let requests_per_conn = validate::requests_per_conn(&a);
    let mut load = a.load;
    if let Some(busiest) = series::busiest(&runs) {
        // The slots: as many as the busiest stage of any run.
        load.connections = busiest;
    }
    let p = prepare(&load, &a.tls, checked, false)?;
    // One plan per run (most command lines: one, unstaged or staged).
    let build = |p: &Prepared, stages: Vec<crate::plan::Stage>, series| -> (HttpPlan, RunMeta) {
        let connections = stages
            .iter()
            .map(|s| s.connections)
            .max()
            .unwrap_or(load.connections);
        let cpus = p.cpus.for_connections(connections);
        let stop = match (a.requests, a.duration) {
            _ if !stages.is_empty() => Stop::Duration(stages.iter().map(|s| s.length()).sum()),
            (Some(n), _) => Stop::Requests(n),
            (None, Some(d)) => Stop::Duration(d),
            (None, None) => Stop::Duration(Duration::from_secs(10)),
        };
        // With stage rates, the run's asked rate is their time-weighted mean; the engine paces
        // each stage at its own.
        let rate = a.rate.or_else(|| crate::plan::mean_rate(&stages)).map(|r| {
            let arrival = match a.arrival {
                Some(cli::ArrivalArg::Poisson) => Arrival::Poisson,
                Some(cli::ArrivalArg::Uniform) | None => Arrival::Uniform,
            };
            (r, arrival)
        });
        let plan = HttpPlan {
            target: p.target.clone(),
            tls: p.tls.clone(),
            method: a.method.clone(),
            headers: p.headers.clone(),
            body: body.clone(),
            connections,
            threads: cpus.threads,
            pinning: cpus.pinning.clone(),
            pipeline: a.pipeline,
            stop,
            warmup: load.warmup,
            timeout: a.timeout,
            connect_timeout: load.connect_timeout,
            progress: crate::plan::Progress {
                when: validate::progress_when(load.progress, load.quiet),
                series,
            },
            // An --html page draws latency over time from the intervals too.
            intervals: load.hlog.is_some() || load.html.is_some(),
            stages,
            rate,
            sources: p.sources.clone(),
            requests_per_conn,
            conn_rate: a.conn_rate,
            close: match a.close {
                Some(cli::CloseArg::Rst) => CloseMode::Rst,
                Some(cli::CloseArg::Fin) | None => CloseMode::Fin,
            },
            busy_poll: p.busy_poll.clone(),
            verbose: load.verbose,
            start_at: load.start_at.map(|s| s.0),
        };
        let meta = RunMeta {
            rate: plan.rate,
            method: plan.method.clone(),
            body_len: plan.body.len(),
            connections,
            threads: cpus.threads,
            worker_cpus: match &cpus.pinning {
                Pinning::Cpus(c) => c.clone(),
                Pinning::None => vec![],
            },
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
            requests_per_conn: plan.requests_per_conn,
            conn_rate: plan.conn_rate,
            close: Some(plan.close),
            ..p.meta(Mode::Http, &load, argv.clone(), verdict.clone())
        };
        (plan, meta)
    };
    p.execute_to(sink, &load, "connections", runs, build, engine::run)
}
