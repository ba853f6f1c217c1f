#!/usr/bin/env bash
# Validate the Kubernetes manifests of deploy/kubernetes/ against the Kubernetes API's own
# schemas, strictly (unknown fields are errors), after filling the placeholders with sample
# values the way the README's envsubst does.
#
# The validator: kubeconform is a Go binary, installable only from its GitHub release or with
# `go install` — neither reaches this project's machines (no Go toolchain, no downloads outside
# the package registries). kubernetes-validate (PyPI) does the same job offline: it bundles the
# JSON schemas of each Kubernetes release. It is installed with pip when missing.
#
# To show the check can fail, a copy with a known error (completions as a word) must be refused.
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=${K8S_VERSION:-1.33.0}

if ! command -v kubernetes-validate >/dev/null; then
    if ! command -v python3 >/dev/null; then
        echo "check-deploy: SKIPPED — no python3 to install kubernetes-validate"
        exit 0
    fi
    python3 -m pip install --quiet kubernetes-validate==1.37.0
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fill() { # the README's envsubst, with sample values
    sed -e 's|${N}|4|g' -e 's|${START_AT}|2026-12-01T10:00:00Z|g' \
        -e 's|${TARGET_URL}|https://relay.example/|g' -e 's|${IMAGE}|registry.example/connbench:0.1.0|g' "$1"
}
for f in deploy/kubernetes/*.yaml; do
    out="$WORK/$(basename "$f")"
    fill "$f" >"$out"
    if grep -n '\${' "$out"; then
        echo "check-deploy: $f has a placeholder the README does not fill" >&2
        exit 1
    fi
    kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$out"
    echo "check-deploy: $f is valid (Kubernetes $K8S_VERSION, strict)"
done
# The check must be able to fail.
sed 's/^  completions: 4$/  completions: four/' "$WORK/job.yaml" >"$WORK/broken.yaml"
if ! grep -q 'completions: four' "$WORK/broken.yaml"; then
    echo "check-deploy: could not make the broken copy" >&2
    exit 1
fi
if kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$WORK/broken.yaml" >/dev/null 2>&1; then
    echo "check-deploy: the validator accepted a Job whose completions is a word" >&2
    exit 1
fi
echo "check-deploy: a broken copy is refused (the check is live)"
