"""Exit codes are API: distinct, and each one documented in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

from scholarsource import exitcodes

README = Path(__file__).parent.parent / "README.md"


def test_exit_codes_are_distinct_and_documented() -> None:
    codes = {name: value for name, value in vars(exitcodes).items() if name.startswith("EXIT_")}
    assert len(set(codes.values())) == len(codes)
    documented = dict(re.findall(r"^\| (\d+) \| `(EXIT_\w+)` \|", README.read_text(), re.M))
    assert {name: str(value) for name, value in codes.items()} == \
        {name: code for code, name in documented.items()}
