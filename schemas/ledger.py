"""Ledger kinds: the directory name of each event kind in a run's output (one place)."""

from __future__ import annotations

from schemas.events import (
    DeadLetter,
    FeesSettled,
    Model,
    OrderFailed,
    OrderFilled,
    OrderPlaced,
    PnlSnapshot,
    RejectedSignal,
    StageHealth,
    TradingSignal,
    TradingStateChanged,
)

LEDGER_KINDS: dict[str, type[Model]] = {
    "signals": TradingSignal,
    "rejections": RejectedSignal,
    "orders": OrderPlaced,
    "order_failures": OrderFailed,
    "fills": OrderFilled,
    "fee_notes": FeesSettled,
    "pnl": PnlSnapshot,
    "health": StageHealth,
    "dead_letters": DeadLetter,
    "trading_states": TradingStateChanged,
}

KIND_OF: dict[type[Model], str] = {model: kind for kind, model in LEDGER_KINDS.items()}
