//! `connbench merge`: many reports (or interval logs) into one.

#[allow(unused_imports)]
use super::*;

/// `connbench merge`: print the merged summary, write the merged report; bad or incompatible
/// input is a usage error (exit 2) naming the file and the problem. Reports are read and
/// folded one at a time, so memory does not grow with their number.
pub(super) fn merge(a: cli::MergeArgs, argv: Vec<String>) -> Result<i32, AppError> {
    use report::merge::{self, MergeOptions, Merger};
    validate::check_html(a.html.as_deref())?;
    let bad = |e: merge::MergeError| AppError::Usage(UsageError(e.to_string()));
    let mut merger = Merger::new(MergeOptions {
        allow_disjoint: a.allow_disjoint,
        allow_mixed: a.allow_mixed,
    });
    for file in &a.reports {
        let doc = merge::load(file).map_err(bad)?;
        merger.add(file, &doc).map_err(bad)?;
    }
    let merged = merger.finish(argv).map_err(bad)?;
    let text = merge::render_text(&merged);
    if a.json.as_deref() == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(dest) = &a.json {
        report::json::write(dest, &merged.json)
            .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
    }
    if let Some(dest) = &a.html {
        // The merged document, read back through the schema like any report.
        let doc: report::schema::Report = serde_json::from_value(merged.json.clone())
            .map_err(|e| AppError::Report(format!("cannot write --html {dest}: {e}")))?;
        let title = html_title(
            &format!("merge of {} reports", merged.sources.len()),
            &doc.target.url,
            &doc.started_at,
        );
        let source = report::plot::Source {
            label: "merged".to_string(),
            doc: report::plot::Doc::Run(Box::new(doc)),
            timeline: None,
        };
        report::html::write(dest, &report::html::run_page(&title, &text, &[source]))
            .map_err(|e| AppError::Report(format!("cannot write --html {dest}: {e}")))?;
    }
    Ok(EXIT_OK)
}
