//! `connbench http`: keep-alive HTTP/1.1 load, closed loop, constant rate or staged.

#[allow(unused_imports)]
use super::*;
use crate::plan::CloseMode;

pub(super) fn http(a: HttpArgs, argv: Vec<String>) -> Result<i32, AppError> {
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
    let requests_per_conn = validate::requests_per_conn(&a);
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
        // An --html page draws latency over time from the intervals too.
        intervals: load.hlog.is_some() || load.html.is_some(),
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
        requests_per_conn,
        conn_rate: a.conn_rate,
        close: match a.close {
            Some(cli::CloseArg::Rst) => CloseMode::Rst,
            Some(cli::CloseArg::Fin) | None => CloseMode::Fin,
        },
    };
    let meta = RunMeta {
        rate: plan.rate,
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
        requests_per_conn: plan.requests_per_conn,
        conn_rate: plan.conn_rate,
        close: Some(plan.close),
        ..p.meta(Mode::Http, &load, argv)
    };
    p.execute(&meta, &load, "connections", || engine::run(&plan))
}
