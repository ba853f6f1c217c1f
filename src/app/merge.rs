//! `connbench merge`: many reports (and their interval logs) into one.

#[allow(unused_imports)]
use super::*;

/// `connbench merge`: print the merged summary, write the merged report (and interval log);
/// bad or incompatible input is a usage error (exit 2) naming the file and the problem.
/// Reports are read and folded one at a time, so memory does not grow with their number.
pub(super) fn merge(a: cli::MergeArgs, argv: Vec<String>) -> Result<i32, AppError> {
    use report::merge::{self, MergeOptions, Merger};
    validate::check_html(a.html.as_deref())?;
    use report::merge_hlog::{self, HlogMerge};
    let bad = |e: merge::MergeError| AppError::Usage(UsageError(e.to_string()));
    match (&a.hlog, a.hlog_in.len()) {
        (None, 0) => {}
        (None, _) => {
            return usage(
                "--hlog-in needs --hlog OUT (the merged interval log to write), or drop --hlog-in",
            )
        }
        (Some(_), 0) => {
            return usage(
                "--hlog needs the runs' interval logs: --hlog-in A.hlog B.hlog …, one per \
                 report, in the reports' order",
            )
        }
        (Some(_), n) if n != a.reports.len() => {
            return usage(format!(
                "--hlog-in names {n} interval logs for {} reports: give one per report, in the \
                 reports' order",
                a.reports.len()
            ))
        }
        _ => {}
    }
    let opts = MergeOptions {
        allow_disjoint: a.allow_disjoint,
        allow_mixed: a.allow_mixed,
    };
    let mode_of =
        |doc: &serde_json::Value| doc.get("mode").and_then(|m| m.as_str()) == Some("probe");
    let first = a
        .reports
        .first()
        .map(|f| merge::load(f))
        .transpose()
        .map_err(bad)?;
    if first.as_ref().is_some_and(mode_of) {
        return merge_probes(&a, &opts, argv);
    }
    let mut merger = Merger::new(opts);
    let mut hlogs = a.hlog.as_ref().map(|_| HlogMerge::new());
    for (i, file) in a.reports.iter().enumerate() {
        let doc = merge::load(file).map_err(bad)?;
        if mode_of(&doc) {
            return Err(bad(merge::MergeError::Mode {
                first: (a.reports[0].clone(), "run".into()),
                other: (file.clone(), "probe".into()),
            }));
        }
        merger.add(file, &doc).map_err(bad)?;
        if let Some(h) = hlogs.as_mut() {
            let path = &a.hlog_in[i];
            let bytes = merge_hlog::load(path).map_err(bad)?;
            h.add(path, &bytes, &doc).map_err(bad)?;
        }
    }
    let merged = merger.finish(argv).map_err(bad)?;
    let mut text = merge::render_text(&merged);
    if let (Some(dest), Some(h)) = (&a.hlog, &hlogs) {
        let written = (|| {
            let mut w = std::io::BufWriter::new(std::fs::File::create(dest)?);
            let m = h.write_to(&mut w)?;
            std::io::Write::flush(&mut w)?;
            Ok::<_, std::io::Error>(m)
        })()
        .map_err(|e| AppError::Report(format!("cannot write --hlog {dest}: {e}")))?;
        text.push_str(&format!(
            "hlog        {dest}: {} one-second windows from {} interval logs ({} intervals), \
             each input interval at most {} ms from its window's start\n",
            written.windows, written.inputs, written.intervals_in, written.worst_offset_ms
        ));
        if let Some(w) = written.warning() {
            text.push_str(&format!("warning: {w}\n"));
        }
    }
    emit(&a, &text, &merged.json, false)?;
    Ok(EXIT_OK)
}

/// `connbench merge` of probe reports: the aggregate limit across the machines that probed
/// together ([`report::merge_probe`]).
fn merge_probes(
    a: &cli::MergeArgs,
    opts: &report::merge::MergeOptions,
    argv: Vec<String>,
) -> Result<i32, AppError> {
    use report::merge;
    let bad = |e: merge::MergeError| AppError::Usage(UsageError(e.to_string()));
    if a.hlog.is_some() {
        return usage("--hlog: probes write no interval logs (merge them without --hlog)");
    }
    let mut docs = Vec::with_capacity(a.reports.len());
    for file in &a.reports {
        docs.push((file.clone(), merge::load(file).map_err(bad)?));
    }
    let merged = report::merge_probe::merge(&docs, opts, argv).map_err(bad)?;
    let text = report::merge_probe::render_text(&merged);
    emit(a, &text, &merged.json, true)?;
    Ok(EXIT_OK)
}

/// Print the merged summary (to stderr when the JSON takes stdout), write the merged report and
/// its `--html` page (the merged document read back through the schema, as any report is).
fn emit(
    a: &cli::MergeArgs,
    text: &str,
    json: &serde_json::Value,
    probe: bool,
) -> Result<(), AppError> {
    if a.json.as_deref() == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(dest) = &a.json {
        report::json::write(dest, json)
            .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
    }
    let Some(dest) = &a.html else {
        return Ok(());
    };
    let bad = |e: serde_json::Error| AppError::Report(format!("cannot write --html {dest}: {e}"));
    let (doc, url, started_at, what) = if probe {
        let d: report::schema::ProbeReport = serde_json::from_value(json.clone()).map_err(bad)?;
        let (url, at) = (d.target.url.clone(), d.started_at.clone());
        (
            report::plot::Doc::Probe(Box::new(d)),
            url,
            at,
            "probe reports",
        )
    } else {
        let d: report::schema::Report = serde_json::from_value(json.clone()).map_err(bad)?;
        let (url, at) = (d.target.url.clone(), d.started_at.clone());
        (report::plot::Doc::Run(Box::new(d)), url, at, "reports")
    };
    let title = html_title(
        &format!("merge of {} {what}", a.reports.len()),
        &url,
        &started_at,
    );
    let source = report::plot::Source {
        label: "merged".to_string(),
        doc,
        timeline: None,
    };
    report::html::write(dest, &report::html::run_page(&title, text, &[source]))
        .map_err(|e| AppError::Report(format!("cannot write --html {dest}: {e}")))
}
