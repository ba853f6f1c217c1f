#!/usr/bin/env bash
# Autobahn|Testsuite conformance of connbench's WebSocket client (see docs/autobahn.md).
#
# Starts the Python 2.7 fuzzing server (autobahntestsuite) on a free loopback port, runs
# `connbench autobahn` against it, and fails unless every case outside sections 12 and 13
# (permessage-deflate, which connbench does not implement) is graded OK, NON-STRICT or
# INFORMATIONAL with a close graded OK or INFORMATIONAL.
#
# Environment:
#   AUTOBAHN_DIR  venv, config and reports (default: target/autobahn); reused between runs
#   CONNBENCH     connbench binary (default: cargo build --release, then target/release/connbench)
# Exit: 0 pass (or skipped: no Python 2.7), 1 failure.
set -euo pipefail
export PIP_NO_PYTHON_VERSION_WARNING=1  # pip 20 on 2.7 warns about the end of Python 2 on every call

cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)

# --- 1. Python 2.7 (autobahntestsuite has never been ported to Python 3) ---------------------
py2=""
if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/2.7.18/bin/python" ]; then
    py2="$(pyenv root)/versions/2.7.18/bin/python"
elif command -v python2.7 >/dev/null 2>&1 && python2.7 -c 'import sys; sys.exit(sys.version_info[:2] != (2, 7))' 2>/dev/null; then
    py2=$(command -v python2.7)
fi
if [ -z "$py2" ]; then
    echo "autobahn: SKIPPED — no Python 2.7 on this machine (autobahntestsuite needs it)"
    exit 0
fi
command -v python3 >/dev/null 2>&1 || { echo "autobahn: python3 is needed to read the report" >&2; exit 1; }

# --- 2. venv with the fuzzing server (installed once) ----------------------------------------
dir=${AUTOBAHN_DIR:-target/autobahn}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
venv="$dir/venv"
if ! "$venv/bin/python" -c 'import autobahntestsuite' >/dev/null 2>&1; then
    echo "autobahn: installing autobahntestsuite 25.10.1 into $venv (about a minute, once)"
    if [ ! -x "$venv/bin/python" ]; then
        # The last virtualenv releases that still create Python 2.7 environments.
        timeout 180 "$py2" -m pip install -q --disable-pip-version-check \
            --target "$dir/venvtool" 'virtualenv<20.22'
        PYTHONPATH="$dir/venvtool" timeout 120 "$py2" -m virtualenv -q "$venv"
    fi
    timeout 400 "$venv/bin/pip" install -q --disable-pip-version-check autobahntestsuite==25.10.1
fi

run="$dir/run"
mkdir -p "$run"
rm -rf "$run/reports"
# listenWS() binds every interface by default; the wrapper keeps the server on loopback.
cat > "$run/wstest_loopback.py" <<'EOF'
import sys, autobahn.twisted.websocket as w
_o = w.listenWS
w.listenWS = lambda f, c=None, b=50, interface='127.0.0.1': _o(f, c, b, interface or '127.0.0.1')
from autobahntestsuite import wstest; sys.exit(wstest.run())
EOF

# --- connbench ------------------------------------------------------------------------------
if [ -z "${CONNBENCH:-}" ]; then
    cargo build --release --quiet --bin connbench
    CONNBENCH="${CARGO_TARGET_DIR:-$root/target}/release/connbench"
fi
[ -x "$CONNBENCH" ] || { echo "autobahn: no connbench binary at $CONNBENCH" >&2; exit 1; }

# --- the fuzzing server ---------------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# 12.* and 13.* test permessage-deflate: connbench offers no extension, so they would only
# report UNIMPLEMENTED.
cat > "$run/fuzzingserver.json" <<EOF
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "./reports/clients",
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
EOF

server_pid=""
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}
trap stop_server EXIT

# -u 0: no web UI (it would listen on :8080).
(cd "$run" && exec "$venv/bin/python" wstest_loopback.py -m fuzzingserver -s fuzzingserver.json -u 0) \
    > "$run/server.log" 2>&1 &
server_pid=$!

listening=""
for _ in $(seq 150); do   # 15 s
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "autobahn: the fuzzing server exited; its log ($run/server.log):" >&2
        tail -20 "$run/server.log" >&2
        exit 1
    fi
    if python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(s.connect_ex(('127.0.0.1', $port)))" 2>/dev/null; then
        listening=1
        break
    fi
    sleep 0.1
done
[ -n "$listening" ] || { echo "autobahn: the fuzzing server did not listen on 127.0.0.1:$port within 15 s" >&2; exit 1; }

# --- the run --------------------------------------------------------------------------------
client_rc=0
timeout 900 "$CONNBENCH" autobahn --url "ws://127.0.0.1:$port" --agent connbench || client_rc=$?
stop_server

# --- the verdict ----------------------------------------------------------------------------
verdict_rc=0
python3 - "$run/reports/clients/index.json" <<'EOF' || verdict_rc=$?
import collections, json, sys

try:
    with open(sys.argv[1]) as f:
        index = json.load(f)
except (OSError, ValueError) as e:
    print("autobahn: no readable report: %s" % e)
    sys.exit(1)
cases = index.get("connbench", {})
if not cases:
    print("autobahn: the report has no cases for agent connbench")
    sys.exit(1)

def key(case_id):
    return [int(p) for p in case_id.split(".")]

behaviors = collections.Counter()
closes = collections.Counter()
failed = []
for case_id in sorted(cases, key=key):
    r = cases[case_id]
    behaviors[r["behavior"]] += 1
    closes[r["behaviorClose"]] += 1
    if case_id.split(".")[0] in ("12", "13"):
        continue
    if r["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL") or \
            r["behaviorClose"] not in ("OK", "INFORMATIONAL"):
        failed.append("%s (behavior %s, close %s)" % (case_id, r["behavior"], r["behaviorClose"]))

print("autobahn: %d cases" % len(cases))
for name, n in sorted(behaviors.items()):
    print("  behavior      %-14s %4d" % (name, n))
for name, n in sorted(closes.items()):
    print("  behaviorClose %-14s %4d" % (name, n))
if failed:
    print("autobahn: FAILED %d cases:" % len(failed))
    for line in failed:
        print("  " + line)
    sys.exit(1)
EOF

elapsed=$(( $(date +%s) - started ))
if [ "$client_rc" -ne 0 ]; then
    echo "autobahn: FAILED — connbench autobahn exited with $client_rc (${elapsed} s)"
    exit 1
fi
if [ "$verdict_rc" -ne 0 ]; then
    echo "autobahn: FAILED (${elapsed} s); per-case reports in $run/reports/clients"
    exit 1
fi
echo "autobahn: PASSED in ${elapsed} s; per-case reports in $run/reports/clients"
