#!/usr/bin/env bash
# Open connbench's --html pages in headless Chromium and fail on any console message.
#
#   scripts/html-check.sh [PAGE.html ...]
#
# With no page given it makes its own: short runs of `http`, `ws`, `probe` and `merge` against
# the built-in loopback target, each with --html (binary: $CONNBENCH, else target/debug/connbench
# built with cargo). Installs Debian's chromium when it is missing (as root, like CI).
#
# The pages carry no script, so every console message is the browser's own complaint: a
# resource it was asked to fetch (refused by the page's Content-Security-Policy, or missing), or
# markup it could not take. Chromium prints console messages on stderr with
# --enable-logging=stderr (lines with ":CONSOLE"); a page also fails when the DOM Chromium built
# lacks the summary or an <svg>. Before the pages, a control page that fetches an image must
# produce a console message: if it does not, this Chromium cannot be checked this way and the
# script fails rather than pass.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=${CHROMIUM:-chromium}
if ! command -v "$CHROMIUM" >/dev/null 2>&1; then
    echo "html-check: installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
"$CHROMIUM" --version

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# open PAGE: load it headless; the DOM goes to $work/dom.html, console lines to stdout.
open_page() {
    local profile
    profile=$(mktemp -d -p "$work")
    # The flags: root needs --no-sandbox; the background-networking ones keep Chromium from
    # calling out (this machine has no network beyond the package registries).
    if ! timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking --disable-component-update \
        --disable-sync --user-data-dir="$profile" --enable-logging=stderr --v=0 \
        --dump-dom "file://$(realpath "$1")" >"$work/dom.html" 2>"$work/log.txt"; then
        echo "html-check: chromium failed on $1:" >&2
        cat "$work/log.txt" >&2
        return 2
    fi
    grep ':CONSOLE' "$work/log.txt" || true
}

# The control: a page whose image the CSP refuses must show on the console.
cat >"$work/control.html" <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'"/>
<title>control</title></head>
<body><p>control</p><img src="http://127.0.0.1:9/control.png" alt=""/></body></html>
EOF
if [ -z "$(open_page "$work/control.html")" ]; then
    echo "html-check: FAILED — the control page's refused image printed no console message;" \
        "this Chromium's console cannot be read with --enable-logging=stderr" >&2
    exit 1
fi
echo "html-check: control page: console message seen (the check can fail)"

pages=("$@")
if [ ${#pages[@]} -eq 0 ]; then
    bin=${CONNBENCH:-target/debug/connbench}
    if [ -z "${CONNBENCH:-}" ]; then
        cargo build --quiet --bin connbench
    fi
    d=$work/pages
    mkdir -p "$d"
    "$bin" http -c 2 -d 2s -q --json "$d/a.json" --html "$d/http.html" >/dev/null
    "$bin" http --stages 2@500ms+500ms,6@500ms+500ms -q --json "$d/b.json" \
        --html "$d/stages.html" >/dev/null
    "$bin" ws -c 2 -d 1s -q --ts-field timestamp --html "$d/ws.html" >/dev/null
    "$bin" probe --max 50 --connect-rate 500 --hold 200ms -q --html "$d/probe.html" >/dev/null
    "$bin" merge "$d/a.json" "$d/b.json" --allow-disjoint --allow-mixed \
        --html "$d/merge.html" >/dev/null
    pages=("$d/http.html" "$d/stages.html" "$d/ws.html" "$d/probe.html" "$d/merge.html")
fi

failed=0
for page in "${pages[@]}"; do
    console=$(open_page "$page")
    problems=()
    [ -n "$console" ] && problems+=("console: $console")
    grep -q '<pre class="summary">' "$work/dom.html" || problems+=("no summary in the DOM")
    grep -q '<svg' "$work/dom.html" || problems+=("no <svg> in the DOM")
    if [ ${#problems[@]} -eq 0 ]; then
        echo "html-check: ok      $(basename "$page") ($(grep -o '<svg' "$work/dom.html" | wc -l) plots)"
    else
        failed=1
        echo "html-check: FAILED  $page" >&2
        printf '    %s\n' "${problems[@]}" >&2
    fi
done
exit $failed
