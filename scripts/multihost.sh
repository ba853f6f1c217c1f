#!/usr/bin/env bash
# Proof of "beyond one machine" on one machine: K load hosts and one target host, each a network
# namespace, joined by a bridge; addresses from the RFC 2544 benchmarking range 198.18.0.0/15,
# inside those namespaces only, with no route out of them. The built-in target runs in one, K
# connbench processes in the others with a common --start-at, then `connbench merge`, then
# checks (examples/multihost_check.rs, Rust, independent of the merge code):
#   1. load: the merged counts equal the sum of the parts and the target's accepted
#      connections; the merged percentiles equal those of the concatenated samples (exact,
#      from the histograms); the merged interval log holds the same samples;
#   2. probe: the merged probe finds the target's --max-conns limit, held across the K hosts.
# Everything (processes by PID, namespaces) is removed at the end, on failure and Ctrl-C too.
#
#   scripts/multihost.sh [K]          K load hosts (default 3)
#   CONNBENCH=path/to/connbench  DURATION=3  KEEP=dir  scripts/multihost.sh
#   LAUNCHER=pdsh scripts/multihost.sh   the clients launched by pdsh (its exec module, %h = the
#                                        host's namespace) as deploy/pdsh.md does over ssh
#
# Needs root and `ip netns` (iproute2). Where namespaces cannot be made (no root, a container
# without CAP_SYS_ADMIN) it prints "multihost: SKIPPED — <why>" and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

K=${1:-${K:-3}}
DURATION=${DURATION:-3}
if ! [[ "$K" =~ ^[0-9]+$ ]] || (( K < 2 || K > 200 )); then
    echo "multihost: K must be a number from 2 to 200 (load hosts), got '$K'" >&2
    exit 2
fi
TAG="cb$$"
NS_SW="$TAG-sw"     # the switch: holds the bridge, so nothing lands in the host's namespace
NS_T="$TAG-t"       # the target host
NETS=()             # namespaces made so far (deleted at exit)
PIDS=()             # processes started so far (stopped at exit, by PID)
WORK=$(mktemp -d /tmp/connbench-multihost.XXXXXX)

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    for ns in "${NETS[@]}"; do
        # Anything still running in our own namespaces (a launcher's children): by PID.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            kill -TERM "$pid" 2>/dev/null || true
        done
        ip netns del "$ns" 2>/dev/null || true
    done
    if [[ -n "${KEEP:-}" ]]; then
        mkdir -p "$KEEP" && cp -r "$WORK"/. "$KEEP"/ && echo "multihost: files kept in $KEEP"
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LAUNCHER=${LAUNCHER:-direct}
if [[ $LAUNCHER != direct && $LAUNCHER != pdsh ]]; then
    echo "multihost: LAUNCHER is direct or pdsh, got '$LAUNCHER'" >&2
    exit 2
fi
if [[ $LAUNCHER == pdsh ]] && ! command -v pdsh >/dev/null; then
    echo "multihost: LAUNCHER=pdsh needs pdsh (apt-get install pdsh)" >&2
    exit 2
fi
if ! command -v ip >/dev/null; then
    echo "multihost: SKIPPED — no 'ip' command (install iproute2)"
    exit 0
fi
if ! err=$(ip netns add "$NS_SW" 2>&1); then
    echo "multihost: SKIPPED — cannot create network namespaces here: $err"
    exit 0
fi
NETS+=("$NS_SW")

BIN=${CONNBENCH:-}
if [[ -z "$BIN" ]]; then
    cargo build --quiet --bin connbench --example multihost_check
    BIN=target/debug/connbench
else
    cargo build --quiet --example multihost_check
fi
BIN=$(realpath "$BIN")
CHECK=$(realpath target/debug/examples/multihost_check)

# --- the network: one bridge in the switch namespace, one veth pair per host ---------------
ip -n "$NS_SW" link add br0 type bridge
ip -n "$NS_SW" link set br0 up
ip -n "$NS_SW" link set lo up
host() { # host NAME ADDRESS: a namespace with one interface on the bridge, no route out
    local ns=$1 addr=$2 idx=${#NETS[@]}
    ip netns add "$ns"
    NETS+=("$ns")
    ip link add eth0 netns "$ns" type veth peer name "p$idx" netns "$NS_SW"
    ip -n "$NS_SW" link set "p$idx" master br0 up
    ip -n "$ns" addr add "$addr/16" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
}
host "$NS_T" 198.18.0.1
for ((i = 1; i <= K; i++)); do
    host "$TAG-c$i" "198.18.1.$i"
done
# No route out: each namespace knows only its own /16 (no default route was added).
for ns in "${NETS[@]}"; do
    if ip -n "$ns" route show default | grep -q .; then
        echo "multihost: FAIL — $ns has a default route" >&2
        exit 1
    fi
done
echo "multihost: $K load hosts 198.18.1.1-$K and the target 198.18.0.1 (namespaces $TAG-*), no route out"

TARGET_PID=
start_target() { # start_target STATS_FILE [serve flags…]
    local stats=$1
    shift
    ip netns exec "$NS_T" "$BIN" serve --bind 198.18.0.1 --http 8080 --no-https \
        --stats "$stats" "$@" >"$WORK/serve.out" 2>&1 &
    TARGET_PID=$!
    PIDS+=("$TARGET_PID")
    for _ in $(seq 100); do
        grep -qs '^http ' "$WORK/serve.out" && return 0
        sleep 0.1
    done
    echo "multihost: FAIL — the target did not start: $(cat "$WORK/serve.out")" >&2
    exit 1
}
stop_target() { # by PID: it writes --stats on SIGTERM
    kill -TERM "$TARGET_PID"
    wait "$TARGET_PID"
}
# Every client of a phase: started, each in its namespace, with the same --start-at; waited for.
run_clients() { # run_clients NAME ARGS… (ARGS may use {h}: the host, i.e. its namespace)
    local name=$1
    shift
    if [[ $LAUNCHER == pdsh ]]; then
        local hosts
        hosts=$(for ((i = 1; i <= K; i++)); do printf '%s,' "$TAG-c$i"; done)
        # pdsh's exec module runs the command here with %h = the host; -S: its exit status is
        # the worst of the hosts'.
        pdsh -S -R exec -w "${hosts%,}" ip netns exec %h "$BIN" "${@//\{h\}/%h}" \
            >"$WORK/$name.out" 2>&1 &
        PIDS+=($!)
        wait $! || { echo "multihost: pdsh failed:"; cat "$WORK/$name.out"; exit 1; }
        return 0
    fi
    local pids=()
    for ((i = 1; i <= K; i++)); do
        ip netns exec "$TAG-c$i" "$BIN" "${@//\{h\}/$TAG-c$i}" >"$WORK/$name$i.out" 2>&1 &
        pids+=($!)
        PIDS+=($!)
    done
    local failed=0
    for ((i = 0; i < K; i++)); do
        wait "${pids[$i]}" || { failed=1; echo "multihost: $name$((i + 1)) failed:"; cat "$WORK/$name$((i + 1)).out"; }
    done
    (( failed == 0 )) || exit 1
}
URL=http://198.18.0.1:8080/

# --- 1. load: K http clients, started together, merged with their interval logs ------------
start_target "$WORK/load-stats.json"
AT=$(( $(date +%s) + 3 ))
echo "multihost: load — $K × connbench http -c 4 -d ${DURATION}s --start-at $AT"
run_clients r http "$URL" -c 4 -t 1 --no-pin -q -d "${DURATION}s" --start-at "$AT" \
    --json "$WORK/r.{h}.json" --hlog "$WORK/r.{h}.hlog"
stop_target
REPORTS=() HLOGS=()
for ((i = 1; i <= K; i++)); do REPORTS+=("$WORK/r.$TAG-c$i.json"); HLOGS+=("$WORK/r.$TAG-c$i.hlog"); done
"$BIN" merge "${REPORTS[@]}" --json "$WORK/all.json" --hlog "$WORK/all.hlog" \
    --hlog-in "${HLOGS[@]}" >"$WORK/merge.out"
grep -E '^(merged|  window|hlog|warning)' "$WORK/merge.out" || true
"$CHECK" load --target-stats "$WORK/load-stats.json" --merged "$WORK/all.json" \
    --hlog "$WORK/all.hlog" "${REPORTS[@]}"

# --- 2. probe: K probes against --max-conns L, started together ----------------------------
L=$(( 8 * K ))
start_target "$WORK/probe-stats.json" --max-conns "$L" --over-limit refuse
AT=$(( $(date +%s) + 3 ))
echo "multihost: probe — $K × connbench probe --connect-rate 20 --max $L --start-at $AT against --max-conns $L"
run_clients p probe "$URL" --connect-rate 20 --max "$L" --hold 300ms -q --start-at "$AT" \
    --json "$WORK/p.{h}.json"
stop_target
PROBES=()
for ((i = 1; i <= K; i++)); do PROBES+=("$WORK/p.$TAG-c$i.json"); done
"$BIN" merge "${PROBES[@]}" --json "$WORK/probes.json" >"$WORK/merge-probe.out"
grep -E '^(merged|aggregate|first failure)' "$WORK/merge-probe.out" || true
"$CHECK" probe --target-stats "$WORK/probe-stats.json" --merged "$WORK/probes.json" \
    --limit "$L" "${PROBES[@]}"
echo "multihost: PASSED ($K hosts, launched by $LAUNCHER)"
