"""Task signatures become a small JSON Schema; submits are checked against it."""

from __future__ import annotations

from typing import Annotated, Any, Optional, Union

import pytest

from scholarsource.tasks.context import Context
from scholarsource.tasks.params import Bounds, InvalidParams, check, describe


def typed(ctx: Context, n: int, ratio: float, name: str, flag: bool, items: list[str],
          options: dict[str, Any], maybe: int | None = None, either: Union[int, str] = 1,  # noqa: UP007
          old: Optional[str] = "x",  # noqa: UP045
          anything: Any = None, custom: Context | None = None, untyped=0,
          odd: [int] = 0,  # type: ignore[valid-type]
          *, bounded: Annotated[float, Bounds(0, 10)] = 1.0,
          floor: Annotated[int, Bounds(1)] = 1, ceiling: Annotated[int, Bounds(None, 5)] = 1
          ) -> None:
    """Every kind of annotation describe() handles."""


def open_ended(ctx: Context, path: str, **rest: Any) -> None:
    """Takes any params besides `path`."""


def test_describe_maps_json_types_and_bounds() -> None:
    schema = describe(typed)
    props = schema["properties"]
    assert props["n"] == {"type": ["integer"]}
    assert props["ratio"] == {"type": ["number"]}
    assert props["items"] == {"type": ["array"]}  # list[str]: the outer type
    assert props["options"] == {"type": ["object"]}
    assert props["maybe"] == {"type": ["integer", "null"]}
    assert props["either"] == {"type": ["integer", "string"]}
    assert props["old"] == {"type": ["string", "null"]}
    assert props["anything"] == props["custom"] == props["untyped"] == props["odd"] == {}
    assert props["bounded"] == {"type": ["number"], "minimum": 0, "maximum": 10}
    assert schema["required"] == ["n", "ratio", "name", "flag", "items", "options"]
    assert schema["additionalProperties"] is False
    assert describe(open_ended)["additionalProperties"] is True


VALID = {"n": 3, "ratio": 1, "name": "a", "flag": True, "items": [], "options": {}}


def test_check_accepts_what_the_signature_takes() -> None:
    assert check(VALID, describe(typed)) == VALID
    assert check({**VALID, "n": 5.0}, describe(typed))["n"] == 5  # an int, for range()
    assert check({**VALID, "maybe": None, "custom": [1], "bounded": 10},
                 describe(typed))["bounded"] == 10
    assert check({"path": "p", "extra": [1]}, describe(open_ended)) == {"path": "p",
                                                                        "extra": [1]}
    assert check({"anything": 1}, None) == {"anything": 1}  # nothing published: accept


@pytest.mark.parametrize(("params", "param", "message"), [
    ({k: v for k, v in VALID.items() if k != "name"}, "name", "required"),
    ({**VALID, "txt": "hello"}, "txt", "unknown param"),
    ({**VALID, "n": "two"}, "n", "must be integer, not string"),
    ({**VALID, "n": 1.5}, "n", "must be integer, not number"),
    ({**VALID, "n": True}, "n", "must be integer, not boolean"),
    ({**VALID, "ratio": "1"}, "ratio", "must be number, not string"),
    ({**VALID, "flag": 1}, "flag", "must be boolean, not integer"),
    ({**VALID, "items": {}}, "items", "must be array, not object"),
    ({**VALID, "maybe": "x"}, "maybe", "must be integer or null"),
    ({**VALID, "bounded": 10.5}, "bounded", "must be from 0 to 10"),
    ({**VALID, "bounded": -1}, "bounded", "must be from 0 to 10"),
    ({**VALID, "floor": 0}, "floor", "must be at least 1"),
    ({**VALID, "ceiling": 6}, "ceiling", "must be at most 5"),
])
def test_check_names_the_param_that_does_not_fit(params: dict[str, Any], param: str,
                                                  message: str) -> None:
    with pytest.raises(InvalidParams, match=message) as caught:
        check(params, describe(typed))
    assert caught.value.param == param
