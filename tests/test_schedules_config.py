"""`[[schedules]]` in the config file: what loads, and the clear errors (exit 2) for what
cannot."""

from __future__ import annotations

from pathlib import Path

import pytest

from scholarsource.config import Schedule, load_config
from scholarsource.errors import ConfigError
from tests.test_cli import assert_clean_error, invoke

GOOD = '''
[[schedules]]
name = "nightly-report"
task = "echo"
params = {text = "hi"}
queue = "reports"
priority = 5
cron = "30 2 * * *"
timezone = "Europe/Paris"

[[schedules]]
name = "heartbeat"
task = "noop"
every = "5m"
catch_up = "none"
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_schedules_load_with_their_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), env={})
    assert config.schedules == (
        Schedule("nightly-report", "echo", {"text": "hi"}, "reports", 5, cron="30 2 * * *",
                 timezone="Europe/Paris"),
        Schedule("heartbeat", "noop", every=300.0, catch_up="none"))
    assert config.as_dict()["schedules"][1]["every"] == 300.0


def one(body: str) -> str:
    return f'[[schedules]]\nname = "s"\ntask = "noop"\n{body}\n'


@pytest.mark.parametrize(("body", "message"), [
    ('cron = "0 0 * * * * *"', "schedule 's': cron must be 5 fields"),
    ('cron = "0 0 * * * 2026"', "schedule 's': cron must be 5 fields"),
    ('cron = "61 * * * *"', "schedule 's': cron must be 5 fields"),
    ('cron = "0 9 * * *"\ntimezone = "Mars/Olympus"', "unknown timezone 'Mars/Olympus'"),
    ('cron = "0 9 * * *"\nevery = "30s"', "schedule 's': set either cron or every, not both"),
    ("", "schedule 's': set either cron or every, not neither"),
    ('every = "0s"', "schedule 's': every must be a duration"),
    ('every = "soon"', "schedule 's': every must be a duration"),
    ('every = "5s"\ncatch_up = "all"', "catch_up must be one of latest, none"),
    ('every = "5s"\ncron_expr = "x"', "schedule 's': unknown key 'cron_expr'"),
    ('every = "5s"\nparams = {day = 2026-01-01}', "params must be a table of JSON values"),
    ('every = "5s"\nparams = {x = nan}', "params must be a table of JSON values"),
    ('every = "5s"\nparams = [1]', "params must be a table"),
    ('every = "5s"\npriority = "high"', "schedule 's': priority must be a whole number"),
])
def test_a_bad_schedule_is_a_config_error_naming_it(tmp_path: Path, body: str,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(write(tmp_path, one(body)), env={})


def test_two_schedules_of_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schedule 's' is defined twice"):
        load_config(write(tmp_path, one('every = "5s"') + one('every = "9s"')), env={})


def test_schedules_come_from_the_file_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="write schedules as \\[\\[schedules\\]\\] tables"):
        load_config(None, env={"SCHOLARSOURCE_SCHEDULES": "x"})


def test_check_config_exits_2_naming_the_schedule(tmp_path: Path) -> None:
    path = write(tmp_path, one('cron = "0 0 * * * * *"'))
    assert_clean_error(invoke("check-config", "--config", str(path)), 2,
                       "schedule 's': cron must be 5 fields")
