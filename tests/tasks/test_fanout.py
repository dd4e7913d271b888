"""ctx.submit and ctx.continue_with as a task sees them (in the slot) and as the pool checks
what a slot sent: the API's rules, ids derived from the parent's, siblings only."""

from __future__ import annotations

import json

import pytest

from scholarsource.config import Config
from scholarsource.errors import ChildRefused
from scholarsource.pool.children import Children
from scholarsource.pool.messages import Spawned
from scholarsource.store.base import Claim, TaskDefaults
from scholarsource.store.fanout import CONTINUATION, child_id
from scholarsource.tasks.context import Context
from scholarsource.tasks.fanout import Fanout

TASKS = {name: TaskDefaults(name, "default", None, None) for name in ("piece", "gather")}
CONFIG = Config(max_children=3)


def fanout(sent: list[tuple[int | str, str]]) -> Fanout:
    return Fanout("parent", TASKS, CONFIG, lambda key, body: sent.append((key, body)))


def test_each_submit_is_sent_with_an_id_derived_from_the_parent() -> None:
    sent: list[tuple[int | str, str]] = []
    ctx = Context("parent", 1, 7, None, None, fanout=fanout(sent))
    first = ctx.submit("piece", {"i": 0})
    second = ctx.submit("piece", priority=5, depends_on=[first])
    assert [first, second] == [child_id("parent", 0), child_id("parent", 1)]
    assert child_id("parent", 0) != child_id("other", 0)
    assert [(key, json.loads(body)) for key, body in sent] == [
        (0, {"task": "piece", "params": {"i": 0}}),
        (1, {"task": "piece", "params": {}, "priority": 5, "depends_on": [first]})]
    then = ctx.continue_with("gather", after=[first, second])
    assert then.job_id == child_id("parent", CONTINUATION)
    assert then.result() == {"continued_by": then.job_id}
    assert then.body["depends_on"] == [first, second]


@pytest.mark.parametrize(("call", "message"), [
    (lambda ctx: ctx.submit("nope"), "ctx.submit: task: no task named 'nope' is registered"),
    (lambda ctx: ctx.submit("piec"), "did you mean 'piece'?"),
    (lambda ctx: ctx.submit("piece", priority="high"), "priority"),
    (lambda ctx: ctx.submit("piece", unique=True), "unique: a child's id is its identity"),
    (lambda ctx: ctx.submit("piece", depends_on=["someone"]), "not a child this attempt"),
    (lambda ctx: ctx.submit("piece", {"x": float("nan")}), "has no JSON form"),
    (lambda ctx: ctx.submit("piece", after=[]), "after is for ctx.continue_with"),
    (lambda ctx: ctx.continue_with("gather", after=["someone"]), "not a child this attempt"),
    (lambda ctx: ctx.continue_with("gather", after="x"), "must be a list of child ids"),
])
def test_what_a_submit_would_refuse_raises_in_the_task(call, message: str) -> None:
    sent: list[tuple[int | str, str]] = []
    ctx = Context("parent", 1, 7, None, None, fanout=fanout(sent))
    with pytest.raises(ChildRefused, match=message.replace("?", r"\?").replace("(", r"\(")):
        call(ctx)
    assert sent == []


def test_one_child_past_max_children_is_refused() -> None:
    sent: list[tuple[int | str, str]] = []
    ctx = Context("parent", 1, 7, None, None, fanout=fanout(sent))
    for _ in range(3):
        ctx.submit("piece")
    with pytest.raises(ChildRefused, match="max_children"):
        ctx.submit("piece")
    assert len(sent) == 3
    with pytest.raises(ChildRefused, match="outside a pool"):
        Context("x", 1, 1, None, None).submit("piece")


def test_the_pool_sets_id_tenant_and_parent_and_refuses_what_the_slot_should_have() -> None:
    claim = Claim("parent", "fan_out", "{}", 1, 1, None, token=7, tenant="acme")
    children = Children(CONFIG, TASKS)
    body = json.dumps({"task": "piece", "params": {"i": 1}})
    children.take(claim, Spawned("parent", 7, 0, body))
    children.take(claim, Spawned("parent", 6, 0, body))  # a stale attempt's: dropped
    (spawn,) = children.pending
    assert (spawn.parent_id, spawn.token) == ("parent", 7)
    assert (spawn.job.id, spawn.job.tenant, spawn.job.parent_id, spawn.job.params) == (
        child_id("parent", 0), "acme", "parent", {"i": 1})
    then = children.continuation(claim, json.dumps(
        {"task": "gather", "params": {}, "depends_on": [child_id("parent", 0)]}))
    assert (then.id, then.depends_on) == (child_id("parent", CONTINUATION),
                                          (child_id("parent", 0),))
    for bad in (Spawned("parent", 7, 5, body),  # out of order
                Spawned("parent", 7, 1, json.dumps({"task": "nope"})),
                Spawned("parent", 7, 1, json.dumps({"task": "piece",
                                                    "depends_on": ["stranger"]})),
                Spawned("parent", 7, 1, "{not json")):
        with pytest.raises(ValueError):
            children.take(claim, bad)
    children.forget(claim)
    with pytest.raises(ValueError):  # its children are forgotten with the attempt
        children.continuation(claim, json.dumps(
            {"task": "gather", "depends_on": [child_id("parent", 0)]}))
