#!/usr/bin/env python3
"""SPICE scene benchmark: coop's server (Xvfb + `coop spice serve`) against Xspice
(spice-server 0.15.1) on the same scripted X scenes, in one run.

Each run starts a fresh X server with the same desktop (a solid root, an xterm running
`cat`, an xterm that scrolls on demand, a photo shown with ImageMagick `display`), puts a
counting relay (relay.py) in front of the SPICE port, measures the time to the first
complete frame with spicy-screenshot and `coop view --screenshot`, then connects
spicy-stats (spice-gtk, headless) and keeps it connected through the scenes:

  connect  spicy-stats connects; until the display channel is quiet
  typing   200 characters typed into the xterm with xdotool
  move     the photo window moved 50 steps with xdotool windowmove
  scroll   the second xterm prints 2000 lines, 20 every 50 ms
  video    ImageMagick `animate` plays 125 320x240 frames at 25 fps (a panning plasma
           with per-frame noise)

Per scene: bytes per channel on the wire (server to client), bytes per display message
type and per image type, server CPU (utime+stime from /proc). Prints the tables and the
ratios issues 4 and 5 ask for; `--json FILE` keeps the raw figures.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from relay import Relay, delta  # noqa: E402

TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")
SCENES = ["connect", "typing", "move", "scroll", "video"]
TYPED = ("The quick brown fox jumps over the lazy dog. " * 4 + "SPICE scene bench 0123456789")[:200]
XSPICE_CONF = "/work/shared/peers/xspice.conf"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Procs:
    """The processes this run started; stopped by pid, newest first."""

    def __init__(self):
        self.ps = []

    def spawn(self, args, env=None, **kw):
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        p = subprocess.Popen(args, env=env, **kw)
        self.ps.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, wait=5):
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.ps:
            self.ps.remove(p)

    def stop_all(self):
        for p in reversed(list(self.ps)):
            self.stop(p)


def xenv(display):
    e = dict(os.environ)
    e["DISPLAY"] = display
    return e


def run(args, display=None, check=True, **kw):
    r = subprocess.run(args, env=xenv(display) if display else None, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(args), r.stderr.strip()))
    return r


def wait_for(pred, timeout, what):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def x_ready(display):
    return subprocess.run(["xdpyinfo", "-display", display], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def port_open(port):
    s = socket.socket()
    try:
        s.settimeout(0.2)
        s.connect(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def window_id(display, title):
    r = run(["xdotool", "search", "--name", "^%s$" % title], display, check=False)
    ids = r.stdout.split()
    return ids[0] if ids else None


def cpu_ms(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return (int(rest[11]) + int(rest[12])) * TICK_MS
    except (OSError, IndexError, ValueError):
        return float("nan")


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    m = re.match(rb"P6\s+(?:#.*\s+)*(\d+)\s+(\d+)\s+(\d+)\s", data)
    if not m:
        raise RuntimeError("%s is not a binary PPM" % path)
    w, h = int(m.group(1)), int(m.group(2))
    return w, h, data[m.end(): m.end() + w * h * 3]


def diff_pixels(a, b):
    if len(a) != len(b):
        return -1
    n = 0
    step = 3 * 1024
    for i in range(0, len(a), step):
        if a[i: i + step] != b[i: i + step]:
            for j in range(i, min(i + step, len(a)), 3):
                if a[j: j + 3] != b[j: j + 3]:
                    n += 1
    return n


def display_free(display):
    """No live X server holds `display` (a lock naming a dead pid is stale: X servers
    take those over)."""
    num = int(display[1:])
    try:
        with open("/tmp/.X%d-lock" % num) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return not x_ready(display)
    return not os.path.exists("/proc/%d" % pid)


class Assets:
    """The photo and the video frames, made once per benchmark run."""

    def __init__(self, work):
        self.photo = os.path.join(work, "photo.png")
        run(["convert", "-seed", "7", "-size", "400x300", "plasma:red-blue", self.photo])
        big = os.path.join(work, "big.ppm")
        run(["convert", "-seed", "5", "-size", "800x600", "plasma:fractal", "-depth", "8", big])
        w, _h, px = read_ppm(big)
        self.frames = []
        fdir = os.path.join(work, "frames")
        os.makedirs(fdir)
        # A camera panning over the plasma: consecutive frames are alike, as in video.
        clean = []
        for i in range(125):
            x0, y0 = 3 * i, 2 * i
            rows = [px[((y0 + r) * w + x0) * 3: ((y0 + r) * w + x0 + 320) * 3] for r in range(240)]
            p = os.path.join(fdir, "c%03d.ppm" % i)
            with open(p, "wb") as f:
                f.write(b"P6\n320 240\n255\n" + b"".join(rows))
            clean.append(p)
        # Plus sensor-like noise (about 1 level on nearly every pixel): real video never
        # repeats pixels exactly, so a pure pan would flatter dictionary codecs (GLZ).
        run(["convert"] + clean + ["-seed", "9", "-attenuate", "1", "+noise", "Uniform",
                                   os.path.join(fdir, "f%03d.ppm")])
        self.frames = [os.path.join(fdir, "f%03d.ppm" % i) for i in range(125)]
        for p in self.frames:
            if not os.path.exists(p):
                raise RuntimeError("convert did not write %s" % p)


class Server:
    """One X server with the desktop on it and a SPICE server showing it."""

    def __init__(self, kind, mode, streaming, work, procs, args):
        self.kind, self.mode, self.streaming = kind, mode, streaming
        self.procs = procs
        self.work = work
        self.label = "%s %s%s" % (kind, mode, "" if streaming is None else " video=" + streaming)
        if kind == "ours":
            self.display, self.port, self.relay_port = ":%d" % args.ours_display, args.ours_port, args.ours_port + 1000
        else:
            self.display, self.port, self.relay_port = ":%d" % args.xspice_display, args.xspice_port, args.xspice_port + 1000
        self.trigger = os.path.join(work, "scroll-go-%s" % kind)
        self.done = os.path.join(work, "scroll-done-%s" % kind)
        for f in (self.trigger, self.done):
            if os.path.exists(f):
                os.remove(f)
        self.pids = {}

    def start(self, coop, assets):
        wait_for(lambda: display_free(self.display), 10, "display %s to be free" % self.display)
        if self.kind == "ours":
            self.x = self.procs.spawn(["Xvfb", self.display, "-screen", "0", "1024x768x24", "-nolisten", "tcp",
                                       "-noreset"])
            wait_for(lambda: x_ready(self.display), 15, "Xvfb " + self.display)
            self.pids["x"] = self.x.pid
        else:
            with open(XSPICE_CONF) as f:
                conf = f.read()
            conf = conf.replace('"SpicePort" "5912"', '"SpicePort" "%d"' % self.port)
            conf = conf.replace('#Option "SpiceImageCompression" ""',
                                'Option "SpiceImageCompression" "%s"' % self.mode)
            if self.streaming:
                conf = conf.replace('#Option "SpiceStreamingVideo" ""',
                                    'Option "SpiceStreamingVideo" "%s"' % self.streaming)
            cpath = os.path.join(self.work, "xspice-%s.conf" % self.mode)
            with open(cpath, "w") as f:
                f.write(conf)
            self.x = self.procs.spawn(["Xspice", "--config", cpath, "-logfile",
                                       os.path.join(self.work, "xspice.log"), self.display])
            wait_for(lambda: x_ready(self.display), 20, "Xspice " + self.display)
            kids = children(self.x.pid)
            if not kids:
                raise RuntimeError("Xspice started no Xorg")
            self.pids["server"] = kids[0]  # Xorg with the spice-server inside
        self.desktop(assets)
        if self.kind == "ours":
            cmd = [coop, "spice", "serve", "--x11", self.display, "--disable-ticketing", "--port",
                   str(self.port), "--image-compression", self.mode]
            if self.streaming:
                cmd += ["--streaming-video", self.streaming]
            self.srv = self.procs.spawn(cmd, stderr=open(os.path.join(self.work, "coop-serve.log"), "w"))
            self.pids["server"] = self.srv.pid
        wait_for(lambda: port_open(self.port), 15, "SPICE port %d" % self.port)

    def desktop(self, assets):
        d = self.display
        run(["xsetroot", "-solid", "#3a6ea5"], d)
        self.procs.spawn(["xterm", "-geometry", "80x24+8+8", "-T", "typeterm", "-e", "cat"], env=xenv(d))
        script = ("while [ ! -e %s ]; do sleep 0.05; done; i=0; while [ $i -lt 100 ]; do j=0; "
                  "while [ $j -lt 20 ]; do printf 'line %%d.%%d the quick brown fox jumps over the lazy dog "
                  "0123456789 ABCDEF\\n' $i $j; j=$((j+1)); done; i=$((i+1)); sleep 0.05; done; "
                  "touch %s; sleep 100000") % (self.trigger, self.done)
        self.procs.spawn(["xterm", "-geometry", "80x24+520+8", "-T", "scrollterm", "-e", "sh", "-c", script],
                         env=xenv(d))
        self.procs.spawn(["display", "-geometry", "+40+380", "-title", "photo", assets.photo], env=xenv(d))
        for t in ("typeterm", "scrollterm", "photo"):
            wait_for(lambda: window_id(d, t), 15, "window %s on %s" % (t, d))
        run(["xdotool", "mousemove", "1010", "750"], d)
        time.sleep(1.5)

    def cpu(self):
        return {k: cpu_ms(p) for k, p in self.pids.items()}

    def stop(self):
        # Xspice's Xorg is its child: end it first with SIGTERM so that it removes its
        # lock and socket, then the rest.
        pid = self.pids.get("server")
        if self.kind == "xspice" and pid:
            try:
                os.kill(pid, signal.SIGTERM)
                wait_for(lambda: not os.path.exists("/proc/%d" % pid), 10, "Xorg %d to exit" % pid)
            except ProcessLookupError:
                pass
        self.procs.stop_all()


def wait_quiet(relay, since, quiet=1.0, timeout=20.0, need_draw=False):
    """Waits until no drawing display message arrived for `quiet` seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        last = relay.last_draw()
        if need_draw and last < since:
            time.sleep(0.05)
            continue
        if time.monotonic() - max(last, since) >= quiet:
            return last
        time.sleep(0.05)
    return relay.last_draw()


def probe_first_frame(srv, coop, args, ref):
    """spicy-screenshot and `coop view --screenshot` through the relay, each a few times."""
    port = str(srv.relay_port)
    spicy, diffs = [], []
    for i in range(args.shots):
        out = os.path.join(srv.work, "shot%d.ppm" % i)
        t = time.monotonic()
        r = subprocess.run(["spicy-screenshot", "-h", "127.0.0.1", "-p", port, "-o", out],
                           capture_output=True, timeout=60)
        el = (time.monotonic() - t) * 1e3
        if r.returncode != 0 or not os.path.exists(out):
            log("  spicy-screenshot failed: %s" % r.stderr.decode(errors="replace").strip())
            continue
        spicy.append(el)
        if ref is not None:
            _w, _h, px = read_ppm(out)
            diffs.append(diff_pixels(px, ref))
    view_first, view_complete, view_wall = [], [], []
    for i in range(args.shots):
        out = os.path.join(srv.work, "view%d.ppm" % i)
        t = time.monotonic()
        r = subprocess.run([coop, "view", "spice://127.0.0.1:%s" % port, "--screenshot", out, "--stats"],
                           capture_output=True, text=True, timeout=60)
        el = (time.monotonic() - t) * 1e3
        m = re.search(r"first frame after (\d+) ms, complete after (\d+) ms", r.stdout)
        if r.returncode != 0 or not m:
            log("  coop view failed: %s" % r.stderr.strip())
            continue
        view_first.append(int(m.group(1)))
        view_complete.append(int(m.group(2)))
        view_wall.append(el)
    med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
    return {"spicy_screenshot_ms": med(spicy), "spicy_screenshot_all": spicy,
            "spicy_pixel_diffs": diffs, "view_first_ms": med(view_first),
            "view_complete_ms": med(view_complete), "view_wall_ms": med(view_wall)}


def first_frame_side_by_side(coop, args, assets, work):
    """Both servers up at once (auto_glz), probed in alternation, so that machine load
    weighs on both alike. Returns {kind: probe figures}."""
    servers = []
    out = {}
    try:
        for kind in ("ours", "xspice"):
            srv = Server(kind, "auto_glz", None, work, Procs(), args)
            servers.append(srv)
            srv.start(coop, assets)
        relays = [Relay(s.relay_port, s.port) for s in servers]
        try:
            runs = {s.kind: [] for s in servers}
            for i in range(args.rounds):
                order = servers if i % 2 == 0 else servers[::-1]
                for s in order:
                    one = argparse.Namespace(shots=1)
                    runs[s.kind].append(probe_first_frame(s, coop, one, None))
            for kind, rs in runs.items():
                col = lambda k: [r[k] for r in rs if r[k] == r[k]]  # noqa: E731  (drops NaN)
                med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
                out[kind] = {k: med(col(k)) for k in ("spicy_screenshot_ms", "view_first_ms",
                                                      "view_complete_ms", "view_wall_ms")}
                out[kind]["spicy_screenshot_all"] = col("spicy_screenshot_ms")
                out[kind]["view_first_all"] = col("view_first_ms")
            for s, r in zip(servers, relays):
                fd = r.snapshot()["first_draws"]
                # Display channel link to the first draw message, and that message's transfer.
                out[s.kind]["link_to_first_draw_ms"] = med([(f[1] - f[0]) * 1e3 for f in fd])
                out[s.kind]["first_draw_transfer_ms"] = med([(f[2] - f[1]) * 1e3 for f in fd])
        finally:
            for r in relays:
                r.close()
    finally:
        for s in servers:
            s.stop()
    return out


def run_scenes(srv, coop, args, assets, ref_holder):
    d = srv.display
    ref_path = os.path.join(srv.work, "ref-%s.ppm" % srv.kind)
    run(["import", "-display", d, "-window", "root", "-depth", "8", ref_path], d)
    _w, _h, ref = read_ppm(ref_path)
    if "ref" not in ref_holder:
        ref_holder["ref"] = ref
    result = {"label": srv.label, "kind": srv.kind, "mode": srv.mode, "streaming": srv.streaming,
              "screen_diff_vs_first_run": diff_pixels(ref, ref_holder["ref"]), "scenes": {}}
    relay = Relay(srv.relay_port, srv.port)
    try:
        s0 = relay.snapshot()
        result["probe"] = probe_first_frame(srv, coop, args, ref)
        s1 = relay.snapshot()
        result["probe"]["bytes"] = delta(s0, s1)
        result["probe"]["connections"] = s1["connections"].get("display", 0)

        marks = []  # (scene, snapshot, cpu, time) at each scene's start

        def mark(name):
            marks.append((name, relay.snapshot(), srv.cpu(), time.monotonic()))

        mark("connect")
        t0 = time.monotonic()
        client = srv.procs.spawn(["spicy-stats", "-h", "127.0.0.1", "-p", str(srv.relay_port)],
                                 stdout=subprocess.PIPE, text=True)
        last = wait_quiet(relay, t0, need_draw=True, timeout=30)
        result["connect_to_quiet_ms"] = (last - t0) * 1e3

        mark("typing")
        t = time.monotonic()
        run(["xdotool", "mousemove", "250", "160"], d)
        time.sleep(0.2)
        run(["xdotool", "type", "--delay", "20", TYPED], d)
        wait_quiet(relay, time.monotonic())

        mark("move")
        wid = window_id(d, "photo")
        x, y = 40, 380
        for _ in range(50):
            x, y = x + 4, y - 2
            run(["xdotool", "windowmove", wid, str(x), str(y)], d)
            time.sleep(0.04)
        wait_quiet(relay, time.monotonic())

        mark("scroll")
        open(srv.trigger, "w").close()
        wait_for(lambda: os.path.exists(srv.done), 120, "the scrolling xterm")
        wait_quiet(relay, time.monotonic())

        mark("video")
        anim = srv.procs.spawn(["animate", "-delay", "4", "-geometry", "+680+480", "-title", "video"]
                               + assets.frames, env=xenv(d))
        wait_for(lambda: window_id(d, "video"), 30, "the animate window")
        time.sleep(5.0)
        srv.procs.stop(anim)
        wait_quiet(relay, time.monotonic(), timeout=30)
        mark("end")

        client.send_signal(signal.SIGINT)
        try:
            out, _ = client.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            client.kill()
            out, _ = client.communicate()
        srv.procs.ps.remove(client)
        result["spicy_stats"] = {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", out or "")}
        for (name, sa, ca, ta), (_n, sb, cb, tb) in zip(marks, marks[1:]):
            result["scenes"][name] = {"bytes": delta(sa, sb), "cpu_ms": {k: cb[k] - ca[k] for k in ca},
                                      "secs": tb - ta}
        _n, sa, ca, ta = marks[0]
        _n, sb, cb, tb = marks[-1]
        result["scenes"]["total"] = {"bytes": delta(sa, sb), "cpu_ms": {k: cb[k] - ca[k] for k in ca},
                                     "secs": tb - ta}
    finally:
        relay.close()
    return result


def down_total(b):
    return sum(b["down"].values())


def fmt_kb(n):
    return "%.1f" % (n / 1000.0)


def print_run(r):
    print("\n== %s  (screen differs from the first run's in %d pixels)" % (r["label"], r["screen_diff_vs_first_run"]))
    p = r["probe"]
    print("first frame: spicy-screenshot median %.0f ms (pixel diffs vs X: %s); coop view first draw %.0f ms,"
          " complete %.0f ms, wall %.0f ms; display bytes per probe connection %s kB"
          % (p["spicy_screenshot_ms"], p["spicy_pixel_diffs"], p["view_first_ms"], p["view_complete_ms"],
             p["view_wall_ms"], fmt_kb(p["bytes"]["down"].get("display", 0) / max(1, p["connections"]))))
    print("spicy-stats connect until display quiet: %.0f ms" % r["connect_to_quiet_ms"])
    print("%-8s %10s %10s %10s %10s %10s %9s %9s %6s" % ("scene", "main kB", "display kB", "cursor kB",
                                                          "inputs kB", "total kB", "srv CPU ms", "X CPU ms",
                                                          "secs"))
    for name in SCENES + ["total"]:
        s = r["scenes"][name]
        dn = s["bytes"]["down"]
        print("%-8s %10s %10s %10s %10s %10s %9.0f %9s %6.1f" % (
            name, fmt_kb(dn.get("main", 0)), fmt_kb(dn.get("display", 0)), fmt_kb(dn.get("cursor", 0)),
            fmt_kb(dn.get("inputs", 0)), fmt_kb(down_total(s["bytes"])), s["cpu_ms"]["server"],
            "%.0f" % s["cpu_ms"]["x"] if "x" in s["cpu_ms"] else "-", s["secs"]))
    for name in SCENES + ["total"]:
        b = r["scenes"][name]["bytes"]
        top = sorted(b["msgs"].items(), key=lambda kv: -kv[1][1])[:5]
        print("  %-7s messages: %s" % (name, ", ".join("%s %dx %s kB" % (k, n, fmt_kb(v)) for k, (n, v) in top)))
        if b["images"]:
            print("  %-7s DRAW_COPY images: %s" % (name, ", ".join(
                "%s %dx %s kB" % (k, n, fmt_kb(v)) for k, (n, v) in sorted(b["images"].items(), key=lambda kv: -kv[1][1]))))
    print("spicy-stats' own count (whole connection): %s" % r["spicy_stats"])


def print_side(side):
    print("== time to first frame, auto_glz, both servers up, probed alternately (medians, ms)")
    for kind, f in side.items():
        print("%-7s spicy-screenshot %.0f  coop view first draw %.0f  complete %.0f  wall %.0f;"
              "  at the relay: display link to first draw %.1f, its transfer %.1f" % (
                  kind, f["spicy_screenshot_ms"], f["view_first_ms"], f["view_complete_ms"], f["view_wall_ms"],
                  f.get("link_to_first_draw_ms", float("nan")), f.get("first_draw_transfer_ms", float("nan"))))
    if "ours" in side and "xspice" in side:
        o, x = side["ours"], side["xspice"]
        print("ratio ours/Xspice: spicy-screenshot %.2f, coop view first draw %.2f, complete %.2f (target <= 1.0)"
              % (ratio(o["spicy_screenshot_ms"], x["spicy_screenshot_ms"]),
                 ratio(o["view_first_ms"], x["view_first_ms"]),
                 ratio(o["view_complete_ms"], x["view_complete_ms"])))
    sys.stdout.flush()


def ratio(a, b):
    return a / b if b else float("nan")


def summarize(results, side):
    by = {(r["kind"], r["mode"], r["streaming"]): r for r in results}

    def tot(r, scene="total", chan=None):
        b = r["scenes"][scene]["bytes"]
        return b["down"].get(chan, 0) if chan else down_total(b)

    print("\n==== Ratios ours / Xspice (same scenes, same client)")
    print("%-9s %-10s %12s %12s %7s %12s %12s %7s %9s" % ("codec", "scene", "ours disp kB", "Xspice disp kB", "ratio",
                                                          "ours all kB", "Xspice all kB", "ratio", "CPU ratio"))
    for mode in ["lz", "glz", "quic", "auto_glz", "auto_lz"]:
        o, x = by.get(("ours", mode, None)), by.get(("xspice", mode, None))
        if not o or not x:
            continue
        for scene in SCENES + ["total"]:
            oc = o["scenes"][scene]["cpu_ms"]
            xc = x["scenes"][scene]["cpu_ms"]
            print("%-9s %-10s %12s %12s %7.2f %12s %12s %7.2f %9.2f" % (
                mode, scene, fmt_kb(tot(o, scene, "display")), fmt_kb(tot(x, scene, "display")),
                ratio(tot(o, scene, "display"), tot(x, scene, "display")), fmt_kb(tot(o, scene)),
                fmt_kb(tot(x, scene)), ratio(tot(o, scene), tot(x, scene)),
                ratio(oc["server"] + oc.get("x", 0), xc["server"])))
    print("(CPU ratio: coop serve + its Xvfb against Xspice's Xorg, which holds both the X server and spice-server)")

    def ff(r):
        p = r["probe"]
        return p["bytes"]["down"].get("display", 0) / max(1, p["connections"])

    print("\n==== First frame (probe connections): display bytes per connection, spicy-screenshot median ms")
    for mode in ["lz", "glz", "quic", "auto_glz", "auto_lz", "lz4"]:
        o, x = by.get(("ours", mode, None)), by.get(("xspice", mode, None))
        if o and x:
            print("%-9s ours %8s kB %5.0f ms   Xspice %8s kB %5.0f ms   bytes ratio %.3f" % (
                mode, fmt_kb(ff(o)), o["probe"]["spicy_screenshot_ms"], fmt_kb(ff(x)),
                x["probe"]["spicy_screenshot_ms"], ratio(ff(o), ff(x))))
        elif o:
            print("%-9s ours %8s kB %5.0f ms   (Xspice has no such setting)" % (
                mode, fmt_kb(ff(o)), o["probe"]["spicy_screenshot_ms"]))

    xa = by.get(("xspice", "auto_glz", None))
    if xa:
        print("\n==== Targets")
        for mode in ["lz", "glz", "quic"]:
            o, x = by.get(("ours", mode, None)), by.get(("xspice", mode, None))
            if o and x:
                print("lossless %-5s whole-scene display bytes ours/Xspice = %.2f (target <= 1.0)" % (
                    mode, ratio(tot(o, "total", "display"), tot(x, "total", "display"))))
        oa = by.get(("ours", "auto_glz", None))
        ours_modes = [r for (k, m, s), r in by.items() if k == "ours" and s is None]
        if oa:
            print("auto_glz whole-scene bytes ours/Xspice auto_glz: all channels %.2f, display %.2f (target <= 0.8)"
                  % (ratio(tot(oa), tot(xa)), ratio(tot(oa, "total", "display"), tot(xa, "total", "display"))))
        if ours_modes:
            best = min(ours_modes, key=lambda r: tot(r))
            print("our best mode (%s) whole-scene bytes / Xspice auto_glz: all channels %.2f, display %.2f"
                  % (best["mode"], ratio(tot(best), tot(xa)),
                     ratio(tot(best, "total", "display"), tot(xa, "total", "display"))))
        if "ours" in side and "xspice" in side:
            o, x = side["ours"], side["xspice"]
            print("time to first frame ours/Xspice (auto_glz, both up, alternating): spicy-screenshot %.2f,"
                  " coop view first draw %.2f, complete %.2f (target <= 1.0)" % (
                      ratio(o["spicy_screenshot_ms"], x["spicy_screenshot_ms"]),
                      ratio(o["view_first_ms"], x["view_first_ms"]),
                      ratio(o["view_complete_ms"], x["view_complete_ms"])))
        if oa:
            print("time to first frame ours/Xspice (auto_glz, from the two scene runs' %d probes each; noisier):"
                  " spicy-screenshot %.2f, coop view first draw %.2f,"
                  " coop view complete %.2f" % (len(oa["probe"]["spicy_screenshot_all"]),
                      ratio(oa["probe"]["spicy_screenshot_ms"], xa["probe"]["spicy_screenshot_ms"]),
                      ratio(oa["probe"]["view_first_ms"], xa["probe"]["view_first_ms"]),
                      ratio(oa["probe"]["view_complete_ms"], xa["probe"]["view_complete_ms"])))
            vid = tot(oa, "video", "display")
            off = by.get(("ours", "auto_glz", "off"))
            xoff = by.get(("xspice", "auto_glz", "off"))
            if off:
                print("video scene display bytes, ours streaming vs ours --streaming-video off: %s / %s kB = %.2f"
                      " (target <= 0.5)" % (fmt_kb(vid), fmt_kb(tot(off, "video", "display")),
                                            ratio(vid, tot(off, "video", "display"))))
            if xoff:
                print("video scene display bytes, ours (auto_glz) vs Xspice auto_glz SpiceStreamingVideo off"
                      " (images): %s / %s kB = %.2f (target <= 0.5)" % (
                          fmt_kb(vid), fmt_kb(tot(xoff, "video", "display")),
                          ratio(vid, tot(xoff, "video", "display"))))
                print("  (Xspice itself: filter %s kB vs off %s kB = %.2f)" % (
                    fmt_kb(tot(xa, "video", "display")), fmt_kb(tot(xoff, "video", "display")),
                    ratio(tot(xa, "video", "display"), tot(xoff, "video", "display"))))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coop", required=True, help="the coop binary")
    ap.add_argument("--ours", default="auto_glz,auto_lz,lz,glz,quic,lz4",
                    help="our --image-compression modes (comma-separated)")
    ap.add_argument("--xspice", default="auto_glz,lz,glz,quic", help="Xspice SpiceImageCompression modes")
    ap.add_argument("--no-video-off", action="store_true",
                    help="skip the runs with video streaming off (the 'as images' reference)")
    ap.add_argument("--shots", type=int, default=3, help="first-frame probes per tool and scene run")
    ap.add_argument("--rounds", type=int, default=10,
                    help="alternating first-frame probes per tool with both servers up (auto_glz); 0 skips")
    ap.add_argument("--ours-display", type=int, default=80)
    ap.add_argument("--xspice-display", type=int, default=81)
    ap.add_argument("--ours-port", type=int, default=5980, help="relay listens on this + 1000")
    ap.add_argument("--xspice-port", type=int, default=5981, help="relay listens on this + 1000")
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()

    for t in ["Xvfb", "Xspice", "xterm", "xdotool", "xsetroot", "xdpyinfo", "display", "animate", "convert",
              "import", "spicy-screenshot", "spicy-stats"]:
        if not shutil.which(t):
            sys.exit("needs %s" % t)
    if not os.path.exists(XSPICE_CONF):
        sys.exit("needs %s (Xspice's stock config crashes here)" % XSPICE_CONF)
    help_text = subprocess.run([args.coop, "spice", "serve", "--help"], capture_output=True, text=True).stdout
    has_streaming_opt = "--streaming-video" in help_text

    plan = []
    ours = [m for m in args.ours.split(",") if m]
    theirs = [m for m in args.xspice.split(",") if m]
    for i in range(max(len(ours), len(theirs))):
        if i < len(ours):
            plan.append(("ours", ours[i], None))
        if i < len(theirs):
            plan.append(("xspice", theirs[i], None))
    if not args.no_video_off:
        if has_streaming_opt:
            plan.append(("ours", "auto_glz", "off"))
        else:
            log("note: this coop has no --streaming-video option; the video scene is compared with Xspice's"
                " SpiceStreamingVideo off instead")
        plan.append(("xspice", "auto_glz", "off"))

    with open("/proc/loadavg") as f:
        load0 = f.read().split()[:3]
    work = tempfile.mkdtemp(prefix="spice-scenes.")
    log("work dir %s; making the photo and 125 video frames" % work)
    assets = Assets(work)
    results, ref = [], {}
    side = {}
    t_start = time.time()
    try:
        if args.rounds > 0:
            log("first frame, both servers up, %d alternating rounds" % args.rounds)
            side = first_frame_side_by_side(args.coop, args, assets, work)
            print_side(side)
        for kind, mode, streaming in plan:
            procs = Procs()
            srv = Server(kind, mode, streaming, work, procs, args)
            log("run: %s" % srv.label)
            try:
                srv.start(args.coop, assets)
                r = run_scenes(srv, args.coop, args, assets, ref)
            finally:
                srv.stop()
            with open("/proc/loadavg") as f:
                r["loadavg"] = f.read().split()[:3]
            results.append(r)
            print_run(r)
            sys.stdout.flush()
    finally:
        with open("/proc/loadavg") as f:
            load1 = f.read().split()[:3]
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"results": results, "side_by_side": side, "load_before": load0, "load_after": load1,
                           "streaming_option": has_streaming_opt}, f, indent=1)
        shutil.rmtree(work, ignore_errors=True)
    summarize(results, side)
    print("\nmachine load (1/5/15 min) before %s, after %s; %.0f s; %d cores" % (
        "/".join(load0), "/".join(load1), time.time() - t_start, os.cpu_count()))


if __name__ == "__main__":
    main()
