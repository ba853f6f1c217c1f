#!/usr/bin/env bash
# compare-rate.sh: the cost of constant-rate mode (issue 11), side by side in one run.
# connbench `http -R RATE -c CONNS -t 1` and, when installed, oha `-q RATE -c CONNS` load the same
# private nginx (one worker on SERVER_CPU, 127.0.0.1 only, stopped by its PID); each client is
# pinned to CLIENT_CPU. Rounds alternate (connbench, oha, connbench, oha, …) and the report gives
# medians of client CPU per response (user+sys from /usr/bin/time ÷ responses), voluntary context
# switches per response (how often the client slept and was woken), and connbench's send lag p99
# from its JSON report (the client's own lateness against the schedule; the goal is ≤ 50 µs).
#
# Usage: scripts/compare-rate.sh                       (builds target/release/connbench)
#        CONNBENCH=target/release/connbench OHA=/work/peers/bin/oha RATES="20000 1000" \
#        ROUNDS=5 DURATION=5 CONNS=100 scripts/compare-rate.sh
#        CONNBENCH_BASE=/tmp/connbench-before scripts/compare-rate.sh   (also a before/after row)
# Nothing outside its temp dir is touched; traffic goes to 127.0.0.1 only.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
RATES=${RATES:-"20000 1000"}
CONNS=${CONNS:-100}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "compare-rate.sh: $*" >&2
  exit 2
}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION is whole seconds, e.g. 5 (got '$DURATION')"
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "CONNS must be a positive integer (got '$CONNS')"
for r in $RATES; do [[ $r =~ ^[1-9][0-9]*$ ]] || die "RATES must be positive integers (got '$r')"; done
[[ $SERVER_CPU != "$CLIENT_CPU" ]] || die "SERVER_CPU and CLIENT_CPU must differ"
[[ -x /usr/bin/time ]] || die "needs GNU time (/usr/bin/time; apt-get install time)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || die "needs nginx (apt-get install nginx-light)"
if [[ -z ${CONNBENCH:-} ]]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
  CONNBENCH=$ROOT/target/release/connbench
fi
[[ -x $CONNBENCH ]] || die "CONNBENCH=$CONNBENCH is not an executable"
[[ -z ${CONNBENCH_BASE:-} || -x $CONNBENCH_BASE ]] || die "CONNBENCH_BASE=$CONNBENCH_BASE is not an executable"
OHA=${OHA:-$(command -v oha || echo /work/peers/bin/oha)}
[[ -x $OHA ]] || {
  echo "compare-rate.sh: oha not found (cargo install --locked oha); connbench only" >&2
  OHA=""
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/connbench-rate.XXXXXX")
NGINX_PID=""
cleanup() {
  if [[ -n $NGINX_PID ]]; then
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    default_type application/json;
    server {
        listen 127.0.0.1:$PORT;
        location / { return 200 '{"ok":true,"msg":"hello bench"}'; }
    }
}
CONF
taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" >"$WORK/nginx.out" 2>&1 &
NGINX_PID=$!
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
URL=http://127.0.0.1:$PORT/

# One round of one client: prints "tool rate cpu_us_per_resp vcs_per_resp lag_p99_us".
run_connbench() {
  local rate=$1 n=$2 bin=${3:-$CONNBENCH} name=${4:-connbench}
  /usr/bin/time -f '%U %S %w' -o "$WORK/time.$n" taskset -c "$CLIENT_CPU" "$bin" http "$URL" \
    -R "$rate" -c "$CONNS" -t 1 -d "${DURATION}s" --json "$WORK/cb.$n.json" >/dev/null 2>"$WORK/cb.$n.err" ||
    die "connbench failed: $(tail -3 "$WORK/cb.$n.err")"
  python3 - "$WORK/time.$n" "$WORK/cb.$n.json" "$rate" "$name" <<'PY'
import json, sys
u, s, w = open(sys.argv[1]).read().split()[-3:]
d = json.load(open(sys.argv[2]))
n = d["counters"]["responses"]
lag = d["phases"]["send_lag"]["p99"] / 1000
print(f"{sys.argv[4]} {sys.argv[3]} {(float(u)+float(s))*1e6/n:.2f} {int(w)/n:.3f} {lag:.1f}")
PY
}
run_oha() {
  local rate=$1 n=$2
  /usr/bin/time -f '%U %S %w' -o "$WORK/time.$n" taskset -c "$CLIENT_CPU" "$OHA" "$URL" \
    -q "$rate" -c "$CONNS" -z "${DURATION}s" --no-tui --output-format json >"$WORK/oha.$n.json" 2>"$WORK/oha.$n.err" ||
    die "oha failed: $(tail -3 "$WORK/oha.$n.err")"
  python3 - "$WORK/time.$n" "$WORK/oha.$n.json" "$rate" <<'PY'
import json, sys
u, s, w = open(sys.argv[1]).read().split()[-3:]
d = json.load(open(sys.argv[2]))
n = sum(d["statusCodeDistribution"].values())
print(f"oha {sys.argv[3]} {(float(u)+float(s))*1e6/n:.2f} {int(w)/n:.3f} -")
PY
}

: >"$WORK/rows"
n=0
for rate in $RATES; do
  for ((round = 1; round <= ROUNDS; round++)); do
    n=$((n + 1))
    run_connbench "$rate" "$n" | tee -a "$WORK/rows" >&2
    sleep 0.5
    if [[ -n ${CONNBENCH_BASE:-} ]]; then
      n=$((n + 1))
      run_connbench "$rate" "$n" "$CONNBENCH_BASE" connbench-base | tee -a "$WORK/rows" >&2
      sleep 0.5
    fi
    if [[ -n $OHA ]]; then
      n=$((n + 1))
      run_oha "$rate" "$n" | tee -a "$WORK/rows" >&2
      sleep 0.5
    fi
  done
done

echo "# Rate mode cost: -c $CONNS, -t 1, ${DURATION}s, $ROUNDS interleaved rounds, medians"
echo "host: $(uname -srm), $(nproc) CPUs; server nginx on CPU $SERVER_CPU, client on CPU $CLIENT_CPU"
[[ -n $OHA ]] && echo "oha: $("$OHA" --version 2>/dev/null | head -1)"
python3 - "$WORK/rows" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
med = {}
print("| client | rate | CPU µs/response | wake-ups/response | send lag p99 µs |")
print("|---|---|---|---|---|")
for tool, rate in dict.fromkeys((r[0], r[1]) for r in rows):
    rs = [r for r in rows if r[0] == tool and r[1] == rate]
    cpu = statistics.median(float(r[2]) for r in rs)
    vcs = statistics.median(float(r[3]) for r in rs)
    lags = [float(r[4]) for r in rs if r[4] != "-"]
    lag = f"{statistics.median(lags):.1f}" if lags else "-"
    med[(tool, rate)] = cpu
    print(f"| {tool} | {rate} | {cpu:.2f} | {vcs:.3f} | {lag} |")
for (tool, rate), cpu in med.items():
    if tool == "connbench":
        for other in ("oha", "connbench-base"):
            if (other, rate) in med:
                print(f"\nconnbench ÷ {other} CPU per response at -R {rate}: {cpu / med[(other, rate)]:.2f}")
PY
