"""Graceful stop: SIGINT / SIGTERM end the run the way the end of the data does.

``install()`` (called by ``flows.main`` before Bytewax starts) replaces the signals' default
actions with a handler that only sets a process-wide flag. Every source partition checks
``requested()`` in ``next_batch`` and ends (StopIteration), so the flow completes normally:
operators flush, sinks close, the report prints. Then the process exits with 128 + the
signal's number (130 for SIGINT, 143 for SIGTERM). A second signal exits at once.

The flag is per process: in a multi-process cluster, signal every process (Ctrl-C in a
terminal signals the whole process group).

Tick partitions also say when they end (``tick_part_open`` / ``tick_part_ended``): the Kite
order-update partition (a zerodha broker fed by Kafka or replay) ends once every tick
partition has, so ``idle_stop_s`` and bounded reads finish the run. Only in a single process:
in a cluster the other processes' partitions are unknown, so it ends on a signal only.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from types import FrameType

log = logging.getLogger("alpha_panda.stop")

_flag = threading.Event()
_signum: list[int] = []  # the first signal received
_lock = threading.Lock()
_ticks: dict[str, bool] = {}  # tick partition of this process -> ended
_cluster: list[bool] = [False]
_failed: list[tuple[int, str]] = []  # why the run failed (``fail``)


def requested() -> bool:
    """True once a stop was asked for (a signal, or ``request()``)."""
    return _flag.is_set()


def request(signum: int = signal.SIGINT) -> None:
    """Ask every source of this process to end (what the signal handler does)."""
    if not _signum:
        _signum.append(signum)
    _flag.set()


def fail(why: str, code: int = 1) -> None:
    """The run ends without error but failed at what it was for (a live feed that never
    connected): it exits ``code`` and says ``why`` in one line once it has ended."""
    if not _failed:
        _failed.append((code, why))


def exit_code() -> int | None:
    """128 + the signal that stopped the run, else a failure's code, else None."""
    if _signum:
        return 128 + _signum[0]
    return _failed[0][0] if _failed else None


def signal_name() -> str:
    """The name of the signal that stopped the run ("request" when asked in code)."""
    return signal.Signals(_signum[0]).name if _signum else "request"


def reset() -> None:
    """Forget a stop and the tick partitions (tests that run several flows in one process)."""
    _flag.clear()
    _signum.clear()
    _failed.clear()
    with _lock:
        _ticks.clear()


def set_cluster(argv: list[str]) -> None:
    """Note whether this process is one of several (``-i``/``-a`` or Bytewax's variables)."""
    flags = ("-a", "--addresses", "-i", "--process-id")
    multi = any(a in flags or a.startswith(("--addresses=", "--process-id=")) for a in argv)
    env = ("BYTEWAX_ADDRESSES", "BYTEWAX_PROCESS_ID", "__BYTEWAX_PROC_ID")
    _cluster[0] = multi or any(os.environ.get(k) for k in env)


def tick_part_open(name: str) -> None:
    with _lock:
        _ticks[name] = False


def tick_part_ended(name: str) -> StopIteration:
    """Record that a tick partition ended; returns the StopIteration it raises."""
    with _lock:
        _ticks[name] = True
    return StopIteration()


def ticks_ended() -> bool:
    """Every tick partition of this (single) process has ended."""
    with _lock:
        return not _cluster[0] and bool(_ticks) and all(_ticks.values())


def _handler(signum: int, frame: FrameType | None) -> None:
    if _flag.is_set():
        sys.stderr.write(f"alpha-panda: {signal.Signals(signum).name} again: exiting at once\n")
        sys.stderr.flush()
        os._exit(128 + signum)
    request(signum)
    name = signal.Signals(signum).name
    sys.stderr.write(
        f"alpha-panda: {name}: stopping the sources, flushing the outputs "
        f"(send {name} again to exit at once)\n"
    )
    sys.stderr.flush()


def _exit_with_signal_code() -> None:
    """atexit: a run that ended because of a signal exits 128 + signum (not 0). An uncaught
    error keeps its own exit status."""
    code = exit_code()
    if code is None or hasattr(sys, "last_value"):
        return
    if _failed and not _signum:
        sys.stderr.write(f"alpha-panda: {_failed[0][1]}\n")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def install() -> None:
    """Handle SIGINT and SIGTERM in this (main) thread; set the exit status hook."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _handler)
    atexit.register(_exit_with_signal_code)
