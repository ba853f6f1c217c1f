//! `connbench autobahn`: the Autobahn|Testsuite echo client.

#[allow(unused_imports)]
use super::*;

/// `connbench autobahn`: exit 0 when every case ran, 1 when some did not or the fuzzing server
/// could not be reached or misbehaved, 2 on bad input.
pub(super) fn autobahn(a: cli::AutobahnArgs) -> Result<i32, AppError> {
    use crate::autobahn::AutobahnError;
    let cases = a.cases.as_ref().map(|c| c.0.as_slice());
    match crate::autobahn::run(&a.url, &a.agent, cases) {
        Ok(summary) => {
            println!("{summary}");
            Ok(if summary.ran == summary.cases {
                EXIT_OK
            } else {
                1
            })
        }
        Err(AutobahnError::Url(e)) => usage(e),
        Err(e) => {
            eprintln!("connbench: error: {e}");
            Ok(1)
        }
    }
}
