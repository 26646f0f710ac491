#!/usr/bin/env bash
# A working local mesh on loopback, no root needed: two demo upstreams and a Pillion sidecar,
# some traffic through it, then it stays up for you to curl and scrape (Ctrl-C to stop).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v curl >/dev/null 2>&1 || echo "note: install curl to try the commands printed below"
cargo build -p pillion-proxy -p pillion-e2e --bins
exec cargo run -q -p pillion-e2e --bin demo -- "$@"
