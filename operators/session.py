"""Market session calendar (NSE 09:15–15:30 IST, Mon–Fri by default), judged by event time."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from schemas.config import SessionConfig
from schemas.ticks import US


class MarketSession:
    def __init__(self, cfg: SessionConfig) -> None:
        self.cfg = cfg
        self.tz = ZoneInfo(cfg.timezone)
        self.holidays = frozenset(cfg.holidays)
        self._day: tuple[int, int, date] = (0, 0, date.min)
        self._open: tuple[int, int] = (0, 0)  # that day's session, µs (empty if closed)

    def local(self, ts_us: int) -> datetime:
        return datetime.fromtimestamp(ts_us / US, tz=timezone.utc).astimezone(self.tz)

    def day_end(self, ts_us: int) -> int:
        """First µs of the local day after ``ts_us``'s."""
        self.trading_day(ts_us)
        return self._day[1]

    def trading_day(self, ts_us: int) -> date:
        """The local date of ``ts_us`` (the last day's bounds are cached: called per mark)."""
        lo, hi, day = self._day
        if lo <= ts_us < hi:
            return day
        t = self.local(ts_us)
        midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
        d = t.date()
        start = int(midnight.timestamp() * US)
        end = int((midnight + timedelta(days=1)).timestamp() * US)
        self._day = (start, end, d)
        trades = t.weekday() in self.cfg.weekdays and d not in self.holidays
        opens = datetime.combine(d, self.cfg.open, self.tz).timestamp()
        closes = datetime.combine(d, self.cfg.close, self.tz).timestamp()
        self._open = (int(opens * US), int(closes * US)) if trades else (0, 0)
        return d

    def closes(self, ts_us: int) -> int:
        """When the session of ``ts_us``'s day closes (its day's end if it has none), µs."""
        self.trading_day(ts_us)
        return self._open[1] or self._day[1]

    def is_open(self, ts_us: int) -> bool:
        """In the session (weekday, not a holiday, between open and close), local time."""
        self.trading_day(ts_us)
        lo, hi = self._open
        return lo <= ts_us < hi
