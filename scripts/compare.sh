#!/usr/bin/env bash
# compare.sh: connbench beside the null client (examples/null_client.rs, the floor of this
# design) and the peers wrk, oha and h2load, against the same servers, on the same CPU, measured
# the same way, and every performance goal of issue 11 judged PASS/FAIL from that one run.
#
# It owns the whole comparison: the packages it needs (Debian's wrk, nginx, nghttp2-client,
# strace, openssl), oha (`cargo install --locked`, cached in PEERS_DIR), a private nginx (plain +
# TLS, 127.0.0.1 only) and a built-in target (`connbench serve`, another process), both stopped by
# PID, the interleaved client rounds, syscall counts and the markdown report. It touches nothing
# outside its temp dir, PEERS_DIR and $OUT (plus apt when a tool is missing), sends traffic only
# to 127.0.0.0/8, and stops only processes it started.
#
# Usage: scripts/compare.sh                     (builds connbench and the null client, release)
#        SCENARIOS="keepalive busypoll" ROUNDS=5 DURATION=5s OUT=result.md scripts/compare.sh
#        PEERS_DIR=/work/peers scripts/compare.sh    (an oha already installed there is reused)
# Method, scenarios and goals: docs/compare.md.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
STRACE_DURATION=${STRACE_DURATION:-3s}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT_MIN=${PORT_MIN:-18000}
PORT_MAX=${PORT_MAX:-18999}
SCENARIOS=${SCENARIOS:-"keepalive busypoll rate tls newconn storm syscalls"}
PEERS_DIR=${PEERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/connbench-peers}
OHA_VERSION=${OHA_VERSION:-1.16.0}
NEWCONN_C=${NEWCONN_C:-10}
STORM_CONNS=${STORM_CONNS:-19500}
STORM_SOURCES=${STORM_SOURCES:-127.0.0.1-127.0.0.16}
# Pause between runs so the previous client's sockets are closed on both sides before the next
# run connects; short enough not to matter for the total time.
SETTLE_S=0.5

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$ROOT/bench-results/compare-$STAMP.md}
RAW=${OUT%.md}.raw

die() {
  echo "compare.sh: $*" >&2
  exit 2
}
# A failure while measuring (a tool failed, a server did not start): exit 1.
fail() {
  echo "compare.sh: $*" >&2
  exit 1
}
log() { echo "== $*" >&2; }

# Every value that ends up on a command line is checked first, so a typo fails here with a
# message instead of as a strange error from one of the tools halfway through.
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
# Seconds only: wrk, connbench, oha and the null client take "5s", h2load takes "5".
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || die "DURATION must look like 5s (got '$DURATION')"
[[ $STRACE_DURATION =~ ^[1-9][0-9]*s$ ]] || die "STRACE_DURATION must look like 3s (got '$STRACE_DURATION')"
DUR_S=${DURATION%s}
[[ $SERVER_CPU =~ ^[0-9]+$ && $CLIENT_CPU =~ ^[0-9]+$ ]] || die "SERVER_CPU/CLIENT_CPU must be CPU numbers"
[[ $SERVER_CPU != "$CLIENT_CPU" ]] || die "SERVER_CPU and CLIENT_CPU must differ"
if ! [[ $PORT_MIN =~ ^[0-9]+$ && $PORT_MAX =~ ^[0-9]+$ ]] ||
  ((PORT_MIN <= 1024 || PORT_MIN >= PORT_MAX || PORT_MAX > 65535)); then
  die "PORT_MIN/PORT_MAX must be a range inside 1025-65535"
fi
ALL_SCENARIOS="keepalive busypoll rate tls newconn storm syscalls"
for s in $SCENARIOS; do
  [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "SCENARIOS: unknown '$s' (choose from: $ALL_SCENARIOS)"
done
[[ -n ${SCENARIOS// /} ]] || die "SCENARIOS is empty (choose from: $ALL_SCENARIOS)"
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
[[ $OHA_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "OHA_VERSION must look like 1.16.0 (got '$OHA_VERSION')"
[[ $NEWCONN_C =~ ^[1-9][0-9]*$ ]] || die "NEWCONN_C must be a positive integer (got '$NEWCONN_C')"
[[ $STORM_CONNS =~ ^[1-9][0-9]*$ ]] || die "STORM_CONNS must be a positive integer (got '$STORM_CONNS')"
# Loopback source range only: A-B or a comma list of 127.x.y.z addresses.
[[ $STORM_SOURCES =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+((-|,)127\.[0-9]+\.[0-9]+\.[0-9]+)*$ ]] ||
  die "STORM_SOURCES must be 127.x.y.z addresses, a range A-B or a comma list (got '$STORM_SOURCES')"
[[ $PEERS_DIR == /* ]] || die "PEERS_DIR must be an absolute path (got '$PEERS_DIR')"

# Many connections (c=1000, the storm) need descriptors: raise the soft limit to the hard one
# for this script and everything it starts.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if want storm && (($(ulimit -n) < STORM_CONNS + 200)); then
  die "the storm needs $((STORM_CONNS + 200)) file descriptors, the hard limit is $(ulimit -Hn): raise it (ulimit -Hn) or lower STORM_CONNS"
fi

# ---------------------------------------------------------------------------------------------
# 1. Tools: install only what is missing, so a second run does nothing.
# ---------------------------------------------------------------------------------------------
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

install_missing() {
  local missing=()
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  command -v strace >/dev/null 2>&1 || missing+=(strace)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
  command -v ss >/dev/null 2>&1 || missing+=(iproute2)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  [[ -x /usr/bin/time ]] || missing+=(time)
  ((${#missing[@]} == 0)) && return 0
  log "installing missing packages: ${missing[*]}"
  as_root apt-get update
  local pkg
  for pkg in "${missing[@]}"; do
    if [[ $pkg == nginx ]]; then
      # nginx-light is the smallest build (it has ssl and `return`); newer releases dropped it.
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y nginx-light ||
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y nginx
    else
      DEBIAN_FRONTEND=noninteractive as_root apt-get install -y "$pkg"
    fi
  done
}
install_missing
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# oha from crates.io, one pinned version, built once into PEERS_DIR and reused by every run.
OHA=$PEERS_DIR/bin/oha
# rate and newconn judge against oha; keepalive and tls show it as context when it is there.
if want rate || want newconn; then
  if ! [[ -x $OHA ]] || [[ $("$OHA" --version 2>/dev/null) != *"$OHA_VERSION"* ]]; then
    log "installing oha $OHA_VERSION into $PEERS_DIR (cargo install --locked; once, then cached)"
    cargo install --locked oha --version "$OHA_VERSION" --root "$PEERS_DIR" >&2 ||
      fail "cargo install oha $OHA_VERSION failed (see above); set PEERS_DIR to where oha is installed"
  fi
fi

taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to SERVER_CPU=$SERVER_CPU (nproc: $(nproc))"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to CLIENT_CPU=$CLIENT_CPU (nproc: $(nproc))"

if [[ -z ${CONNBENCH:-} || -z ${NULL_CLIENT:-} ]]; then
  log "building connbench and the null client (cargo build --release)"
  cargo build --release --manifest-path "$ROOT/Cargo.toml" --bin connbench --example null_client >&2
fi
CONNBENCH=${CONNBENCH:-$ROOT/target/release/connbench}
NULL_CLIENT=${NULL_CLIENT:-$ROOT/target/release/examples/null_client}
[[ -x $CONNBENCH ]] || die "CONNBENCH=$CONNBENCH is not an executable"
[[ -x $NULL_CLIENT ]] || die "NULL_CLIENT=$NULL_CLIENT is not an executable"

# ---------------------------------------------------------------------------------------------
# 2. Servers: nginx (private temp dir, one worker on SERVER_CPU) and the built-in target (another
#    process, one event loop on SERVER_CPU), both stopped by PID on any exit.
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/connbench-compare.XXXXXX")
NGINX_PID=""
SERVE_PID=""
CLIENT_PID=""

stop_pid() { # stop_pid PID: TERM, wait up to 5 s, then KILL; only ever a PID this script started
  local pid=$1 i
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  stop_pid "$CLIENT_PID"
  stop_pid "$NGINX_PID"
  stop_pid "$SERVE_PID"
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A throwaway CA plus a leaf for IP 127.0.0.1, so connbench verifies the chain with --ca instead
# of switching verification off. (rustls/webpki rejects a self-signed cert that is its own
# end-entity, hence two certificates.)
make_certs() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=connbench compare CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=127.0.0.1" -keyout "$WORK/key.pem" -out "$WORK/leaf.csr" 2>/dev/null
  printf '%s\n' 'subjectAltName=IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
    'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$WORK/leaf.ext"
  openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/leaf.ext" -out "$WORK/cert.pem" 2>/dev/null
}

# A port is free if we can bind it right now; nginx may still lose a race for it, which
# start_nginx notices from nginx's error log and answers with new ports.
free_port() {
  python3 - "$PORT_MIN" "$PORT_MAX" "$@" <<'PY'
import random, socket, sys
lo, hi, taken = int(sys.argv[1]), int(sys.argv[2]), set(map(int, sys.argv[3:]))
ports = list(range(lo, hi + 1))
random.shuffle(ports)
for p in ports:
    if p in taken:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    sys.exit(0)
sys.exit("no free port in range")
PY
}

BODY='{"ok":true,"msg":"hello bench"}'
write_nginx_conf() {
  local d=$WORK
  cat >"$d/nginx.conf" <<EOF
# Generated by scripts/compare.sh: one worker, loopback only, a fixed small body.
worker_processes 1;
worker_rlimit_nofile 8192;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    # Keep-alive for the whole run: no client should ever have to reconnect.
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    default_type application/json;
    server {
        listen 127.0.0.1:$PLAIN_PORT;
        listen 127.0.0.1:$TLS_PORT ssl;
        ssl_certificate $d/cert.pem;
        ssl_certificate_key $d/key.pem;
        # One protocol and one AEAD for every client, whatever their default preferences, so
        # TLS CPU per request compares the same record cipher. TLS 1.3 session tickets are on
        # by default (resumption for the new-connection scenario).
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        location / { return 200 '$BODY'; }
    }
}
EOF
}

# True when a TCP connect to 127.0.0.1:$1 succeeds (bash's /dev/tcp, no extra tool).
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_nginx() {
  local attempt i
  for ((attempt = 1; attempt <= 5; attempt++)); do
    PLAIN_PORT=$(free_port)
    TLS_PORT=$(free_port "$PLAIN_PORT")
    write_nginx_conf
    : >"$WORK/error.log"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" -e "$WORK/error.log" \
      >"$WORK/nginx.stdout" 2>&1 &
    NGINX_PID=$!
    for ((i = 0; i < 50; i++)); do
      # A bind failure is logged at once; without this check a port that someone else grabbed
      # in the meantime would look "open" and we would benchmark their server.
      if grep -q 'emerg' "$WORK/error.log" 2>/dev/null || ! kill -0 "$NGINX_PID" 2>/dev/null; then
        break
      fi
      if port_open "$PLAIN_PORT" && port_open "$TLS_PORT"; then
        log "nginx pid $NGINX_PID on cpu $SERVER_CPU: http://127.0.0.1:$PLAIN_PORT/ https://127.0.0.1:$TLS_PORT/"
        return 0
      fi
      sleep 0.1
    done
    log "nginx did not start on ports $PLAIN_PORT/$TLS_PORT (attempt $attempt): $(head -c 300 "$WORK/error.log")"
    stop_pid "$NGINX_PID"
    NGINX_PID=""
  done
  fail "nginx failed to start; last error log: $(cat "$WORK/error.log")"
}

# The built-in target in its own process (port 0: the kernel picks; it prints the URL).
start_serve() {
  local i
  # Created here, not by the background redirection, so the first read below cannot race it.
  : >"$WORK/serve.out"
  taskset -c "$SERVER_CPU" "$CONNBENCH" serve --threads 1 --cpus "$SERVER_CPU" --http 0 --no-https \
    --for 2h >"$WORK/serve.out" 2>"$WORK/serve.err" &
  SERVE_PID=$!
  for ((i = 0; i < 100; i++)); do
    SERVE_PORT=$(sed -n 's#^http   http://127.0.0.1:\([0-9]*\)/.*#\1#p' "$WORK/serve.out" || true)
    [[ -n $SERVE_PORT ]] && { log "built-in target pid $SERVE_PID on cpu $SERVER_CPU: http://127.0.0.1:$SERVE_PORT/"; return 0; }
    kill -0 "$SERVE_PID" 2>/dev/null || break
    sleep 0.1
  done
  fail "the built-in target did not start: $(cat "$WORK/serve.out" "$WORK/serve.err")"
}

# ---------------------------------------------------------------------------------------------
# Parsing, goals and the report live in one python helper so that bash only runs things.
# ---------------------------------------------------------------------------------------------
HELPER=$WORK/compare_helper.py
cat >"$HELPER" <<'PY'
"""Parse each tool's output, judge the goals and render the markdown report.

runs.tsv rows: group, tool, round, units, user_s, sys_s, elapsed_s, vcs, errors, metrics(json)
  units = responses (keep-alive, rate, busy-poll) or connections (new connections, storm)."""
import json, re, statistics, sys


def cpu_from_time(path):
    """GNU time -f '%e %U %S %w' -o FILE: the last line (a 'Command exited' line may precede).
    %w = voluntary context switches: how often the client blocked (in epoll_wait) for lack of
    work."""
    lines = [l for l in open(path).read().splitlines() if l.strip()]
    elapsed, user, sys_, vcs = lines[-1].split()
    return float(elapsed), float(user), float(sys_), int(vcs)


def wrk(path):
    text = open(path).read()
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if not m:
        sys.exit(f"cannot parse wrk output {path}")
    errors = 0
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if se:
        # With Connection: close, wrk counts the server's close as a read "error" on some
        # versions; connect/write/timeout are real errors either way.
        g = [int(x) for x in se.groups()]
        errors += g[0] + g[2] + g[3]
    n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n2:
        errors += int(n2.group(1))
    return int(m.group(1)), errors, {}


def h2load(path):
    text = open(path).read()
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text)
    if not m:
        sys.exit(f"cannot parse h2load output {path}")
    g = [int(x) for x in m.groups()]
    return g[3], g[4] + g[5] + g[6], {}


def oha(path):
    d = json.load(open(path))
    codes = {int(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    errors = sum(v for k, v in codes.items() if not 200 <= k < 300)
    # With -z, oha aborts the requests still in flight at the deadline and lists them as
    # "aborted due to deadline" (at most one per connection): the end of the run, not an error.
    errors += sum(v for k, v in (d.get("errorDistribution") or {}).items() if k != "aborted due to deadline")
    return ok, errors, {}


def cb(path, units):
    d = json.load(open(path))
    r = d["responses"]
    errors = d["errors"]["total"] + sum(r[k] for k in r if k != "2xx")
    ph = d["phases"]
    m = {}
    if ph.get("ttfb", {}).get("p50") is not None:
        m["ttfb_p50_us"] = ph["ttfb"]["p50"] / 1000
    if "send_lag" in ph and ph["send_lag"].get("p99") is not None:
        m["send_lag_p99_us"] = ph["send_lag"]["p99"] / 1000
    for k in ("tls_full", "tls_resumed"):
        if ph.get(k, {}).get("count"):
            m[k] = ph[k]["count"]
    c = d["counters"]
    n = c["connections_established"] if units == "connections" else c["responses"]
    return n, errors, m


def null(path):
    d = json.loads(open(path).read().strip().splitlines()[-1])
    m = {k: d[k] for k in ("rtt_p50_us", "rtt_p99_us") if d.get(k) is not None}
    return d["responses"], 0, m


def parse(kind, out_path, time_path, extra_json="{}"):
    if kind == "wrk":
        n, err, m = wrk(out_path)
    elif kind == "h2load":
        n, err, m = h2load(out_path)
    elif kind == "oha":
        n, err, m = oha(out_path)
    elif kind == "cb":
        n, err, m = cb(out_path, "responses")
    elif kind == "cb-conns":
        n, err, m = cb(out_path, "connections")
    elif kind == "null":
        n, err, m = null(out_path)
    else:
        sys.exit(f"unknown kind {kind}")
    m.update(json.loads(extra_json))
    elapsed, user, sys_, vcs = cpu_from_time(time_path)
    print(f"{n}\t{user:.2f}\t{sys_:.2f}\t{elapsed:.2f}\t{vcs}\t{err}\t{json.dumps(m, sort_keys=True)}")


def requests_of(kind, path):
    if kind == "cb":
        return json.load(open(path))["counters"]["responses"]
    if kind == "null":
        return json.loads(open(path).read().strip().splitlines()[-1])["responses"]
    return wrk(path)[0]


# The classic five, plus their vectored / msg / pwait twins: a tool that switches from write to
# writev must not drop out of the hot-path count.
HOT = ("sendto", "write", "recvfrom", "read", "epoll_wait",
       "writev", "sendmsg", "readv", "recvmsg", "epoll_pwait", "epoll_pwait2")


def strace(path, kind, out_path):
    """strace -c table: '% time seconds usecs/call calls [errors] syscall'; calls is column 4."""
    calls, total = {}, None
    for line in open(path):
        f = line.split()
        if len(f) < 5 or not f[3].isdigit():
            continue
        if f[-1] == "total":
            total = int(f[3])
        else:
            calls[f[-1]] = int(f[3])
    if total is None:
        total = sum(calls.values())
    n = requests_of(kind, out_path)
    if n == 0:
        sys.exit(f"no responses under strace ({out_path})")
    hot = sum(calls.get(s, 0) for s in HOT)
    top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
    top_s = ", ".join(f"{k} {v / n:.2f}" for k, v in top)
    print(f"{n}\t{total / n:.2f}\t{hot / n:.2f}\t{calls.get('epoll_ctl', 0) / n:.2f}\t{top_s}")


def perf(path, kind, out_path):
    """perf stat -x, with raw_syscalls:sys_enter, user_time and system_time (ns) events, or the
    'seconds user/sys' lines: syscalls, user µs and kernel µs per response at full speed."""
    vals = {}
    for line in open(path):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].replace(".", "").isdigit():
            vals[f[2]] = float(f[0])
    n = requests_of(kind, out_path)
    if not n or "raw_syscalls:sys_enter" not in vals:
        print("-\t-\t-")
        return
    sc = vals["raw_syscalls:sys_enter"] / n
    u = vals.get("user_time")
    s = vals.get("system_time")
    us = f"{u / 1000 / n:.2f}" if u is not None else "-"
    ss = f"{s / 1000 / n:.2f}" if s is not None else "-"
    print(f"{sc:.2f}\t{us}\t{ss}")


def load_runs(path):
    rows = []
    for l in open(path):
        if not l.strip():
            continue
        g, tool, rnd, n, user, sys_, el, vcs, err, m = l.rstrip("\n").split("\t")
        n = int(n)
        rows.append(dict(group=g, tool=tool, round=int(rnd), n=n, user=float(user), sys=float(sys_),
                         elapsed=float(el), vcs=int(vcs), err=int(err), m=json.loads(m),
                         cpu_us=(float(user) + float(sys_)) / n * 1e6 if n else float("nan"),
                         user_us=float(user) / n * 1e6 if n else float("nan"),
                         sys_us=float(sys_) / n * 1e6 if n else float("nan")))
    return rows


def medians(rows):
    """(group, tool) -> medians of CPU/unit, rate, metrics; errors summed."""
    by = {}
    for r in rows:
        by.setdefault((r["group"], r["tool"]), []).append(r)
    med = {}
    for key, rs in by.items():
        d = {"cpu_us": statistics.median(r["cpu_us"] for r in rs),
             "user_us": statistics.median(r["user_us"] for r in rs),
             "sys_us": statistics.median(r["sys_us"] for r in rs),
             "rate": statistics.median(r["n"] / r["elapsed"] if r["elapsed"] else 0 for r in rs),
             "vcs": statistics.median(r["vcs"] / r["n"] if r["n"] else float("nan") for r in rs),
             "err": sum(r["err"] for r in rs), "rounds": len(rs)}
        for k in sorted({k for r in rs for k in r["m"]}):
            vals = [r["m"][k] for r in rs if k in r["m"]]
            d[k] = statistics.median(vals)
        med[key] = d
    return med


def goals(med):
    """Each goal of issue 11: (goal, measured, limit, verdict). Judged on the printed figures."""
    out = []

    def get(g, t, k):
        return med.get((g, t), {}).get(k)

    def judge(name, num, den, limit, what):
        if num is None or den is None or not den:
            out.append((name, "not run", f"≤ {limit:g}", "—"))
            return
        ratio = round(num / den, 2)
        out.append((name, f"{ratio:.2f} ({what(num, den)})", f"≤ {limit:g}",
                    "PASS" if ratio <= limit else "FAIL"))

    us = lambda a, b: f"{a:.2f} vs {b:.2f} µs"
    for c in (10, 100, 1000):
        g = f"keepalive c={c}"
        judge(f"plain keep-alive c={c}: connbench CPU/req ÷ null client's", get(g, "connbench", "cpu_us"),
              get(g, "null", "cpu_us"), 1.05, us)
    for t in ("builtin", "nginx"):
        g = f"busypoll {t}"
        judge(f"busy-poll c=1 {t}: connbench --busy-poll TTFB p50 ÷ spinning null RTT p50",
              get(g, "connbench-busypoll", "ttfb_p50_us"), get(g, "null-spin", "rtt_p50_us"), 1.1, us)
        judge(f"busy-poll c=1 {t}: connbench TTFB p50 (sleeping) ÷ blocking null RTT p50",
              get(g, "connbench", "ttfb_p50_us"), get(g, "null-blocking", "rtt_p50_us"), 1.0, us)
    g = "rate c=100"
    judge("rate -R 20000 c=100: connbench CPU/req ÷ oha -q 20000's", get(g, "connbench-R20000", "cpu_us"),
          get(g, "oha-q20000", "cpu_us"), 1.0, us)
    lag = get(g, "connbench-R20000", "send_lag_p99_us")
    out.append(("rate -R 20000 c=100: connbench send lag p99 (µs)", "not run" if lag is None else f"{lag:.1f}",
                "≤ 50", "—" if lag is None else ("PASS" if round(lag, 1) <= 50 else "FAIL")))
    r1k = get(g, "connbench-R1000", "cpu_us")
    out.append(("rate -R 1000 c=100: connbench CPU/req (µs, said, no goal)",
                "not run" if r1k is None else f"{r1k:.2f}", "—", "info"))
    for c in (10, 100):
        g = f"tls c={c}"
        judge(f"TLS keep-alive c={c}: connbench CPU/req ÷ wrk's", get(g, "connbench", "cpu_us"),
              get(g, "wrk", "cpu_us"), 0.75, us)
        floor, cb, wrk = get(g, "null", "cpu_us"), get(g, "connbench", "cpu_us"), get(g, "wrk", "cpu_us")
        out.append((f"TLS keep-alive c={c}: TLS null client CPU/req ÷ wrk's (the floor of the goal above, said)",
                    "not run" if floor is None or not wrk else f"{floor / wrk:.2f} ({us(floor, wrk)})", "—", "info"))
        out.append((f"TLS keep-alive c={c}: connbench CPU/req ÷ TLS null client's (said)",
                    "not run" if floor is None or cb is None else f"{cb / floor:.2f} ({us(cb, floor)})", "—", "info"))
    g = f"newconn plain"
    judge("new connections plain: connbench CPU/conn ÷ wrk's (both send Connection: close)",
          get(g, "connbench", "cpu_us"), get(g, "wrk", "cpu_us"), 0.9, us)
    fin = get(g, "connbench-fin", "cpu_us")
    out.append(("new connections plain, connbench closing first (client TIME_WAIT): CPU/conn (µs, said apart)",
                "not run" if fin is None else f"{fin:.2f}", "—", "info"))
    g = f"newconn tls"
    judge("new connections TLS 1.3 resumed: connbench CPU/conn ÷ oha --disable-keepalive's",
          get(g, "connbench-resumed", "cpu_us"), get(g, "oha", "cpu_us"), 0.7, us)
    full = get(g, "connbench-full", "cpu_us")
    out.append(("new connections TLS 1.3 full handshakes (--no-resume): connbench CPU/conn (µs, said apart)",
                "not run" if full is None else f"{full:.2f}", "—", "info"))
    def storm(s, n):
        if s is None:
            return "not run"
        if s == float("inf"):
            return f"never within the hold (at most {n:.0f} at once)"
        return f"{s:.2f} ({n:.0f} established)"

    s = get("storm", "connbench-source", "established_s")
    n = get("storm", "connbench-source", "established")
    out.append((f"connect storm with --source: seconds until all connections were established",
                storm(s, n), "≤ 3",
                "—" if s is None else ("PASS" if round(s, 2) <= 3.0 else "FAIL")))
    s = get("storm", "connbench-nosource", "established_s")
    n = get("storm", "connbench-nosource", "established")
    out.append(("connect storm without --source: seconds until all established (said, no goal)",
                storm(s, n), "—", "info"))
    return out


def render(runs_tsv, sys_tsv):
    rows = load_runs(runs_tsv)
    med = medians(rows)
    out = []
    g_list = goals(med)
    out.append("## Goals (issue 11)")
    out.append("")
    out.append("| goal | measured (ratio, medians) | limit | verdict |")
    out.append("|---|---|---|---|")
    for name, meas, lim, v in g_list:
        out.append(f"| {name} | {meas} | {lim} | **{v}** |")
    out.append("")
    out.append("## Medians per scenario")
    out.append("")
    out.append("Units: responses, except new connections and the storm (connections). CPU = user+sys of the "
               "whole client process (`/usr/bin/time`) ÷ units.")
    out.append("")
    out.append("| scenario | tool | rounds | median units/s | median CPU µs/unit | user µs | sys µs "
               "| vol. ctx switches/unit | other medians | errors (all rounds) |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---|---:|")
    seen = []
    for r in rows:
        if (r["group"], r["tool"]) not in seen:
            seen.append((r["group"], r["tool"]))
    for g, t in seen:
        d = med[(g, t)]
        other = ", ".join(f"{k} {d[k]:.1f}" for k in sorted(d) if k not in
                          ("cpu_us", "user_us", "sys_us", "rate", "vcs", "err", "rounds"))
        out.append(f"| {g} | {t} | {d['rounds']} | {d['rate']:,.0f} | {d['cpu_us']:.2f} | {d['user_us']:.2f} "
                   f"| {d['sys_us']:.2f} | {d['vcs']:.3f} | {other} | {d['err']} |")
    out.append("")
    sysrows = [l.rstrip("\n").split("\t") for l in open(sys_tsv) if l.strip()]
    if sysrows:
        out.append("## Syscalls and user/kernel time per response (-c 100)")
        out.append("")
        out.append("`strace -f -c` (slows the client, so batches per epoll_wait grow) and, where perf works, "
                   "`perf stat -e raw_syscalls:sys_enter,user_time,system_time` at full speed.")
        out.append("")
        out.append("| scenario | tool | responses (strace) | all syscalls/resp | hot/resp | epoll_ctl/resp "
                   "| top syscalls/resp | perf: syscalls/resp | perf: user µs/resp | perf: kernel µs/resp |")
        out.append("|---|---|---:|---:|---:|---:|---|---:|---:|---:|")
        for f in sysrows:
            out.append("| " + " | ".join(f) + " |")
        out.append("")
    out.append("## Every round")
    out.append("")
    out.append("| scenario | tool | round | units | elapsed s | user s | sys s | CPU µs/unit | vol. ctx switches "
               "| errors | metrics |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ms = ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(r["m"].items()))
        out.append(f"| {r['group']} | {r['tool']} | {r['round']} | {r['n']:,} | {r['elapsed']:.2f} | {r['user']:.2f} "
                   f"| {r['sys']:.2f} | {r['cpu_us']:.2f} | {r['vcs']:,} | {r['err']} | {ms} |")
    print("\n".join(out))


def verdicts(runs_tsv):
    """Terminal summary: one line per goal."""
    for name, meas, lim, v in goals(medians(load_runs(runs_tsv))):
        print(f"{v:>7}  {name}: {meas} (limit {lim})")


cmd = sys.argv[1]
{"parse": parse, "strace": strace, "perf": perf, "render": render, "verdicts": verdicts}[cmd](*sys.argv[2:])
PY
helper() { python3 "$HELPER" "$@"; }

# ---------------------------------------------------------------------------------------------
# 3. Client rounds: one thread pinned to CLIENT_CPU, external CPU measurement for every tool.
# ---------------------------------------------------------------------------------------------
mkdir -p "$RAW"
RUNS=$RAW/runs.tsv
SYSCALLS=$RAW/syscalls.tsv
COMMANDS=$RAW/commands.txt
: >"$RUNS"
: >"$SYSCALLS"
: >"$COMMANDS"

# Sets CMD (the client command line) and KIND (its parser) for tool $1 in group $2 with
# duration $3 (e.g. 5s) and output file $4. Every tool runs with one thread.
client_cmd() {
  local tool=$1 group=$2 dur=$3 out=$4 conns url addr
  local plain=http://127.0.0.1:$PLAIN_PORT/ tls=https://127.0.0.1:$TLS_PORT/
  local cb=("$CONNBENCH" http -t 1 --cpus "$CLIENT_CPU" -q -d "$dur" --json "$out")
  CMD=()
  case $group in
  "keepalive c="* | "tls c="*)
    conns=${group#*c=}
    if [[ $group == tls* ]]; then url=$tls; else url=$plain; fi
    case $tool in
    wrk) CMD=(wrk -t1 "-c$conns" "-d$dur" "$url") KIND=wrk ;;
    h2load) CMD=(h2load --h1 -t1 -c "$conns" -D "${dur%s}" "$url") KIND=h2load ;;
    oha) CMD=("$OHA" --no-tui --output-format json -c "$conns" -z "$dur" --insecure "$url") KIND=oha ;;
    null)
      CMD=("$NULL_CLIENT" "127.0.0.1:$PLAIN_PORT" -c "$conns" -d "$dur") KIND=null
      # The TLS floor: the same loop sealing and opening one record per request and response.
      [[ $group == tls* ]] && CMD=("$NULL_CLIENT" "127.0.0.1:$TLS_PORT" -c "$conns" -d "$dur" --tls --ca "$WORK/ca.pem")
      ;;
    connbench)
      CMD=("${cb[@]}" "$url" -c "$conns") KIND=cb
      [[ $group == tls* ]] && CMD+=(--ca "$WORK/ca.pem")
      ;;
    esac
    ;;
  "busypoll "*)
    if [[ $group == *builtin ]]; then
      url=http://127.0.0.1:$SERVE_PORT/ addr=127.0.0.1:$SERVE_PORT
    else
      url=$plain addr=127.0.0.1:$PLAIN_PORT
    fi
    case $tool in
    null-blocking) CMD=("$NULL_CLIENT" "$addr" -c 1 -d "$dur" --rtt) KIND=null ;;
    null-spin) CMD=("$NULL_CLIENT" "$addr" -c 1 -d "$dur" --rtt --spin) KIND=null ;;
    connbench) CMD=("${cb[@]}" "$url" -c 1) KIND=cb ;;
    connbench-busypoll) CMD=("${cb[@]}" "$url" -c 1 --busy-poll) KIND=cb ;;
    esac
    ;;
  "rate c=100")
    case $tool in
    connbench-R20000) CMD=("${cb[@]}" "$plain" -c 100 -R 20000) KIND=cb ;;
    connbench-R1000) CMD=("${cb[@]}" "$plain" -c 100 -R 1000) KIND=cb ;;
    oha-q20000) CMD=("$OHA" --no-tui --output-format json -c 100 -q 20000 -z "$dur" "$plain") KIND=oha ;;
    esac
    ;;
  "newconn plain")
    case $tool in
    wrk) CMD=(wrk -t1 "-c$NEWCONN_C" "-d$dur" -H 'Connection: close' "$plain") KIND=wrk ;;
    # Like for like with wrk: the request says Connection: close, so the server closes first
    # and the TIME_WAIT is the server's. connbench-fin closes itself (its default: the request
    # stays keep-alive), so the client's ports pile up in TIME_WAIT and every connect() pays the
    # kernel's search for a free port: said apart, no goal.
    connbench) CMD=("${cb[@]}" "$plain" -c "$NEWCONN_C" --no-keepalive -H 'Connection: close') KIND=cb-conns ;;
    connbench-fin) CMD=("${cb[@]}" "$plain" -c "$NEWCONN_C" --no-keepalive) KIND=cb-conns ;;
    esac
    ;;
  "newconn tls")
    case $tool in
    oha) CMD=("$OHA" --no-tui --output-format json -c "$NEWCONN_C" -z "$dur" --disable-keepalive --insecure "$tls") KIND=oha ;;
    connbench-resumed) CMD=("${cb[@]}" "$tls" -c "$NEWCONN_C" --no-keepalive --ca "$WORK/ca.pem") KIND=cb-conns ;;
    connbench-full) CMD=("${cb[@]}" "$tls" -c "$NEWCONN_C" --no-keepalive --no-resume --ca "$WORK/ca.pem") KIND=cb-conns ;;
    esac
    ;;
  esac
  ((${#CMD[@]})) || die "internal: no command for $tool in '$group'"
}

# run_round GROUP TOOL ROUND: one measured client run under /usr/bin/time, parsed into RUNS.
run_round() {
  local group=$1 tool=$2 round=$3
  local name
  name=$(tr ' =' '__' <<<"$group")-$tool-r$round
  local out=$RAW/$name.out tf=$RAW/$name.time res=$RAW/$name.json
  client_cmd "$tool" "$group" "$DURATION" "$res"
  # oha and the null client print their JSON on stdout; wrk/h2load their text.
  local parse_src=$out
  [[ $KIND == cb || $KIND == cb-conns ]] && parse_src=$res
  ((round == 1)) && echo "[$group] /usr/bin/time -f '%e %U %S %w' taskset -c $CLIENT_CPU ${CMD[*]}" >>"$COMMANDS"
  # /usr/bin/time reads the child's rusage at exit (wait4): user+sys of every thread, the whole
  # process lifetime, identical for every tool. taskset execs, so it adds no process. timeout
  # bounds a hung client (DURATION + 60 s).
  if ! /usr/bin/time -f '%e %U %S %w' -o "$tf" timeout -k 5 $((DUR_S + 60)) \
    taskset -c "$CLIENT_CPU" "${CMD[@]}" >"$out" 2>"$out.err"; then
    fail "$tool failed ([$group] round $round); output in $out and $out.err"
  fi
  local parsed
  parsed=$(helper parse "$KIND" "$parse_src" "$tf") || fail "cannot parse $tool's output ($parse_src)"
  printf '%s\t%s\t%s\t%s\n' "$group" "$tool" "$round" "$parsed" >>"$RUNS"
  log "$(printf '%-18s %-20s r%s ' "$group" "$tool" "$round")$(awk -F'\t' '{ printf "%s units, user %s s, sys %s s, errors %s %s", $1, $2, $3, $6, $7 }' <<<"$parsed")"
  sleep "$SETTLE_S"
}

# rounds GROUP TOOL...: ROUNDS rounds; each round runs every tool, starting one later than the
# round before (A B C, B C A, C A B, …), so drift and other tenants hit every tool alike.
rounds() {
  local group=$1
  shift
  local tools=("$@") n=$# round i
  for ((round = 1; round <= ROUNDS; round++)); do
    for ((i = 0; i < n; i++)); do
      run_round "$group" "${tools[(((round - 1) + i) % n)]}" "$round"
    done
  done
}

# The connect storm: STORM_CONNS connections held against the built-in target (another process),
# with and without --source, alternating; the time until every one is established is sampled
# with `ss` (every 50 ms, pinned to the server's CPU) from the client's start.
storm_round() {
  local tool=$1 round=$2 hold dur name
  name=storm-$tool-r$round
  # A fresh target every round. The storm's requests are /delay/600000000, and the target keeps
  # a connection whose client sent FIN with a reply still owed (HTTP half-close: the client may
  # still read), so the previous round's connections would hold the target's descriptors for
  # the whole delay and the next round would find it unable to accept.
  stop_pid "$SERVE_PID"
  SERVE_PID=""
  start_serve
  local out=$RAW/$name.out res=$RAW/$name.json tf=$RAW/$name.time
  local args=("$CONNBENCH" http "http://127.0.0.1:$SERVE_PORT/delay/600000000" -c "$STORM_CONNS" -t 1
    --cpus "$CLIENT_CPU" --connect-timeout 60s --timeout 600s --allow-nothing-measured -q --json "$res")
  # The hold ends early once all are established; it only bounds a storm that never gets there.
  if [[ $tool == connbench-source ]]; then hold=20; args+=(--source "$STORM_SOURCES"); else hold=45; fi
  args+=(-d "${hold}s")
  ((round == 1)) && echo "[storm] /usr/bin/time -f '%e %U %S %w' taskset -c $CLIENT_CPU ${args[*]}" >>"$COMMANDS"
  local start now reached="" count=0 peak=0
  start=$(date +%s.%N)
  /usr/bin/time -f '%e %U %S %w' -o "$tf" timeout -k 5 $((hold + 90)) taskset -c "$CLIENT_CPU" "${args[@]}" \
    >"$out" 2>"$out.err" &
  CLIENT_PID=$!
  while kill -0 "$CLIENT_PID" 2>/dev/null; do
    count=$(taskset -c "$SERVER_CPU" ss -Htn state established "( dport = :$SERVE_PORT )" | wc -l)
    ((count > peak)) && peak=$count
    if ((count >= STORM_CONNS)); then
      now=$(date +%s.%N)
      reached=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.2f", b - a }')
      break
    fi
    sleep 0.05
  done
  local stopped=0 kid
  if [[ -n $reached ]]; then
    # All established: end the hold early. SIGINT goes to `timeout` (the child of
    # /usr/bin/time, which ignores SIGINT), which passes it on to connbench; connbench then
    # writes its report (interrupted) and exits.
    sleep 1
    kid=$(tr -d " \n" <"/proc/$CLIENT_PID/task/$CLIENT_PID/children" 2>/dev/null || true)
    if [[ $kid =~ ^[0-9]+$ ]]; then
      kill -INT "$kid" 2>/dev/null && stopped=1
    fi
  fi
  if ! wait "$CLIENT_PID" && ! ((stopped)); then
    fail "connbench failed in the storm ($tool, round $round); output in $out.err"
  fi
  CLIENT_PID=""
  [[ -s $res ]] || fail "connbench wrote no report in the storm ($tool, round $round); output in $out.err"
  # Never all established: Infinity (python's json reads it), so the median and the goal see
  # a failed round instead of skipping it.
  [[ -n $reached ]] || reached=Infinity
  local parsed extra
  extra="{\"established_s\": $reached, \"established\": $peak, \"asked\": $STORM_CONNS}"
  parsed=$(helper parse cb-conns "$res" "$tf" "$extra") || fail "cannot parse $res"
  printf '%s\t%s\t%s\t%s\n' storm "$tool" "$round" "$parsed" >>"$RUNS"
  log "storm $tool r$round: all $STORM_CONNS established after ${reached} s (Infinity: never; most seen at once: $peak)"
}

make_certs
if want keepalive || want tls || want rate || want newconn || want syscalls || want busypoll; then
  start_nginx
fi
if want busypoll || want storm; then start_serve; fi

OHA_CTX=()
[[ -x $OHA ]] && OHA_CTX=(oha)
LOAD_BEFORE=$(cat /proc/loadavg)
if want keepalive; then
  for c in 10 100 1000; do rounds "keepalive c=$c" null connbench wrk h2load "${OHA_CTX[@]}"; done
fi
if want busypoll; then
  for t in builtin nginx; do rounds "busypoll $t" null-blocking connbench null-spin connbench-busypoll; done
fi
if want rate; then rounds "rate c=100" connbench-R20000 oha-q20000 connbench-R1000; fi
if want tls; then
  for c in 10 100; do rounds "tls c=$c" connbench null wrk h2load "${OHA_CTX[@]}"; done
fi
if want newconn; then
  rounds "newconn plain" connbench wrk connbench-fin
  rounds "newconn tls" connbench-resumed oha connbench-full
fi
if want storm; then
  for ((round = 1; round <= ROUNDS; round++)); do
    if ((round % 2 == 1)); then order=(connbench-source connbench-nosource); else order=(connbench-nosource connbench-source); fi
    for tool in "${order[@]}"; do storm_round "$tool" "$round"; done
  done
fi

# ---------------------------------------------------------------------------------------------
# 4. Syscalls and user/kernel time per response (-c 100): strace -f -c and, where perf works,
#    perf stat at full speed.
# ---------------------------------------------------------------------------------------------
PERF_OK=0
if command -v perf >/dev/null 2>&1 &&
  perf stat -e raw_syscalls:sys_enter,user_time,system_time -x, -o /dev/null -- true >/dev/null 2>&1; then
  PERF_OK=1
fi
if want syscalls; then
  for scen in plain tls; do
    if [[ $scen == plain ]]; then tools=(null connbench wrk); group="keepalive c=100"; else tools=(null connbench wrk); group="tls c=100"; fi
    for tool in "${tools[@]}"; do
      name=syscalls-$tool-$scen
      client_cmd "$tool" "$group" "$STRACE_DURATION" "$RAW/$name.json"
      kind=$KIND src=$RAW/$name.out
      [[ $KIND == cb ]] && src=$RAW/$name.json
      log "strace -f -c: $tool $scen -c 100 $STRACE_DURATION"
      echo "[syscalls $scen] taskset -c $CLIENT_CPU strace -f -c -o RUN.strace ${CMD[*]}" >>"$COMMANDS"
      taskset -c "$CLIENT_CPU" strace -f -c -o "$RAW/$name.strace" "${CMD[@]}" >"$RAW/$name.out" 2>"$RAW/$name.err" ||
        fail "$tool under strace failed; output in $RAW/$name.out"
      strace_line=$(helper strace "$RAW/$name.strace" "$kind" "$src")
      sleep "$SETTLE_S"
      perf_cols=$'-\t-\t-'
      if ((PERF_OK)); then
        pname=perf-$tool-$scen
        client_cmd "$tool" "$group" "$STRACE_DURATION" "$RAW/$pname.json"
        src=$RAW/$pname.out
        [[ $KIND == cb ]] && src=$RAW/$pname.json
        log "perf stat: $tool $scen -c 100 $STRACE_DURATION"
        echo "[syscalls $scen] perf stat -e raw_syscalls:sys_enter,user_time,system_time -x, -o RUN.perf -- taskset -c $CLIENT_CPU ${CMD[*]}" >>"$COMMANDS"
        if perf stat -e raw_syscalls:sys_enter,user_time,system_time -x, -o "$RAW/$pname.perf" -- \
          taskset -c "$CLIENT_CPU" "${CMD[@]}" >"$RAW/$pname.out" 2>"$RAW/$pname.err"; then
          perf_cols=$(helper perf "$RAW/$pname.perf" "$kind" "$src")
        fi
        sleep "$SETTLE_S"
      fi
      printf '%s -c 100\t%s\t%s\t%s\n' "$scen" "$tool" "$strace_line" "$perf_cols" >>"$SYSCALLS"
    done
  done
fi
LOAD_AFTER=$(cat /proc/loadavg)

[[ -f $WORK/nginx.conf ]] && cp "$WORK/nginx.conf" "$RAW/nginx.conf"
stop_pid "$NGINX_PID"
NGINX_PID=""
stop_pid "$SERVE_PID"
SERVE_PID=""

# ---------------------------------------------------------------------------------------------
# 5. Report: the same markdown in $OUT and on stdout, with everything needed to rerun it, and
#    the goal verdicts last on the terminal.
# ---------------------------------------------------------------------------------------------
[[ -s $RUNS || -s $SYSCALLS ]] || fail "nothing was measured"
TABLES=$(helper render "$RUNS" "$SYSCALLS")
CLOCKSOURCE=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
version() { "$@" 2>&1 | head -n 1 || true; }

mkdir -p "$(dirname "$OUT")"
{
  echo "# connbench, the null client and the peers ($STAMP)"
  echo
  echo "Method: docs/compare.md. Scenarios: $SCENARIOS. Median of $ROUNDS rounds of $DURATION each,"
  echo "the tools of a scenario interleaved (each round starts one tool later). Servers: nginx (1"
  echo "worker) and the built-in target (\`connbench serve\`, 1 loop, another process), pinned to CPU"
  echo "$SERVER_CPU; clients: 1 thread pinned to CPU $CLIENT_CPU. nginx body: \`$BODY\`; TLS 1.3,"
  echo "TLS_AES_128_GCM_SHA256. Client CPU = user+sys of the whole client process from"
  echo "\`/usr/bin/time\` ÷ responses (or connections)."
  echo
  echo "$TABLES"
  echo
  echo "## Host and tools"
  echo
  echo "- nproc: $(nproc); kernel: $(uname -r); clocksource: $CLOCKSOURCE; CPU: ${CPU_MODEL:-unknown}"
  echo "- load average before: $LOAD_BEFORE; after: $LOAD_AFTER"
  echo "- connbench: $(version "$CONNBENCH" --version) ($CONNBENCH); null client: $NULL_CLIENT"
  echo "- wrk: $(version wrk -v); h2load: $(version h2load --version); oha: $( [[ -x $OHA ]] && version "$OHA" --version || echo 'not installed')"
  echo "- nginx: $(version "$NGINX" -v); $(version strace -V); $(version openssl version)"
  echo "- perf counts: $([[ $PERF_OK == 1 ]] && echo yes || echo 'not available'); fd limit: $(ulimit -n)"
  echo
  echo "## Commands (first round of each; the same lines in every round)"
  echo
  echo '```'
  echo "taskset -c $SERVER_CPU $NGINX -p WORKDIR/ -c WORKDIR/nginx.conf -e WORKDIR/error.log   # config: $RAW/nginx.conf"
  echo "taskset -c $SERVER_CPU $CONNBENCH serve --threads 1 --cpus $SERVER_CPU --http 0 --no-https --for 2h"
  cat "$COMMANDS"
  echo '```'
  echo
  echo "Raw outputs (client output, JSON, time, strace, perf): $RAW"
} >"$OUT"

cat "$OUT"
echo
echo "Goals (issue 11), from this run:"
helper verdicts "$RUNS"
log "report written to $OUT"
