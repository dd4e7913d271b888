"""A slot changes its own state (the dispatcher asks), and what crosses its pipe is typed."""

from __future__ import annotations

import multiprocessing
import pickle
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from scholarsource.pool.messages import Attempt, Ended
from scholarsource.pool.slots import Slot, SlotSettings, run_attempt
from scholarsource.store.base import Claim, ErrorCode

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture
def slot() -> Iterator[tuple[Slot, multiprocessing.connection.Connection]]:
    """A slot whose process is this test: its pipe's far end is returned with it."""
    mp = multiprocessing.get_context("forkserver")
    lifeline, _ = mp.Pipe(duplex=False)
    slot = Slot(0, mp, lifeline, SlotSettings())
    slot.conn, far = mp.Pipe(duplex=True)
    yield slot, far
    slot.conn.close()
    far.close()


def claim(token: int, task: str = "noop") -> Claim:
    return Claim(f"job-{token}", task, '{"n": 1}', 1, 3, None, token)


def test_a_slot_sends_the_attempt_and_frees_itself_only_for_its_own_token(slot) -> None:
    slot_, far = slot
    slot_.run(claim(7), expected=123)
    assert far.recv() == Attempt("noop", '{"n": 1}', "job-7", 1, 7)
    assert slot_.busy and slot_.expected == 123
    assert slot_.complete(8, recycle_after=0) is None  # an attempt already taken back
    assert slot_.busy
    assert slot_.complete(7, recycle_after=0) == claim(7)
    assert not slot_.busy and slot_.jobs_done == 1 and not slot_.retire


def test_a_slot_marks_itself_for_recycling_after_its_quota_of_jobs(slot) -> None:
    slot_, far = slot
    for token in (1, 2):
        slot_.run(claim(token), expected=0)
        far.recv()
        assert not slot_.retire
        slot_.complete(token, recycle_after=2)
    assert slot_.retire and slot_.jobs_done == 2


def test_memory_samples_keep_the_running_attempts_peak(slot) -> None:
    slot_, far = slot
    slot_.sample(50)  # idle: the RSS is kept, no attempt has a peak
    assert (slot_.rss, slot_.peak_rss) == (50, None)
    slot_.run(claim(1), expected=0)
    for rss in (100, 300, 200):
        slot_.sample(rss)
    assert (slot_.rss, slot_.peak_rss) == (200, 300)
    assert slot_.release() == claim(1) and slot_.release() is None
    slot_.run(claim(2), expected=0)  # a new attempt starts its own peak
    assert slot_.peak_rss is None


def test_an_attempt_ends_as_a_typed_message_that_pickles_as_it_was() -> None:
    ended = run_attempt(Attempt("no_such_task", "{}", "job-1", 1, 5))
    assert (ended.token, ended.code) == (5, ErrorCode.TASK_ERROR)
    assert ended.value is not None and "no task named 'no_such_task'" in ended.value
    bad = run_attempt(Attempt("noop", "[" * 100_000, "job-2", 1, 6))
    assert bad.code is ErrorCode.BAD_PARAMS and bad.value is not None
    assert bad.value.startswith("bad_params: the job's params cannot be decoded")
    for message in (ended, bad, Ended(9, None, '{"a": 1}', peak=10, cpu=0.5)):
        assert pickle.loads(pickle.dumps(message)) == message
        assert type(pickle.loads(pickle.dumps(message))) is Ended


def test_every_error_code_is_documented_in_the_readme_with_its_value() -> None:
    words = set(re.findall(r"[a-z_]+", README.read_text()))
    assert {code.value for code in ErrorCode} <= words
    assert ErrorCode.TIMEOUT.explain("late") == "timeout: late"
