//! `connbench plot`: reports (and their interval logs) drawn as one SVG.

#[allow(unused_imports)]
use super::*;
use crate::report::plot::{self, PlotError, Source, Timeline};
use std::io::{Read, Write};

/// `connbench plot`: read every report through the schema and every `--hlog`, draw the charts
/// asked for (or those the inputs have data for) and write the SVG. Unreadable or damaged
/// input, and a chart or phase the inputs have no data for, is a usage error (exit 2) naming
/// the file or the flag.
pub(super) fn plot(a: cli::PlotArgs) -> Result<i32, AppError> {
    let checked = validate::check_plot(&a)?;
    let bad = |e: PlotError| match e {
        PlotError::Draw(_) => AppError::Report(e.to_string()),
        _ => AppError::Usage(UsageError(e.to_string())),
    };
    let unreadable = |file: &str, e: std::io::Error| {
        AppError::Usage(UsageError(format!("{file}: cannot read: {e}")))
    };
    let mut sources = Vec::new();
    for (file, label, hlog) in checked.inputs {
        let f = std::fs::File::open(&file).map_err(|e| unreadable(&file, e))?;
        let doc = plot::read_report(&file, f).map_err(bad)?;
        let timeline = match hlog {
            None => None,
            Some(h) => {
                let mut bytes = Vec::new();
                std::fs::File::open(&h)
                    .and_then(|f| f.take(plot::MAX_HLOG_BYTES + 1).read_to_end(&mut bytes))
                    .map_err(|e| unreadable(&h, e))?;
                if bytes.len() as u64 > plot::MAX_HLOG_BYTES {
                    return usage(format!(
                        "{h}: larger than {} MiB: not a connbench interval log",
                        plot::MAX_HLOG_BYTES >> 20
                    ));
                }
                Some(Timeline::read_hlog(&h, &bytes, Some(doc.started_at_unix_ms())).map_err(bad)?)
            }
        };
        sources.push(Source {
            label,
            doc,
            timeline,
        });
    }
    let opts = plot::Options {
        charts: checked.charts,
        phases: checked.phases,
    };
    let svg = plot::render(&sources, &opts).map_err(bad)?;
    let written = if a.output == "-" {
        std::io::stdout().lock().write_all(svg.as_bytes())
    } else {
        std::fs::write(&a.output, svg.as_bytes())
    };
    written.map_err(|e| AppError::Report(format!("cannot write -o {}: {e}", a.output)))?;
    Ok(EXIT_OK)
}
