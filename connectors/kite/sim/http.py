"""HTTP side of the Kite simulator: the Kite Connect v3 endpoints the product uses, with
their response and error shapes, plus ``/_sim/*`` admin endpoints (advance the tape, inject
faults, inspect state) for tests and users."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from connectors.kite.sim.charges import contract_notes
from connectors.kite.sim.exchange import Exchange, KiteError, kite_time
from connectors.kite.sim.master import CsvBody, master_csv
from connectors.kite.sim.rules import NOT_FOUND, refuse
from connectors.kite.sim.ticker import TickerHub, accept_key


@dataclass
class Faults:
    """Faults for the next order placements (each counter is consumed one order at a time)."""

    http_429: int = 0
    http_500: int = 0
    lost_response: int = 0  # the order is accepted, but the reply never arrives
    reject: int = 0
    reject_message: str = "RMS:Margin Exceeds, Required:0, Available:0"
    lost_delay_s: float = 5.0
    lost_visible_s: float = 0.0  # a lost order stays out of the order book this long (wall s)
    outage_s: float = 0.0  # from when it is set: Kite is down this long (wall s)
    outage_hang_s: float = 1.0  # during an outage each API call hangs this long, then a 503
    down_until: float = 0.0  # monotonic time the outage ends
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str) -> bool:
        with self.lock:
            left: int = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
            return left > 0

    def update(self, body: dict[str, Any]) -> None:
        with self.lock:
            for k, v in body.items():
                if k in ("lock", "down_until") or not hasattr(self, k):
                    raise KiteError(400, "InputException", f"unknown fault: {k}")
                setattr(self, k, type(getattr(self, k))(v))
            if body.get("outage_s"):
                self.down_until = time.monotonic() + float(body["outage_s"])

    def outage(self) -> None:
        """During an outage: hang, then answer as an overloaded gateway does."""
        left = self.down_until - time.monotonic()
        if left > 0:
            time.sleep(min(self.outage_hang_s, left))
            raise KiteError(503, "NetworkException", "Kite is temporarily unavailable")


@dataclass
class Account:
    api_key: str
    api_secret: str
    access_token: str
    user_id: str = "AP0001"
    expires_at: int | None = None  # tape time (µs) from which the access token is refused

    def profile(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id, "user_type": "individual", "email": "sim@example.invalid",
            "user_name": "Alpha Panda Sim", "user_shortname": "Sim", "broker": "ZERODHA",
            "exchanges": ["NSE", "BSE"], "products": ["CNC", "NRML", "MIS"],
            "order_types": ["MARKET", "LIMIT", "SL", "SL-M"], "avatar_url": None,
            "meta": {"demat_consent": "physical"},
        }  # fmt: skip


Route = tuple[str, re.Pattern[str], Callable[..., Any]]


class SimApi:
    """Routes → exchange calls. Handlers return the ``data`` of a success envelope."""

    def __init__(self, ex: Exchange, account: Account, faults: Faults) -> None:
        self.ex, self.account, self.faults = ex, account, faults
        self.ticker = TickerHub(ex)
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call, for tests
        oid, var = "(?P<order_id>\\d+)", "(?P<variety>[a-z]+)"
        r: list[tuple[str, str, Callable[..., Any]]] = [
            ("POST", "/session/token", self.session),
            ("GET", "/user/profile", lambda p: self.account.profile()),
            ("GET", "/user/margins", lambda p: self.ex.margins()),
            ("GET", "/user/margins/(?P<segment>equity|commodity)", self.segment),
            ("POST", f"/orders/{var}", self.place),
            ("PUT", f"/orders/{var}/{oid}", self.modify),
            ("DELETE", f"/orders/{var}/{oid}", self.cancel),
            ("GET", "/orders", self.orders),
            ("GET", f"/orders/{oid}", self.history),
            ("GET", f"/orders/{oid}/trades", self.order_trades),
            ("GET", "/trades", lambda p: [t for t in self.ex.trades if self.seen(t["order_id"])]),
            ("GET", "/portfolio/positions", lambda p: self.ex.positions()),
            ("GET", "/portfolio/holdings", lambda p: self.ex.holdings()),
            ("POST", "/_sim/holdings", self.set_holdings),
            ("POST", "/charges/orders", lambda p: contract_notes(self.ex, p.get("_list", []))),
            ("GET", "/instruments(?:/(?P<exchange>[A-Z_]+))?", self.instruments),
            ("POST", "/_sim/advance", self.advance),
            ("POST", "/_sim/faults", self.set_faults),
            ("GET", "/_sim/state", self.state),
            ("POST", "/_sim/token", self.set_token),
            ("POST", "/_sim/config", self.config),
            ("GET", "/_sim/config", lambda p: self.ex.settings.view()),
        ]
        self.routes: list[Route] = [(m, re.compile(path), h) for m, path, h in r]
        self.logins = 0
        self.hidden: dict[str, float] = {}  # order id → monotonic time it becomes visible
        self.placing_lost = False  # a placement whose reply will be lost is under way
        self.ticker.hold = lambda view: self.placing_lost or not self.seen(str(view["order_id"]))
        self.ex.tick_listeners.append(self._on_ticks)

    def seen(self, order_id: str) -> bool:
        """The order is in the order book's answers (a lost response may delay it)."""
        until = self.hidden.get(order_id)
        return until is None or time.monotonic() >= until

    def instruments(self, p: dict[str, str], exchange: str | None = None) -> CsvBody:
        """Kite's instrument master as CSV, of one exchange or all (sim.master)."""
        return master_csv(self.ex, exchange)

    def orders(self, p: dict[str, str]) -> list[dict[str, Any]]:
        return [o.view() for o in list(self.ex.orders.values()) if self.seen(o.order_id)]

    def history(self, p: dict[str, str], order_id: str) -> list[dict[str, Any]]:
        if not self.seen(order_id):
            raise refuse(NOT_FOUND.format(order_id))
        return self.ex.get(order_id).history

    def config(self, p: dict[str, Any]) -> dict[str, Any]:
        """Exchange settings (rules.Settings): participation, circuit_pct, lpp_pct,
        square_off ("HH:MM" IST)."""
        with self.ex.lock:
            self.ex.settings.update(p)
            return self.ex.settings.view()

    def _on_ticks(self, moved: list[int]) -> None:
        """Once the access token expires, open ticker connections are cut (and refused)."""
        a = self.account
        if a.expires_at is not None and self.ex.now >= a.expires_at and self.ticker.clients:
            self.ticker.drop()

    def session(self, p: dict[str, str]) -> dict[str, Any]:
        a = self.account
        expect = hashlib.sha256(f"{a.api_key}{p.get('request_token', '')}{a.api_secret}".encode())
        if p.get("api_key") != a.api_key or p.get("checksum") != expect.hexdigest():
            raise KiteError(403, "TokenException", "Invalid `checksum`.")
        if a.expires_at is not None and self.ex.now >= a.expires_at:  # a new day's login
            self.logins += 1
            a.access_token = hashlib.sha256(f"{a.access_token}:{self.logins}".encode()).hexdigest()
            a.expires_at = None
        return {
            **a.profile(), "api_key": a.api_key, "access_token": a.access_token,
            "public_token": "sim-public", "refresh_token": "", "enctoken": "",
            "login_time": kite_time(self.ex.now),
        }  # fmt: skip

    def segment(self, p: dict[str, str], segment: str) -> Any:
        return self.ex.margins()[segment]

    def modify(self, p: dict[str, str], variety: str, order_id: str) -> dict[str, Any]:
        return {"order_id": self.ex.modify(order_id, p).order_id}

    def cancel(self, p: dict[str, str], variety: str, order_id: str) -> dict[str, Any]:
        return {"order_id": self.ex.cancel(order_id).order_id}

    def order_trades(self, p: dict[str, str], order_id: str) -> list[dict[str, Any]]:
        return [t for t in self.ex.trades if t["order_id"] == order_id and self.seen(order_id)]

    def set_holdings(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        """Admin: demat holdings, ``[{"instrument_token", "quantity" (net, T1 included),
        "t1_quantity", "average_price", "listed_token"?}]`` (replaces those held;
        ``listed_token``: the token Kite lists the row under, e.g. its BSE one)."""
        rows = p.get("_list", [])
        with self.ex.lock:
            self.ex.demat = {
                int(r["instrument_token"]): (
                    int(r["quantity"]),
                    int(r.get("t1_quantity", 0)),
                    float(r["average_price"]),
                    int(r.get("listed_token", r["instrument_token"])),
                )
                for r in rows
            }
        return self.ex.holdings()

    def set_faults(self, p: dict[str, Any]) -> dict[str, Any]:
        """Order faults (counters, see Faults), or ``ws_drop`` / ``ws_silent``: act on the
        ticker connections open now."""
        done = {}
        if p.pop("ws_drop", None):
            done["dropped"] = self.ticker.drop()
        if p.pop("ws_silent", None):
            done["silenced"] = self.ticker.silence()
        self.faults.update(p)
        return done

    def place(self, p: dict[str, str], variety: str) -> dict[str, Any]:
        if self.faults.take("http_429"):
            raise KiteError(429, "NetworkException", "Too many requests")
        if self.faults.take("http_500"):
            raise KiteError(500, "GeneralException", "Something went wrong")
        with self.ex.lock:  # its ticker messages wait too when the order is to stay hidden
            delay = self.faults.lost_visible_s if self.faults.lost_response > 0 else 0.0
            self.placing_lost = delay > 0
            try:
                order = self.ex.place(variety, p)
            finally:
                self.placing_lost = False
            lost = self.faults.take("lost_response")
            if lost and delay > 0:
                self.hidden[order.order_id] = time.monotonic() + delay
            if self.faults.take("reject"):
                self.ex.reject(order, self.faults.reject_message)
        if lost:
            raise LostResponse(self.faults.lost_delay_s)
        return {"order_id": order.order_id}

    def advance(self, p: dict[str, Any]) -> dict[str, Any]:
        moved = self.ex.advance(int(p.get("ticks", 1)))
        return {"advanced": len(moved), "cursor": self.ex.cursor, "now": kite_time(self.ex.now)}

    def state(self, p: dict[str, str]) -> dict[str, Any]:
        return {"cursor": self.ex.cursor, "ticks": len(self.ex.tape), "orders": len(self.ex.orders),
                "trades": len(self.ex.trades), "requests": len(self.requests),
                "ws_clients": len(self.ticker.clients),
                "ws_connections": self.ticker.connections}  # fmt: skip

    def set_token(self, p: dict[str, Any]) -> dict[str, Any]:
        """``{"expires_at": ISO-8601}`` (tape time) or ``{"expire": true}`` (now)."""
        if p.get("expire"):
            self.account.expires_at = self.ex.now
        elif p.get("expires_at"):
            at = datetime.fromisoformat(str(p["expires_at"]))
            if at.tzinfo is None:
                raise KiteError(400, "InputException", "expires_at needs a time zone")
            self.account.expires_at = int(at.timestamp() * 1_000_000)
        return {"expires_at": self.account.expires_at}

    def token_valid(self, token: str | None) -> bool:
        a = self.account
        live = a.expires_at is None or self.ex.now < a.expires_at
        return token == a.access_token and live

    def authorised(self, header: str | None) -> bool:
        a = self.account
        prefix = f"token {a.api_key}:"
        return bool(header and header.startswith(prefix)) and self.token_valid(
            header[len(prefix) :] if header else None
        )

    def dispatch(self, method: str, path: str, params: dict[str, Any], auth: str | None) -> Any:
        self.requests.append((method, path))
        for m, pattern, handler in self.routes:
            match = pattern.fullmatch(path)
            if match and m == method:
                public = path == "/session/token" or path.startswith("/_sim/")
                if not path.startswith("/_sim/"):
                    self.faults.outage()
                if not public and not self.authorised(auth):
                    raise KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")
                return handler(params, **match.groupdict())
        raise KiteError(404, "GeneralException", f"Route not found: {method} {path}")


class LostResponse(Exception):
    """The order exists; the client never gets the reply (it times out)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__("response lost")
        self.delay_s = delay_s


class _Handler(BaseHTTPRequestHandler):
    """The simulator's HTTP front (``handler_for`` binds it to one ``SimApi``)."""

    api: SimApi
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return None  # tokens travel in headers; never log requests

    def _params(self) -> dict[str, Any]:
        url = urlsplit(self.path)
        params: dict[str, Any] = dict(parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if body:
            if "json" in (self.headers.get("Content-Type") or ""):
                got = json.loads(body)
                params.update(got if isinstance(got, dict) else {"_list": got})
            else:
                params.update(parse_qsl(body.decode()))
        return params

    def _reply(self, status: int, payload: dict[str, Any] | CsvBody) -> None:
        csv = isinstance(payload, CsvBody)
        body = str(payload).encode() if csv else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/csv" if csv else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _websocket(self) -> None:
        q = dict(parse_qsl(urlsplit(self.path).query))
        a = self.api.account
        key = self.headers.get("Sec-WebSocket-Key")
        if (
            not key
            or q.get("api_key") != a.api_key
            or not self.api.token_valid(q.get("access_token"))
        ):
            self._reply(403, {"status": "error", "message": "Invalid api_key or access_token",
                              "data": None, "error_type": "TokenException"})  # fmt: skip
            return
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept_key(key))
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        self.api.ticker.serve(self.connection, self.rfile)

    def _handle(self) -> None:
        if (self.headers.get("Upgrade") or "").lower() == "websocket":
            self._websocket()
            return
        try:
            params = self._params()
            data = self.api.dispatch(
                self.command,
                urlsplit(self.path).path,
                params,
                self.headers.get("Authorization"),
            )
            self._reply(200, data if isinstance(data, CsvBody) else
                        {"status": "success", "data": data})  # fmt: skip
        except KiteError as e:
            self._reply(e.status, {"status": "error", "message": e.message,
                                   "data": None, "error_type": e.error_type})  # fmt: skip
        except LostResponse as e:
            time.sleep(e.delay_s)
            self.close_connection = True
        except (ValueError, KeyError) as e:
            self._reply(400, {"status": "error", "message": f"Invalid input: {e}",
                              "data": None, "error_type": "InputException"})  # fmt: skip

    do_GET = do_POST = do_PUT = do_DELETE = _handle


def handler_for(api: SimApi) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"api": api})


def serve(api: SimApi, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), handler_for(api))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="kite-sim-http", daemon=True).start()
    return server
