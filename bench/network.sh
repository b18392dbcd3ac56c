#!/usr/bin/env bash
# TCP throughput host -> container with iperf3, coop's veth on a coop network against
# LXC's veth on a plain bridge, in one run, on the same busybox rootfs (the host's /usr
# bound read-only inside for iperf3). Needs root, lxc, iperf3.
#
# One pair of runs is not a measurement on a shared machine (two single runs gave ratios
# 1.20 and 0.88). Both containers run at once, each with an iperf3 server, and the client
# alternates between them PAIRS times (who goes first alternates too), SECS seconds each
# after OMIT seconds left out (TCP slow start). Prints the median Gbit/s of each, the
# ratio of the medians, the median of the per-pair ratios with their range, and the load.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
for t in lxc-start iperf3 python3; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
COOP=${COOP:-$(scripts/build-static.sh)/coop}
SECS=${SECS:-5}
PAIRS=${PAIRS:-5}
OMIT=${OMIT:-1}
W=$(mktemp -d /tmp/coopnet.XXXX)
NET=cnb$$; BR=lnb$$; LN=ln$$
export COOP_ROOT=$W/coop
LXCP=$W/lxc
cleanup() {
  $COOP destroy -f -n nb 2>/dev/null || true
  $COOP net rm $NET 2>/dev/null || true
  lxc-stop -k -P $LXCP -n $LN 2>/dev/null || true
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
mkdir -p $LXCP/$LN
cat > $LXCP/$LN/config <<CFG
lxc.include = /usr/share/lxc/config/common.conf
lxc.rootfs.path = dir:$ROOTFS
lxc.uts.name = $LN
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
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
$COOP start -n nb
CIP=$($COOP info -n nb --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ips"][0])')
$COOP attach -n nb -- /usr/bin/iperf3 -s -D >/dev/null
lxc-start -P $LXCP -n $LN -d
lxc-attach -P $LXCP -n $LN -- /usr/bin/iperf3 -s -D >/dev/null
sleep 0.5
bps() { iperf3 -c "$1" -t $SECS -O $OMIT -J | python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"])'; }
: > $W/runs
for i in $(seq $PAIRS); do
  if [ $((i % 2)) = 1 ]; then c=$(bps $CIP); l=$(bps $S2.2); else l=$(bps $S2.2); c=$(bps $CIP); fi
  echo "$c $l" >> $W/runs
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$W/runs" "$SECS" "$OMIT" "$LOAD0" "$LOAD1" <<'PY'
import statistics,sys
runs=[tuple(map(float,l.split())) for l in open(sys.argv[1]) if l.strip()]
c=[r[0]/1e9 for r in runs]; l=[r[1]/1e9 for r in runs]; q=[a/b for a,b in zip(c,l)]
med=statistics.median
print(f"TCP host -> container, iperf3 one stream, {len(runs)} alternating pairs x {sys.argv[2]} s (first {sys.argv[3]} s omitted)")
print(f"{'':<10}{'median Gbit/s':>15}{'min':>8}{'max':>8}")
print(f"{'coop':<10}{med(c):>15.2f}{min(c):>8.2f}{max(c):>8.2f}")
print(f"{'LXC':<10}{med(l):>15.2f}{min(l):>8.2f}{max(l):>8.2f}")
print(f"ratio of medians (coop/LXC) {med(c)/med(l):.3f}; per-pair ratios: median {med(q):.3f}, range {min(q):.3f}..{max(q):.3f}")
print(f"load average before {sys.argv[4]}, after {sys.argv[5]}")
PY
