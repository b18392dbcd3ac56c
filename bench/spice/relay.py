"""A counting TCP relay for SPICE connections.

Sits in front of a SPICE server, forwards every connection unchanged and counts, per
channel type, the bytes each side sends; on the server-to-client side it follows the
SPICE framing (link reply, link result, then mini or full data headers) to count bytes
per message type and, for DRAW_COPY, per image type of the source bitmap. The counters
are read with `snapshot()` between scenes; deltas give per-scene figures.
"""

import asyncio
import copy
import struct
import threading
import time

CHANNELS = {1: "main", 2: "display", 3: "inputs", 4: "cursor", 5: "playback", 6: "record"}

# Message names (server to client), from spice-common's spice.proto.
BASE_MSGS = {1: "MIGRATE", 2: "MIGRATE_DATA", 3: "SET_ACK", 4: "PING", 5: "WAIT_FOR_CHANNELS",
             6: "DISCONNECTING", 7: "NOTIFY", 8: "LIST"}
MSGS = {
    "main": {101: "MIGRATE_BEGIN", 103: "INIT", 104: "CHANNELS_LIST", 105: "MOUSE_MODE",
             106: "MULTI_MEDIA_TIME", 107: "AGENT_CONNECTED", 108: "AGENT_DISCONNECTED",
             109: "AGENT_DATA", 110: "AGENT_TOKEN", 113: "NAME", 114: "UUID",
             115: "AGENT_CONNECTED_TOKENS"},
    "display": {101: "MODE", 102: "MARK", 103: "RESET", 104: "COPY_BITS", 105: "INVAL_LIST",
                106: "INVAL_ALL_PIXMAPS", 107: "INVAL_PALETTE", 108: "INVAL_ALL_PALETTES",
                122: "STREAM_CREATE", 123: "STREAM_DATA", 124: "STREAM_CLIP",
                125: "STREAM_DESTROY", 126: "STREAM_DESTROY_ALL", 302: "DRAW_FILL",
                303: "DRAW_OPAQUE", 304: "DRAW_COPY", 305: "DRAW_BLEND", 306: "DRAW_BLACKNESS",
                307: "DRAW_WHITENESS", 308: "DRAW_INVERS", 309: "DRAW_ROP3", 310: "DRAW_STROKE",
                311: "DRAW_TEXT", 312: "DRAW_TRANSPARENT", 313: "DRAW_ALPHA_BLEND",
                314: "SURFACE_CREATE", 315: "SURFACE_DESTROY", 316: "STREAM_DATA_SIZED",
                317: "MONITORS_CONFIG", 318: "DRAW_COMPOSITE", 319: "STREAM_ACTIVATE_REPORT",
                322: "QUALITY_INDICATOR"},
    "inputs": {101: "INIT", 102: "KEY_MODIFIERS", 111: "MOUSE_MOTION_ACK"},
    "cursor": {101: "INIT", 102: "RESET", 103: "SET", 104: "MOVE", 105: "HIDE", 106: "TRAIL",
               107: "INVAL_ONE", 108: "INVAL_ALL"},
}
IMAGE_TYPES = {0: "BITMAP", 1: "QUIC", 100: "LZ_PLT", 101: "LZ_RGB", 102: "GLZ_RGB",
               103: "FROM_CACHE", 104: "SURFACE", 105: "JPEG", 106: "FROM_CACHE_LOSSLESS",
               107: "ZLIB_GLZ_RGB", 108: "JPEG_ALPHA", 109: "LZ4"}
DRAW_COPY = 304
MINI_HEADER_CAP = 3
# Display messages that do not draw (flow control, pings): they do not end a quiet period.
NON_DRAWING = {3, 4, 5, 7}


def msg_name(chan, t):
    if t < 101:
        return BASE_MSGS.get(t, str(t))
    return MSGS.get(chan, {}).get(t, str(t))


def draw_copy_image_type(body):
    """The image type of a DRAW_COPY's source bitmap, or None if the body does not parse.

    Body: surface_id u32, box 4*i32, clip type u8 (+ u32 count and rects when RECTS),
    then Copy whose first field is the src_bitmap offset (u32, from the body start);
    the image descriptor there is id u64, type u8, flags u8, width u32, height u32.
    """
    if len(body) < 22:
        return None
    pos = 20
    clip = body[pos]
    pos += 1
    if clip == 1:
        if len(body) < pos + 4:
            return None
        (n,) = struct.unpack_from("<I", body, pos)
        pos += 4 + 16 * n
    if len(body) < pos + 4:
        return None
    (off,) = struct.unpack_from("<I", body, pos)
    if off + 9 > len(body):
        return None
    return IMAGE_TYPES.get(body[off + 8], "type%d" % body[off + 8])


class Counters:
    """Everything counted so far; plain dicts so snapshots deep-copy cleanly."""

    def __init__(self):
        self.down = {}  # channel -> bytes server to client
        self.up = {}  # channel -> bytes client to server
        self.msgs = {}  # "chan/NAME" -> [count, bytes]
        self.images = {}  # image type -> [count, bytes] (whole DRAW_COPY messages)
        self.connections = {}  # channel -> count
        self.last_draw = 0.0  # monotonic time of the last drawing display message
        # Per display connection: [link header seen, first draw message's header seen,
        # its last byte relayed, its size] (monotonic seconds; the first 64 connections).
        self.first_draws = []
        self.last_down = 0.0


class _Side:
    """Parses one server-to-client byte stream."""

    PEEK = 1024

    def __init__(self, conn):
        self.conn = conn
        self.buf = bytearray()
        self.skip = 0
        self.state = "linkhdr"
        self.need = 16
        self.accepted = time.monotonic()
        self.first_draw = None
        self.pending = None

    def feed(self, data, c):
        if self.skip:
            take = min(self.skip, len(data))
            self.skip -= take
            data = data[take:]
            if self.skip == 0 and self.pending is not None:
                self.pending[2] = time.monotonic()
                self.pending = None
        self.buf += data
        while self._step(c):
            pass

    def _step(self, c):
        b = self.buf
        if self.state == "lost":
            b.clear()
            return False
        if self.state == "linkhdr":
            if len(b) < 16:
                return False
            (size,) = struct.unpack_from("<I", b, 12)
            del b[:16]
            self.state, self.need = "reply", size
            return True
        if self.state == "reply":
            if len(b) < self.need:
                return False
            reply = bytes(b[: self.need])
            del b[: self.need]
            if len(reply) >= 178:
                ncommon, _nchan, off = struct.unpack_from("<III", reply, 166)
                caps = struct.unpack_from("<I", reply, off)[0] if ncommon and off + 4 <= len(reply) else 0
                self.conn.server_mini = bool(caps & (1 << MINI_HEADER_CAP))
            self.state = "result"
            return True
        if self.state == "result":
            if len(b) < 4:
                return False
            del b[:4]
            self.state = "msg"
            return True
        # Data messages.
        mini = self.conn.server_mini and self.conn.client_mini
        hlen = 6 if mini else 18
        if len(b) < hlen:
            return False
        if mini:
            t, size = struct.unpack_from("<HI", b, 0)
        else:
            t, size = struct.unpack_from("<HI", b, 8)
        peek = min(size, self.PEEK)
        if len(b) < hlen + peek:
            return False
        chan = self.conn.chan
        name = msg_name(chan, t)
        total = hlen + size
        e = c.msgs.setdefault("%s/%s" % (chan, name), [0, 0])
        e[0] += 1
        e[1] += total
        if chan == "display":
            if t == DRAW_COPY:
                it = draw_copy_image_type(bytes(b[hlen: hlen + peek])) or "?"
                e = c.images.setdefault(it, [0, 0])
                e[0] += 1
                e[1] += total
            if t not in NON_DRAWING:
                c.last_draw = time.monotonic()
            if (302 <= t <= 313 or t == 318) and self.first_draw is None and len(c.first_draws) < 64:
                self.first_draw = [self.accepted, c.last_draw, c.last_draw, total]
                c.first_draws.append(self.first_draw)
                if len(b) < total:
                    self.pending = self.first_draw
        if len(b) >= total:
            del b[:total]
        else:
            self.skip = total - len(b)
            b.clear()
        return True


class _Conn:
    def __init__(self):
        self.chan = "?"
        self.client_mini = True
        self.server_mini = True


class Relay:
    """Listens on `listen_port`, forwards to `target_port` on 127.0.0.1, counts."""

    def __init__(self, listen_port, target_port):
        self.listen_port = listen_port
        self.target_port = target_port
        self.c = Counters()
        self.lock = threading.Lock()
        self.writers = set()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("relay on port %d did not start" % listen_port)
        if self.error:
            raise RuntimeError("relay on port %d: %s" % (listen_port, self.error))

    error = None

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.listen_port, reuse_address=True))
        except OSError as e:
            self.error = str(e)
            self.ready.set()
            return
        self.ready.set()
        self.loop.run_forever()

    def close(self):
        async def stop():
            self.server.close()
            # Closing both ends lets every connection task finish on its own (cancelling
            # stream handler tasks makes asyncio log spurious errors).
            for w in list(self.writers):
                w.close()
            tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
            await asyncio.wait(tasks, timeout=2) if tasks else None
            self.loop.stop()
        if not self.error:
            asyncio.run_coroutine_threadsafe(stop(), self.loop)
            self.thread.join(5)

    def snapshot(self):
        with self.lock:
            return copy.deepcopy(self.c.__dict__)

    def last_draw(self):
        with self.lock:
            return self.c.last_draw

    async def _handle(self, cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            cw.close()
            return
        conn = _Conn()
        self.writers.update((cw, sw))
        await asyncio.gather(self._up(cr, sw, conn), self._down(sr, cw, conn), return_exceptions=True)
        for w in (cw, sw):
            self.writers.discard(w)
            try:
                w.close()
            except Exception:
                pass

    async def _up(self, r, w, conn):
        head = bytearray()
        parsed = False
        while True:
            data = await r.read(65536)
            if not data:
                break
            if not parsed:
                # Parse the link message before forwarding it, so the channel type and the
                # client's caps are known before the server can answer.
                head += data
                if len(head) >= 16:
                    (size,) = struct.unpack_from("<I", head, 12)
                    if size < 18 or size > 4096:
                        parsed = True  # not a SPICE link message: forward uncounted by type
                    elif len(head) >= 16 + size:
                        t = head[16 + 4]
                        conn.chan = CHANNELS.get(t, "chan%d" % t)
                        ncommon, _nchan, off = struct.unpack_from("<III", head, 16 + 6)
                        if ncommon and len(head) >= 16 + off + 4:
                            (caps,) = struct.unpack_from("<I", head, 16 + off)
                            conn.client_mini = bool(caps & (1 << MINI_HEADER_CAP))
                        parsed = True
                        with self.lock:
                            self.c.connections[conn.chan] = self.c.connections.get(conn.chan, 0) + 1
            with self.lock:
                self.c.up[conn.chan] = self.c.up.get(conn.chan, 0) + len(data)
            try:
                w.write(data)
                await w.drain()
            except (ConnectionError, RuntimeError):
                break
        w.close()

    async def _down(self, r, w, conn):
        side = _Side(conn)
        while True:
            data = await r.read(65536)
            if not data:
                break
            with self.lock:
                self.c.down[conn.chan] = self.c.down.get(conn.chan, 0) + len(data)
                self.c.last_down = time.monotonic()
                try:
                    side.feed(data, self.c)
                except struct.error:
                    side.state = "lost"
            try:
                w.write(data)
                await w.drain()
            except (ConnectionError, RuntimeError):
                break
        w.close()


def delta(a, b):
    """Counters in snapshot `b` minus those in earlier snapshot `a`."""
    out = {}
    for k in ("down", "up", "connections"):
        out[k] = {ch: v - a[k].get(ch, 0) for ch, v in b[k].items() if v - a[k].get(ch, 0)}
    for k in ("msgs", "images"):
        out[k] = {}
        for name, (n, by) in b[k].items():
            n0, by0 = a[k].get(name, [0, 0])
            if n - n0:
                out[k][name] = [n - n0, by - by0]
    return out
