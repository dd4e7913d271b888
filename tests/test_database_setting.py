"""The `database` setting: SQLite by default, a PostgreSQL URL, anything else refused, and
the password never shown."""

from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path

import pytest

from scholarsource.config import Config, load_config
from scholarsource.errors import ConfigError
from scholarsource.store.url import DatabaseUrl, mask

URL = "postgresql://jobs:s3cret@db.internal:5432/scholarsource"


def test_default_is_sqlite_in_the_data_dir() -> None:
    config = load_config(env={})
    assert config.database == ""
    assert not config.database.is_postgres


@pytest.mark.parametrize("url", [URL, "postgres://db/scholarsource", "POSTGRESQL://db/x"])
def test_postgresql_urls_from_file_environment_and_flag(tmp_path: Path, url: str) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(f'database = "{url}"\n')
    for config in (load_config(toml, env={}),
                   load_config(env={"SCHOLARSOURCE_DATABASE": url}),
                   load_config(env={}, overrides={"database": url})):
        assert config.database.is_postgres
        assert config.database.reveal() == url


@pytest.mark.parametrize("bad", ["mysql://root:hunter2@db/x", "sqlite:///tmp/x.db",
                                 "scholarsource.db"])
def test_anything_else_is_a_config_error_naming_the_setting(bad: str) -> None:
    with pytest.raises(ConfigError, match="database must be empty") as caught:
        load_config(env={"SCHOLARSOURCE_DATABASE": bad})
    assert "hunter2" not in str(caught.value)


def test_the_password_is_masked_in_every_rendering(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(env={"SCHOLARSOURCE_DATABASE": URL})
    shown = "postgresql://jobs:********@db.internal:5432/scholarsource"
    assert str(config.database) == shown
    assert repr(config.database) == repr(shown)
    assert f"{config.database}" == shown and format(config.database, "") == shown
    assert "s3cret" not in repr(config)
    assert config.as_dict()["database"] == shown
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("store: %s %r", config.database, config)
    assert "s3cret" not in caplog.text


def test_mask_leaves_urls_without_a_password_alone() -> None:
    assert mask("postgresql://jobs@db/x") == "postgresql://jobs@db/x"
    assert mask("postgresql://db/x") == "postgresql://db/x"


def test_the_default_config_equals_one_built_with_the_setting_empty() -> None:
    assert Config(database=DatabaseUrl("")) == Config()


def test_the_url_survives_pickling_and_copies_unmasked_for_the_driver() -> None:
    url = DatabaseUrl(URL)
    for twin in (pickle.loads(pickle.dumps(url)), copy.deepcopy(url)):
        assert isinstance(twin, DatabaseUrl) and twin.reveal() == URL
        assert "s3cret" not in str(twin)


def test_database_listen_is_a_masked_url_that_needs_database() -> None:
    direct = "postgresql://jobs:s3cret@db.internal:5432/scholarsource"
    pooled = "postgresql://jobs:s3cret@pgbouncer:6432/scholarsource"
    config = load_config(env={"SCHOLARSOURCE_DATABASE": pooled,
                              "SCHOLARSOURCE_DATABASE_LISTEN": direct})
    assert config.database_listen.reveal() == direct
    assert "s3cret" not in repr(config) and "s3cret" not in str(config.as_dict())
    with pytest.raises(ConfigError, match="database_listen must be empty"):
        load_config(env={"SCHOLARSOURCE_DATABASE": pooled,
                         "SCHOLARSOURCE_DATABASE_LISTEN": "mysql://db/x"})
    with pytest.raises(ConfigError, match="database_listen needs database"):
        load_config(env={"SCHOLARSOURCE_DATABASE_LISTEN": direct})
