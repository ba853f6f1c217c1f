//! What the load commands share before their plan: CPUs, the URL and its one DNS lookup, the
//! built-in target, the TLS files and `--source` addresses.

#[allow(unused_imports)]
use super::*;

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
pub(super) fn resolve(parts: UrlParts) -> Result<Target, AppError> {
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
pub(super) struct Prepared {
    /// The run uses the in-process built-in target.
    pub(super) builtin: bool,
    pub(super) cpus: CpuPlan,
    pub(super) fd_limit: u64,
    /// `-H` headers, plus Basic auth from URL credentials.
    pub(super) headers: Vec<(String, String)>,
    /// The in-process target, stopped after the run.
    pub(super) server: Option<ServerHandle>,
    pub(super) target: Target,
    /// `--source` addresses (empty: none given).
    pub(super) sources: Vec<std::net::IpAddr>,
    pub(super) tls: TlsPlan,
    /// `--busy-poll`, with what the kernel allowed of SO_BUSY_POLL.
    pub(super) busy_poll: Option<crate::plan::BusyPoll>,
}

/// `--busy-poll`: find out once, before the run, whether the kernel lets the workers set
/// SO_BUSY_POLL; they spin either way.
pub(super) fn busy_poll_plan() -> crate::plan::BusyPoll {
    let us = engine::socket::SO_BUSY_POLL_US;
    crate::plan::BusyPoll {
        so_busy_poll: engine::socket::busy_poll_allowed(us)
            .map(|()| us)
            .map_err(|e| e.to_string()),
    }
}

/// `--source`: every address must be one this host can send from (the kernel says so through a
/// bind that reserves no port), checked before anything starts.
pub(super) fn check_sources(sources: &[std::net::IpAddr]) -> Result<(), AppError> {
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
pub(super) fn keep_source_family(
    sources: &[std::net::IpAddr],
    target: &mut Target,
) -> Result<(), AppError> {
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
pub(super) fn check_tls_files(plan: &TlsPlan, host: &str) -> Result<(), AppError> {
    crate::tls::client_config(plan).map_err(EngineError::Tls)?;
    crate::tls::server_name(plan, host).map_err(EngineError::Tls)?;
    Ok(())
}

/// After the pure checks ([`validate`]): check `--ca`, choose CPUs, check the fd limit and the
/// `--source` addresses, then start the built-in target (for [`Endpoint::Builtin`]) or resolve
/// the URL's host, and build the TLS settings. Every usage error comes before the target
/// starts and before the DNS lookup.
pub(super) fn prepare(
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
    let busy_poll = load.busy_poll.then(busy_poll_plan);
    let spinning = cpus.threads + usize::from(builtin);
    let allowed = crate::sys::allowed_cpus().len();
    if load.busy_poll && spinning > allowed {
        eprintln!(
            "warning: --busy-poll: {} spinning worker(s){} on {allowed} CPU(s): they take \
             CPU time from each other{}, and latency suffers (use fewer -t)",
            cpus.threads,
            if builtin {
                " and the built-in target"
            } else {
                ""
            },
            if builtin { " and from the target" } else { "" },
        );
    }
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
            let handle = crate::serve::start(ServeConfig {
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
        busy_poll,
    })
}

impl Prepared {
    /// The report's description of the run, from what every command shares.
    pub(super) fn meta(
        &self,
        mode: Mode,
        load: &LoadArgs,
        argv: Vec<String>,
        verdict: validate::Verdict,
    ) -> RunMeta {
        RunMeta {
            mode,
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
            tls: (self.target.scheme == Scheme::Https).then(|| self.tls.clone()),
            fd_limit: self.fd_limit,
            start_at: load.start_at.map(|s| s.0),
            ws: None,
            rate: None,
            sources: self.sources.clone(),
            requests_per_conn: None,
            conn_rate: None,
            close: None,
            busy_poll: self.busy_poll.clone(),
            percentiles: verdict.percentiles,
            checks: verdict.checks,
        }
    }

    /// Warn, announce, run, stop the in-process target, report.
    pub(super) fn execute(
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
        if let (Some(at), false) = (meta.start_at, load.quiet) {
            announce_start(at);
        }
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
        let code = finish(
            meta,
            result,
            load.json.as_deref(),
            load.verbose,
            load.html.as_deref(),
        )?;
        if let Some((path, Err(e))) = hlog {
            return Err(AppError::Report(format!("cannot write --hlog {path}: {e}")));
        }
        Ok(code)
    }
}

/// `--start-at` against the wall clock: called by each load command right after its pure
/// checks, before any file is read or host resolved (validate stays pure: the clock is read
/// here).
pub(super) fn check_start_at(at: Option<validate::StartAt>) -> Result<(), AppError> {
    if let Some(at) = at {
        validate::check_start_at(at, std::time::SystemTime::now())?;
    }
    Ok(())
}

/// The line on stderr before waiting for `--start-at`.
pub(super) fn announce_start(at: std::time::SystemTime) {
    let now = std::time::SystemTime::now();
    let left = at.duration_since(now).map_or(0.0, |d| d.as_secs_f64());
    let ms = report::json::unix_ms(at);
    eprintln!(
        "connbench: waiting until {} (+{:03} ms, {left:.3} s from now) to start (--start-at)",
        report::json::rfc3339(ms.div_euclid(1000)),
        ms.rem_euclid(1000)
    );
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
