#!/usr/bin/env bash
# How many concurrent keep-alive connections one connbench process holds, and what each costs.
#
# The built-in target runs in ANOTHER process (`connbench serve --threads 1`, pinned to
# SERVER_CPU); one client process (one worker, pinned to CLIENT_CPU) opens CONNS idle WebSocket
# connections (plain ws:// and wss://) and keeps them for DURATION seconds. Printed per run:
# connections reached (peak open, upgraded), failures, time until all CONNS were TCP-established
# (sampled with `ss` every 100 ms, from the client's start; TLS and the upgrade follow), the
# client's peak RSS and KiB per connection (gross, and marginal over a 1-connection run), and
# the connect phase's p50/p99.
#
#   CONNS=19500 DURATION=20 SOURCES=127.0.0.1-127.0.0.16 scripts/many-conns.sh
#   SOURCES= scripts/many-conns.sh          # no --source: one source address (slow, see below)
#   MODES=http scripts/many-conns.sh        # the connect storm alone: plain TCP, each connection
#                                           # holding one /delay request (no upgrade)
#
# Only loopback; every client run is bounded by `timeout`; the target is stopped by its PID.
# Limits: the client needs CONNS + 64 file descriptors (RLIMIT_NOFILE, raised to the hard limit
# by connbench itself), the target CONNS + a few. Without --source every connection shares one
# (source, destination) pair: ~28k ephemeral ports, and the kernel's port search in connect()
# becomes the client's main cost well before that (libs.md §3; engine/socket.rs rule 5).
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-19500}
DURATION=${DURATION:-20}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
SOURCES=${SOURCES-127.0.0.1-127.0.0.16}
MODES=${MODES:-"ws wss"}
for v in CONNS DURATION SERVER_CPU CLIENT_CPU; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "many-conns: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done
for m in $MODES; do
  [[ $m == ws || $m == wss || $m == http ]] || { echo "many-conns: MODES takes ws, wss and/or http (got '$m')" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "many-conns: needs jq" >&2; exit 2; }
command -v ss >/dev/null || { echo "many-conns: needs ss (iproute2)" >&2; exit 2; }

cargo build --release --bin connbench >&2
CB=target/release/connbench
tmp=$(mktemp -d)
SPID=
cleanup() {
  if [[ -n $SPID ]]; then kill -INT "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

echo "fd limit: soft $(ulimit -Sn), hard $(ulimit -Hn); ports $(tr '\t' - </proc/sys/net/ipv4/ip_local_port_range)"
"$CB" serve --threads 1 --cpus "$SERVER_CPU" --http 0 --https 0 \
  --cert-out "$tmp/cert.pem" --for 30m >"$tmp/serve.out" 2>"$tmp/serve.err" &
SPID=$!
for _ in $(seq 100); do
  grep -q '^https' "$tmp/serve.out" 2>/dev/null && break
  sleep 0.1
done
HP=$(sed -n 's#^http   http://127.0.0.1:\([0-9]*\)/.*#\1#p' "$tmp/serve.out")
SP=$(sed -n 's#^https  https://127.0.0.1:\([0-9]*\)/.*#\1#p' "$tmp/serve.out")
[[ -n $HP && -n $SP ]] || { echo "many-conns: the target did not start" >&2; cat "$tmp/serve.out" "$tmp/serve.err" >&2; exit 1; }

src_args=()
[[ -n $SOURCES ]] && src_args=(--source "$SOURCES")

established() { # established client connections to port $1
  ss -Htn state established "( dport = :$1 )" | wc -l
}

# run MODE N SECONDS NAME: one bounded client run; prints "seconds-to-all-established".
run() {
  local mode=$1 n=$2 secs=$3 name=$4 port url
  # --ca only over TLS: connbench refuses TLS flags with a plain ws:// URL.
  # Idle connections measure nothing by design: --allow-nothing-measured.
  local tls_args=() cmd=ws
  case $mode in
    ws) port=$HP; url="ws://127.0.0.1:$HP/ws" ;;
    wss) port=$SP; url="wss://127.0.0.1:$SP/ws"; tls_args=(--ca "$tmp/cert.pem") ;;
    # Plain TCP: one request per connection that the target holds for the whole run, so every
    # connection stays open and carries nothing else (the connect storm without any upgrade).
    http) cmd=http; port=$HP; url="http://127.0.0.1:$HP/delay/$(((secs + 30) * 1000000))"
      tls_args=(--timeout "$((secs + 40))s") ;;
  esac
  local start now reached=""
  start=$(date +%s.%N)
  timeout $((secs + 60)) "$CB" "$cmd" "$url" "${tls_args[@]}" -c "$n" -t 1 --cpus "$CLIENT_CPU" \
    -d "${secs}s" "${src_args[@]}" --allow-nothing-measured --json "$tmp/$name.json" -q >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local cpid=$!
  # Sample until the client exits (bounded by its own timeout above).
  while kill -0 "$cpid" 2>/dev/null; do
    if [[ -z $reached ]] && (($(established "$port") >= n)); then
      now=$(date +%s.%N)
      reached=$(echo "$now - $start" | bc -l)
    fi
    sleep 0.1
  done
  wait "$cpid" || { echo "many-conns: client run $name failed:" >&2; cat "$tmp/$name.err" >&2; return 1; }
  printf '%s' "${reached:-never}"
}

printf '%-4s %7s %7s %8s %8s %10s %10s %9s %9s  %s\n' mode asked peak upgraded failed open_tcp_s rss_MiB KiB/conn marginal connect_p50/p99
for mode in $MODES; do
  run "$mode" 1 1 "$mode-base" >/dev/null
  base=$(jq '.client.peak_rss_bytes' "$tmp/$mode-base.json")
  t=$(run "$mode" "$CONNS" "$DURATION" "$mode-big")
  j=$tmp/$mode-big.json
  peak=$(jq '.peak_open_connections' "$j")
  up=$(jq '.ws.connections_upgraded // .counters.connections_established' "$j")
  failed=$(jq '.errors.total' "$j")
  rss=$(jq '.client.peak_rss_bytes' "$j")
  cp50=$(jq '.phases.connect.p50 // 0' "$j")
  cp99=$(jq '.phases.connect.p99 // 0' "$j")
  printf '%-4s %7d %7d %8d %8d %10s %10.1f %9.1f %9.1f  %.1fms/%.1fms\n' "$mode" "$CONNS" "$peak" "$up" "$failed" \
    "${t:0:6}" "$(echo "$rss / 1048576" | bc -l)" \
    "$(echo "$rss / 1024 / ($peak + ($peak == 0))" | bc -l)" \
    "$(echo "($rss - $base) / 1024 / ($peak - 1 + ($peak <= 1))" | bc -l)" \
    "$(echo "$cp50 / 1000000" | bc -l)" "$(echo "$cp99 / 1000000" | bc -l)"
  jq -c '{errors: (.errors | with_entries(select(.value > 0))), tls: (.tls.handshakes_full // null)}' "$j" >&2
done
echo "command: $CB ws {ws|wss}://127.0.0.1:PORT/ws -c $CONNS -t 1 --cpus $CLIENT_CPU -d ${DURATION}s ${src_args[*]}"
echo "target:  $CB serve --threads 1 --cpus $SERVER_CPU (pid $SPID, separate process)"
