#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests against the real binaries.
# Tests that need root (network namespaces, iptables) say SKIPPED loudly when not run as root, and
# the Kubernetes tests when there is no Go to build kube-apiserver with; under CI=true a skipped
# test fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# kube-apiserver and etcd for the Kubernetes tests: built from Go modules once per machine (many
# minutes), then cached. Without Go the Kubernetes tests say SKIPPED, which CI fails on.
if kube_tools="$(scripts/kube-tools.sh)"; then
  echo "kube tools: $kube_tools"
  export PILLION_KUBE_TOOLS="$kube_tools"
else
  rc=$?
  [ "$rc" -eq 3 ] || exit "$rc"
fi

skipped="$(mktemp)"
trap 'rm -f "$skipped"' EXIT
export PILLION_SKIPPED_FILE="$skipped"

cargo build --workspace --bins
cargo test --workspace --no-fail-fast
scripts/fuzz.sh --short

if [ -s "$skipped" ]; then
  echo "SKIPPED tests (need root or packages):"
  sed 's/^/  /' "$skipped"
  if [ "${CI:-}" = "true" ]; then
    echo "CI=true: skipped tests are failures here" >&2
    exit 1
  fi
fi
