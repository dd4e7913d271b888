"""PostgreSQL's text and jsonb cannot hold NUL (U+0000), which SQLite and JSON can: a task's
error message, a log line or a client's concurrency key may carry one. Rather than fail the
whole statement (a 500, or a pool whose batch of results never lands), the store writes
U+FFFD in its place. Params are stored as JSON text, where NUL is the escape `\\u0000`: they
keep it and read back exactly.
"""

from __future__ import annotations

import json
import re
from typing import Any

REPLACEMENT = "\ufffd"
# `\u0000` in JSON text, unless its backslash is itself escaped (an odd run of backslashes).
_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def dumps(value: Any) -> str:
    """`value` as JSON for a jsonb parameter, with each NUL in its strings replaced."""
    return _ESCAPED_NUL.sub(lambda m: m.group(1) + "\\ufffd", json.dumps(value))


def clean(params: Any) -> Any:
    """Statement parameters with each NUL in their strings (and lists of them) replaced."""
    if isinstance(params, dict):
        return {name: _clean(value) for name, value in params.items()}
    return params


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", REPLACEMENT)
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value
