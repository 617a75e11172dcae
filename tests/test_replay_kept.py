"""Replay files checked before are not read again: a settled file that passed keeps its
span, keyed by everything that could change what the check saw; a changed file, another
unit or zone, a file changed just before its check and a kept file that does not read back
whole are all checked again; a bad file is refused on every run."""

from __future__ import annotations

import json
import os
import time
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import connectors.replay_files as files
import connectors.replay_kept as kept_mod
from connectors.replay_files import ReplayFileError, check_file, list_files
from tests.support import small_ticks


class Checks:
    """Counts the checks that read a file (the kept ones read none)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        real = files._check_open

        def counted(*a: object, **k: object) -> files.FileSpan:
            self.n += 1
            return real(*a, **k)  # type: ignore[arg-type]

        monkeypatch.setattr(files, "_check_open", counted)


@pytest.fixture
def kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder of its own, with checks run as if 10 s after the files were written."""
    root = tmp_path / "kept"
    monkeypatch.setenv("ALPHA_PANDA_CACHE", str(root))
    monkeypatch.setattr(files, "now", lambda: time.time() + 10)
    yield root
    kept_mod.checker_digest.cache_clear()  # digests taken under a test's changes
    kept_mod.zone_digest.cache_clear()


def _same(a: files.FileSpan, b: files.FileSpan) -> None:
    fields = ("path", "median", "first", "last", "naive")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    np.testing.assert_array_equal(a.sample, b.sample)


def test_a_settled_file_that_passed_is_not_read_again(
    tmp_path: Path, kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    days = sorted(small_ticks(tmp_path, days=3).glob("*.parquet"))
    first = [check_file(d, None) for d in days]
    checks = Checks(monkeypatch)
    again = [check_file(d, None) for d in days]
    assert checks.n == 0 and len(list((kept / "replay-checks").iterdir())) == 3
    for a, b in zip(first, again, strict=True):
        _same(a, b)
    assert list_files(days[0].parent) == days
    check_file(days[0], None, "Asia/Kolkata")  # another zone: what the check saw differs
    check_file(days[0], "ms")
    assert checks.n == 2


def test_a_file_changed_since_is_checked_again_and_a_bad_one_refused(
    tmp_path: Path, kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (day,) = small_ticks(tmp_path).glob("*.parquet")
    want = check_file(day, None)
    checks = Checks(monkeypatch)
    os.utime(day, ns=(1, 1))  # times set back: the change time moves all the same
    _same(check_file(day, None), want)
    _same(check_file(day, None), want)
    assert checks.n == 1
    bad = tmp_path / "bad.parquet"
    table = pq.read_table(day)
    pq.write_table(table.set_column(1, "timestamp", pa.nulls(len(table), pa.timestamp("us"))), bad)
    os.replace(bad, day)  # a file that cannot be replayed, under the checked name
    for _ in range(2):
        with pytest.raises(ReplayFileError, match=str(day)):
            check_file(day, None)
    assert checks.n == 3


def test_new_libraries_zone_rules_or_checking_code_check_again_in_one_entry_per_file(
    tmp_path: Path, kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (day,) = small_ticks(tmp_path).glob("*.parquet")
    check_file(day, None, "Asia/Kolkata")
    checks = Checks(monkeypatch)
    changes = [
        lambda: monkeypatch.setattr(np, "__version__", "0.0.1"),
        lambda: monkeypatch.setattr(pa, "__version__", "0.0.1"),
        lambda: monkeypatch.setattr(zoneinfo, "TZPATH", (str(tmp_path / "no-zones"),)),
        lambda: monkeypatch.setattr(files, "__file__", str(tmp_path / "edited.py")),
    ]
    (tmp_path / "edited.py").write_text("# the checking code, edited\n")
    for n, change in enumerate(changes, 1):
        change()
        kept_mod.checker_digest.cache_clear()
        kept_mod.zone_digest.cache_clear()
        check_file(day, None, "Asia/Kolkata")
        assert checks.n == n
        check_file(day, None, "Asia/Kolkata")
        assert checks.n == n  # kept again under the new key, in the file's one entry
        assert len(list((kept / "replay-checks").iterdir())) == 1
    (tmp_path / "edited.py").unlink()  # the checking code cannot be read: nothing is kept
    kept_mod.checker_digest.cache_clear()
    check_file(day, None, "Asia/Kolkata")
    check_file(day, None, "Asia/Kolkata")
    assert checks.n == len(changes) + 2


def test_a_file_written_just_before_its_check_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALPHA_PANDA_CACHE", str(tmp_path / "kept"))
    (day,) = small_ticks(tmp_path).glob("*.parquet")
    check_file(day, None)  # written within SETTLED_S: its times may not show a change yet
    assert not (tmp_path / "kept").exists()
    checks = Checks(monkeypatch)
    check_file(day, None)
    assert checks.n == 1


def test_a_kept_check_that_does_not_read_back_whole_is_checked_again(
    tmp_path: Path, kept: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (day,) = small_ticks(tmp_path).glob("*.parquet")
    want = check_file(day, None)
    (path,) = (kept / "replay-checks").iterdir()
    good = json.loads(path.read_text())
    poisoned = [
        "{not json",
        "[]",
        json.dumps(good | {"key": [*good["key"][:9], "Asia/Kolkata", *good["key"][10:]]}),
        json.dumps(good | {"span": good["span"][:2]}),
        json.dumps(good | {"span": [True, *good["span"][1:]]}),
        json.dumps(good | {"span": [float(good["span"][0]), *good["span"][1:]]}),
        json.dumps(good | {"span": [2**63, *good["span"][1:]]}),
        json.dumps(good | {"naive": 1}),
        json.dumps(good | {"sample": "x"}),
        json.dumps(good | {"sample": [0.5]}),
    ]
    checks = Checks(monkeypatch)
    for n, text in enumerate(poisoned, 1):
        path.write_text(text)
        _same(check_file(day, None), want)
        assert checks.n == n, text[:60]


@pytest.mark.parametrize("where", ["file", "unwritable"])
def test_a_kept_folder_that_cannot_be_used_only_costs_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    (day,) = small_ticks(tmp_path).glob("*.parquet")
    root = tmp_path / "x"
    if where == "file":
        root.write_text("")  # a file where the folder should be
    else:
        (root / "replay-checks").mkdir(parents=True)
        (root / "replay-checks").chmod(0o500)
    monkeypatch.setenv("ALPHA_PANDA_CACHE", str(root))
    monkeypatch.setattr(files, "now", lambda: time.time() + 10)
    want = check_file(day, None)
    _same(check_file(day, None), want)
