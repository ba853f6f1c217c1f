#!/usr/bin/env bash
# Fuzz connbench's decoders (the targets in fuzz/, cargo-fuzz + libFuzzer, nightly toolchain).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      each target for SECONDS (default 60)
#   scripts/fuzz.sh --runs N [TARGET...]       each target for N executions
#
# With no TARGET, every target `cargo fuzz list` names, one after the other. Each run starts
# from the checked-in seeds (fuzz/corpus/TARGET, read-only) plus what earlier runs on this
# machine found (fuzz/corpus-work/TARGET, not checked in). Prints the executions and exec/s of
# each target; exits non-zero if any target crashed (libFuzzer saves the input under
# fuzz/artifacts/TARGET/ and prints how to reproduce it) or could not run.
#
# Built as cargo-fuzz does by default (optimized, with debug assertions and overflow checks),
# without AddressSanitizer: the decoders are safe Rust, and ASan would halve the executions.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...] | scripts/fuzz.sh --runs N [TARGET...]" >&2
    exit 2
}

budget=(-max_total_time=60)
if [[ $# -gt 0 && $1 == --runs ]]; then
    [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || usage
    budget=(-runs="$2")
    shift 2
elif [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    [[ $1 -gt 0 ]] || usage
    budget=(-max_total_time="$1")
    shift
fi
for t in "$@"; do
    [[ $t =~ ^[a-z0-9_]+$ ]] || usage
done

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: the nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd fuzz
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
known=" $(cargo +nightly fuzz list | tr '\n' ' ') "
for t in "${targets[@]}"; do
    [[ $known == *" $t "* ]] || { echo "fuzz: no target $t (have:$known)" >&2; exit 2; }
done

# Build flags per target. report_reader and compare_reader spend their time on 216 KiB
# histograms, where comparison tracing (which guides the byte-level targets to magic values)
# only costs: without it they run twice as many executions, and their inputs are programs whose
# bytes are read modulo small numbers, which mutation finds without that guidance.
build_flags() {
    case $1 in
        report_reader | compare_reader) echo --no-trace-compares ;;
    esac
}

# A histogram is 216 KiB, above glibc's default mmap threshold (128 KiB), so every one would be
# a fresh mmap whose pages fault in and are unmapped on free: a fifth of compare_reader's time.
# Served from the heap instead, the same inputs run 1.4x faster. Only the fuzz processes see it.
export GLIBC_TUNABLES=glibc.malloc.mmap_threshold=8388608:glibc.malloc.trim_threshold=67108864

echo "== building ${targets[*]}"
for t in "${targets[@]}"; do
    # shellcheck disable=SC2046
    cargo +nightly fuzz build --sanitizer none $(build_flags "$t") "$t"
done

failed=()
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus-work/$t" "corpus/$t"
    log="corpus-work/$t.log"
    echo "== fuzzing $t (${budget[*]})"
    # shellcheck disable=SC2046
    if cargo +nightly fuzz run --sanitizer none $(build_flags "$t") "$t" "corpus-work/$t" "corpus/$t" -- \
        "${budget[@]}" -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
        tail -n 40 "$log" >&2
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    summary+=("$(printf '%-16s %-7s %12s executions  %8s exec/s  %6s s' \
        "$t" "$status" "${runs:-?}" "${rate:-?}" "${secs:-?}")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzz: FAILED: ${failed[*]} (inputs under fuzz/artifacts/, logs under fuzz/corpus-work/)" >&2
    exit 1
fi
