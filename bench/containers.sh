#!/usr/bin/env bash
# Containers side by side with LXC, in one run, on the same busybox rootfs:
#   start (detached, returns when init runs), stop -k, attach -- true, with and without
#   a veth on a bridge; and the resident memory of the per-container monitor.
# Prints medians and ratios (coop / LXC). Needs root, lxc and hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
export PATH="$HOME/.cargo/bin:$PATH"
for t in lxc-start hyperfine python3; do command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }; done
# The same static build the setup script installs.
COOP=$(scripts/build-static.sh)/coop
RUNS=${RUNS:-30}
W=$(mktemp -d /tmp/coopbench.XXXX)
BR=cbbr$$
NET=cbn$$
export COOP_ROOT=$W/coop
LXCP=$W/lxc
cleanup() {
  $COOP destroy -f -n cb 2>/dev/null || true
  $COOP destroy -f -n cbv 2>/dev/null || true
  $COOP net rm $NET 2>/dev/null || true
  for c in lb lbv; do lxc-stop -k -P $LXCP -n $c 2>/dev/null || true; done
  ip link del $BR 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p $LXCP/lb $LXCP/lbv
echo 'lxc.net.0.type = empty' > $W/empty.conf
$COOP create -n cb -t busybox -f $W/empty.conf --root-password bench >/dev/null
ROOTFS=$COOP_ROOT/cb/rootfs
# A /24 nobody uses, for coop's network.
SUB=$(python3 - <<'PY'
import random
routes=open('/proc/net/route').read()
for _ in range(500):
    b,c=random.randint(100,250),random.randint(1,250)
    if '%02X%02X%02X' % (c,b,10) not in routes:
        print(f"10.{b}.{c}.1/24"); break
PY
)
$COOP net create $NET --subnet $SUB >/dev/null
printf 'lxc.net.0.type = veth\nlxc.net.0.link = %s\nlxc.net.0.flags = up\n' $NET > $W/veth.conf
$COOP create -n cbv -t busybox -f $W/veth.conf --root-password bench >/dev/null
ip link add $BR type bridge && ip link set $BR up
for c in lb lbv; do
  cat > $LXCP/$c/config <<CFG
lxc.include = /usr/share/lxc/config/common.conf
lxc.rootfs.path = dir:$ROOTFS
lxc.uts.name = $c
lxc.signal.halt = SIGUSR1
lxc.tty.max = 4
lxc.pty.max = 1
lxc.mount.auto = cgroup:mixed proc:mixed sys:ro
CFG
done
echo 'lxc.net.0.type = empty' >> $LXCP/lb/config
printf 'lxc.net.0.type = veth\nlxc.net.0.link = %s\nlxc.net.0.flags = up\n' $BR >> $LXCP/lbv/config

hf() { hyperfine -N -w 3 -r $RUNS --export-json "$1" "${@:2}" >"$1.log" 2>&1 || { cat "$1.log" >&2; exit 1; }; }
# Starts are interleaved (one of each of the four per round, the order rotating): the
# veth's cost is a difference of two starts, and on a shared VM the speed drifts by more
# than that between two hyperfine batches run a minute apart. Each container is stopped
# (-k) right after its timed start, so no other container runs during a measurement.
python3 - "$W" "$RUNS" "$COOP" "$LXCP" <<'PY'
import json, os, subprocess, sys, time
w, runs, coop, lxcp = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
variants = {
    "coop": ([coop, "stop", "-k", "-n", "cb"], [coop, "start", "-n", "cb"]),
    "coopv": ([coop, "stop", "-k", "-n", "cbv"], [coop, "start", "-n", "cbv"]),
    "lxc": (["lxc-stop", "-k", "-P", lxcp, "-n", "lb"], ["lxc-start", "-P", lxcp, "-n", "lb", "-d"]),
    "lxcv": (["lxc-stop", "-k", "-P", lxcp, "-n", "lbv"], ["lxc-start", "-P", lxcp, "-n", "lbv", "-d"]),
}
names = list(variants)
times = {n: [] for n in names}
null = subprocess.DEVNULL
quiet = [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_WRONLY, 0) for fd in (1, 2)]
def timed(argv):
    # posix_spawn (vfork) adds ~0.6 ms, as hyperfine's own spawn does.
    t = time.perf_counter()
    pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=quiet)
    status = os.waitpid(pid, 0)[1]
    return time.perf_counter() - t, os.waitstatus_to_exitcode(status)
for stop, _ in variants.values():
    subprocess.run(stop, stdout=null, stderr=null)
for r in range(runs + 3):
    for k in range(len(names)):
        n = names[(r + k) % len(names)]
        stop, start = variants[n]
        dt, rc = timed(start)
        if rc != 0:
            sys.exit(f"{' '.join(start)} failed with exit status {rc}")
        subprocess.run(stop, stdout=null, stderr=null)
        if r >= 3:  # warm-up rounds
            times[n].append(dt)
for n in names:
    subprocess.run(variants[n][0], stdout=null, stderr=null)
def save(f, a, b):
    json.dump({"results": [{"times": times[a]}, {"times": times[b]}]}, open(f"{w}/{f}.json", "w"))
save("start", "coop", "lxc")
save("startv", "coopv", "lxcv")
PY
hf $W/stop.json \
  --prepare "sh -c '$COOP start -n cb; true'" "$COOP stop -k -n cb" \
  --prepare "sh -c 'lxc-start -P $LXCP -n lb -d; true'" "lxc-stop -k -P $LXCP -n lb"
$COOP start -n cb 2>/dev/null || true
lxc-start -P $LXCP -n lb -d 2>/dev/null || true
hf $W/attach.json "$COOP attach -n cb -- true" "lxc-attach -P $LXCP -n lb -- true"
# The steady state: coop-monitor sheds its start-up pages after 250 ms without work.
sleep 0.5
MON=$(python3 -c "import json;print(json.load(open('$COOP_ROOT/.run/cb/state.json'))['monitor_pid'])")
COOP_RSS=$(awk '/VmRSS/{print $2}' /proc/$MON/status)
LXC_RSS=$(ps -eo rss,args | awk -v p="$LXCP" '/\[lxc monitor\]/ && index($0,p) {print $1; exit}')
python3 - "$W" "$COOP_RSS" "${LXC_RSS:-0}" <<'PY'
import json,sys,statistics
w,crss,lrss=sys.argv[1],int(sys.argv[2]),int(sys.argv[3])
def med(f):
    r=json.load(open(f"{w}/{f}.json"))["results"]
    return [statistics.median(x["times"])*1000 for x in r]
print(f"{'what':<34}{'coop ms':>10}{'LXC ms':>10}{'ratio':>8}")
for f,label in [("start","start (no network)"),("startv","start (veth on a bridge)"),("stop","stop -k"),("attach","attach -- true")]:
    c,l=med(f)
    print(f"{label:<34}{c:>10.2f}{l:>10.2f}{c/l:>8.2f}")
s=[med(f) for f in ("start","startv")]
print(f"{'veth adds to start':<34}{s[1][0]-s[0][0]:>10.2f}{s[1][1]-s[0][1]:>10.2f}")
print(f"{'monitor RSS (KiB)':<34}{crss:>10}{lrss:>10}{(crss/lrss if lrss else float('nan')):>8.2f}")
PY
