#!/usr/bin/env bash
# `coop view --screenshot` against spice-gtk's `spicy-screenshot`, in one run, on the same
# servers: Xspice (spice-server 0.15.1) showing a scene, our own `coop spice serve` on an
# Xvfb with the same scene, and QEMU 7.2 (TCG, -vga qxl, SeaBIOS screen) when
# COOP_QEMU_ROOT points at the unpacked QEMU (scripts/deps.sh test does that).
# Both clients write a PPM of the first complete frame (ours: at the server's MARK,
# --wait-ms 0; spicy-screenshot: at its first display update) and exit. Prints hyperfine
# medians of wall time and mean user+system CPU, the ratios ours/theirs, and whether both
# pictures are identical. Needs root only for nothing; needs Xspice, Xvfb, hyperfine.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
for t in Xspice Xvfb spicy-screenshot hyperfine xterm display convert xsetroot python3; do
  command -v $t >/dev/null || { echo "needs $t" >&2; exit 1; }
done
CONF=${COOP_XSPICE_CONF:-}
for c in "$CONF" ../shared/peers/xspice.conf /work/shared/peers/xspice.conf; do
  [ -n "$c" ] && [ -f "$c" ] && { CONF=$c; break; }
done
[ -f "$CONF" ] || { echo "needs shared/peers/xspice.conf (Xspice's stock config crashes)" >&2; exit 1; }
cargo build --release -q -p coop
COOP=$PWD/target/release/coop
RUNS=${RUNS:-20}
W=$(mktemp -d /tmp/coopview.XXXX)
BASE=$((15900 + RANDOM % 50))
free_display() { local n=$1; while [ -e /tmp/.X$n-lock ] || [ -e /tmp/.X11-unix/X$n ]; do n=$((n + 1)); done; echo $n; }
DX=$(free_display $((300 + RANDOM % 100)))
DY=$(free_display $((DX + 1)))
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do pkill -P "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

wait_x() { for _ in $(seq 100); do xdpyinfo -display "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
scene() {
  DISPLAY=$1 xsetroot -solid '#3366cc'
  DISPLAY=$1 xterm -geometry 60x10+20+20 -e sh -c 'echo coop SPICE bench; sleep 3600' & PIDS+=($!)
  DISPLAY=$1 display -geometry +500+400 "$W/plasma.png" & PIDS+=($!)
  sleep 2
}
convert -size 320x200 plasma:red-blue "$W/plasma.png"

# Xspice.
XS_PORT=$BASE
sed "s/\"SpicePort\" \"5912\"/\"SpicePort\" \"$XS_PORT\"/" "$CONF" >"$W/xspice.conf"
Xspice --config "$W/xspice.conf" -logfile "$W/xspice.log" ":$DX" >/dev/null 2>&1 & PIDS+=($!)
wait_x ":$DX" || { echo "Xspice did not start" >&2; exit 1; }
scene ":$DX"

# Ours on an Xvfb with the same scene.
OURS_PORT=$((BASE + 10))
Xvfb ":$DY" -screen 0 1024x768x24 -nolisten tcp >/dev/null 2>&1 & PIDS+=($!)
wait_x ":$DY" || { echo "Xvfb did not start" >&2; exit 1; }
scene ":$DY"
$COOP spice serve --x11 ":$DY" --port $OURS_PORT --disable-ticketing >"$W/coop.log" 2>&1 & PIDS+=($!)
wait_port $OURS_PORT || { cat "$W/coop.log" >&2; exit 1; }

SERVERS=("xspice:$XS_PORT" "coop:$OURS_PORT")
QEMU=${COOP_QEMU_ROOT:-/var/cache/coop/qemu/root}
if [ -x "$QEMU/usr/bin/qemu-system-x86_64" ]; then
  Q_PORT=$((BASE + 20))
  LD_LIBRARY_PATH="$QEMU/usr/lib/x86_64-linux-gnu:$QEMU/lib/x86_64-linux-gnu" "$QEMU/usr/bin/qemu-system-x86_64" -L "$QEMU/usr/share/seabios" -L "$QEMU/usr/share/qemu" \
    -machine accel=tcg -m 64 -vga qxl -display none -nodefaults -net none \
    -spice port=$Q_PORT,addr=127.0.0.1,disable-ticketing=on >/dev/null 2>&1 & PIDS+=($!)
  wait_port $Q_PORT
  sleep 3 # let SeaBIOS reach its final screen
  SERVERS+=("qemu:$Q_PORT")
else
  echo "(QEMU not unpacked at $QEMU: skipping the QEMU server)"
fi

printf '%-7s %-22s %10s %10s %8s %8s  %s\n' server what coop spicy ratio "" "pixels"
for s in "${SERVERS[@]}"; do
  name=${s%%:*} port=${s##*:}
  hyperfine -N -w 3 -r "$RUNS" --export-json "$W/$name.json" \
    "$COOP view spice://127.0.0.1:$port --screenshot $W/$name-ours.ppm --wait-ms 0" \
    "spicy-screenshot -h 127.0.0.1 -p $port -o $W/$name-spicy.ppm" >"$W/$name.log" 2>&1 \
    || { cat "$W/$name.log" >&2; exit 1; }
  python3 - "$W/$name.json" "$W/$name-ours.ppm" "$W/$name-spicy.ppm" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
def ppm(p):
    d = open(p, "rb").read()
    # P6 header: magic, width, height, maxval, one whitespace byte, then pixels.
    fields, i = [], 0
    while len(fields) < 4:
        while d[i:i+1].isspace(): i += 1
        j = i
        while not d[j:j+1].isspace(): j += 1
        fields.append(d[i:j]); i = j
    return fields[1:3], d[i+1:]
same = ppm(sys.argv[2]) == ppm(sys.argv[3])
ours, theirs = r[0], r[1]
wall = lambda x: x["median"] * 1e3
cpu = lambda x: (x["user"] + x["system"]) * 1e3
name = sys.argv[4]
print(f"{name:<7} {'wall median (ms)':<22} {wall(ours):10.1f} {wall(theirs):10.1f} {wall(ours)/wall(theirs):8.2f}")
print(f"{name:<7} {'cpu user+sys (ms)':<22} {cpu(ours):10.1f} {cpu(theirs):10.1f} {cpu(ours)/cpu(theirs):8.2f}           {'identical' if same else 'DIFFERENT'}")
PY
done
echo "($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u '+%Y-%m-%d %H:%M UTC'))"
