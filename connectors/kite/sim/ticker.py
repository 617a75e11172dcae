"""KiteTicker side of the Kite simulator: a websocket on the same port as the HTTP API.

Binary tick messages in the published layout (a 2-byte packet count, then per packet a 2-byte
length and the packet: ltp 8 bytes, quote 44, full 184; prices in paise, i.e. ÷100, except
the currency segments), ``subscribe``/``unsubscribe``/``mode`` JSON messages from the client,
a 1-byte heartbeat every second, and ``{"type": "order", "data": {...}}`` text messages on
every order change. Faults: drop every connection, or silence the current ones (open, but
nothing is sent: the ticker hang a watchdog must catch).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import socket
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from connectors.kite.sim.exchange import Exchange

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MODES = ("ltp", "quote", "full")
MAX_PACKETS = 1000  # per binary message
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
log = logging.getLogger("alpha_panda.kite.sim")


def divisor(token: int) -> float:
    """Price divisor by segment (the token's low byte), as the ticker docs give it."""
    segment = token & 0xFF
    if segment == 3:  # cds
        return 10_000_000.0
    if segment in (6, 12):  # bcd, nco
        return 10_000.0
    return 100.0


@dataclass
class Quote:
    """What the tape says of one instrument so far: day OHLC, volume, last trade."""

    last: float
    open: float
    high: float
    low: float
    volume: int = 0
    last_qty: int = 0
    ts_s: int = 0

    def update(self, price: float, volume: int, ts_s: int) -> None:
        self.last, self.high, self.low = price, max(self.high, price), min(self.low, price)
        self.last_qty = max(volume - self.volume, 0) if volume else 0
        self.volume, self.ts_s = max(volume, self.volume), ts_s


def packet(token: int, mode: str, q: Quote) -> bytes:
    """One tick packet in ``mode``'s layout."""
    d = divisor(token)

    def p(x: float) -> int:
        return max(round(x * d), 0)

    ltp = struct.pack(">II", token, p(q.last))
    if mode == "ltp":
        return ltp
    quote = ltp + struct.pack(
        ">IIIIIIIII", q.last_qty, p(q.last), q.volume, 500, 500,
        p(q.open), p(q.high), p(q.low), p(q.open),
    )  # fmt: skip
    if mode == "quote":
        return quote
    full = quote + struct.pack(">IIIII", q.ts_s, 0, 0, 0, q.ts_s)
    step = 0.05
    for side in (-1, 1):  # five bids below, five offers above the last price
        for level in range(1, 6):
            full += struct.pack(">IIHH", 100 * level, p(q.last + side * step * level), level, 0)
    return full


def message(packets: Iterable[bytes]) -> bytes:
    body = list(packets)
    return struct.pack(">H", len(body)) + b"".join(struct.pack(">H", len(x)) + x for x in body)


@dataclass(eq=False)
class Client:
    """One websocket connection and its subscriptions (token → mode)."""

    sock: socket.socket
    subs: dict[int, str] = field(default_factory=dict)
    silent: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, opcode: int, payload: bytes) -> bool:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([n])
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack(">H", n)
        else:
            head += bytes([127]) + struct.pack(">Q", n)
        try:
            with self.lock:
                self.sock.sendall(head + payload)
            return True
        except OSError:
            return False

    def _exact(self, rfile: Any, n: int) -> bytes:
        data: bytes = rfile.read(n)
        if len(data) < n:
            raise ConnectionError("closed")
        return data

    def read(self, rfile: Any) -> tuple[int, bytes]:
        """Next frame from the client (masked, as clients must send)."""
        b0, b1 = self._exact(rfile, 2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exact(rfile, 2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(rfile, 8))[0]
        mask = self._exact(rfile, 4) if b1 & 0x80 else b"\0\0\0\0"
        data = self._exact(rfile, n)
        return b0 & 0x0F, bytes(c ^ mask[i % 4] for i, c in enumerate(data))


class TickerHub:
    """Every open connection; broadcasts the tape's ticks and order changes."""

    def __init__(self, ex: Exchange, heartbeat_s: float = 1.0) -> None:
        self.ex = ex
        self.clients: list[Client] = []
        self.lock = threading.Lock()
        self.quotes: dict[int, Quote] = {}
        self.connections = 0  # accepted so far, for tests and the admin state
        self.hold: Callable[[dict[str, Any]], bool] = lambda view: False  # not to send yet
        self.held: list[dict[str, Any]] = []  # order messages held back, in order
        ex.listeners.append(self.on_order)
        ex.tick_listeners.append(self.on_ticks)
        self.stop = threading.Event()
        threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True).start()

    def _live(self) -> list[Client]:
        with self.lock:
            return [c for c in self.clients if not c.silent]

    def _beat(self, every: float) -> None:
        while not self.stop.wait(every):
            for c in self._live():
                c.send(BINARY, b"\x00")
            self._release()

    def _release(self) -> None:
        """Send the held order messages that may go now (each order's in their order)."""
        with self.ex.lock:
            waiting, self.held = self.held, []
            for view in waiting:
                late = any(h["order_id"] == view["order_id"] for h in self.held)
                if late or self.hold(view):
                    self.held.append(view)
                else:
                    self._send_order(view)

    def on_ticks(self, idx: list[int]) -> None:
        """Every tape tick, in tape order, to each client subscribed to its instrument."""
        tape = self.ex.tape
        ticks: list[tuple[int, Quote]] = []
        for i in idx:
            tok, price = int(tape.token[i]), float(tape.price[i])
            vol = 0 if tape.volume is None else int(tape.volume[i])
            ts_s = int(tape.ts[i]) // 1_000_000
            q = self.quotes.get(tok)
            if q is None:
                q = self.quotes[tok] = Quote(price, price, price, price)
            q.update(price, vol, ts_s)
            ticks.append((tok, Quote(**{k: getattr(q, k) for k in q.__dataclass_fields__})))
        for c in self._live() if ticks else []:
            mine = [packet(t, c.subs[t], q) for t, q in ticks if t in c.subs]
            for k in range(0, len(mine), MAX_PACKETS):
                c.send(BINARY, message(mine[k : k + MAX_PACKETS]))

    def on_order(self, view: dict[str, Any]) -> None:
        """An order change (called under the exchange's lock): sent, or held back."""
        if self.hold(view) or any(h["order_id"] == view["order_id"] for h in self.held):
            self.held.append(view)
            return
        self._send_order(view)

    def _send_order(self, view: dict[str, Any]) -> None:
        text = json.dumps({"type": "order", "id": "", "data": {**view, "user_id": "AP0001"}})
        for c in self._live():
            c.send(TEXT, text.encode())

    def drop(self) -> int:
        """Cut every connection without a close handshake (a network drop)."""
        with self.lock:
            gone, self.clients = self.clients, []
        for c in gone:
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(gone)

    def silence(self) -> int:
        """Keep the current connections open but send them nothing more."""
        with self.lock:
            for c in self.clients:
                c.silent = True
            return len(self.clients)

    def serve(self, sock: socket.socket, rfile: Any) -> None:
        """Run one accepted connection until it closes (in its HTTP handler thread)."""
        c = Client(sock)
        with self.lock:
            self.clients.append(c)
            self.connections += 1
        try:
            while True:
                opcode, data = c.read(rfile)
                if opcode == CLOSE:
                    c.send(CLOSE, data[:2])
                    break
                if opcode == PING:
                    c.send(PONG, data)
                elif opcode == TEXT:
                    self._command(c, data)
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            with self.lock:
                if c in self.clients:
                    self.clients.remove(c)

    def _command(self, c: Client, data: bytes) -> None:
        try:
            msg = json.loads(data)
            action, value = msg["a"], msg["v"]
            if action == "subscribe":
                for t in value:
                    c.subs.setdefault(int(t), "quote")
            elif action == "unsubscribe":
                for t in value:
                    c.subs.pop(int(t), None)
            elif action == "mode" and value[0] in MODES:
                for t in value[1]:
                    c.subs[int(t)] = value[0]
            else:
                raise ValueError(action)
        except (ValueError, KeyError, TypeError, IndexError):
            err = json.dumps({"type": "error", "data": "Invalid message"})
            c.send(TEXT, err.encode())


def accept_key(key: str) -> str:
    """The handshake's ``Sec-WebSocket-Accept`` for a client key."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
