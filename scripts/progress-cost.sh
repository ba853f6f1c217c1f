#!/usr/bin/env bash
# What the live progress line costs the workers: the same closed-loop run against one built-in
# target with --progress never (A) and --progress always (B, stderr to a file: one line a
# second, and every worker recording the line's phase twice and handing it over every 250 ms),
# interleaved A B A B … for ROUNDS rounds. Prints each run, then the medians of responses/s and
# client CPU µs per request and the B/A ratios. Run it on a quiet machine: on a busy one the
# spread between rounds is larger than the difference.
#
#   ROUNDS=7 RUN_S=5 CONNS=10 THREADS=1 scripts/progress-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}
RUN_S=${RUN_S:-5}
CONNS=${CONNS:-10}
THREADS=${THREADS:-1}
cargo build --release --quiet --bin connbench
CB=$(realpath target/release/connbench)
dir=$(mktemp -d /tmp/connbench-progress-cost.XXXXXX)
SERVE_PID=
trap '[[ -n $SERVE_PID ]] && kill -TERM "$SERVE_PID" 2>/dev/null; rm -rf "$dir"' EXIT
"$CB" serve --http 0 --no-https --threads 1 >"$dir/serve.out" 2>&1 &
SERVE_PID=$!
for _ in $(seq 50); do grep -qs '^http ' "$dir/serve.out" && break; sleep 0.1; done
URL=$(awk '/^http /{print $2}' "$dir/serve.out")
field() { # FILE KEY: a number from the JSON report
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); k=sys.argv[2].split("/"); v=d
for p in k: v=v[p]
print(round(v, 2))' "$1" "$2"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: >"$dir/A" && : >"$dir/B"
for r in $(seq "$ROUNDS"); do
    for side in A B; do
        when=never
        [[ $side == B ]] && when=always
        "$CB" http "$URL" -c "$CONNS" -t "$THREADS" --no-pin -d "${RUN_S}s" --progress "$when" \
            --json "$dir/r.json" >/dev/null 2>"$dir/stderr"
        rps=$(field "$dir/r.json" throughput/responses_per_s)
        cpu=$(field "$dir/r.json" client/cpu_per_request_us)
        lines=$(grep -c '^\[' "$dir/stderr" || true)
        echo "round $r $side (--progress $when): $rps responses/s, $cpu µs CPU/request, $lines lines"
        echo "$rps $cpu" >>"$dir/$side"
    done
done
a_rps=$(awk '{print $1}' "$dir/A" | median); b_rps=$(awk '{print $1}' "$dir/B" | median)
a_cpu=$(awk '{print $2}' "$dir/A" | median); b_cpu=$(awk '{print $2}' "$dir/B" | median)
echo "median of $ROUNDS: never $a_rps/s, $a_cpu µs CPU/req; always $b_rps/s, $b_cpu µs CPU/req"
awk -v a="$a_rps" -v b="$b_rps" -v c="$a_cpu" -v d="$b_cpu" \
    'BEGIN {printf "always/never: responses/s %.3f, CPU per request %.3f\n", b / a, d / c}'
