"""events_interval and events_buffer (the event streams' reader, api/fanout.py): TOML,
environment, and the errors for values that would break it."""

from __future__ import annotations

from pathlib import Path

import pytest

from scholarsource.config import Config, load_config
from scholarsource.errors import ConfigError


def test_defaults_read_four_times_a_second_and_buffer_a_thousand_events() -> None:
    assert (Config().events_interval, Config().events_buffer) == (0.25, 1000)


def test_set_in_toml_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("events_interval = 0.1\nevents_buffer = 50\n")
    assert (load_config(path, env={}).events_interval, load_config(path, env={}).events_buffer
            ) == (0.1, 50)
    env = {"SCHOLARSOURCE_EVENTS_INTERVAL": "1", "SCHOLARSOURCE_EVENTS_BUFFER": "20"}
    config = load_config(env=env)
    assert (config.events_interval, config.events_buffer) == (1.0, 20)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"events_interval": 0}, r"events_interval must be a positive number, not 0"),
    ({"events_interval": -1}, r"events_interval must be a positive number"),
    ({"events_interval": "nan"}, r"events_interval must be a positive number"),
    ({"events_interval": "inf"}, r"events_interval must be a positive number"),
    ({"events_buffer": 0}, r"events_buffer must be at least 1"),
])
def test_values_that_would_spin_or_drop_every_stream_are_refused(
        overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env={}, overrides=overrides)


def test_a_buffer_that_is_not_a_number_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('events_buffer = "lots"\n')
    with pytest.raises(ConfigError, match=r"'events_buffer' in .*\.toml must be a whole number"):
        load_config(path, env={})
