"""Market session calendar (NSE 09:15–15:30 IST, Mon–Fri by default), judged by event time."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from schemas.config import SessionConfig
from schemas.ticks import US


class MarketSession:
    def __init__(self, cfg: SessionConfig) -> None:
        self.cfg = cfg
        self.tz = ZoneInfo(cfg.timezone)
        self.holidays = frozenset(cfg.holidays)

    def local(self, ts_us: int) -> datetime:
        return datetime.fromtimestamp(ts_us / US, tz=timezone.utc).astimezone(self.tz)

    def trading_day(self, ts_us: int) -> date:
        return self.local(ts_us).date()

    def is_open(self, ts_us: int) -> bool:
        t = self.local(ts_us)
        if t.weekday() not in self.cfg.weekdays or t.date() in self.holidays:
            return False
        return self.cfg.open <= t.time() < self.cfg.close
