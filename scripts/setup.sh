#!/usr/bin/env bash
# One command on a fresh Debian 12 machine, as root: install what coop needs, build it,
# and run the demo — a busybox container `demo` is created, started, described, asked
# for `uname -a` through attach, and stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, cgroups, bridges)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/deps.sh run
# coop and its small steady-state container monitor; the viewer window is built on its
# own so that its window libraries stay out of the coop binary every command loads.
cargo build --release -p coop -p coop-monitor
cargo build --release -p coop-viewer
install -m 0755 target/release/coop target/release/coop-monitor target/release/coop-viewer \
  /usr/local/bin/
# The coLinux guest agent, static so that it runs in any guest.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p coop-guest-agent \
  --target x86_64-unknown-linux-gnu --target-dir target/guest-agent
install -D -m 0755 target/guest-agent/x86_64-unknown-linux-gnu/release/coop-guest-agent \
  /usr/local/lib/coop/coop-guest-agent
set -x
coop checkconfig
coop destroy -f -n demo 2>/dev/null || true
coop create -n demo -t busybox
coop start -n demo
coop info -n demo
coop attach -n demo -- uname -a
coop stop -n demo
