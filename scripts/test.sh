#!/usr/bin/env bash
# One command, as root: install the test peers (LXC, Xvfb, SPICE clients, …) and run the
# whole test suite. End-to-end tests run one at a time: they measure CPU shares and
# bind ports, and the machine has two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, cgroups, bridges)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/deps.sh test
cargo test --workspace --no-fail-fast -- --test-threads=1
