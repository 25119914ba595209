"""A loopback "camera" for tests and benchmarks: a video file served as a live MPEG-TS stream over TCP or UDP.

The video is encoded once with PyAV (H.264, libx264 ``tune=zerolatency``, a short GOP, yuv420p) into MPEG-TS held
in memory as one byte chunk per frame; the server then only copies bytes into plain Python sockets. FFmpeg's own
networking is not used on the server side (letting FFmpeg listen with ``tcp://...?listen=1`` in a thread hung).

Pacing follows a live clock, as a real camera does: frame ``n`` is due ``n / fps`` seconds after the server first
started, whoever is connected. A client that connects (or reconnects after an outage) gets the frames due now,
starting at the next keyframe, and the frames of an outage or a stall are lost. With ``loop`` the video repeats
with its timestamps (and continuity counters) carried on, so a client sees one stream whose timestamps only grow.

``stop()`` is a camera that dies (the listening socket closes and every client is dropped at once), ``start()``
again on the same port one that comes back, ``pause()`` / ``resume()`` one that stalls (connections stay open,
nothing is sent).
"""

from __future__ import annotations

import io
import logging
import math
import socket
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

log = logging.getLogger("pipeline.testing.replay")

DEFAULT_PROTOCOL = "tcp"
PROTOCOLS = ("tcp", "udp")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 0  # 0: a free port chosen at the first start, kept for every restart
DEFAULT_FPS = None  # None: the video's own frame rate
DEFAULT_LOOP = True
FALLBACK_FPS = Fraction(25)  # a video that declares no frame rate
# A keyframe every 12 frames (about 0.5 s at 25 fps): a client joining mid-stream waits at most that long.
DEFAULT_GOP = 12
ENCODER = "libx264"
ENCODER_PRESET = "veryfast"  # encoding happens once, before serving; quality is not what a loopback tests
ENCODER_CRF = "23"
PIX_FMT = "yuv420p"
TS_PACKET = 188
TS_SYNC = 0x47
UDP_DATAGRAM = 7 * TS_PACKET  # 1316 bytes: the usual MPEG-TS over UDP payload, below any loopback/ethernet MTU
PTS_HZ = 90_000  # MPEG-TS timestamps' clock
PTS_WRAP = 1 << 33  # PTS/DTS/PCR bases are 33-bit counters
POLL_S = 0.05  # the longest a server thread sleeps before re-checking stop/pause
SEND_TIMEOUT_S = 5.0  # a TCP client that reads nothing for this long is dropped rather than block its thread
JOIN_TIMEOUT_S = 2.0  # stop()'s wait for the server threads


@dataclass
class ServedClient:
    """One TCP connection (or, for UDP, one run of the sender): its peer, when it was accepted
    (``time.monotonic()``), the first frame it was sent, the last frame fully sent (absolute index, loops
    counted) and when it was closed (None while open)."""

    peer: tuple
    accepted: float
    first: int | None = None
    last_sent: int | None = None
    closed: float | None = None


def _packets(data: bytes):
    return (data[i:i + TS_PACKET] for i in range(0, len(data), TS_PACKET))


def _pid(packet) -> int:
    return ((packet[1] & 0x1F) << 8) | packet[2]


def _payload_offset(packet) -> int | None:
    """Where a TS packet's payload starts, None if it has none."""
    control = (packet[3] >> 4) & 0x3
    if not control & 0x1:
        return None
    return 4 + (1 + packet[4] if control & 0x2 else 0)


def _read_ts(b, i) -> int:
    return (((b[i] >> 1) & 0x7) << 30 | b[i + 1] << 22 | (b[i + 2] >> 1) << 15 | b[i + 3] << 7 | b[i + 4] >> 1)


def _write_ts(b: bytearray, i: int, value: int) -> None:
    prefix = b[i] & 0xF0  # the 4 bits that say PTS or DTS stay
    b[i] = prefix | ((value >> 29) & 0x0E) | 1
    b[i + 1] = (value >> 22) & 0xFF
    b[i + 2] = ((value >> 14) & 0xFE) | 1
    b[i + 3] = (value >> 7) & 0xFF
    b[i + 4] = ((value << 1) & 0xFE) | 1


def _pes_pts(chunk: bytes) -> int | None:
    """The PTS (90 kHz) of the first PES header in a chunk."""
    for packet in _packets(chunk):
        start = _payload_offset(packet)
        if start is not None and packet[1] & 0x40 and packet[start:start + 3] == b"\x00\x00\x01":
            if packet[start + 7] & 0x80:
                return _read_ts(packet, start + 9)
    return None


def _shift(chunk: bytes, ticks: int, cc_shift: dict[int, int]) -> bytes:
    """A chunk of a later loop: PTS/DTS and PCR moved on by ``ticks`` (90 kHz) and each PID's continuity counter
    by ``cc_shift[pid]``, so a client crossing the loop's end sees neither a timestamp jump back nor a
    discontinuity (FFmpeg marks a packet after a continuity error corrupt)."""
    out = bytearray(chunk)
    for at in range(0, len(out), TS_PACKET):
        pid = ((out[at + 1] & 0x1F) << 8) | out[at + 2]
        shift = cc_shift.get(pid, 0)
        if shift:
            out[at + 3] = (out[at + 3] & 0xF0) | ((out[at + 3] + shift) & 0x0F)
        control = (out[at + 3] >> 4) & 0x3
        start = at + 4
        if control & 0x2:
            length = out[at + 4]
            if length and out[at + 5] & 0x10:  # PCR: 33-bit base in 90 kHz, 6 reserved bits, 9-bit extension
                p = at + 6
                base = out[p] << 25 | out[p + 1] << 17 | out[p + 2] << 9 | out[p + 3] << 1 | out[p + 4] >> 7
                base = (base + ticks) % PTS_WRAP
                out[p], out[p + 1], out[p + 2], out[p + 3] = (base >> 25) & 0xFF, (base >> 17) & 0xFF, \
                    (base >> 9) & 0xFF, (base >> 1) & 0xFF
                out[p + 4] = ((base & 1) << 7) | (out[p + 4] & 0x7F)
            start += 1 + length
        if control & 0x1 and out[at + 1] & 0x40 and out[start:start + 3] == b"\x00\x00\x01":
            flags = out[start + 7] >> 6
            if flags & 0x2:
                _write_ts(out, start + 9, (_read_ts(out, start + 9) + ticks) % PTS_WRAP)
            if flags == 0x3:
                _write_ts(out, start + 14, (_read_ts(out, start + 14) + ticks) % PTS_WRAP)
    return bytes(out)


def encode_ts(video: str | Path, *, fps: Fraction | float | None = DEFAULT_FPS, gop: int = DEFAULT_GOP):
    """Encode ``video`` once into in-memory MPEG-TS. Returns ``(header, chunks, keyframes, fps)``: the stream's
    tables (PAT, PMT, SDT: what a client joining mid-stream needs first), one bytes chunk per frame (what muxing
    that frame's packet added; the first includes the tables), the indices of the keyframes, and the rate.
    Frames are cropped to even sizes (yuv420p needs them)."""
    import av

    chunks, keyframes = [], []
    buffer = io.BytesIO()
    # flush_packets: every mux call reaches the BytesIO at once, so the bytes it added are that frame's
    with av.open(str(video)) as source, av.open(buffer, mode="w", format="mpegts",
                                                options={"flush_packets": "1"}) as out:
        in_stream = source.streams.video[0]
        rate = Fraction(fps) if fps else Fraction(in_stream.guessed_rate or in_stream.average_rate or FALLBACK_FPS)
        stream = None

        def mux(packets):
            for packet in packets:
                before = buffer.tell()
                out.mux(packet)
                if packet.is_keyframe:
                    keyframes.append(len(chunks))
                chunks.append(buffer.getvalue()[before:])

        for index, decoded in enumerate(source.decode(in_stream)):
            # a fresh frame: the decoded one carries its source's picture type, and x264 obeys an I there
            rgb = decoded.to_ndarray(format="rgb24")
            rgb = rgb[:rgb.shape[0] // 2 * 2, :rgb.shape[1] // 2 * 2]
            if stream is None:
                stream = out.add_stream(ENCODER, rate=rate)
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], PIX_FMT
                stream.codec_context.time_base = 1 / rate
                stream.options = {"tune": "zerolatency", "preset": ENCODER_PRESET, "crf": ENCODER_CRF,
                                  "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            mux(stream.encode(frame))
        if stream is None:
            raise ValueError(f"{video}: no video frames")
        mux(stream.encode())
    if not keyframes or keyframes[0] != 0:
        raise ValueError(f"{video}: the encoded stream does not start at a keyframe")
    header = bytearray()
    for packet in _packets(chunks[0]):  # the tables the muxer writes ahead of the first PES
        start = _payload_offset(packet)
        if start is not None and packet[1] & 0x40 and packet[start:start + 3] == b"\x00\x00\x01":
            break
        header += packet
    return bytes(header), chunks, keyframes, rate


class ReplayServer:
    """``video`` served live as MPEG-TS on ``protocol`` ("tcp": the server listens on ``host:port``, one thread
    per client; "udp": it pushes datagrams to ``host:port``, where the client listens). ``fps`` overrides the
    video's rate, ``loop`` repeats it (otherwise the stream ends after its last frame: TCP clients are then
    closed). Open :attr:`url` with FFmpeg/PyAV. A context manager: ``with ReplayServer(path) as server``
    starts and stops it."""

    def __init__(self, video: str | Path, *, protocol: str = DEFAULT_PROTOCOL, host: str = DEFAULT_HOST,
                 port: int = DEFAULT_PORT, fps: float | Fraction | None = DEFAULT_FPS, loop: bool = DEFAULT_LOOP,
                 gop: int = DEFAULT_GOP):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol {protocol!r}: one of {PROTOCOLS}")
        self.video, self.protocol, self.host, self.port, self.loop = Path(video), protocol, host, port, loop
        self.header, chunks, keyframes, self.fps = encode_ts(video, fps=fps, gop=gop)
        self.chunks: tuple[bytes, ...] = tuple(chunks)
        self.keyframes: tuple[int, ...] = tuple(keyframes)
        self.frame_count = len(self.chunks)
        self._pts0 = _pes_pts(self.chunks[0])
        # per loop: the timestamps move on by the video's duration, the continuity counters by each PID's
        # packets with a payload (only those count up)
        self._loop_ticks = round(self.frame_count * PTS_HZ / self.fps)
        counts: dict[int, int] = {}
        for packet in _packets(self.ts_bytes):
            if packet[3] & 0x10:
                counts[_pid(packet)] = counts.get(_pid(packet), 0) + 1
        self._cc_per_loop = counts
        self._loop_cache: tuple[int, tuple[bytes, ...]] = (0, self.chunks)
        self.clients: list[ServedClient] = []
        self._lock = threading.Lock()
        self._origin: float | None = None  # monotonic time of the first start: frame n is due at origin + n/fps
        self._stopping: threading.Event | None = None
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._connections: set[socket.socket] = set()

    # -- the stream ------------------------------------------------------------------------------------------

    @property
    def ts_bytes(self) -> bytes:
        """The whole encoded video (one loop) as an MPEG-TS file's bytes: what a client is sent, for offline
        decoding."""
        return b"".join(self.chunks)

    def write_ts(self, path: str | Path) -> Path:
        """:attr:`ts_bytes` written to ``path``."""
        path = Path(path)
        path.write_bytes(self.ts_bytes)
        return path

    @property
    def url(self) -> str:
        """What a client opens: ``tcp://host:port`` or ``udp://host:port`` (valid once started, the port being
        chosen then when 0)."""
        return f"{self.protocol}://{self.host}:{self.port}"

    def frame_index(self, pts_s: float) -> int:
        """The absolute index (loops counted) of the served frame with this timestamp (seconds, as a demuxer
        gives it)."""
        return round((pts_s * PTS_HZ - self._pts0) * self.fps / PTS_HZ)

    def chunk(self, n: int) -> bytes:
        """The bytes of absolute frame ``n`` (loop ``n // frame_count``, timestamps carried on)."""
        k, i = divmod(n, self.frame_count)
        if k == 0:
            return self.chunks[i]
        with self._lock:
            if self._loop_cache[0] != k:  # clients are all near "now": one loop cached is enough
                cc = {pid: (k * count) % 16 for pid, count in self._cc_per_loop.items()}
                ticks = k * self._loop_ticks
                self._loop_cache = (k, tuple(_shift(c, ticks, cc) for c in self.chunks))
            return self._loop_cache[1][i]

    def due(self, n: int) -> float:
        """When (``time.monotonic()``) absolute frame ``n`` is sent."""
        return self._origin + float(n / self.fps)

    def _start_index(self) -> int | None:
        """The first frame for a client joining now: the next keyframe at or after the frame last due (sent at
        once if it is a keyframe); None once a non-looping video is over."""
        now = math.floor((time.monotonic() - self._origin) * self.fps)
        k, i = divmod(max(now, 0), self.frame_count)
        following = [f for f in self.keyframes if f >= i]
        n = k * self.frame_count + following[0] if following else (k + 1) * self.frame_count
        return None if not self.loop and n >= self.frame_count else n

    # -- control --------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._stopping is not None

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def start(self) -> ReplayServer:
        """Start serving (again: on the same port, the live clock carried on from the first start)."""
        if self.running:
            return self
        stopping = threading.Event()
        if self.protocol == "tcp":
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # the dropped clients' connections sit in TIME_WAIT on this port: a restart must still bind it
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen()
            listener.settimeout(POLL_S)
            self.port = listener.getsockname()[1]
            self._listener = listener
            target = self._accept
        else:
            if not self.port:  # the client binds the port: find one that is free now
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.bind((self.host, 0))
                    self.port = probe.getsockname()[1]
            target = self._push
        if self._origin is None:
            self._origin = time.monotonic()
        self._stopping = stopping
        thread = threading.Thread(target=target, args=(stopping,), daemon=True,
                                  name=f"replay-{self.protocol}-{self.port}")
        self._threads = [thread]
        thread.start()
        log.debug("replaying %s at %s", self.video, self.url)
        return self

    def stop(self) -> None:
        """A camera that dies: the listening socket closes (connects are refused) and every client is dropped
        at once (they read the end of the stream); what was already sent still arrives."""
        if not self.running:
            return
        self._stopping.set()
        self._stopping = None
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept() and refuses connects at once
            except OSError:
                pass
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(JOIN_TIMEOUT_S)
        for conn in connections:
            conn.close()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def pause(self) -> None:
        """A stalled camera: connections stay open, nothing is sent (the frames due meanwhile are lost)."""
        self._unpaused.clear()

    def resume(self) -> None:
        """End a pause: every client goes on at the next keyframe of the live stream."""
        self._unpaused.set()

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving ----------------------------------------------------------------------------------------------

    def _accept(self, stopping: threading.Event) -> None:
        """The listening thread: one serving thread per client."""
        listener = self._listener
        while not stopping.is_set():
            try:
                conn, peer = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if stopping.is_set():
                conn.close()
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a frame's few packets go out at once
            conn.settimeout(SEND_TIMEOUT_S)
            record = ServedClient(peer, time.monotonic())
            thread = threading.Thread(target=self._serve, args=(conn, record, stopping), daemon=True,
                                      name=f"replay-client-{peer[1]}")
            with self._lock:
                self.clients.append(record)
                self._connections.add(conn)
                self._threads.append(thread)
            thread.start()

    def _frames(self, stopping: threading.Event, record: ServedClient):
        """The frames one client is sent, each yielded when due: from the next keyframe, again from the next
        keyframe after a pause. Ends when ``stopping`` is set or a non-looping video is over."""
        n = None
        while not stopping.is_set():
            if not self._unpaused.is_set():
                self._unpaused.wait(POLL_S)
                n = None  # what follows a stall must start at a keyframe again
                continue
            if n is None:
                n = self._start_index()
                if n is None:
                    return
                if record.first is None:
                    record.first = n
            if not self.loop and n >= self.frame_count:
                return
            delay = self.due(n) - time.monotonic()
            if delay > 0:
                stopping.wait(min(delay, POLL_S))  # short waits: pause and stop are seen promptly
                continue
            yield n
            n += 1

    def _serve(self, conn: socket.socket, record: ServedClient, stopping: threading.Event) -> None:
        """One TCP client: the tables first (it may join mid-stream), then the live frames."""
        try:
            sent_header = False
            for n in self._frames(stopping, record):
                data = self.chunk(n)
                if not sent_header:
                    data, sent_header = self.header + data, True
                conn.sendall(data)
                record.last_sent = n
        except OSError:  # the client left (or was dropped by stop())
            pass
        record.closed = time.monotonic()
        with self._lock:  # still listed: not taken by stop() (which closes those after joining), so ours to close
            ours = conn in self._connections
            self._connections.discard(conn)
        if ours:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def _push(self, stopping: threading.Event) -> None:
        """UDP: the live frames as datagrams of whole TS packets to ``host:port``, whether or not anyone
        listens (as a camera pushing to a receiver); the tables go before every keyframe so a receiver that
        binds late syncs within a GOP."""
        record = ServedClient((self.host, self.port), time.monotonic())
        with self._lock:
            self.clients.append(record)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for n in self._frames(stopping, record):
                data = self.chunk(n)
                if n % self.frame_count in self.keyframes:
                    data = self.header + data
                for at in range(0, len(data), UDP_DATAGRAM):
                    try:
                        sock.sendto(data[at:at + UDP_DATAGRAM], (self.host, self.port))
                    except OSError:  # nobody listening (an ICMP error reported back): the datagram is lost
                        pass
                record.last_sent = n
        record.closed = time.monotonic()
