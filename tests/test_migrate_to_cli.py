"""`scholarsource migrate-to` refuses what it cannot do, saying why, and writes nothing."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from scholarsource.cli import main
from scholarsource.exitcodes import EXIT_CONFIG, EXIT_FAILURE


def test_a_url_that_is_not_postgres_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["migrate-to", "mysql://db/jobs",
                                       "--data-dir", str(tmp_path)])
    assert result.exit_code == EXIT_CONFIG
    assert "postgresql:// URL" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_data_dir_without_a_database_has_nothing_to_copy(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["migrate-to", "postgresql://u:secret@db/jobs",
                                       "--data-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == EXIT_FAILURE
    assert "no database at" in result.output and "secret" not in result.output
    assert not (tmp_path / "nowhere").exists()
