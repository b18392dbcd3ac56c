#!/usr/bin/env bash
# Installs the Debian packages coop needs (as root). Sourced by setup.sh and test.sh.
# Usage: deps.sh run|test   — "run" is what coop itself uses, "test" adds the test peers.
set -euo pipefail
want_run=(busybox-static debootstrap nftables dnsmasq-base iproute2 e2fsprogs xz-utils zstd user-mode-linux xvfb
          musl-tools)
want_test=(lxc xvfb x11-apps x11-utils x11-xserver-utils xterm xdotool xclip imagemagick
           spice-client-gtk virt-viewer xserver-xspice user-mode-linux iperf3 hyperfine tshark openssl)
pkgs=("${want_run[@]}")
[ "${1:-run}" = test ] && pkgs+=("${want_test[@]}")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "coop: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "coop: no Rust toolchain found (cargo); install one with rustup" >&2
    exit 1
  fi
fi
# The static coop is linked against musl (see build-static.sh); without the target it
# falls back to static glibc, so a failure here costs start-up time, not the build.
musl_target=$(rustc -vV | awk '/^host:/ {sub(/-gnu$/, "-musl", $2); print $2}')
if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$musl_target" ] && command -v rustup >/dev/null; then
  timeout 300 rustup target add "$musl_target" >/dev/null 2>&1 \
    || echo "coop: cannot add the Rust target $musl_target; coop will be linked against glibc" >&2
fi
if [ "${1:-run}" = test ]; then
  # QEMU 7.2 does not apt-get install next to this image's newer qemu-utils; the SPICE
  # client tests run it unpacked (see shared/docs/environment.md).
  export COOP_QEMU_ROOT=${COOP_QEMU_ROOT:-/var/cache/coop/qemu/root}
  if [ ! -x "$COOP_QEMU_ROOT/usr/bin/qemu-system-x86_64" ]; then
    echo "coop: unpacking QEMU for the SPICE client tests into $COOP_QEMU_ROOT"
    qdebs=$(dirname "$COOP_QEMU_ROOT")/debs
    mkdir -p "$qdebs" "$COOP_QEMU_ROOT"
    (cd "$qdebs" && apt-get download -qq qemu-system-x86 qemu-system-common qemu-system-data \
        seabios ipxe-qemu libcapstone4 libfdt1 libpmem1 librdmacm1 libibverbs1 libslirp0 \
        libvdeplug2 libndctl6 libdaxctl1 libnl-3-200 libnl-route-3-200)
    for d in "$qdebs"/*.deb; do dpkg -x "$d" "$COOP_QEMU_ROOT"; done
  fi
fi
