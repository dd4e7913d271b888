"""Every JSON body the API reads: what the store could not render again is refused."""

from __future__ import annotations

import pytest

from scholarsource.api.schemas import parse_json
from scholarsource.errors import BadRequest, ValidationFailed


def nested(depth: int) -> bytes:
    return b'{"params": {"a": ' + b"[" * depth + b"]" * depth + b"}}"


def test_nesting_up_to_the_limit_parses() -> None:
    assert parse_json(nested(31), 33)["params"]["a"] is not None  # body, params, 31 lists
    assert parse_json(b'"plain"', 1) == "plain"


@pytest.mark.parametrize("depth", [32, 500, 990, 100_000])
def test_deeper_nesting_is_a_422_however_deep(depth: int) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_json(nested(depth), 33)
    assert (caught.value.status, caught.value.code) == (422, "params_too_deep")


@pytest.mark.parametrize("body", [
    b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}', b'{"a": 1e400}',
    b'{"a": [-1e999]}', b'{"a": "\\ud800"}', b'{"\\udfff": 1}', b'{"a": "x\\udc00y"}',
])
def test_values_json_has_no_text_for_are_a_422(body: bytes) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_json(body, 33)
    assert (caught.value.status, caught.value.code) == (422, "invalid_json_value")


def test_a_surrogate_pair_is_text_and_malformed_json_stays_a_400() -> None:
    assert parse_json(b'{"a": "\\ud83d\\ude00", "b": 1e300}', 33) == {"a": "\U0001f600",
                                                                     "b": 1e300}
    with pytest.raises(BadRequest):
        parse_json(b'{"a": ', 33)


@pytest.mark.parametrize("body", [
    '{"a": "\\ud800"}'.encode("utf-16-le"),  # json.loads detects UTF-16 without a BOM
    '{"a": "\\ud800"}'.encode("utf-32"),
    '{"é": "\\udc00"}'.encode(),  # not ASCII
    b'{"a": "[[[[", "b": "\\ud800"}',  # brackets in text, an escape beside them
])
def test_bodies_the_byte_check_cannot_clear_are_walked(body: bytes) -> None:
    # Most bodies skip the walk when their bytes show there is nothing to find; these may
    # hide a lone surrogate from a byte search, so they must still be refused.
    with pytest.raises(ValidationFailed) as caught:
        parse_json(body, 33)
    assert caught.value.code == "invalid_json_value"


def test_brackets_inside_strings_only_count_against_the_shortcut() -> None:
    body = b'{"params": {"a": "' + b"[" * 40 + b'"}}'
    assert parse_json(body, 3) == {"params": {"a": "[" * 40}}
