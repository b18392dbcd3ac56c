#!/usr/bin/env bash
# One command on a fresh Debian 12 machine, as root: install what coop needs, build it,
# and run the demo — a busybox container `demo` is created, started, described, asked
# for `uname -a` through attach, and stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, cgroups, bridges)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/deps.sh run
# coop and its small steady-state container monitor, linked statically (see
# build-static.sh); the viewer window is built on its own so that its window libraries
# stay out of the coop binary every command loads.
BIN=$(scripts/build-static.sh)
cargo build --release -p coop-viewer
install -m 0755 "$BIN/coop" "$BIN/coop-monitor" target/release/coop-viewer /usr/local/bin/
[ -x "$BIN/coop-full" ] && install -m 0755 "$BIN/coop-full" /usr/local/bin/
install -D -m 0755 "$BIN/coop-guest-agent" /usr/local/lib/coop/coop-guest-agent
set -x
coop checkconfig
coop destroy -f -n demo 2>/dev/null || true
coop create -n demo -t busybox
coop start -n demo
coop info -n demo
coop attach -n demo -- uname -a
coop stop -n demo
