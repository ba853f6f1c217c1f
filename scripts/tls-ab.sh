#!/usr/bin/env bash
# tls-ab.sh: two connbench binaries side by side on TLS keep-alive against the built-in target,
# interleaved (A B A B …, odd rounds A first, even rounds B first), medians of client CPU per
# request (user+sys of the whole client process from /usr/bin/time, ÷ responses) and of the
# client's own report. The target is `connbench serve` from binary A, pinned to SERVER_CPU;
# clients are pinned to CLIENT_CPU. Loopback only; the target is stopped by its PID.
#
# Usage: scripts/tls-ab.sh OLD_BINARY NEW_BINARY
#        ROUNDS=5 DURATION=5s CONNS="10 100" scripts/tls-ab.sh old new
# (compare.sh measures connbench against wrk on nginx; this one measures a change.)
set -euo pipefail

A=${1:?usage: tls-ab.sh OLD_BINARY NEW_BINARY}
B=${2:?usage: tls-ab.sh OLD_BINARY NEW_BINARY}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-"10 100"}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
[[ -x $A && -x $B ]] || { echo "tls-ab.sh: both binaries must be executable files" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "tls-ab.sh: ROUNDS must be a positive integer" >&2; exit 2; }
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || { echo "tls-ab.sh: DURATION must look like 5s" >&2; exit 2; }

WORK=$(mktemp -d)
SERVE_PID=
cleanup() {
  [[ -n $SERVE_PID ]] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

taskset -c "$SERVER_CPU" "$A" serve --no-http --https 0 --threads 1 --for 3600s \
  --cert-out "$WORK/cert.pem" >"$WORK/serve.out" 2>&1 &
SERVE_PID=$!
for _ in $(seq 50); do
  grep -q '^https ' "$WORK/serve.out" 2>/dev/null && break
  sleep 0.1
done
URL=$(awk '/^https /{print $2}' "$WORK/serve.out")
[[ -n $URL ]] || { echo "tls-ab.sh: the target did not start: $(cat "$WORK/serve.out")" >&2; exit 1; }

# One run: prints "cpu_us_per_req self_us_per_req".
run() {
  local bin=$1 c=$2 tag=$3
  /usr/bin/time -f '%U %S' -o "$WORK/$tag.time" taskset -c "$CLIENT_CPU" \
    "$bin" http "$URL" --ca "$WORK/cert.pem" -c "$c" -t 1 -d "$DURATION" --json "$WORK/$tag.json" \
    >/dev/null 2>&1
  python3 - "$WORK/$tag.json" "$WORK/$tag.time" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
u, s = map(float, open(sys.argv[2]).read().split()[-2:])
n = r["counters"]["responses"]
self_cpu = r.get("client", {}).get("cpu_per_request_us")
print(f"{(u + s) * 1e6 / n:.2f} {self_cpu if self_cpu is not None else 'nan'}")
EOF
}

echo "target: $URL (binary A's serve, CPU $SERVER_CPU); clients on CPU $CLIENT_CPU; $ROUNDS rounds of $DURATION"
echo "A=$A"
echo "B=$B"
for c in $CONNS; do
  : >"$WORK/a.$c"
  : >"$WORK/b.$c"
  for r in $(seq "$ROUNDS"); do
    if ((r % 2)); then order="a b"; else order="b a"; fi
    for who in $order; do
      bin=$A
      [[ $who == b ]] && bin=$B
      sleep 0.5
      res=$(run "$bin" "$c" "$who.$c.$r")
      echo "$res" >>"$WORK/$who.$c"
      echo "  -c $c round $r $who: CPU µs/req $res (external, self-reported)"
    done
  done
  python3 - "$WORK/a.$c" "$WORK/b.$c" "$c" <<'EOF'
import statistics as st, sys
a = [float(l.split()[0]) for l in open(sys.argv[1])]
b = [float(l.split()[0]) for l in open(sys.argv[2])]
ma, mb = st.median(a), st.median(b)
print(f"TLS -c {sys.argv[3]}: median client CPU µs/req  A {ma:.2f}  B {mb:.2f}  B/A {mb / ma:.2f}")
EOF
done
