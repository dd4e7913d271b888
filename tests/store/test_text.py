"""Text with NUL (U+0000) on every backend: a client's key, a task's error, a log line. No
write fails for it (on PostgreSQL that was a 500 to the client, or a batch of results that
never landed). PostgreSQL's text cannot hold NUL and keeps U+FFFD in its place. SQLite keeps
what a submit binds (a concurrency key) exactly, while its JSON functions, which unpack the
store's batches of results and notes, end a column's text at it (event data stays JSON and
keeps it). Params keep it exactly on both."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from scholarsource.store.base import Ending, NewJob, Note, Outcome, Store
from scholarsource.store.postgres.text import clean, dumps
from tests.store.backends import Backend
from tests.store.test_sqlite import run


def test_nul_in_keys_errors_and_logs_never_fails_a_write(tmp_path: Path,
                                                         backend: Backend) -> None:
    # What each backend keeps of "x\x00" in a column of its own.
    nul = "\ufffd" if backend.name == "postgres" else ""
    log_nul = "\ufffd" if backend.name == "postgres" else "\x00"
    # Bound, not unpacked from JSON (keys, and a result's error): SQLite keeps it whole.
    key_nul = "\ufffd" if backend.name == "postgres" else "\x00"

    async def body(store: Store) -> None:
        params = {"text": "a\x00b", "raw": "\\u0000"}  # a NUL, and a backslash + "u0000"
        submitted, _ = await store.submit_once(dataclasses.replace(
            NewJob("echo", params, "default", 0, 2), concurrency_key="k\x00",
            concurrency_limit=1, idempotency_key="key\x00"))
        (claim,) = await store.claim("p", 1, 30)
        await store.note([Note(claim.id, claim.token, "progress",
                               {"fraction": 0.5, "message": "half\x00"}),
                          Note(claim.id, claim.token, "log", {"message": "line\x00"})])
        await store.finish([Outcome(claim.id, claim.token, Ending.FAILED, error="bad\x00",
                                    error_detail="Traceback\x00", retry_at=0.0)], 3)
        after = await store.get("default", submitted.id)
        assert after is not None and after.status == "retrying"
        assert after.params == params  # exactly, on both
        assert (after.error, after.concurrency_key, after.progress_message) == (
            f"bad{key_nul}", f"k{key_nul}", f"half{nul}")
        logs = [e.data["message"] for e in await store.events("default", submitted.id)
                if e.kind == "log"]
        assert logs == [f"line{log_nul}"]
        # Lookups by a string with NUL find nothing (and fail nothing).
        assert await store.get("default", "id\x00") is None
        assert (await store.list_jobs("default", task="echo\x00"))[0] == []
        found, _ = await store.list_jobs("default", search="a\x00b")
        assert [j.id for j in found] == [submitted.id]

    run(tmp_path / "q.db", body, backend)


def test_only_real_nuls_are_replaced_in_jsonb_parameters() -> None:
    # A NUL, a backslash and "u0000" (text, not a NUL), and a backslash then a NUL.
    sent = ["\x00", "\\u0000", "\\\x00"]
    assert json.loads(dumps(sent)) == ["\ufffd", "\\u0000", "\\\ufffd"]
    assert clean({"a": "x\x00", "b": ["\x00"], "c": 1}) == {"a": "x\ufffd", "b": ["\ufffd"],
                                                           "c": 1}
