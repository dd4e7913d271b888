"""JSON text that every client can read back: what a task returns or reports must pass here
before it is stored, since the store must never hold a value the API cannot render."""

from __future__ import annotations

import json
from typing import Any


class NotJson(ValueError):
    """Raised when a value has no strict JSON form: NaN or Infinity, a lone surrogate
    (no UTF-8 for it), a type JSON lacks, or nesting deeper than Python can encode."""


def to_json(value: Any) -> str:
    """`value` as JSON text that encodes to UTF-8; raises NotJson otherwise."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # a lone surrogate has no UTF-8 form: the API could not send it
    except RecursionError:
        raise NotJson("nested too deeply to encode") from None
    except UnicodeEncodeError:
        raise NotJson("a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
    except (TypeError, ValueError) as exc:  # NaN and Infinity are ValueErrors
        raise NotJson(str(exc)) from None
    return text


def printable(text: str) -> str:
    """`text` with each lone surrogate written out as its escape (`\\udc80`), so that a
    progress message or a log line always encodes to UTF-8."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
