#!/usr/bin/env bash
# SPICE scene benchmark (issues 4 and 5): coop's SPICE server (Xvfb + `coop spice serve`)
# against Xspice (spice-server 0.15.1) on the same scripted X scenes (connect + first
# frame, typing, moving a window, scrolling text, a 25 fps video region), in one run,
# per codec forced and in auto mode. Prints bytes per channel and scene, server CPU, time
# to the first complete frame, and the ratios. Needs root-free X tools only: Xvfb,
# xserver-xspice, spice-client-gtk (spicy-screenshot, spicy-stats), xterm, xdotool,
# imagemagick, python3; and /work/shared/peers/xspice.conf (Xspice's stock config crashes).
#
#   bench/spice-scenes.sh                      # everything (about 10 minutes)
#   bench/spice-scenes.sh --ours auto_glz --xspice auto_glz --shots 3
#   COOP=/path/to/coop bench/spice-scenes.sh --json out.json
#
# Uses X displays :80 (ours) and :81 (Xspice), SPICE ports 5980/5981 and relays 6980/6981
# unless told otherwise (--ours-display, --ours-port, ...; see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ -z "${COOP:-}" ]; then
  cargo build --release -q -p coop
  COOP=${CARGO_TARGET_DIR:-$PWD/target}/release/coop
fi
PYTHONDONTWRITEBYTECODE=1 exec python3 bench/spice/scenes.py --coop "$COOP" "$@"
