"""What a recovery store was made with, kept beside Bytewax's files (``alpha_panda_run.json``).

The first run on a store records a canonical hash of the resolved config (and one per
top-level field), the package version, a digest of the code, and the run's output folder.
A later run on the same store resumes only with the same config and code: anything else is
refused, naming what changed. A replay that finished is not run again (its report is
pointed at). A resume keeps writing into the recorded output folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from schemas.config import AppConfig, ConfigError, ReplaySourceConfig

META_FILE = "alpha_panda_run.json"
ROOT = Path(__file__).resolve().parent.parent
CODE_DIRS = ("connectors", "flows", "operators", "schemas")


class RecoveryRefused(ConfigError):
    """The store was made with another config or code (exit 2)."""


class RunFinished(Exception):
    """The store's run went to the end of its data: nothing to resume (exit 0)."""


@dataclass
class RecoveryMeta:
    config_sha256: str
    fields: dict[str, str]  # top-level config field -> sha256 of its canonical JSON
    package_version: str
    code_sha256: str
    output_dir: str
    bounded: bool  # a replay: the data ends, so a finished run has nothing left
    created: str
    data_sha256: str = ""  # a replay's files (names and sizes): changed data is refused too
    finished: str | None = None  # when a bounded run wrote its report at the end of its data
    control_sha256: str = ""  # the control file's bytes: an edited one is refused too


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def config_fields(cfg: AppConfig) -> dict[str, str]:
    """sha256 of every top-level field of the resolved config (defaults included)."""
    dumped = cfg.model_dump(mode="json")
    return {name: _digest(dumped[name]) for name in sorted(dumped)}


def package_version() -> str:
    try:
        return version("alpha-panda")
    except PackageNotFoundError:
        return "unknown"


def code_digest(root: Path = ROOT) -> str:
    """sha256 over the package's Python sources (path and bytes), in path order."""
    h = hashlib.sha256()
    for d in CODE_DIRS:
        for f in sorted((root / d).rglob("*.py")):
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def data_digest(cfg: AppConfig) -> str:
    """sha256 over a replay's Parquet files (path and size); "" for other sources."""
    if not isinstance(cfg.source, ReplaySourceConfig):
        return ""
    root = Path(cfg.source.path)
    files = sorted(root.rglob("*.parquet")) if root.is_dir() else [root]
    listing = [(str(f.relative_to(root)) if root.is_dir() else f.name, f.stat().st_size)
               for f in files if f.is_file()]  # fmt: skip
    return _digest(listing)


def control_digest(cfg: AppConfig) -> str:
    """sha256 of the control file (``control.path``), "" without one: a resume carries on
    from the commands it applied, which only means the same thing in the same file."""
    if not cfg.control.path:
        return ""
    try:
        return hashlib.sha256(Path(cfg.control.path).read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"control.path: cannot read {cfg.control.path}: {exc.strerror}") from None


def describe(cfg: AppConfig, out: Path) -> RecoveryMeta:
    """The record a new store gets for a run of ``cfg`` writing into ``out``."""
    fields = config_fields(cfg)
    return RecoveryMeta(
        config_sha256=_digest(fields),
        fields=fields,
        package_version=package_version(),
        code_sha256=code_digest(),
        output_dir=str(out.resolve()),
        bounded=isinstance(cfg.source, ReplaySourceConfig),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        data_sha256=data_digest(cfg),
        control_sha256=control_digest(cfg),
    )


def read(recovery_dir: Path) -> RecoveryMeta | None:
    path = Path(recovery_dir) / META_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RecoveryRefused(f"recovery store: cannot read {path}: {exc}") from None
    try:
        return RecoveryMeta(**raw)
    except TypeError as exc:
        raise RecoveryRefused(f"recovery store: {path} is not a run record: {exc}") from None


def write(recovery_dir: Path, meta: RecoveryMeta) -> None:
    path = Path(recovery_dir) / META_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def recorded_output(recovery_dir: Path | str) -> Path | None:
    """The output folder the store's run writes into (None: a new store)."""
    meta = read(Path(recovery_dir))
    return Path(meta.output_dir) if meta is not None else None


def changes(old: RecoveryMeta, new: RecoveryMeta) -> list[str]:
    """What differs between a store's record and this run, in words ([] if nothing)."""
    out: list[str] = []
    if old.config_sha256 != new.config_sha256:
        names = sorted(set(old.fields) | set(new.fields))
        diff = [n for n in names if old.fields.get(n) != new.fields.get(n)]
        out.append(f"config fields changed: {', '.join(diff) or 'layout'}")
    if old.data_sha256 != new.data_sha256:
        out.append("replay files changed (names or sizes)")
    if old.control_sha256 != new.control_sha256:
        out.append("control file changed")
    if old.package_version != new.package_version:
        out.append(f"package version {old.package_version} -> {new.package_version}")
    elif old.code_sha256 != new.code_sha256:
        out.append(
            f"code changed (sources {old.code_sha256[:12]} -> {new.code_sha256[:12]}, "
            f"same version {new.package_version})"
        )
    return out


@dataclass
class Session:
    """This process's run on a recovery store (None: no store)."""

    recovery_dir: Path
    meta: RecoveryMeta
    resumed: bool  # the store had a record: a resume (or a retry of a run that never snapshot)


_session: list[Session] = []


def current() -> Session | None:
    return _session[-1] if _session else None


def open_store(recovery_dir: Path, cfg: AppConfig) -> Path | None:
    """Before the flow is prepared: refuse a store made with another config or code
    (RecoveryRefused) or whose replay finished (RunFinished); a resume returns the
    recorded output folder, a new store None."""
    store = Path(recovery_dir)
    if not store.is_dir() or not any(store.glob("part-*.sqlite3")):
        raise RecoveryRefused(
            f"-r {recovery_dir}: not a recovery store (no part-*.sqlite3 in it): make one "
            "with python -m bytewax.recovery DIR 1 (alpha-panda run -r makes it when missing)"
        )
    old = read(recovery_dir)
    if old is None:
        return None
    new = describe(cfg, Path(old.output_dir))
    diff = changes(old, new)
    if diff:
        raise RecoveryRefused(
            f"recovery store {recovery_dir} was made with another setup ({'; '.join(diff)}): "
            "resume with the config and code it was made with, or start a new store "
            "(python -m bytewax.recovery NEW_DIR N)"
        )
    if old.finished:
        raise RunFinished(
            f"the run in recovery store {recovery_dir} already finished ({old.finished}); "
            f"its report: {Path(old.output_dir) / 'report.json'}. Nothing to resume: "
            "start a new store for a new run"
        )
    _session[:] = [Session(Path(recovery_dir), old, True)]
    return Path(old.output_dir)


def begin(recovery_dir: Path, cfg: AppConfig, out: Path, writer: bool) -> None:
    """After the flow is prepared, on a new store: record the run (``writer``: the one
    process that writes it, process 0)."""
    if current() is not None:
        return
    meta = describe(cfg, out)
    if writer:
        write(recovery_dir, meta)
    _session[:] = [Session(Path(recovery_dir), meta, False)]


def resumed_note() -> str | None:
    """How the report names the store a resumed run continues."""
    s = current()
    if s is None:
        return None
    return f"{s.recovery_dir} (run started {s.meta.created})"


def mark_finished(stopped: bool) -> None:
    """The report was written: a replay that went to the end of its data (not stopped by a
    signal) is finished, and the store will not run it again."""
    s = current()
    if s is None or stopped or not s.meta.bounded or s.meta.finished:
        return
    s.meta.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write(s.recovery_dir, s.meta)
