"""Reconciliation of the zerodha account with Kite: what Kite says we hold against what the
account's book holds, per instrument. A difference that persists over two checks in a row
(fills in flight settle within one) halts the account (RECONCILE_MISMATCH) with the
difference named; positions in instruments we do not trade are reported, not ours to
judge."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from schemas.kite import KitePositions

log = logging.getLogger("alpha_panda.reconcile")


@dataclass
class ReconcileState:
    last: dict[int, tuple[int, int]] = field(default_factory=dict)  # the previous difference
    reported: set[int] = field(default_factory=set)  # foreign instruments already reported


def differences(
    kite: KitePositions,
    held: Callable[[int], int],
    universe: Iterable[int],
    symbols: Mapping[str, int] | None = None,
) -> tuple[dict[int, tuple[int, int]], dict[int, int]]:
    """Per traded instrument whose quantities differ: (Kite's, the book's); and Kite's
    positions in instruments we do not trade. Kite's side: net positions plus demat
    holdings, a holding matched to our instrument by ``symbols`` (tradingsymbol → token)."""
    ours = set(universe)
    at_kite: dict[int, int] = {}
    rows = [*kite.rows, *(((symbols or {}).get(s, t), q) for s, t, q in kite.holdings)]
    for token, qty in rows:
        at_kite[token] = at_kite.get(token, 0) + qty  # products summed, as the book does
    diff = {t: (at_kite.get(t, 0), held(t)) for t in sorted(ours) if at_kite.get(t, 0) != held(t)}
    foreign = {t: q for t, q in sorted(at_kite.items()) if t not in ours and q}
    return diff, foreign


def judge(
    state: ReconcileState,
    kite: KitePositions,
    held: Callable[[int], int],
    universe: Iterable[int],
    symbols: Mapping[str, int] | None = None,
) -> str | None:
    """The detail to halt with (None: the account agrees with Kite, or not yet twice)."""
    diff, foreign = differences(kite, held, universe, symbols)
    for token in set(foreign) - state.reported:
        log.warning("Kite holds %d of instrument %d, which no strategy trades", foreign[token],
                    token)  # fmt: skip
    state.reported |= set(foreign)
    gaps = {t: k - b for t, (k, b) in diff.items()}  # trading between checks moves both sides
    persisted = bool(gaps) and gaps == {t: k - b for t, (k, b) in state.last.items()}
    state.last = diff
    if not persisted:
        return None
    parts = [f"instrument {t}: Kite {k:+d}, account {b:+d}" for t, (k, b) in diff.items()]
    return "positions differ from Kite's over two checks: " + "; ".join(parts)
