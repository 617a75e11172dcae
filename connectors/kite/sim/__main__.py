"""``python -m connectors.kite.sim --ticks FILE --port N``: a local Kite Connect simulator.

Credentials it accepts come from the environment (``KITE_API_KEY``, ``KITE_API_SECRET``,
``KITE_ACCESS_TOKEN``), with fixed simulator defaults; they are never printed.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from datetime import time as dtime
from pathlib import Path

import numpy as np

from connectors.kite.sim.exchange import Exchange
from connectors.kite.sim.http import Account, Faults, SimApi, serve
from connectors.kite.sim.rules import Settings
from connectors.kite.sim.tape import Tape, load_instruments
from schemas.kite import ACCESS_TOKEN_ENV, API_KEY_ENV, API_SECRET_ENV

ROOT = Path(__file__).resolve().parents[3]
SIM_DEFAULTS = {API_KEY_ENV: "sim-api-key", API_SECRET_ENV: "sim-api-secret",
                ACCESS_TOKEN_ENV: "sim-access-token"}  # fmt: skip
log = logging.getLogger("alpha_panda.kite.sim")


def build(ticks: Path, instruments: Path, settings: Settings | None = None) -> SimApi:
    inst = load_instruments(instruments)
    env = {k: os.environ.get(k) or v for k, v in SIM_DEFAULTS.items()}
    account = Account(env[API_KEY_ENV], env[API_SECRET_ENV], env[ACCESS_TOKEN_ENV])
    ex = Exchange(Tape.load(ticks, set(inst)), inst, settings=settings)
    return SimApi(ex, account, Faults())


def replay_clock(ex: Exchange, speed: float, stop: threading.Event) -> None:
    """Advance the tape at ``speed`` times tick time (0: only ``/_sim/advance`` moves it)."""
    if speed <= 0 or not len(ex.tape):
        return
    t0, wall0 = int(ex.tape.ts[0]), time.monotonic()
    while not stop.wait(0.01) and ex.cursor < len(ex.tape):
        target = t0 + (time.monotonic() - wall0) * speed * 1e6
        n = int(np.searchsorted(ex.tape.ts, target, side="right")) - ex.cursor
        if n > 0:
            ex.advance(n)


def time_of_day(text: str) -> dtime:
    return dtime.fromisoformat(text)


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m connectors.kite.sim", description=__doc__)
    ap.add_argument("--ticks", type=Path, default=ROOT / "data" / "sample_ticks.parquet")
    ap.add_argument("--instruments", type=Path, default=ROOT / "data" / "instruments.csv")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument(
        "--speed", type=float, default=1.0, help="tick time per wall second; 0 = manual"
    )
    ap.add_argument(
        "--participation",
        type=float,
        default=1.0,
        help="share of each tick's traded volume an order may take",
    )
    ap.add_argument(
        "--circuit-pct",
        type=float,
        default=20.0,
        help="daily band of instruments without a circuit_pct column",
    )
    ap.add_argument(
        "--lpp-pct",
        type=float,
        default=None,
        help="limit price protection on LIMIT prices (off unless given)",
    )
    ap.add_argument("--square-off", type=time_of_day, default=dtime(15, 25),
                    help="Kite's own MIS square-off, HH:MM IST")  # fmt: skip
    args = ap.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = Settings()
    settings.update({"participation": args.participation, "circuit_pct": args.circuit_pct,
                     "lpp_pct": args.lpp_pct, "square_off": args.square_off})  # fmt: skip
    api = build(args.ticks, args.instruments, settings)
    server = serve(api, args.host, args.port)
    log.info("Kite simulator on http://%s:%d, %d ticks, speed %g", args.host,
             server.server_address[1], len(api.ex.tape), args.speed)  # fmt: skip
    stop = threading.Event()
    try:
        replay_clock(api.ex, args.speed, stop)
        threading.Event().wait()
    except KeyboardInterrupt:
        stop.set()
        server.shutdown()


if __name__ == "__main__":
    main()
