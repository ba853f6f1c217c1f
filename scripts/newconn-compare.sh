#!/usr/bin/env bash
# newconn-compare.sh: the cost of a NEW connection, connbench beside wrk (plain) and oha (TLS 1.3
# with resumption), side by side in one run, against the same private nginx (issue 11's goals:
# plain ≤ 0.9× wrk's client CPU per connection, TLS ≤ 0.7× oha's).
#
#   scripts/newconn-compare.sh                      # ROUNDS=5 DURATION=5 CONNS=10
#   ROUNDS=7 DURATION=10 scripts/newconn-compare.sh
#
# Method (docs/compare.md's, for connections instead of requests):
# - nginx: one worker pinned to SERVER_CPU, loopback only, TLS 1.3 with one AEAD, session
#   tickets on (nginx's default), stopped by PID on any exit.
# - every client pinned to CLIENT_CPU with taskset, one thread, CONNS connections, DURATION
#   seconds, one request per connection:
#     wrk -t1 -cCONNS -H 'Connection: close'          (the server closes each connection)
#     oha --disable-keepalive                          (TLS; its rustls resumes by default)
#     connbench http --no-keepalive -cCONNS -t1        (connbench closes after the response)
# - client CPU per connection = user + sys of the whole process (/usr/bin/time) ÷ connections
#   that carried a response (wrk: its request count; oha: its 200s; connbench: its responses).
# - ROUNDS interleaved rounds (odd rounds the peer first, even rounds connbench first), medians.
# - then one short run of each under `strace -f -c` for syscalls per connection.
# Peers: wrk, nginx, strace and openssl from the distribution; oha from
# `cargo install --locked oha --root /work/peers` (OHA=path to override). Without oha the TLS
# rows say "no oha" and the plain rows still run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
CONNS=${CONNS:-10}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
OHA=${OHA:-$(command -v oha || echo /work/peers/bin/oha)}
for v in ROUNDS DURATION CONNS SERVER_CPU CLIENT_CPU; do
  [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 || $v == *CPU ]] ||
    { echo "newconn-compare: $v must be a positive whole number (got '${!v}')" >&2; exit 2; }
done
for t in wrk nginx strace openssl jq taskset /usr/bin/time; do
  command -v "$t" >/dev/null 2>&1 || [[ -x /usr/sbin/$t ]] ||
    { echo "newconn-compare: needs $t (apt-get install wrk nginx-light strace openssl jq time)" >&2; exit 2; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAVE_OHA=0
[[ -x $OHA ]] && HAVE_OHA=1

cargo build --release --bin connbench >&2
CB=$PWD/target/release/connbench
WORK=$(mktemp -d)
NPID=
cleanup() {
  if [[ -n $NPID ]]; then kill -TERM "$NPID" 2>/dev/null || true; wait "$NPID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Two free loopback ports (bound and released; nginx binds them right after).
read -r PLAIN TLSP < <(python3 -c '
import socket
s=[socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1",0))
print(*[x.getsockname()[1] for x in s])')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -addext basicConstraints=critical,CA:FALSE 2>/dev/null
mkdir -p "$WORK"/{body,proxy,fastcgi,uwsgi,scgi}
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/body; proxy_temp_path $WORK/proxy; fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi; scgi_temp_path $WORK/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    default_type application/json;
    server {
        listen 127.0.0.1:$PLAIN backlog=4096;
        listen 127.0.0.1:$TLSP ssl backlog=4096;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.3;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256;
        location / { return 200 '{"ok":true,"msg":"hello bench"}'; }
    }
}
EOF
taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/" -c "$WORK/nginx.conf" -e "$WORK/error.log" >"$WORK/nginx.out" 2>&1 &
NPID=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PLAIN") 2>/dev/null && break; sleep 0.1; done
(exec 3<>"/dev/tcp/127.0.0.1/$PLAIN") 2>/dev/null || { echo "newconn-compare: nginx did not start: $(cat "$WORK/error.log")" >&2; exit 1; }
PURL=http://127.0.0.1:$PLAIN/
SURL=https://127.0.0.1:$TLSP/

# timed NAME CMD...: run CMD pinned to CLIENT_CPU under /usr/bin/time; "user sys" in NAME.time.
timed() {
  local name=$1; shift
  /usr/bin/time -f '%U %S' -o "$WORK/$name.time" taskset -c "$CLIENT_CPU" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" ||
    { echo "newconn-compare: $name failed: $(tail -3 "$WORK/$name.err")" >&2; return 1; }
}
cpu_s() { awk '{print $1 + $2}' "$WORK/$1.time"; }

wrk_run() { timed "$1" wrk -t1 -c"$CONNS" -d"${DURATION}s" -H 'Connection: close' "$PURL"; }
wrk_conns() { awk '/requests in/ {print $1}' "$WORK/$1.out"; }
oha_json_flag() { if "$OHA" --help 2>/dev/null | grep -q -- '--output-format'; then echo "--output-format json"; else echo "--json"; fi; }
oha_run() {
  # shellcheck disable=SC2046
  timed "$1" "$OHA" --no-tui $(oha_json_flag) -z "${DURATION}s" -c "$CONNS" --disable-keepalive --insecure "$SURL"
}
oha_conns() { jq '.statusCodeDistribution["200"] // 0' "$WORK/$1.out"; }
cb_run() { # NAME URL [extra...]
  local name=$1 url=$2; shift 2
  timed "$name" "$CB" http "$url" --no-keepalive -c "$CONNS" -t 1 --no-pin -d "${DURATION}s" -q \
    --json "$WORK/$name.json" "$@"
}
cb_conns() { jq '.counters.responses' "$WORK/$1.json"; }

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
per_conn_us() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 * 1e6 / $2; else print "nan" }'; }

declare -A US
for r in $(seq "$ROUNDS"); do
  for pair in "plain wrk" "tls oha"; do
    set -- $pair
    local_case=$1 peer=$2
    [[ $peer == oha && $HAVE_OHA == 0 ]] && continue
    order=(peer cb)
    ((r % 2 == 0)) && order=(cb peer)
    for who in "${order[@]}"; do
      name=$local_case-$who-$r
      if [[ $who == peer ]]; then
        "${peer}_run" "$name"; n=$("${peer}_conns" "$name")
      elif [[ $local_case == plain ]]; then
        cb_run "$name" "$PURL"; n=$(cb_conns "$name")
      else
        cb_run "$name" "$SURL" --insecure; n=$(cb_conns "$name")
        jq -r '"\(.tls.handshakes_full // 0) \(.tls.handshakes_resumed // 0)"' "$WORK/$name.json" >"$WORK/$name.hs"
      fi
      US[$name]=$(per_conn_us "$(cpu_s "$name")" "$n")
      if [[ $who == cb ]]; then
        # connbench's own figure: CPU of the measured run only, without the TIME_WAIT census of
        # /proc/net/tcp it takes before and after (which grows with every socket on the host).
        US[$name-run]=$(per_conn_us "$(jq '.client.cpu_user_s + .client.cpu_sys_s' "$WORK/$name.json")" "$n")
      fi
      echo "round $r $name: $n connections, $(cpu_s "$name") s CPU, ${US[$name]} µs/connection" >&2
    done
  done
done

med() { local suffix=${2-}; for r in $(seq "$ROUNDS"); do echo "${US[$1-$r$suffix]}"; done | median; }
verdict() { awk -v a="$1" -v b="$2" -v g="$3" 'BEGIN { r = a / b; printf "%.2f %s", r, (r <= g ? "PASS" : "FAIL") }'; }

# Syscalls per connection: one run of each under strace (slower, so only the counts matter).
sc_per_conn() { # NAME CONNECTIONS: "calls/connection (top calls)"
  awk -v n="$2" 'NR > 2 && $NF != "total" && $0 !~ /^-/ { c = ($4 ~ /^[0-9]+$/) ? $4 : 0; if (c > 0) { tot += c; row[$NF] = c } }
    END { printf "%.2f |", tot / n; for (k in row) if (row[k] / n >= 0.5) printf " %s %.2f", k, row[k] / n; print "" }' "$WORK/$1.strace"
}
straced() { local name=$1; shift; strace -f -c -o "$WORK/$name.strace" taskset -c "$CLIENT_CPU" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; }
straced sc-wrk wrk -t1 -c"$CONNS" -d2s -H 'Connection: close' "$PURL"
straced sc-cb "$CB" http "$PURL" --no-keepalive -c "$CONNS" -t 1 --no-pin -n 3000 -q --json "$WORK/sc-cb.json"

echo
echo "# New connections: client CPU per connection (µs), medians of $ROUNDS interleaved rounds"
echo "host: $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); nginx $("$NGINX" -v 2>&1 | sed 's/.*\///'), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)$([[ $HAVE_OHA == 1 ]] && echo ", $("$OHA" --version)")"
echo "(connbench: whole process, as /usr/bin/time sees it; run: its report's CPU of the measured run)"
printf '%-34s %10s %10s %10s %16s %16s\n' case peer connbench run "ratio (goal)" "run ratio"
p=$(med plain-peer); c=$(med plain-cb); cr=$(med plain-cb -run)
printf '%-34s %10s %10s %10s %16s %16s\n' "plain, -c $CONNS, 1 request/conn (wrk)" "$p" "$c" "$cr" "$(verdict "$c" "$p" 0.9) (≤0.9)" "$(verdict "$cr" "$p" 0.9)"
if [[ $HAVE_OHA == 1 ]]; then
  p=$(med tls-peer); c=$(med tls-cb); cr=$(med tls-cb -run)
  printf '%-34s %10s %10s %10s %16s %16s\n' "TLS 1.3 resumed, -c $CONNS (oha)" "$p" "$c" "$cr" "$(verdict "$c" "$p" 0.7) (≤0.7)" "$(verdict "$cr" "$p" 0.7)"
  echo "connbench TLS handshakes (full resumed), last round: $(cat "$WORK/tls-cb-$ROUNDS.hs")"
else
  echo "TLS row: no oha at $OHA (cargo install --locked oha --root /work/peers)"
fi
echo
echo "syscalls per connection (strace -f -c, whole process incl. the /proc/net/tcp reads; total | calls ≥ 0.5 per connection):"
echo "  wrk:       $(sc_per_conn sc-wrk "$(wrk_conns sc-wrk)")"
echo "  connbench: $(sc_per_conn sc-cb "$(jq '.counters.responses' "$WORK/sc-cb.json")")"
echo
echo "commands: taskset -c $CLIENT_CPU wrk -t1 -c$CONNS -d${DURATION}s -H 'Connection: close' URL"
echo "          taskset -c $CLIENT_CPU $OHA --no-tui -z ${DURATION}s -c $CONNS --disable-keepalive --insecure URL"
echo "          taskset -c $CLIENT_CPU connbench http URL --no-keepalive -c $CONNS -t 1 --no-pin -d ${DURATION}s"
echo "server:   taskset -c $SERVER_CPU nginx (1 worker, TLS 1.3, TLS_AES_128_GCM_SHA256)"
