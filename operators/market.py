"""NSE market structure the simulators follow: tick sizes by price band."""

from __future__ import annotations

import math

# NSE cash market, from 15 April 2025: (price up to, tick size); above the last: 5.00
NSE_TICK_BANDS: tuple[tuple[float, float], ...] = (
    (250.0, 0.01),
    (1_000.0, 0.05),
    (5_000.0, 0.10),
    (10_000.0, 0.50),
    (20_000.0, 1.00),
)
NSE_TOP_TICK = 5.00


def nse_tick_size(price: float) -> float:
    """The tick size of a stock trading at ``price`` under NSE's price bands (NSE reviews the
    band monthly on the month's last close; here the band of the price itself)."""
    for upto, tick in NSE_TICK_BANDS:
        if price <= upto:
            return tick
    return NSE_TOP_TICK


def stop_trigger(price: float, buy: bool, offset_bps: float, tick: float | str) -> float:
    """The trigger of a stop order (SL / SL-M) for a signal at ``price``: ``offset_bps``
    beyond it in the order's direction (a buy above, a sell below), outward to the tick
    (``auto``: the tick of ``price``'s band, the instrument's as Kite checks it, even when
    the trigger itself lies across a band edge)."""
    raw = price * (1 + offset_bps / 1e4) if buy else price * (1 - offset_bps / 1e4)
    size = nse_tick_size(price) if tick == "auto" else float(tick)
    steps = math.ceil(raw / size - 1e-9) if buy else max(1, math.floor(raw / size + 1e-9))
    return round(steps * size, 2)
