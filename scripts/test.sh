#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests against the real binaries.
# Tests that need root (network namespaces, iptables) say SKIPPED loudly when not run as root, and
# the Kubernetes and tracing tests when there is no Go to build kube-apiserver and Jaeger with;
# under CI=true a skipped test fails the run.
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
# Jaeger (v2, OTLP in, memory storage) for the tracing tests: built the same way, once per
# machine (minutes), then cached. The harness only looks for it (a build inside a test would eat
# the test's time), so a Jaeger not built here makes the tracing tests say SKIPPED.
if jaeger="$(scripts/jaeger-tool.sh)"; then
  echo "jaeger: $jaeger"
  export PILLION_JAEGER="$jaeger"
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
