#!/usr/bin/env bash
# Builds the real Jaeger (v2, the OpenTelemetry-collector-based `cmd/jaeger`) that pillion-e2e's
# tracing tests export OTLP to, into
#   ${PILLION_TOOLS_DIR:-$HOME/.cache/pillion/tools}/jaeger-<jaeger module version>/jaeger
# from the Go module pinned in scripts/jaeger-tool/ (its go.mod and go.sum are the whole recipe).
# Prints the binary's path (its only stdout line) and does nothing else when it already holds this
# recipe's build: the cold build takes minutes, a rerun milliseconds. Go's own build and module
# caches stay at their defaults, so a rebuild after a version bump reuses what did not change.
#
#   scripts/jaeger-tool.sh           build if needed, print the binary's path
#   scripts/jaeger-tool.sh --check   print the path if built, else exit 1 (never builds)
#
# Exits 3 when it would build but go is not installed (the e2e harness then skips, loudly).
set -euo pipefail

# All in a function that is called on the last line: bash reads a script as it runs, and this one
# runs for minutes, during which someone may edit it.
main() {
  local root recipe check_only=false
  root="$(cd "$(dirname "$0")/.." && pwd)"
  recipe="$root/scripts/jaeger-tool"
  case "${1:-}" in
    --check) check_only=true ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
  esac

  # The version comes from the pinned module, so there is one place to bump it.
  local version
  version="$(awk '$1 == "github.com/jaegertracing/jaeger" { print $2; exit }' "$recipe/go.mod")"
  if [ -z "$version" ]; then
    echo "jaeger-tool: cannot read the pinned github.com/jaegertracing/jaeger from $recipe/go.mod" >&2
    exit 1
  fi
  local out="${PILLION_TOOLS_DIR:-$HOME/.cache/pillion/tools}/jaeger-$version"

  # Jaeger's own Makefile sets these; without them `jaeger version` and the query service's build
  # info report empty strings. -s -w: no symbol tables, a third smaller; nobody debugs it here.
  local ldflags="-s -w -X github.com/jaegertracing/jaeger/internal/version.latestVersion=$version"

  # A directory counts as built only for the exact recipe that built it: a changed go.sum or link
  # flags under the same Jaeger version must rebuild, not reuse. Comments are not part of it.
  local stamp
  stamp="$( (grep -hv '^//' "$recipe/go.mod" "$recipe/go.sum"; echo "$ldflags") |
    sha256sum | cut -d' ' -f1)"
  built() {
    [ -x "$out/jaeger" ] && [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]
  }

  if built; then echo "$out/jaeger"; exit 0; fi
  if $check_only; then
    echo "jaeger-tool: not built in $out; run scripts/jaeger-tool.sh" >&2
    exit 1
  fi

  local go
  go="$(command -v go || true)"
  if [ -z "$go" ] && [ -x /usr/local/go/bin/go ]; then go=/usr/local/go/bin/go; fi
  if [ -z "$go" ]; then
    echo "jaeger-tool: go is not installed; it is needed once to build jaeger $version into $out" \
      "(Go >= $(awk '$1 == "go" { print $2; exit }' "$recipe/go.mod"))" >&2
    exit 3
  fi

  mkdir -p "$out"
  # Two test runs (or a test and this script) may start at once on a fresh machine: one builds,
  # the other waits for it and then finds the build done.
  exec 9>"$out/.lock"
  flock 9
  if built; then echo "$out/jaeger"; exit 0; fi

  log "building jaeger $version into $out (once; minutes)"
  # A half-built binary never passes for a built one: it is linked in a scratch directory and moved
  # in at the end, the stamp last.
  tmp="$(mktemp -d "$out/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # Pinned, never raised: -mod=readonly fails on a go.mod that no longer matches its go.sum.
  export GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
  # The recipe is written for the installed Go; an environment's GOTOOLCHAIN must not fetch another.
  export GOTOOLCHAIN=local

  local start=$SECONDS
  # nice: the build takes every core for minutes; whatever else runs here keeps its share.
  (cd "$recipe" && nice -n 15 "$go" build -ldflags "$ldflags" -o "$tmp/jaeger" \
    github.com/jaegertracing/jaeger/cmd/jaeger)
  log "jaeger built ($((SECONDS - start)) s)"
  echo "jaeger $version" >"$tmp/VERSIONS"

  rm -f "$out/.stamp"
  mv "$tmp/jaeger" "$tmp/VERSIONS" "$out/"
  echo "$stamp" >"$out/.stamp"
  echo "$out/jaeger"
}

log() { echo "jaeger-tool: $*" >&2; }

main "$@"
exit
