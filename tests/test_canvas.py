"""The client's canvas helpers build the body POST /api/workflows takes: names, `after`
edges, and the options of each step."""

from __future__ import annotations

import pytest

from scholarsource.client import chain, chord, group, sig
from scholarsource.client.canvas import workflow_body


def test_a_chain_of_a_group_and_a_chord_wires_every_step_after_the_last_ones() -> None:
    flow = chain(sig("validate", {"url": "u"}, name="check", priority=5),
                 group([sig("extract", {"t": t}) for t in "abc"]),
                 chord([sig("analyse"), sig("analyse")], sig("report", max_attempts=2)))
    assert workflow_body(flow) == {"steps": {
        "check": {"task": "validate", "params": {"url": "u"}, "priority": 5},
        "extract": {"task": "extract", "params": {"t": "a"}, "after": ["check"]},
        "extract.2": {"task": "extract", "params": {"t": "b"}, "after": ["check"]},
        "extract.3": {"task": "extract", "params": {"t": "c"}, "after": ["check"]},
        "analyse": {"task": "analyse", "params": {},
                    "after": ["extract", "extract.2", "extract.3"]},
        "analyse.2": {"task": "analyse", "params": {},
                      "after": ["extract", "extract.2", "extract.3"]},
        "report": {"task": "report", "params": {}, "max_attempts": 2,
                   "after": ["analyse", "analyse.2"]}}}


def test_empty_parts_and_a_name_used_twice_are_refused() -> None:
    with pytest.raises(ValueError):
        chain()
    with pytest.raises(ValueError):
        group([])
    with pytest.raises(ValueError, match="two steps are named 'x'"):
        workflow_body(chain(sig("a", name="x"), sig("b", name="x")))
