"""Config layering (defaults < TOML < SCHOLARSOURCE_* < flags), parsing, validation, sizing."""

from __future__ import annotations

import os
import tomllib
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest

from scholarsource import sizing
from scholarsource.config import Config, load_config, parse_size
from scholarsource.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.toml"
GIB = 1024**3


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SCHOLARSOURCE_* or STATE_DIRECTORY from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("SCHOLARSOURCE_") or key == "STATE_DIRECTORY":
            monkeypatch.delenv(key)


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scholarsource.toml"
    path.write_text(text)
    return path


# -- parse_size ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    (0, 0),
    (4096, 4096),
    ("4096", 4096),
    ("512MB", 512 * 1000**2),
    ("512MiB", 512 * 1024**2),
    ("1GiB", GIB),
    ("1gib", GIB),
    ("2 GB", 2 * 1000**3),
    ("1.5KiB", 1536),
    ("10k", 10_000),
    ("1TiB", 1024**4),
])
def test_parse_size_accepts_counts_and_units(text: int | str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "MB", "12 parsecs", "-5MB", "1,5GB", -1, True,
                                 "\u0661MB", "1\u00a0MB", "\uff11GB", "1\tMB"])
def test_parse_size_rejects_nonsense(bad: int | str) -> None:
    with pytest.raises(ValueError):
        parse_size(bad)


# -- layering ------------------------------------------------------------------------------------

def test_defaults_without_any_layer() -> None:
    config = load_config(env={})
    assert config == Config()
    assert config.bind == "127.0.0.1:8000"
    assert config.data_dir == "./scholarsource-data"
    assert config.workers == 0 and config.slots == 0
    assert config.durability == "normal"
    assert config.memory_per_job == 512 * 1024**2
    assert config.task_modules == ()


def test_state_directory_becomes_the_default_data_dir(tmp_path: Path) -> None:
    env = {"STATE_DIRECTORY": "/var/lib/scholarsource:/var/lib/other"}
    assert load_config(env=env).data_dir == "/var/lib/scholarsource"
    # Any explicit layer still wins over it.
    path = write_toml(tmp_path, 'data_dir = "/srv/jobs"\n')
    assert load_config(path, env=env).data_dir == "/srv/jobs"


def test_each_layer_overrides_the_one_below(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'slots = 3\nworkers = 2\nbind = "0.0.0.0:9000"\n'
                                'memory_per_job = "1GiB"\n')
    env = {"SCHOLARSOURCE_WORKERS": "5", "SCHOLARSOURCE_BIND": "127.0.0.1:9001"}
    config = load_config(path, env=env, overrides={"bind": "127.0.0.1:9002"})
    assert config.slots == 3                      # TOML over the default
    assert config.memory_per_job == GIB           # TOML size string
    assert config.workers == 5                    # environment over TOML
    assert config.bind == "127.0.0.1:9002"        # flag over the environment
    assert config.durability == "normal"          # untouched: the default


def test_none_overrides_are_flags_not_given(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "slots = 3\n")
    config = load_config(path, env={}, overrides={"slots": None, "bind": None})
    assert config.slots == 3
    assert config.bind == "127.0.0.1:8000"


def test_config_file_named_by_the_environment(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'durability = "full"\n')
    config = load_config(env={"SCHOLARSOURCE_CONFIG": str(path)})
    assert config.durability == "full"


def test_explicit_path_wins_over_scholarsource_config(tmp_path: Path) -> None:
    named = write_toml(tmp_path, "slots = 7\n")
    other = tmp_path / "other.toml"
    other.write_text("slots = 1\n")
    assert load_config(named, env={"SCHOLARSOURCE_CONFIG": str(other)}).slots == 7


def test_environment_values_are_typed() -> None:
    config = load_config(env={
        "SCHOLARSOURCE_SLOTS": "4",
        "SCHOLARSOURCE_SLOTS_PER_CORE": "2.5",
        "SCHOLARSOURCE_MEMORY_RESERVE": "2GiB",
        "SCHOLARSOURCE_TASK_MODULES": "a.b, c.d",
        "SCHOLARSOURCE_DURABILITY": "full",
        "SCHOLARSOURCE_URL": "http://elsewhere:8000",  # the client's, not a server setting
    })
    assert config.slots == 4
    assert config.slots_per_core == 2.5
    assert config.memory_reserve == 2 * GIB
    assert config.task_modules == ("a.b", "c.d")
    assert config.durability == "full"


def test_environment_list_ignores_empty_items() -> None:
    config = load_config(env={"SCHOLARSOURCE_TASK_MODULES": " a.b ,, c.d , "})
    assert config.task_modules == ("a.b", "c.d")
    assert load_config(env={"SCHOLARSOURCE_TASK_MODULES": ""}).task_modules == ()


def test_toml_list_of_task_modules(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'task_modules = ["myapp.jobs", "myapp.more"]\n')
    assert load_config(path, env={}).task_modules == ("myapp.jobs", "myapp.more")


def test_flag_values_may_be_text_or_typed() -> None:
    config = load_config(env={}, overrides={"slots": "3", "workers": 2, "data_dir": "/srv/d"})
    assert (config.slots, config.workers, config.data_dir) == (3, 2, "/srv/d")


# -- validation ----------------------------------------------------------------------------------

def test_unknown_key_in_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "slots = 2\nslotz = 3\n")
    with pytest.raises(ConfigError, match=r"^unknown setting 'slotz' in .*scholarsource\.toml; "
                                          r"did you mean 'slots'\?$"):
        load_config(path, env={})


def test_unknown_key_far_from_any_setting_gets_no_guess(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "colour = 3\n")
    with pytest.raises(ConfigError, match=r"^unknown setting 'colour' in .*\.toml$"):
        load_config(path, env={})


def test_unknown_environment_variable() -> None:
    with pytest.raises(ConfigError, match=r"^unknown setting SCHOLARSOURCE_MAX_ATTEMPT in the "
                                          r"environment; did you mean "
                                          r"SCHOLARSOURCE_MAX_ATTEMPTS\?$"):
        load_config(env={"SCHOLARSOURCE_MAX_ATTEMPT": "3"})


def test_unknown_flag_override() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting --slotz on the command line"):
        load_config(env={}, overrides={"slotz": 3})


# What a new user typed, and what they must read: the setting, what it takes, their value;
# never Python's "invalid literal for int() with base 10".
@pytest.mark.parametrize(("toml", "message"), [
    ('slots = "four"', r"'slots' in .*\.toml must be a whole number, not 'four'$"),
    ("slots = 2.5", r"'slots' in .*\.toml must be a whole number, not 2\.5$"),
    ("workers = true", r"'workers' in .*\.toml must be a whole number, not True$"),
    ('task_modules = "myapp.jobs"',
     r"'task_modules' in .*\.toml must be a list of strings, like \[\"myapp\.jobs\"\], "
     r"not 'myapp\.jobs'$"),
    ("task_modules = [1, 2]", r"'task_modules' .* must be a list of strings.*not \[1, 2\]$"),
    ('memory_per_job = "lots"',
     r"'memory_per_job' .* must be a byte count or a size like '512MB' or '2GiB', not 'lots'$"),
    ("bind = 8000", r"'bind' in .*\.toml must be a string, not 8000$"),
    ('lease_seconds = "soon"', r"'lease_seconds' in .*\.toml must be a number, not 'soon'$"),
    ('access_log = "yes"', r"'access_log' in .*\.toml must be true or false, not 'yes'$"),
])
def test_bad_types_in_toml(tmp_path: Path, toml: str, message: str) -> None:
    path = write_toml(tmp_path, toml + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path, env={})
    assert "invalid literal" not in str(caught.value)


def test_bad_type_in_environment() -> None:
    with pytest.raises(ConfigError, match=r"^SCHOLARSOURCE_WORKERS in the environment must be a "
                                          r"whole number, not 'two'$"):
        load_config(env={"SCHOLARSOURCE_WORKERS": "two"})


def test_bad_choice_for_durability(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'durability = "paranoid"\n')
    with pytest.raises(ConfigError, match=r"durability must be one of normal, full, "
                                          r"not 'paranoid'"):
        load_config(path, env={})


def test_bad_choice_for_log_level() -> None:
    with pytest.raises(ConfigError, match=r"log_level must be one of debug, info"):
        load_config(env={"SCHOLARSOURCE_LOG_LEVEL": "chatty"})


@pytest.mark.parametrize("bind", ["nonsense", "8000", ":8000", "localhost:", "host:http",
                                  "host:65536", "host:-1"])
def test_bad_bind(bind: str) -> None:
    with pytest.raises(ConfigError, match=r"bind must be HOST:PORT, not "):
        load_config(env={}, overrides={"bind": bind})


@pytest.mark.parametrize(("bind", "host", "port"), [
    ("127.0.0.1:8000", "127.0.0.1", 8000),
    ("0.0.0.0:0", "0.0.0.0", 0),
    ("[::1]:9000", "::1", 9000),
    ("example.internal:443", "example.internal", 443),
])
def test_good_bind(bind: str, host: str, port: int) -> None:
    assert load_config(env={}, overrides={"bind": bind}).host_port() == (host, port)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"workers": -1}, r"workers cannot be negative"),
    ({"slots": -2}, r"slots cannot be negative"),
    ({"max_attempts": 0}, r"max_attempts must be at least 1"),
    ({"lease_seconds": 0}, r"lease_seconds must be a positive number"),
    ({"lease_seconds": "nan"}, r"lease_seconds must be a positive number"),
    ({"poll_interval": -1}, r"poll_interval must be a positive number"),
    ({"poll_interval": "inf"}, r"poll_interval must be a positive number"),
    ({"busy_timeout": 0}, r"busy_timeout must be a positive number"),
    ({"slots_per_core": 0}, r"slots_per_core must be a positive number"),
    ({"max_body_bytes": 0}, r"max_body_bytes must be a positive number"),
    ({"memory_per_job": 0}, r"memory_per_job must be a positive number"),
    ({"grace_period": -1}, r"grace_period must be zero or more"),
    ({"cancel_grace": "nan"}, r"cancel_grace must be zero or more"),
])
def test_out_of_range_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env={}, overrides=overrides)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.toml"):
        load_config(tmp_path / "missing.toml", env={})


def test_config_file_that_is_not_toml(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "slots = = 2\n")
    with pytest.raises(ConfigError, match=r"is not valid TOML"):
        load_config(path, env={})


def test_config_is_frozen_and_reports_its_values() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.slots = 3  # type: ignore[misc]
    assert config.db_path == Path("./scholarsource-data") / "scholarsource.db"
    assert set(config.as_dict()) == {f.name for f in fields(Config)}


def test_every_field_has_help() -> None:
    for f in fields(Config):
        assert f.metadata.get("help"), f"{f.name} has no help text"


# -- config.example.toml -------------------------------------------------------------------------

def test_example_names_every_field_and_nothing_else() -> None:
    with open(EXAMPLE, "rb") as fh:
        keys = set(tomllib.load(fh))
    names = {f.name for f in fields(Config)}
    assert keys - names == set(), "config.example.toml has keys Config does not know"
    assert names - keys == set(), "config.example.toml leaves out some Config fields"


def test_example_loads_to_the_defaults() -> None:
    assert load_config(EXAMPLE, env={}) == Config()


def test_example_explains_every_key() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for number, line in enumerate(lines):
        if line and not line.startswith("#") and "=" in line:
            key = line.split("=", 1)[0].strip()
            assert number > 0 and lines[number - 1].startswith("# "), (
                f"{key} in config.example.toml has no comment above it")


# -- sizing --------------------------------------------------------------------------------------

@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A fake 8-core machine with 16 GiB, 12 GiB of it available; tests may change it."""
    box = SimpleNamespace(cores=8, total=16 * GIB, available=12 * GIB)
    monkeypatch.setattr(sizing, "_cores", lambda: box.cores)
    monkeypatch.setattr(sizing.psutil, "virtual_memory",
                        lambda: SimpleNamespace(total=box.total, available=box.available))
    return box


def test_plan_uses_configured_slots(machine: SimpleNamespace) -> None:
    result = sizing.plan(Config(slots=3))
    assert result.slots == 3
    assert "set in the configuration" in result.reason


def test_plan_is_cpu_bound_with_plenty_of_memory(machine: SimpleNamespace) -> None:
    result = sizing.plan(Config())
    # (12 GiB - 1 GiB reserve) / 512 MiB = 22 by memory; 8 cores x 1.0 = 8 by CPU
    assert (result.slots_by_cpu, result.slots_by_memory, result.slots) == (8, 22, 8)
    assert result.reason.startswith("CPU-bound")


def test_plan_slots_per_core(machine: SimpleNamespace) -> None:
    assert sizing.plan(Config(slots_per_core=2.0)).slots == 16


def test_plan_is_memory_bound_with_huge_jobs(machine: SimpleNamespace) -> None:
    result = sizing.plan(Config(memory_per_job=1024 * GIB))
    assert result.slots_by_memory == 1
    assert result.slots == 1
    assert result.reason.startswith("memory-bound")


def test_plan_advice_for_io_bound_jobs(machine: SimpleNamespace) -> None:
    assert "raise slots_per_core (now 1), e.g. slots_per_core = 4" \
        in sizing.plan(Config()).advice()
    assert "(now 2.5), e.g. slots_per_core = 5" in sizing.plan(Config(slots_per_core=2.5)).advice()
    # When memory is the limit, more slots per core would add nothing: say what would.
    assert "lower it, e.g. memory_per_job" in sizing.plan(Config(memory_per_job=GIB * 4)).advice()
    assert "slots is set, so slots_per_core does not apply" in sizing.plan(Config(slots=3)).advice()


def test_plan_never_sizes_below_one_slot(machine: SimpleNamespace) -> None:
    machine.available = GIB // 2  # less than the reserve
    assert sizing.plan(Config()).slots == 1


def test_plan_workers_default_to_the_cores(machine: SimpleNamespace) -> None:
    assert sizing.plan(Config()).workers == 8
    assert sizing.plan(Config(workers=3)).workers == 3


def test_plan_on_this_machine() -> None:
    result = sizing.plan(Config())
    assert result.workers == result.cores == len(os.sched_getaffinity(0))
    assert result.slots >= 1
    assert set(result.as_dict()) >= {"workers", "slots", "cores", "reason"}
    assert f"{result.slots} job slot(s)" in result.describe()


def test_choices_are_case_insensitive() -> None:
    config = load_config(env={"SCHOLARSOURCE_LOG_LEVEL": "DEBUG",
                              "SCHOLARSOURCE_DURABILITY": "Full"})
    assert (config.log_level, config.durability) == ("debug", "full")


def test_booleans_from_toml_and_text(tmp_path: Path) -> None:
    assert load_config(env={}).fetch_allow_private is False
    path = write_toml(tmp_path, "fetch_allow_private = true\n")
    assert load_config(path, env={}).fetch_allow_private is True
    assert load_config(env={"SCHOLARSOURCE_FETCH_ALLOW_PRIVATE": "off"}).fetch_allow_private \
        is False
    with pytest.raises(ConfigError, match="must be true or false, not "):
        load_config(env={"SCHOLARSOURCE_FETCH_ALLOW_PRIVATE": "maybe"})
    with pytest.raises(ConfigError, match="must be true or false, not "):
        load_config(write_toml(tmp_path, "fetch_allow_private = 1\n"), env={})


# -- what a submit may ask for -------------------------------------------------------------------

def test_builtin_tasks_is_a_keyword_or_a_list_of_names(tmp_path: Path) -> None:
    assert load_config(env={}).builtin_tasks == ("safe",)
    assert load_config(write_toml(tmp_path, 'builtin_tasks = "all"\n'), env={}
                       ).builtin_tasks == ("all",)
    assert load_config(env={"SCHOLARSOURCE_BUILTIN_TASKS": "noop, sleep"}
                       ).builtin_tasks == ("noop", "sleep")
    with pytest.raises(ConfigError, match="'all' stands alone"):
        load_config(env={"SCHOLARSOURCE_BUILTIN_TASKS": "all,noop"})


def test_timeouts_are_finite_and_ordered() -> None:
    config = load_config(env={})
    assert (config.default_timeout, config.max_timeout) == (3600.0, 7 * 86400.0)
    with pytest.raises(ConfigError, match="default_timeout cannot be more than max_timeout"):
        load_config(env={"SCHOLARSOURCE_DEFAULT_TIMEOUT": "100",
                         "SCHOLARSOURCE_MAX_TIMEOUT": "10"})
    with pytest.raises(ConfigError, match="max_timeout must be a positive number"):
        load_config(env={"SCHOLARSOURCE_MAX_TIMEOUT": "inf"})
