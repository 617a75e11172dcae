"""NSE market structure the simulators follow: tick sizes by price band."""

from __future__ import annotations

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
