#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that pillion-e2e's Kubernetes tests run on loopback, and
# copies the Gateway API CRDs beside them, into
#   ${PILLION_TOOLS_DIR:-$HOME/.cache/pillion/tools}/kube-<kubernetes version>/
# from the Go modules pinned in scripts/kube-tools/ (the go.mod and go.sum files there are the
# whole recipe). Prints that directory (its only stdout line) and does nothing else when it already
# holds this recipe's build: the cold build takes many minutes, a rerun milliseconds. Go's own
# build and module caches stay at their defaults, so a rebuild after a version bump reuses what
# did not change.
#
#   scripts/kube-tools.sh           build if needed, print the directory
#   scripts/kube-tools.sh --check   print the directory if built, else exit 1 (never builds)
#
# Exits 3 when it would build but go is not installed (the e2e harness then skips, loudly).
set -euo pipefail

# All in a function that is called on the last line: bash reads a script as it runs, and this one
# runs for minutes, during which someone may edit it.
main() {
  local root recipe check_only=false
  root="$(cd "$(dirname "$0")/.." && pwd)"
  recipe="$root/scripts/kube-tools"
  case "${1:-}" in
    --check) check_only=true ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
  esac

  # The versions come from the pinned modules, so there is one place to bump them.
  local kube_version etcd_version gateway_version
  kube_version="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$recipe/go.mod")"
  etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2; exit }' "$recipe/etcd/go.mod")"
  gateway_version="$(awk '$1 == "require" && $2 == "sigs.k8s.io/gateway-api" { print $3; exit }' \
    "$recipe/crds/go.mod")"
  if [ -z "$kube_version" ] || [ -z "$etcd_version" ] || [ -z "$gateway_version" ]; then
    echo "kube-tools: cannot read the pinned versions from $recipe/{,etcd/,crds/}go.mod" >&2
    exit 1
  fi
  local out="${PILLION_TOOLS_DIR:-$HOME/.cache/pillion/tools}/kube-$kube_version"

  # Without these the binary reports v0.0.0-master: the /version endpoint, and clients that read
  # it (kube-rs, kubectl), would see a version that no release has. -s -w: no symbol tables, a
  # third smaller; nobody debugs these binaries here.
  local major minor ldflags
  major="${kube_version#v}"; major="${major%%.*}"
  minor="${kube_version#v*.}"; minor="${minor%%.*}"
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=$major"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
  ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
  ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$kube_version"

  # A directory counts as built only for the exact recipe that built it: a changed go.sum (an
  # etcd bump, say) or link flags under the same Kubernetes version must rebuild, not reuse.
  # Comments, here or in the go.mod files, are not part of it.
  local stamp
  stamp="$( (grep -hv '^//' "$recipe"/go.mod "$recipe"/go.sum "$recipe"/etcd/go.mod \
    "$recipe"/etcd/go.sum "$recipe"/crds/go.mod "$recipe"/crds/go.sum; echo "$ldflags") |
    sha256sum | cut -d' ' -f1)"
  built() {
    [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -d "$out/gateway-api" ] &&
      [ "$(cat "$out/.stamp" 2>/dev/null)" = "$stamp" ]
  }

  if built; then echo "$out"; exit 0; fi
  if $check_only; then
    echo "kube-tools: not built in $out; run scripts/kube-tools.sh" >&2
    exit 1
  fi

  local go
  go="$(command -v go || true)"
  if [ -z "$go" ] && [ -x /usr/local/go/bin/go ]; then go=/usr/local/go/bin/go; fi
  if [ -z "$go" ]; then
    echo "kube-tools: go is not installed; it is needed once to build kube-apiserver" \
      "$kube_version and etcd $etcd_version into $out" \
      "(Go >= $(awk '$1 == "go" { print $2; exit }' "$recipe/go.mod"))" >&2
    exit 3
  fi

  mkdir -p "$out"
  # Two test runs (or a test and this script) may start at once on a fresh machine: one builds,
  # the other waits for it and then finds the build done.
  exec 9>"$out/.lock"
  flock 9
  if built; then echo "$out"; exit 0; fi

  log "building kube-apiserver $kube_version and etcd $etcd_version into $out (once; many minutes)"
  # A half-built directory never passes for a built one: everything goes to a scratch directory
  # first and is moved in at the end, the stamp last.
  tmp="$(mktemp -d "$out/.build.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  # Pinned, never raised: -mod=readonly fails on a go.mod that no longer matches its go.sum.
  export GOFLAGS="-mod=readonly -buildvcs=false -trimpath"
  # The recipe is written for the installed Go; an environment's GOTOOLCHAIN must not fetch another.
  export GOTOOLCHAIN=local

  local gateway_dir
  gateway_dir="$(cd "$recipe/crds" && "$go" mod download -json sigs.k8s.io/gateway-api |
    awk -F'"' '$2 == "Dir" { print $4 }')"
  if [ ! -d "$gateway_dir/config/crd/standard" ]; then
    echo "kube-tools: no config/crd/standard in sigs.k8s.io/gateway-api $gateway_version" \
      "(module directory: '$gateway_dir')" >&2
    exit 1
  fi
  mkdir "$tmp/gateway-api"
  cp "$gateway_dir"/config/crd/standard/*.yaml "$tmp/gateway-api/"
  chmod u+w "$tmp"/gateway-api/*.yaml # copies of the read-only module cache; a rebuild replaces them

  local start=$SECONDS
  # nice: the build takes every core for minutes; whatever else runs here keeps its share.
  (cd "$recipe/etcd" && nice -n 15 "$go" build -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  log "etcd built ($((SECONDS - start)) s)"
  (cd "$recipe" && nice -n 15 "$go" build -ldflags "$ldflags" -o "$tmp/kube-apiserver" \
    k8s.io/kubernetes/cmd/kube-apiserver)
  log "kube-apiserver built ($((SECONDS - start)) s in all)"
  printf '%s\n' "kubernetes $kube_version" "etcd $etcd_version" "gateway-api $gateway_version" \
    >"$tmp/VERSIONS"

  rm -rf "$out/gateway-api" "$out/.stamp"
  mv "$tmp/gateway-api" "$tmp/etcd" "$tmp/kube-apiserver" "$tmp/VERSIONS" "$out/"
  echo "$stamp" >"$out/.stamp"
  echo "$out"
}

log() { echo "kube-tools: $*" >&2; }

main "$@"
exit
