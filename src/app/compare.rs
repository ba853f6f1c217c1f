//! `connbench compare`: two run reports, B against A.

#[allow(unused_imports)]
use super::*;

/// `connbench compare`: print the table, write the comparison; bad input is a usage error
/// (exit 2) naming the file and the problem; a failed `--fail-on-regression` check exits
/// [`EXIT_THRESHOLDS_FAILED`].
pub(super) fn compare(a: cli::CompareArgs) -> Result<i32, AppError> {
    use report::compare;
    let opts = validate::check_compare(&a)?;
    let bad = |e: compare::CompareError| AppError::Usage(UsageError(e.to_string()));
    let base = compare::load(&a.a).map_err(bad)?;
    let other = compare::load(&a.b).map_err(bad)?;
    let c = compare::compare(&base, &other, &opts).map_err(bad)?;
    let text = compare::render_text(&c);
    if a.json.as_deref() == Some("-") {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    if let Some(dest) = &a.json {
        report::json::write(dest, &report::schema::to_value(&c))
            .map_err(|e| AppError::Report(format!("cannot write --json {dest}: {e}")))?;
    }
    Ok(match &c.regression {
        Some(g) if !g.passed => EXIT_THRESHOLDS_FAILED,
        _ => EXIT_OK,
    })
}
