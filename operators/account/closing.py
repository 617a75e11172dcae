"""The account's own orders, each a MARKET close past the risk checks (they only reduce):
flattens (loss breach, operator), the MIS square-off at the cut-off, and per-strategy exits.
Ids derive from what asked and when it was due, never from when it was noticed, so a replay
after a restart never sends a second close."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from operators.account.exits import Key
from schemas.enums import Broker, Product, SignalType, StateReason
from schemas.events import TradingSignal, ValidatedSignal
from schemas.ids import content_id
from schemas.ticks import from_us

T = TypeVar("T")


class Closing:
    """A mixin of operators.account.account.Account (its state, setup, sending)."""

    broker: Broker
    state: Any
    setup: Any
    trading: Any
    exits: Any
    venue: Any
    risk: Any

    def _request(self, s: TradingSignal, side: SignalType, qty: int) -> dict[str, Any]:
        raise NotImplementedError

    def _send(self, v: ValidatedSignal, kind: str | None = None, square_off: bool = False) -> Any:
        raise NotImplementedError

    def _product(self, strategy_id: str) -> Product:
        raise NotImplementedError

    def _apply(self, events: list[Any]) -> list[Any]:
        raise NotImplementedError  # the Account's

    def _commands(self, ts: int, final: bool = False) -> list[Any]:
        raise NotImplementedError  # the Account's

    def _close(
        self,
        ids: tuple[Any, ...],
        key: Key,
        qty: int,
        ts: int,
        reason: str,
        square_off: bool = False,
        capped: bool = False,
    ) -> list[Any]:
        """A MARKET order of ``qty`` (signed) for strategy/instrument ``key``, with its signal;
        ``ids``: what asked (the signal id derives from it and the key); ``capped`` (a close
        sent again): none past the broker's order caps."""
        sid, token = key
        price = self.state.book.price(token, 0.0)
        if not qty or price <= 0:
            return []
        if capped and self.risk.rates.breach(ts) is not None:
            return []
        b = self.broker.value
        sig = TradingSignal(
            signal_id=content_id(*ids[:1], b, *ids[1:], sid, token),
            correlation_id=content_id(*ids[:1], b, *ids[1:]),
            strategy_id=sid,
            broker=self.broker,
            instrument_token=token,
            target_quantity=self.state.book.strategy_position(sid, token) + qty,
            price=price,
            timestamp=from_us(ts),
            reason=reason,
        )
        side = SignalType.BUY if qty > 0 else SignalType.SELL
        val = ValidatedSignal(
            event_id=content_id("val", sig.signal_id), **self._request(sig, side, abs(qty))
        )
        return [sig, *self._send(val, "MARKET", square_off=square_off)]

    def flatten(self, reason: StateReason, ts: int, again: bool = False) -> list[Any]:
        """Close every instrument's net position at once. Called ``again`` on every mark
        while a flatten is in progress, for what open orders filled since (or a failed close
        left): within the order caps, each round starting one further along the plan."""
        st, out = self.state, list[Any]()
        plan = st.book.close_plan()
        if not plan:
            return out
        st.flattens, st.flattened_at = st.flattens + 1, ts
        tag = st.flattening or reason.value
        for sid, token, qty in _turn(plan, st.flattens if again else 0):
            ids = ("flatten", tag, st.flattens)
            why = f"FLATTEN: {reason.value}"
            out += self._close(ids, (sid, token), qty, ts, why, capped=again)
        return out

    def reflatten(self, ts: int) -> list[Any]:
        """While a flatten is in progress: close whatever is still (or again) held."""
        if self.state.flattening is None or ts <= self.state.flattened_at:
            return []  # none in progress, or a round at this very time already
        reason = StateReason.DAILY_LOSS_BREACHED
        if self.trading.state == "HALTED":
            reason = StateReason.OPERATOR_FLATTEN
        return self.flatten(reason, ts, again=True)

    def square_off_due(self, ts: int) -> int | None:
        """The MIS cut-off at or before ``ts`` whose square-off is still to do, if any: a
        new one, or today's again while an MIS position has nothing closing it (a broker
        that cancels late: a closing order it cancelled leaves the position open)."""
        cut = self.setup.session.cutoff(ts)
        if cut is None or ts < cut or cut < self.state.squared_off:
            return None
        if cut == self.state.squared_off and not (
            self.setup.session.is_open(ts) and self._mis_left()
        ):  # again only while the session is open: after the close, the broker's settlement
            return None
        return cut

    def day_over(self, prev: int, ts: int) -> list[Any]:
        """A simulated venue, the session of ``prev`` closed before ``ts``: its MIS
        square-off, if nothing came after its cut-off to do it, and any square-off no tick
        filled, done at that close at the last prices (the broker closes them regardless)."""
        session = self.setup.session
        close = session.closes(prev)
        if not self.venue.simulated or ts < close:
            return []
        cut = session.cutoff(prev)
        if cut is None:
            return []
        out: list[Any] = []
        if self.state.squared_off < cut:  # commands due before the cut-off come first
            out += self._commands(cut) + self.square_off(cut)
        return out + self._apply(self.venue.settle(close))

    def _mis_left(self) -> bool:
        """Some MIS strategy position has no closing order out for it."""
        book = self.state.book
        return any(
            self._left_to_close((sid, token))
            for sid in book.strategies
            if self._product(sid) is Product.MIS
            for token, lot in book.strategies[sid].book.lots.items()
            if lot.quantity  # a flat lot has nothing to close
        )

    def square_off(self, cut: int, at: int | None = None) -> list[Any]:
        """The broker's MIS square-off at the cut-off: pending MIS orders cancelled, then
        every MIS strategy position closed (net of closing orders the venue could not
        cancel), flagged AUTO_SQUARE_OFF (its charge applies). Again at ``at`` (a later
        round, for what a refused close left): stamped then, the orders out kept."""
        st = self.state
        st.square_rounds = st.square_rounds + 1 if st.squared_off == cut else 0
        st.squared_off = cut
        out: list[Any] = []
        if not st.square_rounds:
            why = "CANCELLED: MIS cut-off, pending MIS orders end before the square-off"
            out += self._cancel_open(
                cut, why, lambda o: self._product(o.strategy_id) is Product.MIS
            )
        again = st.square_rounds
        when = cut if at is None or not again else max(at, cut)
        ids = ("squareoff", cut, again) if again else ("squareoff", cut)
        book = st.book.strategies
        keys = [(sid, token) for sid in sorted(book) if self._product(sid) is Product.MIS
                for token in sorted(book[sid].book.lots)]  # fmt: skip
        for key in _turn(keys, again):  # a later round: one further along, within the caps
            qty, why = self._left_to_close(key), "AUTO_SQUARE_OFF: MIS cut-off"
            out += self._close(ids, key, qty, when, why, True, capped=bool(again))
        return out

    def exit_positions(self, at: int, found: list[tuple[Key, str]]) -> list[Any]:
        """Strategy exits triggered at ``at``: close each position; its target latches."""
        st, out = self.state, list[Any]()
        for key, why in found:
            held = st.book.strategy_position(*key)
            out += self._cancel_open(  # its pending orders that would add go first
                at, f"CANCELLED: {why} exit", _adding_to(key, held)
            )
            qty = self._left_to_close(key)
            self.exits.exited(key, st.targets.get(key, held))
            out += self._close(("exit", why, at), key, qty, at, f"{why}: strategy exit")
        return out

    def _cancel_open(self, at: int, why: str, wanted: Callable[[Any], bool]) -> list[Any]:
        """Cancel the open orders ``wanted`` picks (book.OpenOrder), in id order."""
        book, out = self.state.book, list[Any]()
        for oid in sorted(book.open):
            if wanted(book.open[oid]):
                out += self._apply(self.venue.cancel(oid, at, why))
        return out

    def _left_to_close(self, key: Key) -> int:
        """The signed order that closes the strategy's position net of its closing orders
        already out (0: nothing left, or those already cover it)."""
        sid, token = key
        held = self.state.book.strategy_position(sid, token)
        qty = -(held + self.state.book.closing(token, sid, held))
        return qty if held and qty and (qty > 0) != (held > 0) else 0


def _turn(items: list[T], by: int) -> list[T]:
    """``items`` started ``by`` places along (rounds of closes under a cap take turns)."""
    k = by % len(items) if items else 0
    return items[k:] + items[:k]


def _adding_to(key: Key, held: int) -> Callable[[Any], bool]:
    """Picks the open orders of ``key`` that would add to a position of ``held``."""

    def adds(o: Any) -> bool:
        return (o.strategy_id, o.token) == key and held != 0 and (o.remaining > 0) == (held > 0)

    return adds
