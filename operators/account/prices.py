"""Paper fill prices: a tick's price moved against the order by slippage onto the tick grid,
never beyond the order's limit or its instrument's circuit band (an instrument locked at the
circuit on the order's side does not fill); the depth levels an order may take."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from operators.accounting import buys
from operators.market import nse_tick_size
from schemas.enums import SignalType
from schemas.ticks import ExecTick

DEPTH_SANITY = 0.10  # a depth level further than this from the tick's price is not used
Band = tuple[float, float]
Levels = tuple[tuple[float, int], ...]


def slipped_price(price: float, side: SignalType | str, bps: float, tick: float) -> float:
    """Move ``price`` against the order by ``bps`` and round outward to a multiple of ``tick``."""
    buy = buys(side)
    raw = price * (1 + bps / 1e4) if buy else price * (1 - bps / 1e4)
    steps = raw / tick
    n = math.ceil(steps - 1e-9) if buy else max(1, math.floor(steps + 1e-9))
    return round(n * tick, 2)


def crossed(e: ExecTick) -> bool:
    """A book whose best bid is at or above its best ask: a bad record, not prices."""
    bids = [p for p, q in e.bids if q > 0]
    asks = [p for p, q in e.asks if q > 0]
    return bool(bids and asks) and max(bids) >= min(asks)


def _locked(band: Band | None, buy: bool, tick_price: float) -> bool:
    """At the upper circuit there is no seller, at the lower no buyer."""
    return band is not None and (tick_price >= band[1] if buy else tick_price <= band[0])


class Pricer:
    """The prices of one paper venue (slippage, tick sizes, market protection, bands)."""

    def __init__(
        self, bps: float, tick_sizes: Mapping[int, float | str], protection: float
    ) -> None:
        self.bps, self.tick_sizes, self.protection = bps, tick_sizes, protection
        self.bands: Callable[[int], Band | None] = lambda _token: None

    def tick(self, token: int, price: float) -> float:
        size = self.tick_sizes.get(token, 0.05)
        return nse_tick_size(price) if size == "auto" else float(size)

    def protected(self, token: int, buy: bool, price: float) -> float | None:
        """The price a MARKET order may not fill beyond: ``price`` moved by the market
        protection, rounded inward to the tick (None: no protection)."""
        if self.protection <= 0:
            return None
        bound = price * (1 + self.protection if buy else 1 - self.protection)
        tick = self.tick(token, bound)
        steps = math.floor(bound / tick + 1e-9) if buy else math.ceil(bound / tick - 1e-9)
        return round(steps * tick, 2) if steps > 0 else None

    def price(self, token: int, buy: bool, limit: float | None, tick_price: float) -> float | None:
        """The fill against a tick at ``tick_price`` (None: a limit it misses, or locked)."""
        bps = self.bps / 1e4 if buy else -self.bps / 1e4
        tick = self.tick(token, tick_price * (1 + bps))
        px = slipped_price(tick_price, SignalType.BUY if buy else SignalType.SELL, self.bps, tick)
        band = self.bands(token)
        if _locked(band, buy, tick_price):
            return None
        if band is not None:  # inside the band, on the tick grid
            lo, hi = (
                math.ceil(band[0] / tick - 1e-9) * tick,
                math.floor(band[1] / tick + 1e-9) * tick,
            )
            px = round(min(max(px, lo), hi), 2)
        if limit is None:
            return px
        if (tick_price > limit) if buy else (tick_price < limit):
            return None
        return min(px, limit) if buy else max(px, limit)

    def at_limit(
        self, token: int, buy: bool, limit: float | None, tick_price: float
    ) -> float | None:
        """A resting order reached from its side fills at its limit, kept inside the band
        (None: the tick is locked at the circuit on the order's side)."""
        band = self.bands(token)
        if band is None or limit is None:
            return limit
        if _locked(band, buy, tick_price):
            return None
        return min(limit, band[1]) if buy else max(limit, band[0])

    def usable(
        self, token: int, buy: bool, limit: float | None, e: ExecTick, book: Levels
    ) -> list[tuple[float, int]] | None:
        """The book's levels an order may take, best first (asks up, bids down, whatever the
        record's order), within its limit (empty: it rests). Levels outside the circuit band
        or further than DEPTH_SANITY from the tick's price are bad records, never prices; a
        book of nothing else, or a crossed one, is no book (None)."""
        band = self.bands(token)
        lo, hi = e.price * (1 - DEPTH_SANITY), e.price * (1 + DEPTH_SANITY)
        if band is not None:
            lo, hi = max(lo, band[0]), min(hi, band[1])
        sane = sorted(((p, q) for p, q in book if lo <= p <= hi and q > 0), reverse=not buy)
        if not sane or crossed(e):
            return None
        return [(p, q) for p, q in sane if limit is None or (p <= limit if buy else p >= limit)]
