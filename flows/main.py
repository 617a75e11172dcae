"""Entry point: ``python -m bytewax.run flows.main``.

With no configuration it replays the bundled sample ticks through the paper broker, writes
the ledger under ``runs/`` and prints a run report. ``ALPHA_PANDA_CONFIG`` picks a config file.
"""

from __future__ import annotations

import logging
import sys

from flows.config import load_config
from flows.graph import build_flow
from flows.plan import prepare
from schemas.config import ConfigError, SourceUnavailable

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

try:
    flow = build_flow(prepare(load_config()))
except (ConfigError, FileNotFoundError) as exc:
    sys.stderr.write(f"alpha-panda: configuration error: {exc}\n")
    raise SystemExit(2) from None
except SourceUnavailable as exc:
    sys.stderr.write(f"alpha-panda: {exc}\n")
    raise SystemExit(2) from None
