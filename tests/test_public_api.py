"""The public surface is exactly what __all__ says, and it is pinned here."""

import subprocess
import sys

import scholarsource
import scholarsource.client


def test_public_surface_is_pinned() -> None:
    assert sorted(scholarsource.__all__) == ["AsyncClient", "Client", "Context", "Retry",
                                             "__version__", "task"]
    for name in scholarsource.__all__:
        assert hasattr(scholarsource, name)


def test_client_surface_is_pinned() -> None:
    assert sorted(scholarsource.client.__all__) == [
        "AsyncClient", "Client", "ClientError", "Conflict", "Event", "Forbidden",
        "InvalidRequest", "Job", "JobPage", "JobState", "NotFound", "RateLimited",
        "RetryPolicy", "ServerError", "Signature", "Unauthorized", "Unavailable",
        "Unreachable", "WaitTimeout", "Workflow", "chain", "chord", "group", "sig"]
    for name in scholarsource.client.__all__:
        assert hasattr(scholarsource.client, name)
    assert scholarsource.Client is scholarsource.client.Client


def test_task_authors_do_not_load_the_client() -> None:
    # Every slot imports the package for `task`; httpx comes only with the client.
    code = "import sys, scholarsource; print('httpx' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
