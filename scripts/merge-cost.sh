#!/usr/bin/env bash
# What a K-machine run costs to merge: K = 2, 4, 8, 16 reports (and their interval logs), each
# from a real run against the built-in target (RUN_S seconds, one per process, one after the
# other: their windows do not overlap, hence --allow-disjoint; merge does the same work either
# way). Prints the report and log sizes, then per K the median wall time of ROUNDS merges
# and the peak RSS, without and with --hlog.
#
#   ROUNDS=5 RUN_S=5 scripts/merge-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
RUN_S=${RUN_S:-5}
cargo build --release --quiet --bin connbench
CB=$(realpath target/release/connbench)
dir=$(mktemp -d /tmp/connbench-merge-cost.XXXXXX)
SERVE_PID=
trap '[[ -n $SERVE_PID ]] && kill -TERM "$SERVE_PID" 2>/dev/null; rm -rf "$dir"' EXIT
# One target for every run (the reports must name the same URL), stopped by its PID.
"$CB" serve --http 0 --no-https --threads 1 >"$dir/serve.out" 2>&1 &
SERVE_PID=$!
for _ in $(seq 50); do grep -qs '^http ' "$dir/serve.out" && break; sleep 0.1; done
URL=$(awk '/^http /{print $2}' "$dir/serve.out")
for i in $(seq 1 16); do
    "$CB" http "$URL" -c 10 -t 1 --no-pin -q -d "${RUN_S}s" --json "$dir/r$i.json" \
        --hlog "$dir/r$i.hlog" >/dev/null
done
echo "one report: $(stat -c %s "$dir/r1.json") bytes, its interval log: $(stat -c %s "$dir/r1.hlog") bytes (${RUN_S} s run)"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "| K | merge (median of $ROUNDS) | peak RSS | merge --hlog | peak RSS |"
echo "|---:|---:|---:|---:|---:|"
for k in 2 4 8 16; do
    reports=() logs=()
    for i in $(seq 1 "$k"); do reports+=("$dir/r$i.json"); logs+=("$dir/r$i.hlog"); done
    row="| $k"
    for with in no yes; do
        extra=()
        [[ $with == yes ]] && extra=(--hlog "$dir/m.hlog" --hlog-in "${logs[@]}")
        times=() rss=0
        for _ in $(seq "$ROUNDS"); do
            t0=$EPOCHREALTIME
            /usr/bin/time -f '%M' -o "$dir/rss" "$CB" merge "${reports[@]}" --allow-disjoint \
                --json "$dir/m.json" "${extra[@]}" >/dev/null
            t1=$EPOCHREALTIME
            times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", (b - a) * 1000}')")
            r=$(tail -1 "$dir/rss")
            (( r > rss )) && rss=$r
        done
        t=$(printf '%s\n' "${times[@]}" | median)
        row="$row | ${t} ms | $(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}') MiB"
    done
    echo "$row |"
done
