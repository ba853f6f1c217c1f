//! Shared helpers for the integration tests: an in-process built-in target on port 0, and a
//! runner for the real `connbench` binary that returns its exit code, output and JSON report.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use connbench::serve::{self, ServeConfig, ServerHandle};
use serde_json::Value;

/// A fresh, empty directory for one test's files (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "connbench-test-{}-{}-{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start the built-in target on loopback, ephemeral ports, with `tweak` applied.
pub fn serve(tweak: impl FnOnce(&mut ServeConfig)) -> ServerHandle {
    let mut cfg = ServeConfig::default();
    tweak(&mut cfg);
    serve::start(cfg).expect("start built-in target")
}

pub fn http_url(s: &ServerHandle, path: &str) -> String {
    format!("http://{}{}", s.http_addr().expect("plain port"), path)
}

/// https URL of the target; its certificate carries the IP address as a SAN.
pub fn https_url(s: &ServerHandle, path: &str) -> String {
    format!("https://{}{}", s.https_addr().expect("tls port"), path)
}

/// Write the target's certificate where `--ca` can read it.
pub fn write_ca(s: &ServerHandle, dir: &TempDir) -> PathBuf {
    let p = dir.path("ca.pem");
    std::fs::write(&p, s.ca_pem()).expect("write ca");
    p
}

/// The result of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Option<Value>,
}

impl Run {
    /// The JSON report, or a panic showing what the process printed.
    pub fn report(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| {
            panic!(
                "no JSON report (exit {}):\nstdout:\n{}\nstderr:\n{}",
                self.code, self.stdout, self.stderr
            )
        })
    }

    pub fn u64(&self, pointer: &str) -> u64 {
        self.report()
            .pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("{pointer} missing or not an integer in {}", self.report()))
    }

    pub fn f64(&self, pointer: &str) -> f64 {
        self.report()
            .pointer(pointer)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{pointer} missing or not a number in {}", self.report()))
    }
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_connbench")
}

/// Run `connbench ARGS --json FILE -q` and parse the report.
pub fn connbench(args: &[&str]) -> Run {
    let dir = TempDir::new("run");
    let json = dir.path("report.json");
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--json").arg(&json).arg("-q");
    let out = cmd.output().expect("run connbench");
    finish(out, &json)
}

/// Like [`connbench`], with extra environment variables for the child.
pub fn connbench_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = TempDir::new("run");
    let json = dir.path("report.json");
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--json").arg(&json).arg("-q");
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run connbench");
    finish(out, &json)
}

/// Run the binary with exactly these arguments (no --json added).
pub fn connbench_raw(args: &[&str]) -> Run {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run connbench");
    finish(out, std::path::Path::new("/nonexistent"))
}

fn finish(out: Output, json: &std::path::Path) -> Run {
    let json = std::fs::read(json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        json,
    }
}

/// Bad input must end with exit code 2 and one clear line, never a panic.
pub fn assert_usage_error(run: &Run, needle: &str) {
    assert_eq!(run.code, 2, "stderr: {}", run.stderr);
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "panic: {}",
        run.stderr
    );
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "expected {needle:?} in stderr: {}",
        run.stderr
    );
}
