"""Text files a user names (config, instruments, control): refused unless they are readable
regular files of a sane size, so that a FIFO, a device or a huge file never hangs or fills
memory before the run starts."""

from __future__ import annotations

import stat
from pathlib import Path

from schemas.config import ConfigError

MAX_TEXT_BYTES = 256 * 2**20  # a config, instruments or control file larger is not one


def regular_file(path: Path, where: str) -> None:
    """A readable regular file of a sane size (not a device, FIFO or folder); else
    ConfigError naming ``where`` (the config field) and the path."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: {path} is not a regular file")
    if st.st_size > MAX_TEXT_BYTES:
        raise ConfigError(f"{where}: {path} is {st.st_size:,} bytes, over {MAX_TEXT_BYTES:,}")
