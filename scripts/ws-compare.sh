#!/usr/bin/env bash
# connbench ws side by side with a tungstenite + serde_json client (examples/ws_tungstenite.rs),
# on the same built-in target in another process, pinned apart; then client memory per idle
# wss connection. Only loopback; every run is bounded; the target is stopped by its PID.
#
#   ROUNDS=3 DURATION=5 RATE=200000 IDLE_CONNS=2000 scripts/ws-compare.sh
#
# Throughput is reported as messages per client CPU-second ("per worker core"): both clients run
# one thread on one connection, so the number is the cost of receiving, de-framing and reading
# the timestamp of ~100-byte JSON messages, not the server's speed.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
RATE=${RATE:-200000}
IDLE_CONNS=${IDLE_CONNS:-2000}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
for v in ROUNDS DURATION RATE IDLE_CONNS SERVER_CPU CLIENT_CPU; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "ws-compare: $v must be a whole number (got '${!v}')" >&2; exit 2; }
done

cargo build --release --bin connbench --example ws_tungstenite >&2
CB=target/release/connbench
TG=target/release/examples/ws_tungstenite
tmp=$(mktemp -d)
SPID=
cleanup() {
  if [[ -n $SPID ]]; then kill -INT "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

taskset -c "$SERVER_CPU" "$CB" serve --http 0 --https 0 --ws-rate "$RATE" \
  --cert-out "$tmp/cert.pem" --for 30m >"$tmp/serve.out" &
SPID=$!
for _ in $(seq 100); do
  grep -q '^https' "$tmp/serve.out" 2>/dev/null && break
  sleep 0.1
done
HP=$(sed -n 's#^http   http://127.0.0.1:\([0-9]*\)/.*#\1#p' "$tmp/serve.out")
SP=$(sed -n 's#^https  https://127.0.0.1:\([0-9]*\)/.*#\1#p' "$tmp/serve.out")
[[ -n $HP && -n $SP ]] || { echo "ws-compare: the target did not start" >&2; cat "$tmp/serve.out" >&2; exit 1; }

SUB='{"op":"subscribe","exchange":"binance","channel":"trades","symbol":"BTCUSDT"}'
for r in $(seq "$ROUNDS"); do
  "$CB" ws "ws://127.0.0.1:$HP/ws" -c 1 -t 1 --cpus "$CLIENT_CPU" -d "${DURATION}s" \
    --subscribe "$SUB" --ts-field timestamp --json "$tmp/cb$r.json" -q >/dev/null
  taskset -c "$CLIENT_CPU" "$TG" "ws://127.0.0.1:$HP/ws" "$DURATION" "$SUB" serde >"$tmp/tg$r.json"
  taskset -c "$CLIENT_CPU" "$TG" "ws://127.0.0.1:$HP/ws" "$DURATION" "$SUB" jsonfield >"$tmp/tj$r.json"
done

# Idle wss connections: the RSS difference between a small and a large run, so fixed costs
# (histograms, binary, TLS config) cancel out.
"$CB" ws "wss://127.0.0.1:$SP/ws" --ca "$tmp/cert.pem" -c 100 -d 3s --cpus "$CLIENT_CPU" \
  --json "$tmp/idle-small.json" -q >/dev/null
"$CB" ws "wss://127.0.0.1:$SP/ws" --ca "$tmp/cert.pem" -c $((IDLE_CONNS + 100)) -d 5s \
  --cpus "$CLIENT_CPU" --connect-timeout 10s --json "$tmp/idle-large.json" -q >/dev/null

python3 - "$tmp" "$ROUNDS" "$IDLE_CONNS" "$RATE" <<'PY'
import json, statistics, sys
tmp, rounds, idle, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cb, tg, tj = [], [], []
for r in range(1, rounds + 1):
    j = json.load(open(f"{tmp}/cb{r}.json"))
    cpu = j["client"]["cpu_user_s"] + j["client"]["cpu_sys_s"]
    m = j["ws"]["messages_in"]
    cb.append((m / j["duration_s"], m / cpu if cpu else 0.0, j["phases"]["latency"]["p50"]))
    for name, xs in (("tg", tg), ("tj", tj)):
        t = json.loads(open(f"{tmp}/{name}{r}.json").read())
        xs.append((t["messages"] / t["elapsed_s"], t["messages"] / t["cpu_s"] if t["cpu_s"] else 0.0, t["latency_p50_ns"]))
med = lambda xs, i: statistics.median(x[i] for x in xs)
print(f"# connbench ws vs tungstenite + serde_json (target --ws-rate {rate}/s, 1 connection, 1 client thread, medians of {rounds})\n")
print("| client | msgs/s received | msgs per client CPU-second | latency p50 |")
print("|---|---:|---:|---:|")
for name, xs in (("connbench ws --ts-field timestamp", cb), ("tungstenite + serde_json", tg),
                 ("tungstenite + connbench's field scanner", tj)):
    print(f"| {name} | {med(xs,0):,.0f} | {med(xs,1):,.0f} | {med(xs,2)/1000:,.1f} µs |")
print(f"\nconnbench / tungstenite + serde_json, messages per CPU-second: **{med(cb,1)/med(tg,1):.2f}×**; "
      f"connbench / tungstenite + the same scanner: **{med(cb,1)/med(tj,1):.2f}×**\n")
small = json.load(open(f"{tmp}/idle-small.json"))
large = json.load(open(f"{tmp}/idle-large.json"))
up_s, up_l = small["ws"]["connections_upgraded"], large["ws"]["connections_upgraded"]
rss_s, rss_l = small["client"]["peak_rss_bytes"], large["client"]["peak_rss_bytes"]
per = (rss_l - rss_s) / max(up_l - up_s, 1)
print(f"idle wss connections: {up_s} → {up_l} upgraded, peak RSS {rss_s/2**20:.1f} → {rss_l/2**20:.1f} MiB: "
      f"**{per/1024:.1f} KiB per connection** (TLS 1.3, receive buffer, frame buffers, rustls state)")
PY
