"""What guards the store against a job's data: strict JSON text, the suspect file, sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from scholarsource.config import format_size, parse_size
from scholarsource.pool.suspect import Suspect
from scholarsource.store.base import Claim
from scholarsource.tasks.context import Context
from scholarsource.tasks.jsontext import NotJson, printable, to_json


@pytest.mark.parametrize("value", [float("nan"), [float("-inf")], {"s": "\ud800"}, {1, 2},
                                   object()])
def test_values_the_api_could_not_render_have_no_json_text(value: object) -> None:
    with pytest.raises(NotJson):
        to_json(value)


def test_json_text_is_strict_and_keeps_unicode() -> None:
    assert to_json({"name": "café", "n": [1, 2.5, None]}) == \
        '{"name": "café", "n": [1, 2.5, null]}'
    assert printable("a\ud800b") == "a\\ud800b"


def test_ctx_escapes_messages_and_refuses_a_fraction_that_is_not_finite() -> None:
    sent: list[tuple[str, dict[str, object]]] = []
    ctx = Context("job", 1, 7, lambda kind, data: sent.append((kind, data)), None)
    ctx.log("line \udc80")
    ctx.progress(1.0, "done \ud800")
    with pytest.raises(ValueError, match="finite"):
        ctx.progress(float("nan"))
    assert sent == [("log", {"message": "line \\udc80"}),
                    ("progress", {"fraction": 1.0, "message": "done \\ud800"})]
    for _, data in sent:
        to_json(data)


def test_the_suspect_file_names_the_attempt_being_handled_until_cleared(
        tmp_path: Path) -> None:
    claim = Claim("HfdQ8igMrN2TPtY_ZCxRag", "noop", "{}", 1, 1, None, 2**62)
    suspect = Suspect.in_dir(str(tmp_path))
    suspect.mark(claim)
    suspect.close()  # the pool dies here
    reopened = Suspect.in_dir(str(tmp_path))
    assert reopened.take() == (claim.id, claim.token)
    assert reopened.take() is None  # taken once
    reopened.mark(claim)
    reopened.clear()
    assert reopened.take() is None
    reopened.close()


def test_sizes_print_in_the_units_they_are_read_in() -> None:
    assert format_size(parse_size("100MB")) == "100 MB"
    assert format_size(parse_size("100MiB")) == "104.9 MB"
    assert [format_size(n) for n in (0, 999, 1500, parse_size("1.5GB"))] == [
        "0 bytes", "999 bytes", "1.5 kB", "1.5 GB"]
