"""The list of attempts a stopping pool hands back: it outlives the pool, and a file that is
wrong or cannot be written costs a warning, never the pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scholarsource.pool.handback import NAME, Handback


def test_the_list_outlives_the_pool_and_goes_once_empty(tmp_path: Path) -> None:
    stopping = Handback.in_dir(str(tmp_path))
    stopping.keep([("abc", 42), ("def", 7)])
    stopping.keep([("abc", 42)])  # each write replaces the whole list
    assert Handback.in_dir(str(tmp_path)).read() == [("abc", 42)]  # the pool was killed
    stopping.keep([])  # all written back
    assert not (tmp_path / "pool.handback").exists()
    assert Handback.in_dir(str(tmp_path)).read() == []
    assert [p.name for p in tmp_path.iterdir()] == []  # no temporary file left either


@pytest.mark.parametrize("content", [b'[["abc", 42], ["def"', b"\x00\xff\xfe", b'{"abc": 42}',
                                     b'[["abc", "42"]]', b'[["abc", true]]', b""])
def test_a_file_that_makes_no_sense_is_ignored_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes) -> None:
    (tmp_path / "pool.handback").write_bytes(content)
    starting = Handback.in_dir(str(tmp_path))
    assert starting.read() == []
    assert caplog.text.count("ignoring pool.handback") == 1
    starting.keep([])  # the start applied nothing, and removes it
    assert not (tmp_path / "pool.handback").exists()


def test_a_file_it_cannot_write_costs_one_warning_not_the_pool(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    handback = Handback.in_dir(str(tmp_path / "missing"))  # gone, or read-only
    handback.keep([("abc", 42)])
    handback.keep([("abc", 42), ("def", 7)])
    handback.keep([])
    assert caplog.text.count("cannot keep pool.handback") == 1


def test_a_signal_in_the_middle_of_a_write_leaves_that_write_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The stop signal's handler lists the attempts too, and may come while the loop's own
    # keep() writes: it leaves the file to that write, which stays one valid list.
    handback = Handback(tmp_path / NAME)
    dumps = json.dumps

    def signalled_midway(value: object) -> str:
        handback.keep([("b", 2)], reentrant=True)
        return dumps(value)

    monkeypatch.setattr(json, "dumps", signalled_midway)
    handback.keep([("a", 1)])
    monkeypatch.undo()
    assert handback.read() == [("a", 1)]
    handback.keep([("b", 2)], reentrant=True)  # once no write runs, its list is written
    assert handback.read() == [("b", 2)]
