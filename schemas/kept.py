"""Files kept between runs to skip work a run would otherwise redo (exchange calendars,
checked replay files), under ``$ALPHA_PANDA_CACHE`` or the user's cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache``)/alpha-panda. A kept file is a hint, never the truth:
readers check what they read back, and a folder that cannot be used only costs time."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("alpha_panda.kept")


def kept_root() -> Path:
    """The folder kept files go under (not created here)."""
    root = os.environ.get("ALPHA_PANDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "alpha-panda"
    )
    return Path(root)


def read_kept(path: Path) -> Any:
    """The JSON document at ``path``; None if absent or unreadable."""
    try:
        if not path.is_file() or path.stat().st_size > 4_000_000:  # no FIFO, no giant
            return None
        return json.loads(path.read_text())
    except Exception:  # OSError, ValueError, RecursionError (deep nesting): not kept
        return None


def write_kept(path: Path, doc: Any) -> None:
    """Write atomically (a concurrent run reads the old file or the new, never half; the
    temporary file is made new, never through an existing name); a folder that cannot be
    written is only a slower next start."""
    tmp = None
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(doc, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError as e:
        log.debug("kept file %s not written: %s", path, e)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
