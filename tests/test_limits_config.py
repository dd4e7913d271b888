"""[queues.NAME] and [tasks.NAME] tables, rate spellings, and the task decorator's limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from scholarsource.config import Config, load_config
from scholarsource.errors import ConfigError, TaskError
from scholarsource.limits import QueueLimits, Rate, TaskLimits, TenantLimits, parse_rate
from scholarsource.tasks.registry import TaskSpec, task, task_rates


def _load(tmp_path: Path, text: str, **env: str) -> Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path, env=env)


def test_rates_read_per_second_minute_and_hour() -> None:
    assert parse_rate("10/s") == Rate(10, 1.0)
    assert parse_rate(" 100 / m ") == Rate(100, 60.0)
    assert str(parse_rate("500/h")) == "500/h"


@pytest.mark.parametrize("bad", ["0/s", "fast", "10/d", "-1/s", "1.5/s", 10, None])
def test_a_bad_rate_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(bad)


def test_queue_and_task_tables_load(tmp_path: Path) -> None:
    config = _load(tmp_path, '[queues.extraction]\nmax_running = 2\nreserved = 1\n'
                             '[queues.bulk]\n[tasks.fetch]\nrate_limit = "100/m"\n')
    assert config.queues == {"extraction": QueueLimits(2, 1), "bulk": QueueLimits()}
    assert config.tasks == {"fetch": TaskLimits(Rate(100, 60.0))}
    assert config.as_dict()["tasks"] == {"fetch": {"rate_limit": "100/m"}}


def test_tenant_tables_load(tmp_path: Path) -> None:
    config = _load(tmp_path, '[tenants.acme]\nrate = "1000/h"\nmax_queued = 50\nweight = 2\n'
                             '[tenants.small]\n')
    assert config.tenants == {"acme": TenantLimits(Rate(1000, 3600.0), 50, 2),
                              "small": TenantLimits()}
    assert config.as_dict()["tenants"]["acme"] == {"rate": "1000/h", "max_queued": 50,
                                                   "weight": 2}


@pytest.mark.parametrize(("text", "message"), [
    ('[tenants.a]\nrate = "lots"\n', "tenants.a.rate"),
    ("[tenants.a]\nweight = 0\n", "tenants.a.weight"),
    ("[tenants.a]\nmax_queued = 0\n", "tenants.a.max_queued"),
    ("[tenants.a]\nquota = 3\n", "unknown setting tenants.a.quota"),
    ('[tasks.fetch]\nrate_limit = "0/s"\n', "tasks.fetch.rate_limit"),
    ('[tasks.fetch]\nrate_limit = "fast"\n', "tasks.fetch.rate_limit"),
    ("[queues.a]\nmax_running = 0\n", "queues.a.max_running"),
    ("[queues.a]\nreserved = -1\n", "queues.a.reserved"),
    ("[queues.a]\nreserved = 3\nmax_running = 2\n", "cannot be more than its max_running"),
    ("[queues.a]\nlimit = 3\n", "unknown setting queues.a.limit"),
    ('[queues."no spaces"]\n', "not a valid name"),
    ("slots = 2\n[queues.a]\nreserved = 2\n[queues.b]\nreserved = 1\n", "only 2"),
])
def test_bad_tables_are_refused_with_the_key_named(tmp_path: Path, text: str,
                                                   message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_tables_cannot_come_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file only"):
        _load(tmp_path, "", SCHOLARSOURCE_QUEUES="x")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"rate_limit": "0/s"}, "rate_limit"), ({"rate_limit": "fast"}, "rate_limit"),
    ({"concurrency_limit": 0}, "concurrency_limit"),
    ({"concurrency_limit": True}, "concurrency_limit"),
])
def test_the_decorator_refuses_bad_limits(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TaskError, match=message):
        task("bad_limits", **kwargs)  # type: ignore[arg-type]


def test_a_tasks_table_overrides_the_decorator_and_must_name_a_task() -> None:
    spec = TaskSpec("fetch", fn=print, rate_limit=Rate(5, 1.0))
    plain = TaskSpec("noop", fn=print)
    assert task_rates({"fetch": spec, "noop": plain}, {}) == {"fetch": Rate(5, 1.0)}
    assert task_rates({"fetch": spec}, {"fetch": TaskLimits(Rate(1, 60.0))}) == {
        "fetch": Rate(1, 60.0)}
    with pytest.raises(TaskError, match=r"\[tasks.fetchh\] names no registered task"):
        task_rates({"fetch": spec}, {"fetchh": TaskLimits(Rate(1, 1.0))})
