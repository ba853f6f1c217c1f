//! Runs for a library caller (`cargo bench --bench endpoints`, [`crate::bench`]): the same
//! command line, validation, plan and engine as `connbench http` / `connbench ws`, but the
//! run's description and measurements are handed back instead of printed and written.
//!
//! Rules:
//! 1. Only `http` and `ws` command lines are measured; any other command is a usage error.
//! 2. One run per call: a command line that makes several (`--scenario`, `--stages` given
//!    more than once) is a usage error naming the fix.
//! 3. Nothing is printed or written here (no banner, no summary, no `--json`); the built-in
//!    target a command line starts is stopped before this returns, as the command does.

#[allow(unused_imports)]
use super::*;

/// A run's description and what it measured.
#[derive(Debug)]
pub struct Measured {
    /// The run's configuration as the reports show it.
    pub meta: RunMeta,
    /// What the engine measured.
    pub result: report::RunResult,
}

/// Where a load command's run goes: the command's own output, or back to a library caller.
pub(super) enum Sink<'a> {
    /// `connbench http|ws`: print, write the reports, return the exit code.
    Command,
    /// [`measure`]: keep the one run here (rule 2) and print nothing (rule 3).
    Measure(&'a mut Option<Measured>),
}

/// Run one parsed `connbench http …` or `connbench ws …` command line (from
/// [`cli::try_parse_from`], so that `given` is filled in) and hand back its description and
/// measurements (rules 1–3).
pub fn measure(cli: cli::Cli, argv: Vec<String>) -> Result<Measured, AppError> {
    let given = cli.given;
    let mut out = None;
    match cli.command {
        Command::Http(a) => http::http(*a, argv, Sink::Measure(&mut out))?,
        Command::Ws(a) => ws::ws(*a, &given, argv, Sink::Measure(&mut out))?,
        _ => return usage("only http and ws command lines can be measured"),
    };
    out.ok_or_else(|| AppError::Usage(UsageError("the command line made no run".into())))
}

impl Prepared {
    /// Run what the command line asked and send it to `sink`: the command's
    /// [`Prepared::execute_runs`], or the one run built, run and handed back (rules 2, 3).
    pub(super) fn execute_to<P: 'static>(
        mut self,
        sink: Sink<'_>,
        load: &LoadArgs,
        what: &str,
        runs: Vec<series::Named>,
        build: impl Fn(
            &Prepared,
            Vec<crate::plan::Stage>,
            Option<crate::plan::SeriesPos>,
        ) -> (P, RunMeta),
        run: fn(&P) -> Result<report::RunResult, EngineError>,
    ) -> Result<i32, AppError> {
        let out = match sink {
            Sink::Command => return self.execute_runs(load, what, runs, build, run),
            Sink::Measure(out) => out,
        };
        if runs.len() > 1 {
            return usage(
                "a measured endpoint makes one run: drop --scenario, and give --stages at \
                 most once",
            );
        }
        let stages = runs
            .into_iter()
            .next()
            .map(|r| r.stages)
            .unwrap_or_default();
        let (plan, meta) = build(&self, stages, None);
        let result = run(&plan);
        if let Some(s) = self.server.take() {
            s.stop();
        }
        *out = Some(Measured {
            meta,
            result: result?,
        });
        Ok(EXIT_OK)
    }
}
