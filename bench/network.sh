#!/usr/bin/env bash
# TCP throughput host -> container with iperf3, coop's veth on a coop network against
# LXC's veth on a plain bridge, in one run, on the same busybox rootfs (the host's /usr
# bound read-only inside for iperf3). Prints Gbit/s and the ratio. Needs root, lxc, iperf3.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
for t in lxc-start iperf3 python3; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
cargo build --release -q -p coop
COOP=$PWD/target/release/coop
SECS=${SECS:-5}
W=$(mktemp -d /tmp/coopnet.XXXX)
NET=cnb$$; BR=lnb$$
export COOP_ROOT=$W/coop
LXCP=$W/lxc
cleanup() {
  $COOP destroy -f -n nb 2>/dev/null || true
  $COOP net rm $NET 2>/dev/null || true
  lxc-stop -k -P $LXCP -n ln 2>/dev/null || true
  ip link del $BR 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
free_subnet() {
python3 - "$1" <<'PY'
import random,sys
random.seed(int(sys.argv[1]))
routes=open('/proc/net/route').read()
for _ in range(500):
    b,c=random.randint(100,250),random.randint(1,250)
    if '%02X%02X%02X' % (c,b,10) not in routes:
        print(f"10.{b}.{c}"); break
PY
}
S1=$(free_subnet $$); S2=$(free_subnet $(( $$ + 7 )))
$COOP net create $NET --subnet $S1.1/24 --no-nat >/dev/null
printf 'lxc.net.0.type = veth\nlxc.net.0.link = %s\nlxc.net.0.flags = up\nlxc.mount.entry = /usr usr none ro,bind 0 0\n' $NET > $W/c.conf
$COOP create -n nb -t busybox -f $W/c.conf --root-password bench >/dev/null
ROOTFS=$COOP_ROOT/nb/rootfs
ln -s usr/lib $ROOTFS/lib; ln -s usr/lib64 $ROOTFS/lib64
ip link add $BR type bridge && ip addr add $S2.1/24 dev $BR && ip link set $BR up
mkdir -p $LXCP/ln
cat > $LXCP/ln/config <<CFG
lxc.include = /usr/share/lxc/config/common.conf
lxc.rootfs.path = dir:$ROOTFS
lxc.uts.name = ln
lxc.signal.halt = SIGUSR1
lxc.tty.max = 1
lxc.pty.max = 1
lxc.mount.auto = cgroup:mixed proc:mixed sys:ro
lxc.mount.entry = /usr usr none ro,bind 0 0
lxc.net.0.type = veth
lxc.net.0.link = $BR
lxc.net.0.flags = up
lxc.net.0.ipv4.address = $S2.2/24
CFG
$COOP start -n nb
CIP=$($COOP info -n nb --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0])')
$COOP attach -n nb -- /usr/bin/iperf3 -s -D -1 >/dev/null
sleep 0.5
coop_bps=$(iperf3 -c $CIP -t $SECS -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
$COOP stop -k -n nb
lxc-start -P $LXCP -n ln -d
sleep 0.5
lxc-attach -P $LXCP -n ln -- /usr/bin/iperf3 -s -D -1 >/dev/null
sleep 0.5
lxc_bps=$(iperf3 -c $S2.2 -t $SECS -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])')
python3 - "$coop_bps" "$lxc_bps" <<'PY'
import sys
c,l=float(sys.argv[1]),float(sys.argv[2])
print(f"{'TCP host -> container':<28}{'coop Gbit/s':>12}{'LXC Gbit/s':>12}{'ratio':>8}")
print(f"{'iperf3, one stream':<28}{c/1e9:>12.2f}{l/1e9:>12.2f}{c/l:>8.2f}")
PY
