"""Trading state of one broker's account: ACTIVE → REDUCING (daily loss) → …, HALTED by an
operator; the daily-loss limit is checked on every mark and at every decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from operators.session import MarketSession
from schemas.config import RiskConfig
from schemas.enums import Broker, StateReason, TradingState
from schemas.events import TradingStateChanged
from schemas.ids import content_id
from schemas.ticks import from_us


@dataclass
class TradingStatus:
    state: TradingState = TradingState.ACTIVE
    reason: StateReason | None = None
    day: date | None = None
    day_start_pnl: float = 0.0
    loss_breached: bool = False
    changes: int = 0


@dataclass(frozen=True)
class Verdict:
    """What a time step or a command asks of the account: state changes, and a flatten."""

    changes: tuple[TradingStateChanged, ...] = ()
    flatten: StateReason | None = None


NOTHING = Verdict()  # the usual answer to a time step (immutable: shared)


class TradingControl:
    """Pure logic of the trading state; the account applies its verdicts."""

    def __init__(
        self,
        broker: Broker,
        risk: RiskConfig,
        session: MarketSession,
        status: TradingStatus | None = None,
    ) -> None:
        self.broker, self.risk, self.session = broker, risk, session
        self.status = status or TradingStatus()

    def _move(
        self, to: TradingState, reason: StateReason, detail: str, ts: int
    ) -> tuple[TradingStateChanged, ...]:
        st = self.status
        if st.state is to and st.reason is reason:
            return ()
        st.changes += 1
        change = TradingStateChanged(
            event_id=content_id("state", self.broker.value, ts, st.changes, to.value),
            broker=self.broker,
            state=to,
            previous=st.state,
            reason=reason,
            detail=detail,
            timestamp=from_us(ts),
        )
        st.state, st.reason = to, reason
        return (change,)

    def day_pnl(self, net_pnl: float) -> float:
        return net_pnl - self.status.day_start_pnl

    def on_time(self, ts: int, net_pnl: float) -> Verdict:
        """Roll the trading day; check the daily-loss limit against the marked book."""
        st = self.status
        changes: tuple[TradingStateChanged, ...] = ()
        day = self.session.trading_day(ts)
        if st.day is None or day > st.day:  # only forwards: a late item never rolls it back
            st.day, st.day_start_pnl, st.loss_breached = day, net_pnl, False
            if st.state is TradingState.REDUCING:
                changes = self._move(
                    TradingState.ACTIVE, StateReason.NEW_TRADING_DAY, f"trading day {day}", ts
                )
        loss = -self.day_pnl(net_pnl)
        if st.loss_breached or loss < self.risk.max_daily_loss:
            return Verdict(changes) if changes else NOTHING
        st.loss_breached = True
        detail = f"day loss {loss:,.2f} >= limit {self.risk.max_daily_loss:,.2f} on {day}"
        if st.state is not TradingState.HALTED:
            changes += self._move(
                TradingState.REDUCING, StateReason.DAILY_LOSS_BREACHED, detail, ts
            )
        flat = StateReason.DAILY_LOSS_BREACHED if self.risk.flatten_on_breach else None
        return Verdict(changes, flat)

    def lock(self, reason: StateReason, detail: str, ts: int) -> Verdict:
        """The venue can send nothing (Kite refused our session): HALTED until resumed."""
        return Verdict(self._move(TradingState.HALTED, reason, detail, ts))

    def command(self, command: str, ts: int, origin: str) -> Verdict:
        """An operator's ``halt``, ``flatten`` or ``resume``."""
        if command == "halt":
            return Verdict(self._move(TradingState.HALTED, StateReason.OPERATOR_HALT, origin, ts))
        if command == "flatten":
            moved = self._move(TradingState.HALTED, StateReason.OPERATOR_FLATTEN, origin, ts)
            return Verdict(moved, StateReason.OPERATOR_FLATTEN)
        if self.status.loss_breached:  # resume, but today's loss limit still holds
            detail = f"{origin}; daily loss limit still breached today"
            to = TradingState.REDUCING
        else:
            detail, to = origin, TradingState.ACTIVE
        return Verdict(self._move(to, StateReason.OPERATOR_RESUME, detail, ts))

    @property
    def state(self) -> TradingState:
        return self.status.state
