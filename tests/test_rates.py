"""Order-rate caps: every window holding an order respects every cap, whatever the arrival order."""

from __future__ import annotations

import pickle
from collections import Counter
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.account.rates import (
    US,
    OrderRates,
    RateCap,
    RateState,
    busiest_window,
    kite_caps,
)

DAY_US = 86_400 * US


def utc_day(us: int) -> date:
    return date.fromordinal(719163 + us // DAY_US)


def per_second(limit: int) -> list[RateCap]:
    return [RateCap(US, limit, "per_second")]


def test_ten_per_second_then_refused_then_next_second_ok() -> None:
    rates = OrderRates(per_second(10), utc_day)
    base = 1_700_000_000 * US
    for k in range(10):
        t = base + k * 50_000
        assert rates.breach(t) is None
        rates.record(t)
    refused = rates.breach(base + 900_000)
    assert refused is not None
    assert "per_second" in refused and "10 orders" in refused and "limit 10" in refused
    assert rates.breach(base + 50_000 * 9 + US) is None


def test_late_early_order_cannot_overfill_a_later_window() -> None:
    rates = OrderRates(per_second(5), utc_day)
    for t in (1_500_000, 1_600_000, 1_700_000, 1_800_000, 1_900_000):
        assert rates.breach(t) is None
        rates.record(t)
    # [1.0 s, 2.0 s) holds t = 1.0 s and the five recorded orders: six > 5.
    assert rates.breach(1_000_000) is not None
    # Every window holding 0.4 s ends by 1.4 s: none of the recorded orders is in it.
    assert rates.breach(400_000) is None
    # 0.6 s shares [0.6 s, 1.6 s) with only the 1.5 s order.
    assert rates.breach(600_000) is None


def test_day_cap_and_prune() -> None:
    caps = [RateCap(US, 100, "per_second"), RateCap(None, 3, "per_day")]
    rates = OrderRates(caps, utc_day)
    day0 = 20_000 * DAY_US + 4 * 3600 * US
    for k in range(3):
        rates.record(day0 + k * 10 * US)
    refused = rates.breach(day0 + 3600 * US)
    assert refused is not None and "per_day" in refused and "limit 3/day" in refused
    day1 = day0 + DAY_US
    assert rates.breach(day1) is None
    rates.record(day1)
    rates.prune(day1)
    assert rates.state.times == [day1]
    assert rates.state.per_day == {utc_day(day1): 1}
    rates.record(day1 + US)
    assert rates.breach(day1 + 2 * US) is None
    rates.record(day1 + 2 * US)
    assert rates.breach(day1 + 3 * US) is not None


def test_prune_keeps_same_day_and_recent_orders() -> None:
    caps = kite_caps(10, 400, 5000)
    rates = OrderRates(caps, utc_day)
    midnight = 20_000 * DAY_US
    early, late_yday, today = midnight - 3600 * US, midnight - 30 * US, midnight + 10 * US
    for t in (early, late_yday, today):
        rates.record(t)
    rates.prune(today)
    # late_yday is an earlier day but within the 60 s window of the watermark: kept.
    assert rates.state.times == [late_yday, today]
    assert rates.state.per_day == {utc_day(today): 1}
    rates.prune(today + 61 * US)
    assert rates.state.times == [today]


def test_kite_caps() -> None:
    assert kite_caps(10, 400, 5000) == [
        RateCap(US, 10, "per_second"),
        RateCap(60 * US, 400, "per_minute"),
        RateCap(None, 5000, "per_day"),
    ]


def test_busiest_window_empty_and_duplicates() -> None:
    assert busiest_window([], 5, 10) == (0, 5)
    assert busiest_window([3, 3, 3], 3, 1) == (3, 3)
    assert busiest_window([3, 3, 3], 4, 1) == (0, 4)


# --- brute force, independent of the class ------------------------------------------------------


SMALL_DAY = 2_000_000  # make the day cap bite in short random runs


def small_day(us: int) -> date:
    return date.fromordinal(719163 + us // SMALL_DAY)


def satisfies(accepted: list[int], caps: list[RateCap]) -> bool:
    """Every window [s, s + W) and every day holds at most the cap's limit of ``accepted``."""
    for cap in caps:
        if cap.window_us is None:
            if any(n > cap.limit for n in Counter(map(small_day, accepted)).values()):
                return False
            continue
        w = cap.window_us
        starts = {a for a in accepted} | {a - w + 1 for a in accepted}
        for s in starts:
            if sum(1 for a in accepted if s <= a < s + w) > cap.limit:
                return False
    return True


caps_strategy = st.lists(
    st.builds(
        RateCap,
        window_us=st.one_of(
            st.none(), st.sampled_from([1, 1000, 250_000, US]), st.integers(1, 3 * US)
        ),
        limit=st.integers(0, 5),
        name=st.just("cap"),
    ),
    min_size=1,
    max_size=3,
)
times_strategy = st.lists(
    st.one_of(st.integers(0, 6 * US), st.integers(0, 60).map(lambda k: k * 100_000)),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(arrivals=times_strategy, caps=caps_strategy)
def test_accepted_set_respects_every_window(arrivals: list[int], caps: list[RateCap]) -> None:
    rates = OrderRates(caps, small_day)
    accepted: list[int] = []
    for t in arrivals:
        ok_by_brute_force = satisfies([*accepted, t], caps)
        detail = rates.breach(t)
        assert (detail is None) == ok_by_brute_force, (accepted, t, detail)
        if detail is None:
            rates.record(t)
            accepted.append(t)
    assert satisfies(accepted, caps)
    assert rates.state.times == sorted(accepted)


@settings(max_examples=200, deadline=None)
@given(arrivals=times_strategy, caps=caps_strategy)
def test_prune_at_latest_time_changes_nothing_in_order(
    arrivals: list[int], caps: list[RateCap]
) -> None:
    pruned, full = OrderRates(caps, small_day), OrderRates(caps, small_day)
    for t in sorted(arrivals):
        pruned.prune(t)
        a, b = pruned.breach(t), full.breach(t)
        assert (a is None) == (b is None)
        if a is None:
            pruned.record(t)
            full.record(t)


@settings(max_examples=100, deadline=None)
@given(arrivals=times_strategy, caps=caps_strategy, split=st.integers(0, 40))
def test_state_pickle_round_trip_resumes_same(
    arrivals: list[int], caps: list[RateCap], split: int
) -> None:
    def run(rates: OrderRates, ts: list[int]) -> list[str | None]:
        out = []
        for t in ts:
            d = rates.breach(t)
            out.append(d)
            if d is None:
                rates.record(t)
        return out

    live = OrderRates(caps, small_day)
    run(live, arrivals[:split])
    state = pickle.loads(pickle.dumps(live.state))
    assert isinstance(state, RateState) and state == live.state
    resumed = OrderRates(caps, small_day, state=state)
    assert run(resumed, arrivals[split:]) == run(live, arrivals[split:])
    assert resumed.state == live.state
