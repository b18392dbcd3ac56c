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
# The static release build setup.sh installs (coop and coop-monitor on musl, see
# build-static.sh), and with it the coLinux guest agent, which runs inside guests of any
# libc and so is static too.
BIN=$(scripts/build-static.sh)
export COOP_GUEST_AGENT=$BIN/coop-guest-agent
status=0
cargo test --workspace --no-fail-fast -- --test-threads=1 || status=1
# The container lifecycle once more, through the binary users run.
echo "coop: container tests against the static build $BIN/coop"
COOP_TEST_BIN=$BIN/coop cargo test -p coop --test containers -- --test-threads=1 || status=1
exit $status
