//! Where `cargo bench --bench endpoints` keeps what it measured, under cargo's build directory
//! (`target/connbench-bench/`, or `$CARGO_TARGET_DIR/connbench-bench/`):
//!
//! ```text
//! connbench-bench/
//!   runs/<run id>/<endpoint>.json      every run, one connbench JSON report per endpoint
//!   runs/<run id>/tables.txt           the tables that run printed
//!   baselines/<name>/<endpoint>.json   --save-baseline NAME (overwritten by the next save)
//! ```
//!
//! Rules:
//! 1. A run id sorts by time (`20261130T181500.123Z-<pid>`): "the previous run" of an endpoint
//!    is the newest run before this one that measured it ([`Store::previous`]), skipping runs
//!    that did not (a filtered run measures only some endpoints).
//! 2. Names that become paths (endpoints, baselines) are checked first
//!    ([`super::config::check_name`]): nothing is written outside the store.
//! 3. Reports are written as connbench writes `--json` (the same schema, histograms
//!    included, redacted), so `connbench compare`, `plot` and `merge` read them too.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

/// The store's directory name under cargo's build directory.
pub const DIR: &str = "connbench-bench";

/// The bench output directory: `$CARGO_TARGET_DIR/connbench-bench`, else the build directory
/// the running executable lives in (`…/target/release/deps/endpoints-…` → `…/target`), else
/// `target/connbench-bench` under the current directory.
pub fn default_root(target_dir: Option<&str>, exe: Option<&Path>) -> PathBuf {
    if let Some(t) = target_dir.filter(|t| !t.is_empty()) {
        return Path::new(t).join(DIR);
    }
    if let Some(deps) = exe.and_then(Path::parent) {
        if deps.file_name().is_some_and(|n| n == "deps") {
            if let Some(target) = deps.parent().and_then(Path::parent) {
                return target.join(DIR);
            }
        }
    }
    Path::new("target").join(DIR)
}

/// A run id (rule 1): the UTC time to the millisecond, then the process id.
pub fn run_id(now: SystemTime, pid: u32) -> String {
    let d = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let whole = crate::report::json::rfc3339(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let compact: String = whole
        .trim_end_matches('Z')
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{compact}.{:03}Z-{pid}", d.subsec_millis())
}

/// The bench output directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// A store at `root` (created when something is first saved).
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of run `id`.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.root.join("runs").join(id)
    }

    /// The directory of baseline `name`.
    pub fn baseline_dir(&self, name: &str) -> PathBuf {
        self.root.join("baselines").join(name)
    }

    /// Save one endpoint's report of run `id`; returns its path.
    pub fn save_run(&self, id: &str, endpoint: &str, report: &Value) -> io::Result<PathBuf> {
        write_json(&self.run_dir(id), endpoint, report)
    }

    /// Save a text file of run `id` (the tables).
    pub fn save_text(&self, id: &str, file: &str, text: &str) -> io::Result<PathBuf> {
        let dir = self.run_dir(id);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(file);
        std::fs::write(&path, text)?;
        Ok(path)
    }

    /// Save one endpoint's report as baseline `name` (replacing that endpoint's previous one).
    pub fn save_baseline(&self, name: &str, endpoint: &str, report: &Value) -> io::Result<PathBuf> {
        write_json(&self.baseline_dir(name), endpoint, report)
    }

    /// True when baseline `name` has been saved.
    pub fn has_baseline(&self, name: &str) -> bool {
        self.baseline_dir(name).is_dir()
    }

    /// The saved baselines' names, sorted.
    pub fn baselines(&self) -> Vec<String> {
        sorted_dirs(&self.root.join("baselines"))
    }

    /// Endpoint's report in baseline `name`, if it has one.
    pub fn baseline(&self, name: &str, endpoint: &str) -> Option<PathBuf> {
        let p = self.baseline_dir(name).join(format!("{endpoint}.json"));
        p.is_file().then_some(p)
    }

    /// The endpoint's report from the newest run before run `id` that measured it (rule 1).
    pub fn previous(&self, id: &str, endpoint: &str) -> Option<PathBuf> {
        sorted_dirs(&self.root.join("runs"))
            .into_iter()
            .rev()
            .filter(|r| r.as_str() < id)
            .map(|r| self.run_dir(&r).join(format!("{endpoint}.json")))
            .find(|p| p.is_file())
    }
}

fn write_json(dir: &Path, name: &str, v: &Value) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{name}.json"));
    crate::report::json::write(&path.display().to_string(), v)?;
    Ok(path)
}

fn sorted_dirs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct Tmp(pub PathBuf);
    impl Tmp {
        pub(crate) fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!(
                "connbench-bench-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_root_honours_cargo_target_dir_then_the_executable() {
        assert_eq!(
            default_root(
                Some("/tmp/ct"),
                Some(Path::new("/w/target/release/deps/endpoints-1"))
            ),
            Path::new("/tmp/ct/connbench-bench")
        );
        assert_eq!(
            default_root(None, Some(Path::new("/w/target/release/deps/endpoints-1"))),
            Path::new("/w/target/connbench-bench")
        );
        assert_eq!(
            default_root(Some(""), Some(Path::new("/usr/bin/x"))),
            Path::new("target/connbench-bench")
        );
    }

    #[test]
    fn run_ids_sort_by_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(run_id(t, 42), "20231114T221320.123Z-42");
        let later = run_id(t + Duration::from_millis(1), 7);
        assert!(run_id(t, 42) < later);
        assert!(later < run_id(t + Duration::from_secs(3600), 1));
    }

    #[test]
    fn baselines_and_runs_read_back_and_the_previous_run_skips_runs_without_the_endpoint() {
        let tmp = Tmp::new("store");
        let s = Store::new(&tmp.0);
        let a = json!({"mode": "http", "n": 1});
        let b = json!({"mode": "http", "n": 2});
        s.save_run("20260101T000000.000Z-1", "plain", &a).unwrap();
        s.save_run("20260102T000000.000Z-1", "tls", &b).unwrap();
        // The current run is never its own previous run.
        s.save_run("20260103T000000.000Z-1", "plain", &b).unwrap();
        let prev = s.previous("20260103T000000.000Z-1", "plain").unwrap();
        assert!(
            prev.starts_with(s.run_dir("20260101T000000.000Z-1")),
            "{prev:?}"
        );
        let v: Value = serde_json::from_slice(&std::fs::read(prev).unwrap()).unwrap();
        assert_eq!(v, a);
        assert_eq!(
            s.previous("20260104T000000.000Z-1", "plain").unwrap(),
            s.run_dir("20260103T000000.000Z-1").join("plain.json")
        );
        assert!(
            s.previous("20260101T000000.000Z-1", "plain").is_none(),
            "nothing before the first"
        );
        assert!(s.previous("20260109T000000.000Z-1", "ws").is_none());

        assert!(!s.has_baseline("main"));
        s.save_baseline("main", "plain", &a).unwrap();
        assert!(s.has_baseline("main"));
        assert_eq!(s.baselines(), ["main"]);
        let p = s.baseline("main", "plain").unwrap();
        let v: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        assert_eq!(v, a);
        assert!(s.baseline("main", "tls").is_none());
        // A second save replaces the endpoint's report.
        s.save_baseline("main", "plain", &b).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(s.baseline("main", "plain").unwrap()).unwrap())
                .unwrap();
        assert_eq!(v, b);
    }
}
