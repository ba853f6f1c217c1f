#!/usr/bin/env bash
# compare.sh: connbench and wrk side by side against the same nginx, on the same CPU, measured
# the same way. It owns the whole comparison: the packages it needs, a private nginx (plain +
# TLS, 127.0.0.1 only, stopped by its PID), the alternating client rounds, the syscall counts and
# the markdown report. It must not touch anything outside its temp dir and $OUT (plus apt when a
# tool is missing), send traffic anywhere but 127.0.0.1, or stop any process it did not start.
#
# Usage: scripts/compare.sh                     (builds target/release/connbench)
#        CONNBENCH=/path/to/connbench ROUNDS=3 DURATION=5s OUT=result.md scripts/compare.sh
# Method and caveats: docs/compare.md.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
STRACE_DURATION=${STRACE_DURATION:-3s}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT_MIN=${PORT_MIN:-18000}
PORT_MAX=${PORT_MAX:-18999}
CONNECTIONS=(10 100)
# Pause between runs so the previous client's sockets are closed on both sides before the next
# run connects; short enough not to matter for the total time.
SETTLE_S=0.5

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=${OUT:-$ROOT/bench-results/compare-$STAMP.md}
RAW=${OUT%.md}.raw

die() {
  echo "compare.sh: $*" >&2
  exit 1
}
log() { echo "== $*" >&2; }

# Every value that ends up on a command line is checked first, so a typo fails here with a
# message instead of as a strange error from one of the tools halfway through.
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer (got '$ROUNDS')"
# Both wrk and connbench accept N s / N m; they disagree on other units, so allow only these.
[[ $DURATION =~ ^[1-9][0-9]*[sm]$ ]] || die "DURATION must look like 5s or 1m (got '$DURATION')"
[[ $STRACE_DURATION =~ ^[1-9][0-9]*[sm]$ ]] || die "STRACE_DURATION must look like 3s (got '$STRACE_DURATION')"
[[ $SERVER_CPU =~ ^[0-9]+$ && $CLIENT_CPU =~ ^[0-9]+$ ]] || die "SERVER_CPU/CLIENT_CPU must be CPU numbers"
[[ $SERVER_CPU != "$CLIENT_CPU" ]] || die "SERVER_CPU and CLIENT_CPU must differ"
if ! [[ $PORT_MIN =~ ^[0-9]+$ && $PORT_MAX =~ ^[0-9]+$ ]] ||
  ((PORT_MIN <= 1024 || PORT_MIN >= PORT_MAX || PORT_MAX > 65535)); then
  die "PORT_MIN/PORT_MAX must be a range inside 1025-65535"
fi

# ---------------------------------------------------------------------------------------------
# 1. Tools: install only what is missing, from Debian's archive, so a second run does nothing.
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
  command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
  command -v strace >/dev/null 2>&1 || missing+=(strace)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
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

taskset -c "$SERVER_CPU" true 2>/dev/null || die "cannot pin to SERVER_CPU=$SERVER_CPU (nproc: $(nproc))"
taskset -c "$CLIENT_CPU" true 2>/dev/null || die "cannot pin to CLIENT_CPU=$CLIENT_CPU (nproc: $(nproc))"

if [[ -z ${CONNBENCH:-} ]]; then
  log "building connbench (cargo build --release)"
  cargo build --release --manifest-path "$ROOT/Cargo.toml"
  CONNBENCH=$ROOT/target/release/connbench
fi
[[ -x $CONNBENCH ]] || die "CONNBENCH=$CONNBENCH is not an executable"

# ---------------------------------------------------------------------------------------------
# 2. nginx: private temp dir, one worker on SERVER_CPU, stopped by PID on any exit.
# ---------------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/connbench-compare.XXXXXX")
NGINX_PID=""

stop_nginx() {
  [[ -n $NGINX_PID ]] || return 0
  if kill -0 "$NGINX_PID" 2>/dev/null; then
    kill -TERM "$NGINX_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.1
    done
    # TERM is nginx's fast shutdown and normally takes well under a second; KILL only if it hangs.
    kill -0 "$NGINX_PID" 2>/dev/null && kill -KILL "$NGINX_PID" 2>/dev/null
  fi
  wait "$NGINX_PID" 2>/dev/null || true
  NGINX_PID=""
}
cleanup() {
  stop_nginx
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
        # One protocol and one AEAD for both clients, whatever their default preferences, so
        # TLS CPU per request compares the same record cipher.
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
    stop_nginx
  done
  die "nginx failed to start; last error log: $(cat "$WORK/error.log")"
}

# ---------------------------------------------------------------------------------------------
# Parsing and reporting live in one python helper so that bash only runs things.
# ---------------------------------------------------------------------------------------------
HELPER=$WORK/compare_helper.py
cat >"$HELPER" <<'PY'
"""Parse wrk / connbench / time / strace / perf output and render the markdown report."""
import json, re, statistics, sys


def cpu_from_time(path):
    """GNU time -f '%e %U %S %w' -o FILE: the last line (a 'Command exited' line may precede).
    %w = voluntary context switches: how often the client blocked (in epoll_wait) for lack of
    work, which is what makes a client faster than its server pay wake-up costs per request."""
    lines = [l for l in open(path).read().splitlines() if l.strip()]
    elapsed, user, sys_, vcs = lines[-1].split()
    return float(elapsed), float(user), float(sys_), int(vcs)


def parse_wrk(out_path, time_path):
    text = open(out_path).read()
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    rps = re.search(r"^Requests/sec:\s*([\d.]+)", text, re.M)
    if not m or not rps:
        sys.exit(f"cannot parse wrk output {out_path}")
    requests = int(m.group(1))
    errors = 0
    se = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if se:
        errors += sum(int(x) for x in se.groups())
    n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if n2:
        errors += int(n2.group(1))
    _, user, sys_, vcs = cpu_from_time(time_path)
    print(f"{float(rps.group(1)):.0f}\t{requests}\t{user:.2f}\t{sys_:.2f}\t-\t{errors}\t{vcs}")


def parse_cb(json_path, time_path):
    d = json.load(open(json_path))
    responses = d["counters"]["responses"]
    rps = responses / d["duration_s"] if d["duration_s"] > 0 else 0.0
    r = d["responses"]
    errors = d["errors"]["total"] + sum(r[k] for k in r if k != "2xx")
    own = d["client"].get("cpu_per_request_us")
    own_s = f"{own:.2f}" if isinstance(own, (int, float)) else "-"
    _, user, sys_, vcs = cpu_from_time(time_path)
    print(f"{rps:.0f}\t{responses}\t{user:.2f}\t{sys_:.2f}\t{own_s}\t{errors}\t{vcs}")


def requests_of(kind, path):
    if kind == "cb":
        return json.load(open(path))["counters"]["responses"]
    m = re.search(r"^\s*(\d+) requests in ", open(path).read(), re.M)
    if not m:
        sys.exit(f"cannot parse wrk output {path}")
    return int(m.group(1))


# The classic five, plus their vectored / msg / pwait twins: a tool that switches from write to
# writev (connbench does, under TLS) must not drop out of the hot-path count.
HOT = ("sendto", "write", "recvfrom", "read", "epoll_wait",
       "writev", "sendmsg", "readv", "recvmsg", "epoll_pwait", "epoll_pwait2")


def parse_strace(path, kind, out_path):
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


def parse_perf(path, kind, out_path):
    """perf stat -x, : 'count,,raw_syscalls:sys_enter,...'."""
    for line in open(path):
        f = line.strip().split(",")
        if len(f) > 2 and f[2] == "raw_syscalls:sys_enter" and f[0].isdigit():
            n = requests_of(kind, out_path)
            print(f"{n}\t{int(f[0]) / n:.2f}" if n else "0\t-")
            return
    print("-\t-")


def render(runs_tsv, sys_tsv):
    """Markdown: the medians table, the syscall table, then every round."""
    runs = [l.rstrip("\n").split("\t") for l in open(runs_tsv) if l.strip()]
    # scenario tool round rps requests user sys own_us errors voluntary_ctx_switches
    scen_order = []
    by = {}
    for s, tool, rnd, rps, req, user, sys_, own, err, vcs in runs:
        if s not in scen_order:
            scen_order.append(s)
        cpu_us = (float(user) + float(sys_)) / int(req) * 1e6 if int(req) else float("nan")
        vcs_req = int(vcs) / int(req) if int(req) else float("nan")
        by.setdefault((s, tool), []).append((float(rps), cpu_us, own, int(err), vcs_req))
    out = []
    out.append("| scenario | tool | median req/s | median client CPU µs/req (external) "
               "| connbench self-reported µs/req | CPU/req ratio connbench/wrk | median voluntary ctx switches/req "
               "| errors+non-2xx (all rounds) |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    verdicts = []
    for s in scen_order:
        med = {}
        for tool in ("wrk", "connbench"):
            rows = by.get((s, tool), [])
            if not rows:
                continue
            rps = statistics.median(r[0] for r in rows)
            cpu = statistics.median(r[1] for r in rows)
            owns = [float(r[2]) for r in rows if r[2] != "-"]
            own = f"{statistics.median(owns):.2f}" if owns else "—"
            err = sum(r[3] for r in rows)
            vcs = statistics.median(r[4] for r in rows)
            med[tool] = cpu
            ratio = ""
            if tool == "connbench" and "wrk" in med and med["wrk"] > 0:
                ratio = f"**{cpu / med['wrk']:.2f}**"
                verdicts.append((s, cpu, med["wrk"], cpu / med["wrk"]))
            out.append(f"| {s} | {tool} | {rps:,.0f} | {cpu:.2f} | {own if tool == 'connbench' else '—'} "
                       f"| {ratio} | {vcs:.3f} | {err} |")
    out.append("")
    for s, cb, wrk, ratio in verdicts:
        # Judge the ratio as printed (2 decimals) so the sentence never contradicts the table.
        shown = round(ratio, 2)
        word = "cheaper than" if shown < 1 else ("about as expensive as" if shown == 1 else "MORE EXPENSIVE than")
        out.append(f"- {s}: connbench {cb:.2f} µs/req vs wrk {wrk:.2f} µs/req: connbench is {word} wrk "
                   f"(ratio {ratio:.2f}).")
    out.append("")
    sysrows = [l.rstrip("\n").split("\t") for l in open(sys_tsv) if l.strip()]
    out.append("Syscalls per response (-c 100, under `strace -f -c`; last column: "
               "`perf stat -e raw_syscalls:sys_enter` at full speed, where perf works):")
    out.append("")
    out.append("| scenario | tool | responses (strace run) | all syscalls/resp "
               "| hot (send/write/recv/read incl. vectored + epoll_wait)/resp "
               "| epoll_ctl/resp | top syscalls/resp | perf: all syscalls/resp |")
    out.append("|---|---|---:|---:|---:|---:|---|---:|")
    for scen, tool, n, total, hot, ctl, top, perf in sysrows:
        out.append(f"| {scen} | {tool} | {n} | {total} | {hot} | {ctl} | {top} | {perf} |")
    out.append("")
    out.append("Every round (CPU = user+sys from /usr/bin/time, whole process):")
    out.append("")
    out.append("| scenario | tool | round | req/s | requests | user s | sys s | CPU µs/req "
               "| self-reported µs/req | voluntary ctx switches | errors |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s, tool, rnd, rps, req, user, sys_, own, err, vcs in runs:
        cpu_us = (float(user) + float(sys_)) / int(req) * 1e6 if int(req) else float("nan")
        out.append(f"| {s} | {tool} | {rnd} | {int(rps):,} | {int(req):,} | {user} | {sys_} | {cpu_us:.2f} "
                   f"| {own} | {int(vcs):,} | {err} |")
    print("\n".join(out))


cmd = sys.argv[1]
{"wrk": parse_wrk, "cb": parse_cb, "strace": parse_strace, "perf": parse_perf, "render": render}[cmd](*sys.argv[2:])
PY
helper() { python3 "$HELPER" "$@"; }

# ---------------------------------------------------------------------------------------------
# 3. Client rounds: same CPU, one thread, external CPU measurement for both tools.
# ---------------------------------------------------------------------------------------------
mkdir -p "$RAW"
RUNS=$RAW/runs.tsv
SYSCALLS=$RAW/syscalls.tsv
: >"$RUNS"
: >"$SYSCALLS"

# Sets CMD to the exact client command line for tool $1, scenario $2 (plain|tls), $3 connections,
# $4 duration, $5 JSON path (connbench only). The same arrays are run, straced and reported.
client_cmd() {
  local tool=$1 scen=$2 conns=$3 dur=$4 json=${5:-}
  local url
  if [[ $scen == tls ]]; then url=https://127.0.0.1:$TLS_PORT/; else url=http://127.0.0.1:$PLAIN_PORT/; fi
  if [[ $tool == wrk ]]; then
    CMD=(wrk -t1 "-c$conns" "-d$dur" "$url")
  else
    CMD=("$CONNBENCH" http "$url" -c "$conns" -d "$dur" --cpus "$CLIENT_CPU" -q --json "$json")
    [[ $scen == tls ]] && CMD+=(--ca "$WORK/ca.pem")
  fi
  return 0
}

run_round() {
  local tool=$1 scen=$2 conns=$3 round=$4
  local name=$tool-$scen-c$conns-r$round
  local out=$RAW/$name.out tf=$RAW/$name.time json=$RAW/$name.json
  client_cmd "$tool" "$scen" "$conns" "$DURATION" "$json"
  # /usr/bin/time reads the child's rusage at exit (wait4): user+sys of every thread, the whole
  # process lifetime, identical for both tools. taskset execs, so it adds no process.
  if ! /usr/bin/time -f '%e %U %S %w' -o "$tf" taskset -c "$CLIENT_CPU" "${CMD[@]}" >"$out" 2>&1; then
    die "$tool failed ($scen, -c $conns, round $round); output in $out"
  fi
  local parsed
  if [[ $tool == wrk ]]; then parsed=$(helper wrk "$out" "$tf"); else parsed=$(helper cb "$json" "$tf"); fi
  printf '%s -c %s\t%s\t%s\t%s\n' "$scen" "$conns" "$tool" "$round" "$parsed" >>"$RUNS"
  log "$(printf '%-5s -c %-3s round %s %-9s ' "$scen" "$conns" "$round" "$tool")$(cut -f1,2,3,4 <<<"$parsed" |
    awk -F'\t' '{ printf "%s req/s, %s requests, user %s s, sys %s s", $1, $2, $3, $4 }')"
  sleep "$SETTLE_S"
}

make_certs
start_nginx

COMMANDS=()
for scen in plain tls; do
  for conns in "${CONNECTIONS[@]}"; do
    for tool in wrk connbench; do
      client_cmd "$tool" "$scen" "$conns" "$DURATION" "RUN.json"
      COMMANDS+=("/usr/bin/time -f '%e %U %S %w' -o RUN.time taskset -c $CLIENT_CPU ${CMD[*]}")
    done
  done
done

LOAD_BEFORE=$(cat /proc/loadavg)
for scen in plain tls; do
  for conns in "${CONNECTIONS[@]}"; do
    for ((round = 1; round <= ROUNDS; round++)); do
      # Alternate who goes first so drift (thermal, other tenants, nginx warming) hits both.
      if ((round % 2 == 1)); then order=(wrk connbench); else order=(connbench wrk); fi
      for tool in "${order[@]}"; do
        run_round "$tool" "$scen" "$conns" "$round"
      done
    done
  done
done

# ---------------------------------------------------------------------------------------------
# 4. Syscalls per response (-c 100): strace -f -c (slows the client a lot, so batching per
#    epoll_wait grows) and, where perf works, a full-speed count of raw_syscalls:sys_enter as a
#    cross-check.
# ---------------------------------------------------------------------------------------------
PERF_OK=0
if command -v perf >/dev/null 2>&1 &&
  perf stat -e raw_syscalls:sys_enter -x, -o /dev/null -- true >/dev/null 2>&1; then
  PERF_OK=1
fi
# Plain is the reference case; TLS is counted too because there connbench writes with writev.
for scen in plain tls; do
  for tool in wrk connbench; do
    name=$tool-$scen-c100-strace
    client_cmd "$tool" "$scen" 100 "$STRACE_DURATION" "$RAW/$name.json"
    log "strace -f -c: $tool $scen -c 100 $STRACE_DURATION"
    taskset -c "$CLIENT_CPU" strace -f -c -o "$RAW/$name.strace" "${CMD[@]}" >"$RAW/$name.out" 2>&1 ||
      die "$tool under strace failed; output in $RAW/$name.out"
    if [[ $tool == wrk ]]; then kind=wrk src=$RAW/$name.out; else kind=cb src=$RAW/$name.json; fi
    strace_line=$(helper strace "$RAW/$name.strace" "$kind" "$src")
    sleep "$SETTLE_S"
    perf_col="-"
    if ((PERF_OK)); then
      pname=$tool-$scen-c100-perf
      client_cmd "$tool" "$scen" 100 "$STRACE_DURATION" "$RAW/$pname.json"
      log "perf stat syscalls: $tool $scen -c 100 $STRACE_DURATION"
      if perf stat -e raw_syscalls:sys_enter -x, -o "$RAW/$pname.perf" -- \
        taskset -c "$CLIENT_CPU" "${CMD[@]}" >"$RAW/$pname.out" 2>&1; then
        if [[ $tool == wrk ]]; then src=$RAW/$pname.out; else src=$RAW/$pname.json; fi
        perf_col=$(helper perf "$RAW/$pname.perf" "$kind" "$src" | cut -f2)
      fi
      sleep "$SETTLE_S"
    fi
    printf '%s -c 100\t%s\t%s\t%s\n' "$scen" "$tool" "$strace_line" "$perf_col" >>"$SYSCALLS"
  done
done
LOAD_AFTER=$(cat /proc/loadavg)

cp "$WORK/nginx.conf" "$RAW/nginx.conf"
stop_nginx

# ---------------------------------------------------------------------------------------------
# 5. Report: the same markdown on stdout and in $OUT, with everything needed to rerun it.
# ---------------------------------------------------------------------------------------------
TABLES=$(helper render "$RUNS" "$SYSCALLS")
CLOCKSOURCE=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null || echo unknown)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)
WRK_VERSION=$(wrk -v 2>&1 | head -n 1 || true)
NGINX_VERSION=$("$NGINX" -v 2>&1 | head -n 1 || true)
CB_VERSION=$("$CONNBENCH" --version 2>&1 | head -n 1 || true)
STRACE_VERSION=$(strace -V 2>&1 | head -n 1 || true)
OPENSSL_VERSION=$(openssl version 2>&1 || true)

mkdir -p "$(dirname "$OUT")"
{
  echo "# connbench vs wrk against nginx ($STAMP)"
  echo
  echo "Method: docs/compare.md. Median of $ROUNDS rounds of $DURATION each, wrk and connbench"
  echo "alternating (odd rounds wrk first, even rounds connbench first). nginx: 1 worker pinned to"
  echo "CPU $SERVER_CPU; clients: 1 thread pinned to CPU $CLIENT_CPU. Body: \`$BODY\`; TLS 1.3,"
  echo "TLS_AES_128_GCM_SHA256 for both. Client CPU = user+sys of the whole client process from"
  echo "\`/usr/bin/time\` (rusage at exit, 10 ms resolution) ÷ completed responses; voluntary context"
  echo "switches (\`%w\`) show how often a client blocked waiting for the server."
  echo
  echo "$TABLES"
  echo
  echo "## Host and tools"
  echo
  echo "- nproc: $(nproc); kernel: $(uname -r); clocksource: $CLOCKSOURCE; CPU: ${CPU_MODEL:-unknown}"
  echo "- load average before: $LOAD_BEFORE; after: $LOAD_AFTER"
  echo "- connbench: $CB_VERSION ($CONNBENCH)"
  echo "- wrk: $WRK_VERSION"
  echo "- nginx: $NGINX_VERSION"
  echo "- $STRACE_VERSION; $OPENSSL_VERSION; perf syscall count: $([[ $PERF_OK == 1 ]] && echo yes || echo 'not available')"
  echo
  echo "## Commands"
  echo
  echo '```'
  echo "taskset -c $SERVER_CPU $NGINX -p WORKDIR/ -c WORKDIR/nginx.conf -e WORKDIR/error.log   # config: $RAW/nginx.conf"
  printf '%s\n' "${COMMANDS[@]}"
  for scen in plain tls; do
    for tool in wrk connbench; do
      client_cmd "$tool" "$scen" 100 "$STRACE_DURATION" "RUN.json"
      echo "taskset -c $CLIENT_CPU strace -f -c -o RUN.strace ${CMD[*]}"
      if ((PERF_OK)); then echo "perf stat -e raw_syscalls:sys_enter -x, -o RUN.perf -- taskset -c $CLIENT_CPU ${CMD[*]}"; fi
    done
  done
  echo '```'
  echo
  echo "Raw outputs (wrk text, connbench JSON, time, strace, perf): $RAW"
} >"$OUT"

cat "$OUT"
log "report written to $OUT"
