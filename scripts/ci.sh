#!/usr/bin/env bash
# The project's test command: what CI runs (.ci/run) and what you run before pushing.
# Needs the Rust toolchain (stable, plus nightly for the fuzz smoke; scripts/fuzz.sh installs
# cargo-fuzz when it is missing): every server the tests talk to is started in-process on
# loopback (port 0) and stopped by handle. The Autobahn step needs Python 2.7 (it says SKIPPED
# without it). The HTML check needs Debian's chromium (scripts/html-check.sh installs it as root).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

echo "== cargo test (unit, codec, end-to-end, allocation count, benches in test mode)"
cargo test --all-targets

echo "== --html pages in headless Chromium: no console message (scripts/html-check.sh; ~45 s, installs Debian's chromium when missing)"
cargo build --bin connbench
CONNBENCH=target/debug/connbench scripts/html-check.sh

echo "== fuzz smoke: every decoder target for 20 s (scripts/fuzz.sh; nightly + cargo-fuzz)"
scripts/fuzz.sh 20

echo "== WebSocket conformance: Autobahn|Testsuite fuzzing server against connbench's client"
# Needs Python 2.7 (pyenv on these machines); the script says SKIPPED plainly when it is absent.
cargo build --bin connbench
CONNBENCH=target/debug/connbench scripts/autobahn.sh

echo "== deploy: the Kubernetes manifests against the Kubernetes schemas (kubernetes-validate --strict)"
scripts/check-deploy.sh

echo "== multihost: 3 load hosts and a target in network namespaces, started together, merged exactly"
# Needs root and ip netns; it says SKIPPED plainly where namespaces cannot be made.
CONNBENCH=target/debug/connbench scripts/multihost.sh 3
