"""Everything the flow needs that touches the outside world, resolved BEFORE the graph is
built: the tick source (Kafka is listed, Kite credentials checked), the Kite placer (Redis
pinged), the control file, the run folder. ``build_flow`` only wires steps."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from bytewax.inputs import Source
from bytewax.outputs import Sink

from connectors.progress import ProgressSpec, progress_spec
from connectors.replay import ReplaySource
from flows.config import CONFIG_ENV, DEFAULT_CONFIG
from operators.report import RunReport
from operators.session import MarketSession
from schemas.config import (
    AppConfig,
    BrokerConfig,
    ConfigError,
    KafkaSourceConfig,
    KiteSourceConfig,
)
from schemas.control import ControlCommand, load_control_file
from schemas.enums import Broker

RUNS = Path("runs")  # run folders when output.dir is not set (relative to the working dir)
RUN_NAME_ENV = "ALPHA_PANDA_RUN_NAME"  # `alpha-panda run --name`
CONFIG_FILE = "config.yaml"  # the resolved config, in every run folder
SECRET_KEY = re.compile(r"(password|secret|api_key|access_token|\.pem|oauthbearer\.config)$")


log = logging.getLogger("alpha_panda.flow")


@dataclass
class Plan:
    cfg: AppConfig
    source: Source[Any]
    parts: list[str]
    out: Path
    ledger: Sink[Any] | None = None
    report: Sink[RunReport] | None = None
    placer: Any = None  # connectors.kite.orders.KiteOrders, when zerodha trades
    order_updates: Source[Any] | None = None  # zerodha fed by a non-Kite tick source
    commands: list[ControlCommand] = field(default_factory=list)
    progress: ProgressSpec | None = None  # None: no progress lines
    started: float = field(default_factory=time.perf_counter)
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))  # wall clock

    def read_ahead(self, flags: RunFlags) -> bool:
        """A replay source starts reading its first file now, so that it is read while the
        dataflow is built and started: for a fresh run (no recovery store, whose partitions
        all start there) of one process (in a cluster a process may hold no replay
        partition, and would keep a file it never replays). True if it started."""
        read_first = getattr(self.source, "read_first", None)
        if read_first is None or flags.recovery_dir is not None or flags.processes != 1:
            return False
        read_first()
        return True

    def broker_config(self, broker: Broker) -> BrokerConfig:
        """A broker's config; the zerodha account starts from the day's opening cash Kite's
        margins report (config ``starting_cash`` only when there is no Kite to ask)."""
        bc = self.cfg.brokers[broker]
        cash = getattr(self.placer, "opening_cash", None) if broker is Broker.ZERODHA else None
        if cash is None or cash <= 0:
            return bc
        if cash != bc.starting_cash:
            log.info("zerodha: starting cash %.2f from Kite's margins (config: %.2f)", cash,
                     bc.starting_cash)  # fmt: skip
        return bc.model_copy(update={"starting_cash": float(cash)})


@dataclass(frozen=True)
class RunFlags:
    """What ``python -m bytewax.run`` was told that matters to the run folder."""

    process_id: int | None = None
    processes: int = 1
    recovery_dir: Path | None = None


def run_flags(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> RunFlags:
    """Bytewax's ``-i``, ``-a`` and ``-r`` (or their ``BYTEWAX_*`` variables) when this
    process is ``python -m bytewax.run``, or when ``argv`` is given; else the defaults."""
    if argv is None:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        if getattr(spec, "name", None) != "bytewax.run":
            return RunFlags()
        argv = sys.argv[1:]
    env = os.environ if env is None else env
    ap = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    ap.add_argument("-i", "--process-id", type=int, default=env.get("BYTEWAX_PROCESS_ID"))
    ap.add_argument("-a", "--addresses", default=env.get("BYTEWAX_ADDRESSES"))
    ap.add_argument("-r", "--recovery-directory", default=env.get("BYTEWAX_RECOVERY_DIRECTORY"))
    ns, _ = ap.parse_known_args(argv)
    addresses = [a for a in (ns.addresses or "").split(";") if a.strip()]
    recovery = Path(ns.recovery_directory) if ns.recovery_directory else None
    pid = int(ns.process_id) if ns.process_id is not None else _pod_process(env)
    if pid is not None and not addresses and env.get("BYTEWAX_HOSTFILE_PATH"):
        addresses = _hostfile(env["BYTEWAX_HOSTFILE_PATH"])
    return RunFlags(pid, max(len(addresses), 1), recovery)


def _pod_process(env: Mapping[str, str]) -> int | None:
    """The process id Bytewax takes from a cluster's pod name (``<statefulset>-<k>``)."""
    pod, sets = env.get("BYTEWAX_POD_NAME"), env.get("BYTEWAX_STATEFULSET_NAME")
    if not pod or not sets:
        return None
    try:
        return int(pod.replace(sets + "-", ""))
    except ValueError:
        return None


def _hostfile(path: str) -> list[str]:
    """The addresses of a cluster's host file (one per line), as Bytewax reads them."""
    try:
        with open(path) as fh:
            return [a.strip() for a in fh if a.strip()]
    except OSError:
        return []


def config_file() -> Path:
    """The config file ``flows.main`` loads: ``$ALPHA_PANDA_CONFIG``, else the bundled one."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _safe(name: str) -> str:
    safe = re.sub(r"[^\w.-]+", "_", name).strip("._")[:200]  # a file name holds 255 bytes
    if not safe:
        raise ConfigError(f"run name: {name!r} gives no usable folder name")
    return safe


def taken(folder: Path) -> bool:
    """A folder holds a run when it has any file but ``config.yaml`` (a run that failed
    before its first tick leaves only that, and the next run may have the folder)."""
    if not folder.exists():
        return False
    if not folder.is_dir():
        return True
    return any(p.is_file() and p != folder / CONFIG_FILE for p in folder.rglob("*"))


def run_folder(
    cfg: AppConfig,
    config: Path,
    name: str | None = None,
    flags: RunFlags = RunFlags(),
    now: datetime | None = None,
    claim: bool = False,
) -> Path:
    """A fresh run folder: ``name``, else ``output.dir``'s own name, else
    ``<config stem>-<data>-<YYYYMMDD-HHMM>`` (local wall time; no time when several
    processes must agree on it), under ``output.dir``'s parent or ``runs/``; ``-2``, ``-3``…
    when that holds a run already. Every process of a run picks the same folder: nothing
    is written into it before all of them have started. ``claim``: create it (one process),
    atomically, so that runs started together never share a folder."""
    given = Path(cfg.output.dir) if cfg.output.dir else None
    if given is not None and given.exists() and not given.is_dir():
        raise ConfigError(f"output.dir: {given} exists and is not a folder")
    parent = given.parent if given else RUNS
    leaf = name or (given.name if given else None)
    if not leaf:
        leaf = f"{config.stem}-{cfg.source.name}"
        if flags.processes == 1:
            leaf += f"-{(now or datetime.now()):%Y%m%d-%H%M}"
    base = parent / _safe(leaf)
    folder, k = base, 1
    while not _claimed(folder) if claim else taken(folder):
        k += 1
        folder = base.with_name(f"{base.name}-{k}")
    return folder


def _claimed(folder: Path) -> bool:
    """Make ``folder`` ours: an empty (or new) folder whose ``config.yaml`` this run creates,
    exclusively; False when another run has it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if taken(folder):
            return False
        with (folder / CONFIG_FILE).open("x"):
            return True
    except FileExistsError:  # another run created it first (or the path is a file)
        return False
    except OSError as e:
        raise ConfigError(f"output: cannot create {folder}: {e.strerror or e}") from None


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if isinstance(value, str) and SECRET_KEY.search(key.lower()):
        return "***"
    if isinstance(value, str) and "@" in value:
        return _mask_userinfo(value)
    return value


def _mask_userinfo(value: str) -> str:
    """``user:password@host`` (with or without a scheme, whatever the password holds):
    the password masked."""
    head, at, host = value.rpartition("@")
    scheme, sep, userinfo = head.rpartition("//")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return value
    return f"{scheme}{sep}{user}:***@{host}"


def write_config(cfg: AppConfig, folder: Path) -> Path:
    """The resolved config as ``config.yaml``, passwords and secrets masked."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CONFIG_FILE
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: ~10x on long lists
    text = yaml.dump(_mask(cfg.model_dump(mode="json")), Dumper=dumper, sort_keys=False)
    path.write_text(text)
    return path


def _source(cfg: AppConfig, tokens: list[int]) -> tuple[Source[Any], list[str]]:
    if isinstance(cfg.source, KiteSourceConfig):
        from connectors.kite.ticks import KiteTickSource

        zerodha = Broker.ZERODHA in cfg.routes_brokers()
        kite = KiteTickSource(cfg.source, cfg.kite, cfg.session, tokens, with_orders=zerodha)
        return kite, kite.list_parts()
    if isinstance(cfg.source, KafkaSourceConfig):
        from connectors.kafka.source import KafkaTickSource

        days = MarketSession(cfg.session).trading_mask
        kafka = KafkaTickSource(cfg.source, cfg.kafka, tokens, days)
        return kafka, kafka.list_parts()  # fails fast, naming the address, if unreachable
    src = cfg.source
    session = MarketSession(cfg.session)
    replay = ReplaySource(
        src.path,
        tokens,
        src.batch_size,
        src.partitions,
        session.trading_mask,  # Kite streams only on trading days
        ts_unit=src.timestamp_unit,
        zone=src.timezone,
        session=session,
    )
    return replay, replay.part_names()


def _parts(cfg: AppConfig) -> list[str]:
    if isinstance(cfg.source, KiteSourceConfig):
        return ["kite"]
    if isinstance(cfg.source, KafkaSourceConfig):
        raise ValueError("pass source_parts with a custom source on a kafka config")
    return [f"replay-{k}" for k in range(cfg.source.partitions)]


REPLAY_GC = (500_000, 20, 20)  # a replay: throughput (a young collection pauses ~0.1 s)
LIVE_GC = (50_000, 20, 20)  # live ticks: shorter pauses (about 20 ms each)


def tune_gc(live: bool) -> None:
    """Collect cycles less often: a run makes millions of short-lived objects, and with
    Python's default thresholds (700, 10, 10) about a thousand collections took 1.4 s of a
    12 s bench replay (0.24 s at 50,000). A replay waits for 500,000 (the bench's young
    collections: 0.11 s at 50,000, none at 500,000); a live run keeps its pauses short.
    Cyclic garbage (under a thousand objects a run) waits longer; nothing else changes."""
    gc.set_threshold(*(LIVE_GC if live else REPLAY_GC))


def prepare(
    cfg: AppConfig,
    *,
    source: Source[Any] | None = None,
    source_parts: list[str] | None = None,
    ledger: Sink[Any] | None = None,
    report: Sink[RunReport] | None = None,
    out_dir: Path | None = None,
    name: str | None = None,
    config: Path | None = None,
    flags: RunFlags | None = None,
) -> Plan:
    """Resolve the outside world for ``cfg``; tests pass their own source and sinks. Raises
    ConfigError / SourceUnavailable naming the setting when something is missing.

    The run folder is ``out_dir`` as given (tests; or the folder a recovery store recorded,
    so that a resume writes on where it stopped: ``connectors.recovery_meta``), else a fresh
    one (``run_folder``: ``name`` or ``$ALPHA_PANDA_RUN_NAME``; ``config`` or the file
    ``flows.main`` loads), where the first process writes ``config.yaml`` once every check
    has passed."""
    started = time.perf_counter()
    tune_gc(cfg.is_live())
    flags = flags or run_flags()
    fresh = out_dir is None
    out = out_dir or run_folder(
        cfg, config or config_file(), name or os.environ.get(RUN_NAME_ENV), flags
    )
    if source is None:
        source, source_parts = _source(cfg, [i.instrument_token for i in cfg.instruments])
    plan = Plan(cfg, source, source_parts or _parts(cfg), out)
    plan.ledger, plan.report, plan.started = ledger, report, started
    if cfg.control.path:
        plan.commands = load_control_file(cfg.control.path, cfg.brokers)
    if Broker.ZERODHA in cfg.routes_brokers() or isinstance(cfg.source, KiteSourceConfig):
        from connectors.kite.client import check_session

        check_session(cfg.kite)  # credentials and token: fail fast, before any output
    if Broker.ZERODHA in cfg.routes_brokers():  # Redis: fail fast, named
        from connectors.kite.orders import kite_orders

        plan.placer = kite_orders(cfg)
        if not isinstance(cfg.source, KiteSourceConfig):
            from connectors.kite.updates import PART, KiteOrderSource

            plan.order_updates = KiteOrderSource(cfg.kite)
            plan.parts = [*plan.parts, PART]
    plan.progress = progress_spec(cfg, source, flags.processes)
    if fresh and flags.processes == 1:  # every check passed: the folder is made ours now
        plan.out = run_folder(cfg, config or config_file(), name or os.environ.get(RUN_NAME_ENV),
                              flags, claim=True)  # fmt: skip
    if fresh and not flags.process_id:  # one copy, by the first process
        try:
            write_config(cfg, plan.out)
        except OSError as e:
            raise ConfigError(f"output: cannot write {plan.out}: {e.strerror or e}") from None
    return plan
