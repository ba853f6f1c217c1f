//! Several runs one after the other in one command (`--scenario all`, or `--stages` given more
//! than once): a fresh run each against the same target (the built-in target is started once
//! and serves every run), each run's report printed as it ends, then the summary table
//! (`report::series`); `--json` writes one document holding every run.
//!
//! Rules:
//! 1. The runs are decided, and checked, before anything starts ([`runs`]); the slots, the fd
//!    limit and the worker threads are sized for the busiest of them ([`busiest`]), and each
//!    run uses at most as many workers as it has connections ([`CpuPlan::for_connections`]).
//! 2. Ctrl-C ends the run in progress (its report is still printed) and the series: the runs
//!    not started are not run, and the exit code is 130. A worker panic ends it too (70).

#[allow(unused_imports)]
use super::*;
use crate::cli::Stages;
use crate::plan::Stage;
use crate::report::series::Entry;

/// One run a command line asks for: its name and its stages (none: an unstaged run).
pub(super) struct Named {
    /// The scenario's name, or the `--stages` list.
    pub(super) name: String,
    /// Its stages.
    pub(super) stages: Vec<Stage>,
}

/// The runs a command line asks for (rule 1): each `--stages` list (named by itself), the
/// scenarios `--scenario` names (`all`: every one of the seed's, in its order), or, with
/// neither, one unstaged run.
pub(super) fn runs(
    mode: Mode,
    stages: &[Stages],
    scenario: Option<&str>,
) -> Result<Vec<Named>, AppError> {
    if let Some(name) = scenario {
        let Some(picked) = crate::plan::scenarios(mode, name) else {
            let names = match mode {
                Mode::Ws => "1, 2, 3 or all",
                _ => "light, medium, heavy or all",
            };
            return usage(format!("unknown --scenario {name:?} ({names})"));
        };
        return Ok(picked
            .into_iter()
            .map(|sc| Named {
                name: sc.name.to_string(),
                stages: sc.stages,
            })
            .collect());
    }
    if stages.is_empty() {
        return Ok(vec![Named {
            name: String::new(),
            stages: Vec::new(),
        }]);
    }
    Ok(stages
        .iter()
        .map(|l| Named {
            name: crate::plan::stages_spec(&l.0),
            stages: l.0.clone(),
        })
        .collect())
}

/// The busiest stage of all the runs, when they are staged (rule 1).
pub(super) fn busiest(runs: &[Named]) -> Option<usize> {
    runs.iter()
        .flat_map(|r| &r.stages)
        .map(|s| s.connections)
        .max()
}

impl CpuPlan {
    /// This plan for a run of `connections`: never more workers than connections, each on the
    /// CPU it had (rule 1).
    pub(super) fn for_connections(&self, connections: usize) -> CpuPlan {
        let threads = self.threads.min(connections.max(1));
        CpuPlan {
            threads,
            pinning: match &self.pinning {
                Pinning::Cpus(c) => Pinning::Cpus(c[..threads.min(c.len())].to_vec()),
                Pinning::None => Pinning::None,
            },
            target_cpus: self.target_cpus.clone(),
        }
    }
}

/// A run built and ready to go: what its report says of it, and how to run it.
pub(super) struct Ready<'a> {
    pub(super) named: Named,
    pub(super) meta: RunMeta,
    pub(super) run: Box<dyn FnOnce() -> Result<report::RunResult, EngineError> + 'a>,
}

impl Prepared {
    /// Run what the command line asked: one run (`execute`), or several in turn
    /// (`execute_series`), each plan made by `build` from its stages and run by `run`.
    pub(super) fn execute_runs<P: 'static>(
        self,
        load: &LoadArgs,
        what: &str,
        runs: Vec<Named>,
        build: impl Fn(&Prepared, Vec<Stage>, Option<crate::plan::SeriesPos>) -> (P, RunMeta),
        run: fn(&P) -> Result<report::RunResult, EngineError>,
    ) -> Result<i32, AppError> {
        if runs.len() > 1 {
            let of = runs.len();
            let ready = runs
                .into_iter()
                .enumerate()
                .map(|(i, named)| {
                    let pos = crate::plan::SeriesPos {
                        index: i + 1,
                        of,
                        name: named.name.clone(),
                    };
                    let (plan, meta) = build(&self, named.stages.clone(), Some(pos));
                    Ready {
                        named,
                        meta,
                        run: Box::new(move || run(&plan)),
                    }
                })
                .collect();
            return self.execute_series(load, what, ready);
        }
        let stages = runs
            .into_iter()
            .next()
            .map(|r| r.stages)
            .unwrap_or_default();
        let (plan, meta) = build(&self, stages, None);
        self.execute(&meta, load, what, || run(&plan))
    }

    /// Announce, run every run in turn (rule 2), stop the in-process target, print the summary
    /// and write the one JSON document.
    pub(super) fn execute_series(
        mut self,
        load: &LoadArgs,
        what: &str,
        runs: Vec<Ready<'_>>,
    ) -> Result<i32, AppError> {
        if self.tls.insecure {
            eprintln!("warning: --insecure: server certificates are NOT verified (chain and name)");
        }
        let n = runs.len();
        if !load.quiet {
            let names: Vec<&str> = runs.iter().map(|r| r.named.name.as_str()).collect();
            eprintln!(
                "connbench: {n} runs one after the other ({}) against {}{}",
                names.join(", "),
                report::redact::url(&self.target.url),
                if self.builtin {
                    " (built-in target)"
                } else {
                    ""
                },
            );
        }
        crate::sys::install_interrupt_handler();
        // The text goes where `finish` sends it: stderr when the JSON takes stdout.
        let to_stderr = load.json.as_deref() == Some("-");
        let emit = |text: &str| {
            if to_stderr {
                eprint!("{text}");
            } else {
                print!("{text}");
            }
        };
        let mut done: Vec<(Named, RunMeta, report::RunResult)> = Vec::with_capacity(n);
        let mut failed = None;
        for (i, r) in runs.into_iter().enumerate() {
            let spec = crate::plan::stages_spec(&r.named.stages);
            if !load.quiet {
                eprintln!(
                    "connbench: run {}/{n}: {} {what}, {} worker(s), {} ({spec})",
                    i + 1,
                    r.meta.connections,
                    r.meta.threads,
                    r.meta.duration.map_or("-".into(), |d| format!("{d:?}")),
                );
            }
            let result = match (r.run)() {
                Ok(result) => result,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let title = if r.named.name == spec {
                spec
            } else {
                format!("{} ({spec})", r.named.name)
            };
            emit(&format!("\n== run {}/{n}: {title} ==\n", i + 1));
            emit(&report::text::render(&r.meta, &result));
            if !to_stderr {
                for line in report::text::reason_lines(&result.recorder.reasons) {
                    eprintln!("connbench: {line}");
                }
            }
            for p in &result.worker_panics {
                eprintln!("connbench: error: {}", p.describe());
            }
            let last = result.interrupted || !result.worker_panics.is_empty();
            done.push((r.named, r.meta, result));
            if last {
                break;
            }
        }
        if let Some(s) = self.server.take() {
            s.stop();
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        let entries: Vec<Entry<'_>> = done
            .iter()
            .map(|(named, meta, run)| Entry {
                name: &named.name,
                stages: &named.stages,
                meta,
                run,
            })
            .collect();
        emit(&report::series::render_text(&entries));
        if let Some(dest) = load.json.as_deref() {
            let host = report::host::HostFacts::collect();
            let doc = report::series::document(&entries, &host);
            let v = serde_json::to_value(&doc).expect("the series document serializes");
            report::json::write(dest, &v)
                .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
        }
        // Each run is judged as a single run would be (panic, interrupt, nothing measured,
        // thresholds); the series exits with the gravest of their codes.
        let rank = |code: i32| match code {
            EXIT_WORKER_PANIC => 4,
            EXIT_INTERRUPTED => 3,
            EXIT_NOTHING_MEASURED => 2,
            EXIT_THRESHOLDS_FAILED => 1,
            _ => 0,
        };
        let mut code = EXIT_OK;
        for (named, meta, run) in &done {
            let outcomes = threshold::evaluate(&threshold::Source::Run(meta, run));
            let nothing = threshold::nothing_measured(meta, run);
            if nothing.is_some() || threshold::failure_line(&outcomes).is_some() {
                eprintln!("connbench: run {}:", named.name);
            }
            let c = exit_code(
                meta,
                !run.worker_panics.is_empty(),
                run.interrupted,
                nothing.as_deref(),
                &outcomes,
            );
            if rank(c) > rank(code) {
                code = c;
            }
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runs_of_a_command_line() {
        let list = |s: &str| crate::cli::parse_stages(s).unwrap();
        let named = |v: Vec<Named>| {
            v.into_iter()
                .map(|r| (r.name, r.stages.len()))
                .collect::<Vec<_>>()
        };
        // `all`: the seed's three, in order, each its own run.
        assert_eq!(
            named(runs(Mode::Http, &[], Some("all")).unwrap()),
            [
                ("light".into(), 1),
                ("medium".into(), 1),
                ("heavy".into(), 1)
            ]
        );
        assert_eq!(
            named(runs(Mode::Ws, &[], Some("all")).unwrap()),
            [("1".into(), 1), ("2".into(), 1), ("3".into(), 1)]
        );
        assert_eq!(
            named(runs(Mode::Http, &[], Some("medium")).unwrap()),
            [("medium".into(), 1)]
        );
        // Each --stages list is a run, named by itself.
        let two = [list("2@300ms+500ms,4@300ms+500ms"), list("1@0s+1s@20/s")];
        let r = runs(Mode::Http, &two, None).unwrap();
        assert_eq!(
            named(r),
            [
                ("2@300ms+500ms,4@300ms+500ms".into(), 2),
                ("1@0s+1s@20/s".into(), 1)
            ]
        );
        assert_eq!(busiest(&runs(Mode::Http, &two, None).unwrap()), Some(4));
        assert_eq!(
            busiest(&runs(Mode::Http, &[], Some("all")).unwrap()),
            Some(500)
        );
        assert_eq!(
            busiest(&runs(Mode::Ws, &[], Some("all")).unwrap()),
            Some(250)
        );
        // Neither: one unstaged run.
        let one = runs(Mode::Http, &[], None).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(busiest(&one), None);
        let e = runs(Mode::Ws, &[], Some("light")).err().expect("refused");
        assert!(e.to_string().contains("1, 2, 3 or all"), "{e}");
    }

    #[test]
    fn a_run_of_fewer_connections_gets_fewer_workers() {
        let cpus = CpuPlan {
            threads: 3,
            pinning: Pinning::Cpus(vec![1, 2, 3]),
            target_cpus: vec![0],
        };
        let small = cpus.for_connections(2);
        assert_eq!(small.threads, 2);
        assert_eq!(small.pinning, Pinning::Cpus(vec![1, 2]));
        assert_eq!(cpus.for_connections(50), cpus);
    }
}
