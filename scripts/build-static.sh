#!/usr/bin/env bash
# Builds `coop`, `coop-monitor` and the coLinux guest agent as static executables and
# prints the directory holding the three (target/static/bin).
#
# Every container command starts a fresh `coop` process, so its start-up cost is paid on
# each `coop start` and `coop attach`:
# - dynamically linked, ~0.4 ms goes to the dynamic loader (symbol lookups, relocations,
#   libgcc_s's and liblzma's constructors);
# - linked statically against glibc, ~0.5 ms still goes to glibc's start-up CPU
#   feature and cache probing, a dozen `cpuid` instructions, each a trap to the
#   hypervisor on a virtual machine;
# - linked statically against musl, which probes nothing, a start costs ~0.6 ms less
#   than with static glibc here (docs/benchmarks.md).
# So coop and coop-monitor are built for the musl target when the Rust toolchain has it
# (setup.sh installs it with rustup, and musl-gcc for the C in ring, zstd and xz); they
# fall back to static glibc otherwise. The guest agent is static glibc, as is
# `coop-full`, the glibc coop the musl one hands its long-running SPICE work to. All stay PIE, so `coop spice serve`, which faces the network, keeps ASLR.
# The viewer window (coop-viewer) stays dynamic: it loads the X libraries at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
HOST=$(rustc -vV | awk '/^host:/ {print $2}')
MUSL=${HOST/-gnu/-musl}
OUT="$PWD/target/static/bin"
mkdir -p "$OUT"
# --target keeps RUSTFLAGS off build scripts and proc-macros (they must stay dynamic).
# The static glibc builds: the guest agent, and coop itself — the whole program as a
# fallback for the musl one, else as `coop-full` beside it (see below).
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -q -p coop -p coop-monitor \
  -p coop-guest-agent --target "$HOST" --target-dir target/static >&2
install -m 0755 "target/static/$HOST/release/coop-guest-agent" "$OUT/"
musl_ok=false
if [ "$MUSL" != "$HOST" ] && command -v musl-gcc >/dev/null \
  && [ -d "$(rustc --print sysroot)/lib/rustlib/$MUSL" ]; then
  if cargo build --release -q -p coop -p coop-monitor --target "$MUSL" --target-dir target/static >&2; then
    install -m 0755 "target/static/$MUSL/release/coop" "target/static/$MUSL/release/coop-monitor" "$OUT/"
    # musl's allocator and string functions slow down the long-running SPICE work; the
    # musl coop hands `spice`, `view` and GUI/coLinux monitors to this glibc build
    # (crates/coop/src/commands/full_build.rs).
    install -m 0755 "target/static/$HOST/release/coop" "$OUT/coop-full"
    musl_ok=true
  fi
fi
if ! $musl_ok; then
  echo "build-static: no $MUSL build (Rust target, musl-gcc); coop is linked against static glibc" >&2
  rm -f "$OUT/coop-full"
  install -m 0755 "target/static/$HOST/release/coop" "target/static/$HOST/release/coop-monitor" "$OUT/"
fi
echo "$OUT"
