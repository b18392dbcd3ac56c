#!/usr/bin/env bash
# One command on a fresh Debian 12 machine, as root: install what coop needs, build it,
# and run the demo — a busybox container `demo` is created, started, described, asked
# for `uname -a` through attach, and stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, cgroups, bridges)" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/deps.sh run
cargo build --release -p coop
install -m 0755 target/release/coop /usr/local/bin/coop
set -x
coop checkconfig
coop destroy -f -n demo 2>/dev/null || true
coop create -n demo -t busybox
coop start -n demo
coop info -n demo
coop attach -n demo -- uname -a
coop stop -n demo
