"""``alpha-panda``: one command for everything a user runs (``alpha-panda --help``).

``run`` starts ``python -m bytewax.run flows.main`` with Bytewax's own flags; the other
commands hand their arguments to the module that does the work (its own ``--help``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import yaml

from connectors.progress import PROGRESS_ENV
from flows.config import CONFIG_ENV
from flows.plan import RUN_NAME_ENV

PROG = "alpha-panda"
PASS = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Alpha Panda: streaming algorithmic trading for Indian equities, one Bytewax dataflow.

    Start with `alpha-panda run` (replays the bundled sample), then `alpha-panda report
    runs/<folder>`. Each command has its own --help.
    """


def _bytewax_argv(flags: dict[str, Any]) -> list[str]:
    argv: list[str] = []
    for opt, value in flags.items():
        if value is not None:
            argv += [opt, str(value)]
    return argv


def _interval(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value.lower() == "off":
        return value
    try:
        if float(value) >= 0:
            return value
    except ValueError:
        pass
    raise click.BadParameter(f"{value!r}: seconds (a number >= 0) or off")


@main.command(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Run the flow (replay, Kafka or live) into a fresh run folder",
)
@click.option(
    "--config",
    "-c",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="config file [default: $ALPHA_PANDA_CONFIG, else the bundled sample replay]",
)
@click.option("--name", "-n", help="run folder name (under runs/, or beside output.dir)")
@click.option(
    "--progress",
    metavar="SECONDS|off",
    callback=_interval,
    help="progress interval on stderr [default: 0.5 s on a terminal, 10 s otherwise, 60 s live]",
)
@click.option("-w", "--workers-per-process", type=click.IntRange(1), help="Bytewax workers")
@click.option("-i", "--process-id", type=click.IntRange(0), help="this process (with -a)")
@click.option("-a", "--addresses", metavar="'h:p;h:p'", help="every process's address")
@click.option(
    "-r",
    "--recovery-directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="recovery store (made with one partition if missing; needs -s and -b)",
)
@click.option("-s", "--snapshot-interval", type=click.IntRange(0), help="seconds between snapshots")
@click.option("-b", "--backup-interval", type=click.IntRange(0), help="seconds of extra snapshots")
def run(
    config: Path | None,
    name: str | None,
    progress: str | None,
    recovery_directory: Path | None,
    **scaling: int | str | None,
) -> None:
    """Run the flow: python -m bytewax.run flows.main, with the config, run name and flags.

    The ledger, config.yaml and report go to a fresh run folder,
    runs/<config>-<data>-<YYYYMMDD-HHMM> (or runs/NAME); a resume (-r) writes on in the
    folder it started.
    """
    if config is not None:
        os.environ[CONFIG_ENV] = str(config.resolve())
    if name is not None:
        os.environ[RUN_NAME_ENV] = name
    if progress is not None:
        os.environ[PROGRESS_ENV] = progress
    if recovery_directory is not None and not any(recovery_directory.glob("*")):
        from bytewax.recovery import init_db_dir

        recovery_directory.mkdir(parents=True, exist_ok=True)
        init_db_dir(recovery_directory, 1)
    flags: dict[str, Any] = {f"--{k.replace('_', '-')}": v for k, v in scaling.items()}
    flags["--recovery-directory"] = recovery_directory
    argv = [sys.executable, "-m", "bytewax.run", "flows.main", *_bytewax_argv(flags)]
    sys.stdout.flush()
    os.execv(sys.executable, argv)  # the flow owns the process: signals, exit code


@contextmanager
def _named(prog: str, args: list[str]) -> Iterator[None]:
    """Run a module's argparse main as ``prog`` (its usage and errors name this command)."""
    init = argparse.ArgumentParser.__init__

    def named(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> None:
        init(self, *a, **{**kw, "prog": prog})

    argv = sys.argv
    argparse.ArgumentParser.__init__ = named  # type: ignore[method-assign]
    sys.argv = [prog, *args]
    try:
        yield
    finally:
        argparse.ArgumentParser.__init__ = init  # type: ignore[method-assign]
        sys.argv = argv


def _delegate(command: str, module: str, summary: str, takes_argv: bool = True) -> None:
    """Add ``command``: its arguments go to ``module.main`` as they are."""

    @click.pass_context
    def call(ctx: click.Context) -> None:
        args = list(ctx.args)
        main_fn: Callable[..., Any] = importlib.import_module(module).main
        with _named(f"{PROG} {command}", args):
            code = main_fn(args) if takes_argv else main_fn()
        ctx.exit(code or 0)

    call.__doc__ = f"{summary}; `{PROG} {command} --help` for its options."
    main.command(command, context_settings=PASS, add_help_option=False, short_help=summary)(call)


_delegate("status", "flows.status", "A running flow's live state from Redis")
_delegate("control", "flows.control", "Send halt, flatten or resume to a running flow")
_delegate("topics", "connectors.kafka.topics", "List or create the Kafka topics of a config")
_delegate("load", "connectors.kafka.load", "Publish a Parquet tick file to the tick topic")
_delegate("kafka", "connectors.kafka.devbroker", "Start a local Kafka-protocol broker (memory)")
_delegate("sim", "connectors.kite.sim.__main__", "A local Kite Connect simulator", False)
_delegate("login", "connectors.kite.login", "Exchange a Kite request token for a session")
_delegate("instruments", "connectors.kite.instruments", "Write Kite's instrument master")
_delegate("bench", "flows.bench", "Benchmark replay throughput", False)


def _failed(exc: Exception | str) -> click.ClickException:
    """A run folder the analysis cannot read, or a bad option value: one line, exit 2."""
    err = click.ClickException(str(exc))
    err.exit_code = 2
    return err


def _at_least_one(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A whole number >= 1, else one line naming the option."""
    if value is None:
        return None
    try:
        if int(value) >= 1:
            return int(value)
    except ValueError:
        pass
    raise _failed(f"--{param.name}: {value!r} is not a whole number >= 1")


@main.command(
    "generate",
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Generate synthetic tick data",
)
@click.option("--instruments", metavar="N", callback=_at_least_one,
              help="N synthetic instruments over --days, with their instruments.csv "
              "[default: the bundled sample: its 20 instruments, one day]")  # fmt: skip
@click.option("--days", metavar="N", default="1", show_default=True, callback=_at_least_one,
              help="trading days (with --instruments)")  # fmt: skip
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--out", type=click.Path(path_type=Path),
              help="folder, or a .parquet file for one day [default: data/sample_ticks.parquet]")  # fmt: skip  # noqa: E501
def generate_cmd(instruments: int | None, days: int, seed: int, out: Path | None) -> None:
    """Generate synthetic tick data: Parquet files, one per day (python -m data.generate)."""
    from data.generate import main as generate

    args = ["--days", str(days), "--seed", str(seed)]
    args += ["--instruments", str(instruments)] if instruments else []
    args += ["--out", str(out)] if out is not None else []
    with _named(f"{PROG} generate", args):
        generate()


def _config_readable(run_dir: Path) -> None:
    """A run folder's ``config.yaml``, when there, must read as YAML: one line naming it."""
    from flows.analysis.load import CONFIG_FILE

    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return
    try:
        yaml.safe_load(path.read_text())
    except OSError as exc:
        raise _failed(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise _failed(f"{path}: not UTF-8 text") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise _failed(f"{path}: invalid YAML: {exc.problem or exc.context}{at}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise _failed(f"{path}: invalid YAML: {first}") from None


class RunDir(click.Path):
    """A run folder: it holds a ledger (``fills/``, ``pnl/``)."""

    def __init__(self) -> None:
        super().__init__(exists=True, file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(str(super().convert(value, param, ctx)))
        if not any((path / kind).is_dir() for kind in ("fills", "pnl")):
            self.fail(f"{value}: not a run folder (no ledger in it)", param, ctx)
        return path


RUN_DIR = RunDir()
RISK_FREE = click.option("--risk-free", type=float, default=0.0, show_default=True,
                         help="annual risk-free rate for Sharpe and Sortino")  # fmt: skip


@main.command(
    "report",
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Analyse a run folder (text, JSON and HTML report)",
)
@click.argument("run_dir", metavar="RUN", type=RUN_DIR)
@RISK_FREE
def report_cmd(run_dir: Path, risk_free: float) -> None:
    """Analyse a run folder: print the report; write report.txt, .json and .html there."""
    from flows.analysis import render_text, report, write_reports

    _config_readable(run_dir)
    try:
        analysed = report(run_dir, risk_free)
        written = write_reports(run_dir, risk_free, analysed)
    except (FileNotFoundError, ValueError) as exc:
        raise _failed(exc) from None
    click.echo(render_text(analysed).rstrip("\n"))
    click.echo(f"written: {', '.join(str(p) for p in written.values())}")


@main.command(
    "compare",
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Runs side by side: config differences and headline metrics",
)
@click.argument("run_dirs", metavar="RUN RUN...", nargs=-1, required=True, type=RUN_DIR)
@RISK_FREE
def compare_cmd(run_dirs: tuple[Path, ...], risk_free: float) -> None:
    """Two or more runs side by side: config differences and headline metrics."""
    from flows.analysis import compare

    if len(run_dirs) < 2:
        raise click.UsageError("give two or more run folders")
    for run_dir in run_dirs:
        _config_readable(run_dir)
    try:
        click.echo(compare(list(run_dirs), risk_free).rstrip("\n"))
    except (FileNotFoundError, ValueError) as exc:
        raise _failed(exc) from None


if __name__ == "__main__":
    main(prog_name=PROG)
