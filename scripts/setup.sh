#!/usr/bin/env bash
# Installs the Debian packages Pillion's tests drive: curl, promtool (prometheus), h2load
# (nghttp2-client), openssl, iptables, iproute2, testssl.sh, dnsmasq (a real DNS server for the DNS
# endpoint tests), Python's h2 and grpcio, and nginx and haproxy
# (the differential test's comparison), and kubernetes-validate from PyPI (checks deploy/kubernetes/)
# in a venv of its own under the tools cache. Installs only what is missing; needs root (or sudo)
# only when a Debian package is missing.
set -euo pipefail

# command -> Debian package
declare -A NEED=(
  [curl]=curl
  [promtool]=prometheus
  [h2load]=nghttp2-client
  [openssl]=openssl
  [iptables]=iptables
  [ip]=iproute2
  [testssl]=testssl.sh
  [ps]=procps
  [nginx]=nginx
  [haproxy]=haproxy
  [dnsmasq]=dnsmasq-base
)
missing=()
for cmd in "${!NEED[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
# The tests run Debian's python3 (/usr/bin/python3), which is where python3-h2 installs.
/usr/bin/python3 -c 'import h2' >/dev/null 2>&1 || missing+=(python3-h2)
/usr/bin/python3 -c 'import grpc' >/dev/null 2>&1 || missing+=(python3-grpcio)
# The venv below needs Debian's venv module (ensurepip), which is packaged apart.
/usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)

# kubernetes-validate, from PyPI into its own venv: Debian's python is externally managed.
# e2e/tests/deploy.rs looks for it here (or on PATH).
install_kubernetes_validate() {
  local dir="${PILLION_TOOLS_DIR:-$HOME/.cache/pillion/tools}/kubernetes-validate"
  if command -v kubernetes-validate >/dev/null 2>&1 || [ -x "$dir/bin/kubernetes-validate" ]; then
    return 0
  fi
  echo "setup: installing kubernetes-validate into $dir"
  /usr/bin/python3 -m venv "$dir" && "$dir/bin/pip" install -q kubernetes-validate
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all test packages present"
  install_kubernetes_validate
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: need root to install: ${missing[*]} (apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The prometheus package would start a server; we only want promtool. policy-rc.d keeps
# package scripts from starting services.
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$SUDO" ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_kubernetes_validate
echo "setup: done"
