"""parse_duration and the [retention] table: TOML, environment, and the errors for bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from scholarsource.config import Config, Retention, load_config, parse_duration
from scholarsource.errors import ConfigError

DAY = 86400.0


@pytest.mark.parametrize(("value", "seconds"), [
    ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 7 * DAY), ("1.5h", 5400),
    (" 5m ", 300), ("5 m", 300), ("3600", 3600), ("0.25", 0.25), (60, 60), (0.5, 0.5), (0, 0),
])
def test_parse_duration_takes_units_and_plain_seconds(value: int | float | str,
                                                      seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("bad", [
    "5 parsecs", "-1s", "\u0661s", "\u0661", "\uff15m", "", "s", "7 days", "1e3", "1,5h",
    "30M",  # minutes or months? Units are lower case only.
    "5m5s", True, -1, -0.5, math.inf, math.nan,
])
def test_parse_duration_refuses_anything_else(bad: object) -> None:
    with pytest.raises(ValueError, match="is not a duration like '90s'"):
        parse_duration(bad)  # type: ignore[arg-type]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scholarsource.toml"
    path.write_text(text)
    return path


def test_defaults_keep_succeeded_and_cancelled_a_week_and_dead_a_month() -> None:
    assert load_config(env={}).retention == Retention(7 * DAY, 7 * DAY, 30 * DAY)


def test_the_toml_table_sets_each_state_and_leaves_the_others(tmp_path: Path) -> None:
    path = write(tmp_path, '[retention]\nsucceeded = "12h"\ndead = 120\n')
    assert load_config(path, env={}).retention == Retention(12 * 3600, 7 * DAY, 120)


def test_the_environment_overrides_one_key_of_the_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[retention]\nsucceeded = "12h"\ndead = "2d"\n')
    config = load_config(path, env={"SCHOLARSOURCE_RETENTION_DEAD": "90s",
                                    "SCHOLARSOURCE_RETENTION_CANCELLED": "60"})
    assert config.retention == Retention(12 * 3600, 60, 90)


@pytest.mark.parametrize("bad", ["5 parsecs", "-1s", "\u0661s", "0s"])
def test_a_bad_duration_in_the_file_names_the_key(tmp_path: Path, bad: str) -> None:
    path = write(tmp_path, f'[retention]\ndead = "{bad}"\n')
    with pytest.raises(ConfigError, match=r"^'retention\.dead' in .*scholarsource\.toml must "
                                          r"be a duration like '90s', '30m', '12h' or '7d', "
                                          r"or a number of seconds \(more than zero\), not "):
        load_config(path, env={})


@pytest.mark.parametrize("bad", ["5 parsecs", "-1s", "\u0661s"])
def test_a_bad_duration_in_the_environment_names_the_variable(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^SCHOLARSOURCE_RETENTION_SUCCEEDED in the "
                                          r"environment must be a duration like '90s'"):
        load_config(env={"SCHOLARSOURCE_RETENTION_SUCCEEDED": bad})


def test_an_unknown_retention_key_gets_a_guess(tmp_path: Path) -> None:
    path = write(tmp_path, '[retention]\nsucceded = "1d"\n')
    with pytest.raises(ConfigError, match=r"^unknown setting 'retention\.succeded' in .*; did "
                                          r"you mean 'retention\.succeeded'\?$"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match=r"^unknown setting SCHOLARSOURCE_RETENTION_FAILED "
                                          r"in the environment$"):
        load_config(env={"SCHOLARSOURCE_RETENTION_FAILED": "1d"})


def test_retention_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^'retention' in .* must be a table: set its keys "
                                          r"as \[retention\]$"):
        load_config(write(tmp_path, 'retention = "7d"\n'), env={})
    with pytest.raises(ConfigError, match=r"^SCHOLARSOURCE_RETENTION in the environment must "
                                          r"be a table: set its keys as "
                                          r"SCHOLARSOURCE_RETENTION_<KEY>$"):
        load_config(env={"SCHOLARSOURCE_RETENTION": "7d"})


def test_retention_built_in_code_is_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"retention\.dead must be more than zero seconds"):
        Retention(dead=0)


def test_print_config_shows_the_table_as_json() -> None:
    values = json.loads(json.dumps(Config().as_dict()))
    assert values["retention"] == {"succeeded": 7 * DAY, "cancelled": 7 * DAY, "dead": 30 * DAY}
