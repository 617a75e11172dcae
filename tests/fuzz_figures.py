"""The fuzz harness's figures: ``python -m tests.fuzz_figures [EXAMPLES]`` (default 1000)
runs each property of tests/test_fuzz.py EXAMPLES times and prints, per input path, the
inputs tried, processed and dead letters, and the number of properties that failed."""

from __future__ import annotations

import os
import sys


def main(examples: int) -> int:
    os.environ["FUZZ_EXAMPLES"] = str(examples)  # read when tests.test_fuzz is imported
    from tests import test_fuzz as fuzz

    crashes = 0
    for test in (
        fuzz.test_kafka_messages_never_raise_and_each_is_processed_or_dead,
        fuzz.test_kite_frames_never_raise_and_each_packet_is_processed_or_dead,
        fuzz.test_replay_rows_never_raise_and_each_is_processed_or_dead,
    ):
        try:
            test()
        except Exception as e:  # a falsified property: count it, show it
            crashes += 1
            print(f"{test.__name__}: {type(e).__name__}: {e}", file=sys.stderr)
    for path, unit in (("kafka", "messages"), ("kite", "packets"), ("replay", "rows")):
        n, p, d = (fuzz.TALLY[f"{path} {k}"] for k in ("inputs", "processed", "dead"))
        ok = "=" if n == p + d else "!="
        print(f"{path}: {examples} examples, {n} {unit} in {ok} {p} processed + {d} dead letters")
    print(f"replay files refused whole by the file check: {fuzz.TALLY['replay files refused']}")
    print(f"crashes: {crashes}")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
