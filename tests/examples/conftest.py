"""Start an example's server from its own directory with its own config, as its README says,
and run its client: only the port and the data directory are the test's."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from scholarsource.launcher import ServerProcess, free_port, launch

EXAMPLES = Path(__file__).parent.parent.parent / "examples"


def load_module(example: str, filename: str) -> ModuleType:
    """An example's module (its web app, its client) imported from its file, in the test's
    process, under a name of its own."""
    spec = importlib.util.spec_from_file_location(f"{example}_{Path(filename).stem}",
                                                  EXAMPLES / example / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Example:
    """A running example server and what its client needs."""

    server: ServerProcess
    directory: Path
    data_dir: Path
    env: dict[str, str]

    def run_client(self, *args: str, timeout: float = 60,
                   expect: int = 0) -> subprocess.CompletedProcess[str]:
        """Run the example's client.py against this server; fail with both logs unless it
        exits with `expect`."""
        done = subprocess.run([sys.executable, "client.py", *args], cwd=self.directory,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == expect, (done.stdout, done.stderr, self.server.log())
        return done


@pytest.fixture
def example(tmp_path: Path, database: str) -> Iterator[Callable[..., Example]]:
    """Factory: example("slides", "--slots", "4") starts `scholarsource serve --config
    scholarsource.toml` in examples/slides; stopped at teardown. A `both_backends` test
    runs it on PostgreSQL too: its URL goes in `env`, so the CLI commands a test runs with
    that environment use the same store."""
    started: list[ServerProcess] = []

    def start(name: str, *flags: str) -> Example:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        data_dir = tmp_path / "data"
        # Through the environment, so the example's tasks write where the server keeps its
        # data, and call the server they run in.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("SCHOLARSOURCE_") and k != "PYTHONPATH"}
        env.update(SCHOLARSOURCE_DATA_DIR=str(data_dir), SCHOLARSOURCE_URL=url)
        if database:
            env.update(SCHOLARSOURCE_DATABASE=database)
        script = Path(sys.executable).parent / "scholarsource"
        server = launch([str(script), "serve", "--config", "scholarsource.toml",
                         "--bind", f"127.0.0.1:{port}", *flags],
                        url=url, log_path=tmp_path / f"{name}.log", env=env,
                        cwd=EXAMPLES / name, wait=False)
        started.append(server)
        server.wait_ready(60)
        return Example(server, EXAMPLES / name, data_dir, env)

    yield start
    # kill -9, not a graceful stop: the test is over (see `serve` in tests/conftest.py).
    with contextlib.ExitStack() as stack:  # one that cannot be killed leaves none running
        for server in started:
            stack.callback(server.proc.wait, timeout=10)
            stack.callback(server.kill_group)
