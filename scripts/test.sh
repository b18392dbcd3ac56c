#!/usr/bin/env bash
# One command, as root: install the test peers (LXC, Xvfb, SPICE clients, …) and run the
# whole test suite. End-to-end tests run one at a time: they measure CPU shares and
# bind ports, and the machine has two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, cgroups, bridges)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/deps.sh test
# Peer configs the CEO keeps in shared/ (beside this checkout in CI).
for d in ../shared /work/shared; do
  if [ -f "$d/peers/xspice.conf" ]; then
    export COOP_XSPICE_CONF=${COOP_XSPICE_CONF:-$(cd "$d" && pwd)/peers/xspice.conf}
    break
  fi
done
# The coLinux guest agent runs inside guests of any libc: build it statically.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p coop-guest-agent \
  --target x86_64-unknown-linux-gnu --target-dir target/guest-agent
export COOP_GUEST_AGENT=$PWD/target/guest-agent/x86_64-unknown-linux-gnu/release/coop-guest-agent
cargo test --workspace --no-fail-fast -- --test-threads=1
