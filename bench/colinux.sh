#!/usr/bin/env bash
# coLinux (User-Mode Linux) side by side, in one run:
#   boot: median of RUNS runs each of
#     - coop start -> first usable `coop attach -- true`, busybox coLinux instance;
#     - linux.uml alone, exec -> a marker printed by a busybox initramfs's /init;
#     - QEMU 7.2 software emulation (TCG), exec -> the same marker, the Debian kernel of
#       the UML kernel's release (else the newest Debian 6.1 kernel, said in the output);
#     - coop start -> `coop attach -- true`, busybox container;
#   disk: dd write (O_DIRECT + fsync) and read (O_DIRECT) in the guest, on its ubd disk,
#     against the same dd on the host filesystem that holds the image;
#   network: iperf3 TCP host -> guest and guest -> host over conet (the guest's eth0 on a
#     coop network) against host <-> busybox container over its veth on the same network.
#     The guest runs the host's iperf3 from a read-only share of /usr through the host's
#     dynamic loader; the container binds the host's /usr.
# Prints medians and ratios. Needs root, user-mode-linux, iperf3, busybox-static and
# QEMU unpacked where scripts/deps.sh test puts it ($COOP_QEMU_ROOT).
# Knobs: RUNS (10), SECS (iperf3 seconds, 5), DD_MB (256), NET/SUB (network name and
# its /24 as A.B.C), PORT (iperf3, 7101).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
for t in linux.uml iperf3 python3 busybox apt-get dpkg-deb; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }
done
QROOT=${COOP_QEMU_ROOT:-/var/cache/coop/qemu/root}
QEMU=$QROOT/usr/bin/qemu-system-x86_64
[ -x "$QEMU" ] || { echo "needs QEMU unpacked in $QROOT (scripts/deps.sh test)" >&2; exit 1; }
RUNS=${RUNS:-10}
SECS=${SECS:-5}
DD_MB=${DD_MB:-256}
PORT=${PORT:-7101}
BIN=$(scripts/build-static.sh)
export COOP_GUEST_AGENT=$BIN/coop-guest-agent
COOP=$BIN/coop
W=$(mktemp -d /tmp/coopco.XXXX)
export COOP_ROOT=$W/coop
NET=${NET:-cbco$$}
cleanup() {
  for n in btco btct btcn btcv; do $COOP destroy -f -n $n 2>/dev/null || true; done
  $COOP net rm $NET 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- The kernels -----------------------------------------------------------------------
REL=$(ls /usr/lib/uml/modules | sort -V | tail -1)   # the UML kernel's release, e.g. 6.1.176
KCACHE=/var/cache/coop/qemu/kernel
mkdir -p $KCACHE
# The Debian kernel package whose version is the UML release, else the newest 6.1 one.
KPKG=$(apt-cache show linux-image-amd64 2>/dev/null | awk -v r="$REL" '
  /^Version:/ { v = $2 }
  /^Depends:/ { if (index(v, r "-") == 1) { split($2, d, " "); print d[1]; exit } }')
KNOTE="same release as the UML kernel ($REL)"
if [ -z "$KPKG" ]; then
  KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  KNOTE="NOT the UML release ($REL): Debian has no $REL kernel package"
fi
KIMG=$(ls $KCACHE/x/boot/vmlinuz-${KPKG#linux-image-} 2>/dev/null || true)
if [ -z "$KIMG" ]; then
  (cd $KCACHE && apt-get download -qq "$KPKG" 2>/dev/null)
  mkdir -p $KCACHE/x
  dpkg-deb --fsys-tarfile $KCACHE/${KPKG}_*.deb | tar -x -C $KCACHE/x ./boot
  KIMG=$(ls $KCACHE/x/boot/vmlinuz-${KPKG#linux-image-})
fi
KVER=$(dpkg-deb -f $KCACHE/${KPKG}_*.deb Version 2>/dev/null || echo "?")

# A busybox initramfs whose /init prints a marker and powers off.
IR=$W/initramfs
mkdir -p $IR/bin $IR/dev $IR/proc
cp "$(command -v busybox)" $IR/bin/busybox
mknod $IR/dev/console c 5 1
printf '#!/bin/busybox sh\necho COOP-INIT-MARKER\n/bin/busybox poweroff -f\n' > $IR/init
chmod +x $IR/init
(cd $IR && find . | busybox cpio -o -H newc > $W/initrd.cpio 2>/dev/null)

# --- Instances -------------------------------------------------------------------------
$COOP create -n btco --kind colinux -t busybox --memory 128M >/dev/null
echo 'lxc.net.0.type = empty' > $W/empty.conf
$COOP create -n btct -t busybox -f $W/empty.conf >/dev/null

# --- Boot ------------------------------------------------------------------------------
# lpj as coop computes it (BogoMIPS * 500000 / UML's HZ of 100), for linux.uml run alone.
LPJ=$(awk '/^bogomips/ { printf "%d", $3 * 5000; exit }' /proc/cpuinfo)
python3 - "$W" "$COOP" "$RUNS" "$QEMU" "$QROOT" "$KIMG" "$W/initrd.cpio" "$LPJ" <<'PY'
import json, os, signal, statistics, subprocess, sys, time
w, coop, runs, qemu, qroot, kimg, initrd, lpj = sys.argv[1:]
runs = int(runs)
env = dict(os.environ)
qenv = dict(env, LD_LIBRARY_PATH=f"{qroot}/usr/lib/x86_64-linux-gnu:{qroot}/lib/x86_64-linux-gnu")

def run(*a, **kw):
    subprocess.run(a, check=True, stdout=subprocess.DEVNULL, **kw)

def start_attach(name, stop):
    t = time.monotonic()
    run(coop, "start", "-n", name)
    run(coop, "attach", "-n", name, "--", "true")
    d = time.monotonic() - t
    run(coop, "stop", *stop, "-n", name)
    return d

def to_marker(cmd, e):
    """Exec to the marker on stdout; then wait for the power-off (kill after 30 s)."""
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=e, start_new_session=True)
    buf, d = b"", None
    while True:
        b = os.read(p.stdout.fileno(), 65536)
        if not b:
            break
        buf += b
        if d is None and b"COOP-INIT-MARKER" in buf:
            d = time.monotonic() - t
    try:
        p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # UML helpers outlive a killed kernel
    except ProcessLookupError:
        pass
    p.wait()
    if d is None:
        sys.exit(f"no marker from {cmd[0]}:\n{buf[-2000:].decode(errors='replace')}")
    return d

# The fast-boot arguments of coop_colinux::FAST_BOOT_ARGS (keep in step).
uml = ["linux.uml", "mem=128M", f"initrd={initrd}", "rdinit=/init", "con=null",
       "con0=fd:0,fd:1", "ssl=null", f"umid=coopbench{os.getpid()}", f"uml_dir={w}",
       "initcall_blacklist=raid6_select_algo,init_zswap", "pty.legacy_count=0"] + \
      ([f"lpj={lpj}"] if lpj else [])
q = [qemu, "-L", f"{qroot}/usr/share/seabios", "-L", f"{qroot}/usr/share/qemu", "-accel", "tcg",
     "-m", "256", "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
     "-kernel", kimg, "-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1"]
res = {k: [] for k in ("co", "uml", "qemu", "ct")}
# Warm-up (page cache, first-boot journal): one of each, not counted.
start_attach("btco", []); start_attach("btct", ["-k"])
for i in range(runs):
    res["co"].append(start_attach("btco", []))
    res["uml"].append(to_marker(uml, dict(env, TMPDIR="/dev/shm")))
    res["qemu"].append(to_marker(q, qenv))
    res["ct"].append(start_attach("btct", ["-k"]))
m = {k: statistics.median(v) * 1000 for k, v in res.items()}
json.dump({"runs": res, "median_ms": m}, open(f"{w}/boot.json", "w"))
print(f"\nBoot, median of {runs} runs (ms):")
print(f"{'what':<58}{'median':>9}{'min':>8}{'max':>8}")
for k, label in [("co", "coLinux: coop start -> first usable attach -- true"),
                 ("uml", "linux.uml alone: exec -> initramfs /init marker"),
                 ("qemu", "QEMU TCG: exec -> same initramfs /init marker"),
                 ("ct", "container: coop start -> attach -- true")]:
    v = [x * 1000 for x in res[k]]
    print(f"{label:<58}{m[k]:>9.0f}{min(v):>8.0f}{max(v):>8.0f}")
print(f"ratio coLinux attach / QEMU marker:  {m['co'] / m['qemu']:.3f}  (target <= 0.3)")
print(f"ratio linux.uml marker / QEMU marker: {m['uml'] / m['qemu']:.3f}")
print(f"ratio coLinux / container:           {m['co'] / m['ct']:.1f}")
PY
echo "QEMU kernel: $KPKG $KVER, $KNOTE"

# --- Disk ------------------------------------------------------------------------------
IMGDIR=$COOP_ROOT/btco/rootfs
$COOP start -n btco
$COOP attach -n btco -- true
ddrate() {  # stdin: dd's stderr (GNU or busybox); prints MB/s from bytes and seconds
  python3 -c '
import re,sys
t=sys.stdin.read()
b=re.search(r"(\d+) bytes",t); s=re.search(r"copied, ([0-9.]+) s",t)
print("%.0f" % (int(b.group(1))/float(s.group(1))/1e6) if b and s and float(s.group(1))>0 else "?")'
}
# Busybox's dd prints no rate: time it in the guest with /proc/uptime (10 ms steps; the
# guest clock is the host's).
gdd() {  # dd arguments; prints MB/s
  $COOP attach -n btco -- sh -c "s=\$(cut -d' ' -f1 /proc/uptime); dd $* 2>/dev/null; \
    e=\$(cut -d' ' -f1 /proc/uptime); echo \$s \$e" |
    awk -v mb=$DD_MB '{ d = $2 - $1; if (d > 0) printf "%.0f", mb * 1.048576 / d; else print "?" }'
}
GW=$(gdd if=/dev/zero of=/root/dd.bin bs=1M count=$DD_MB oflag=direct conv=fsync)
GR=$(gdd if=/root/dd.bin of=/dev/null bs=1M iflag=direct)
$COOP attach -n btco -- rm -f /root/dd.bin
$COOP stop -n btco >/dev/null
HW=$(dd if=/dev/zero of=$IMGDIR/dd.bin bs=1M count=$DD_MB oflag=direct conv=fsync 2>&1 | ddrate)
HR=$(dd if=$IMGDIR/dd.bin of=/dev/null bs=1M iflag=direct 2>&1 | ddrate)
rm -f $IMGDIR/dd.bin
python3 - "$GW" "$GR" "$HW" "$HR" "$DD_MB" <<'PY'
import sys
gw, gr, hw, hr, mb = sys.argv[1:]
r = lambda g, h: f"{float(g)/float(h):.2f}" if g != "?" and h != "?" else "?"
print(f"\nDisk, dd {mb} MiB, bs=1M, O_DIRECT (+fsync on write), MB/s:")
print(f"{'':<8}{'guest ubd':>11}{'host fs':>10}{'ratio':>8}")
print(f"{'write':<8}{gw:>11}{hw:>10}{r(gw, hw):>8}")
print(f"{'read':<8}{gr:>11}{hr:>10}{r(gr, hr):>8}")
print("(UML opens the image without O_DIRECT: the guest's direct reads and writes go through")
print(" the host's page cache, the host's own go to the disk; the write's fsync reaches it.)")
PY

# --- Network ---------------------------------------------------------------------------
if [ -z "${SUB:-}" ]; then
  SUB=$(python3 - <<'PY'
import random
routes=open('/proc/net/route').read()
for _ in range(500):
    b,c=random.randint(100,250),random.randint(1,250)
    if '%02X%02X%02X' % (c,b,10) not in routes:
        print(f"10.{b}.{c}"); break
PY
)
fi
$COOP net create $NET --subnet $SUB.1/24 --no-nat >/dev/null
printf 'lxc.net.0.type = veth\nlxc.net.0.link = %s\nlxc.net.0.flags = up\ncoop.colinux.share = /usr:/host/usr:ro\n' \
  $NET > $W/cn.conf
$COOP create -n btcn --kind colinux -t busybox --memory 256M -f $W/cn.conf >/dev/null
printf 'lxc.net.0.type = veth\nlxc.net.0.link = %s\nlxc.net.0.flags = up\nlxc.mount.entry = /usr usr none ro,bind 0 0\n' \
  $NET > $W/cv.conf
$COOP create -n btcv -t busybox -f $W/cv.conf >/dev/null
ln -s usr/lib $COOP_ROOT/btcv/rootfs/lib 2>/dev/null || true
ln -s usr/lib64 $COOP_ROOT/btcv/rootfs/lib64 2>/dev/null || true
$COOP start -n btcn
$COOP start -n btcv
guest_ip() {  # NAME: the guest's eth0 address once DHCP gave it one
  for _ in $(seq 300); do
    ip=$($COOP attach -n $1 -- ip -4 -o addr show eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1)
    [ -n "$ip" ] && { echo $ip; return; }
    sleep 0.2
  done
  echo "no address on $1" >&2; exit 1
}
GIP=$(guest_ip btcn)
CIP=$(guest_ip btcv)
# The loader itself, not the /lib64 symlink: hostfs shows absolute symlinks as they are.
LDSO=/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
GIPERF=(/host$LDSO --library-path /host/usr/lib/x86_64-linux-gnu /host/usr/bin/iperf3)
# The first start reads iperf3 and its libraries through hostfs: warm them up.
$COOP attach -n btcn -- "${GIPERF[@]}" --version >/dev/null
listening() {  # NAME: true once something listens on $PORT in it (tcp or tcp6)
  $COOP attach -n $1 -- cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
    awk -v p=$(printf ':%04X' $PORT) '$2 ~ p"$" && $4 == "0A" { f = 1 } END { exit !f }'
}
iperf() {  # NAME IP [-R]: Gbit/s received, one iperf3 server per test
  if [ $1 = btcn ]; then
    $COOP attach -n $1 -- "${GIPERF[@]}" -s -D -1 -p $PORT >/dev/null
  else
    $COOP attach -n $1 -- /usr/bin/iperf3 -s -D -1 -p $PORT >/dev/null
  fi
  for _ in $(seq 300); do listening $1 && break; sleep 0.1; done
  iperf3 -c $2 -p $PORT -t $SECS -J ${3:-} > $W/iperf.json 2>/dev/null || true
  python3 - $W/iperf.json <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
try:
    print("%.3f" % (j["end"]["sum_received"]["bits_per_second"] / 1e9))
except KeyError:
    print(f"iperf3: {j.get('error', 'no result')}", file=sys.stderr)
    print("nan")
PY
}
G_IN=$(iperf btcn $GIP); G_OUT=$(iperf btcn $GIP -R)
C_IN=$(iperf btcv $CIP); C_OUT=$(iperf btcv $CIP -R)
python3 - "$G_IN" "$G_OUT" "$C_IN" "$C_OUT" "$SECS" <<'PY'
import sys
gi, go, ci, co, secs = sys.argv[1:]
print(f"\nNetwork, iperf3 TCP {secs} s, Gbit/s:")
print(f"{'':<16}{'coLinux conet':>15}{'container veth':>16}{'ratio':>8}")
print(f"{'host -> guest':<16}{gi:>15}{ci:>16}{float(gi)/float(ci):>8.3f}")
print(f"{'guest -> host':<16}{go:>15}{co:>16}{float(go)/float(co):>8.3f}")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
