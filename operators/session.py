"""Market session calendar (NSE 09:15–15:30 IST on the exchange's trading days), judged by
event time. Trading days come from exchange_calendars (see SessionConfig)."""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from schemas.calendar import calendar_days
from schemas.config import SessionConfig
from schemas.ticks import I64, US

log = logging.getLogger("alpha_panda.session")
QUARTER_US = 15 * 60 * US  # local dates change on quarter hours in every time zone


class MarketSession:
    def __init__(self, cfg: SessionConfig) -> None:
        self.cfg = cfg
        self.tz = ZoneInfo(cfg.timezone)
        self.holidays = frozenset(cfg.holidays)
        self.special = {s.date: (s.open, s.close) for s in cfg.special_sessions}
        self.calendar = calendar_days(cfg.calendar) if cfg.calendar else None
        self._warned = False  # a day outside the calendar's years was asked about
        self._day: tuple[int, int, date] = (0, 0, date.min)
        self._open: tuple[int, int] = (0, 0)  # that day's session, µs (empty if closed)
        self._cut: int | None = None  # that day's MIS cut-off, µs
        close, cut = (datetime.combine(date.min, t) for t in (cfg.close, cfg.mis_cutoff))
        self._cut_gap_s = (close - cut).total_seconds()  # cut-off to close on a regular day

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
        hours = self.hours(d)
        trades = hours is not None
        o, c = hours or (self.cfg.open, self.cfg.close)
        opens = datetime.combine(d, o, self.tz).timestamp()
        closes = datetime.combine(d, c, self.tz).timestamp()
        self._open = (int(opens * US), int(closes * US)) if trades else (0, 0)
        cut = datetime.combine(d, self.cfg.mis_cutoff, self.tz).timestamp()
        if d in self.special:  # a special session's cut-off is as far from its close
            cut = max(closes - self._cut_gap_s, opens)  # (a session shorter: at its open)
        self._cut = int(cut * US) if trades else None
        return d

    def hours(self, d: date) -> tuple[time, time] | None:
        """Open and close of local date ``d``, or None: no session that day."""
        if d in self.special:
            return self.special[d]
        if d in self.holidays:
            return None
        if self.calendar is not None:
            days, first, last = self.calendar
            if first <= d <= last:
                return (self.cfg.open, self.cfg.close) if d in days else None
            if not self._warned:
                self._warned = True
                log.warning(
                    "session.calendar %s records holidays from %s to %s only: on %s and other "
                    "days outside, weekdays less session.holidays apply (update "
                    "exchange-calendars, or list the holidays)",
                    self.cfg.calendar, first, last, d,
                )  # fmt: skip
        return (self.cfg.open, self.cfg.close) if d.weekday() in self.cfg.weekdays else None

    def trading_mask(self, ts: I64) -> npt.NDArray[np.bool_]:
        """Which of the instants ``ts`` (µs) fall on a trading day (local date)."""
        if not len(ts):
            return np.zeros(0, dtype=bool)
        day, last = self._date(int(ts.min())), self._date(int(ts.max()))
        if day is not None and day == last:  # the usual batch: one day, one answer
            return np.full(len(ts), self.hours(day) is not None)
        quarters, inverse = np.unique(ts // QUARTER_US, return_inverse=True)
        days = [self._date(int(q) * QUARTER_US) for q in quarters.tolist()]
        trades = np.array([d is not None and self.hours(d) is not None for d in days], dtype=bool)
        return trades[inverse.reshape(-1)]

    def open_mask(self, ts: I64) -> npt.NDArray[np.bool_]:
        """Which of the instants ``ts`` (µs) fall inside a session (``is_open``), per day."""
        out = np.zeros(len(ts), dtype=bool)
        if not len(ts):
            return out
        days, inverse = np.unique(ts // QUARTER_US, return_inverse=True)
        for i, q in enumerate(days.tolist()):
            at = np.flatnonzero(inverse.reshape(-1) == i)
            try:
                self.trading_day(int(q) * QUARTER_US)
            except (OverflowError, ValueError, OSError):
                continue
            lo, hi = self._open
            out[at] = (ts[at] >= lo) & (ts[at] < hi)
        return out

    def _date(self, ts_us: int) -> date | None:
        """The local date of ``ts_us``; None where no calendar date exists (out of range)."""
        try:
            return self.local(ts_us).date()
        except (OverflowError, ValueError, OSError):
            return None

    def cutoff(self, ts_us: int) -> int | None:
        """The MIS cut-off of ``ts_us``'s trading day, µs (None: no session that day)."""
        self.trading_day(ts_us)
        return self._cut

    def closes(self, ts_us: int) -> int:
        """When the session of ``ts_us``'s day closes (its day's end if it has none), µs."""
        self.trading_day(ts_us)
        return self._open[1] or self._day[1]

    def is_open(self, ts_us: int) -> bool:
        """In the session (weekday, not a holiday, between open and close), local time."""
        self.trading_day(ts_us)
        lo, hi = self._open
        return lo <= ts_us < hi
