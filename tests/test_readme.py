"""The README's examples match the code a user runs them against."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

from scholarsource.store.base import Job, JobState

README = Path(__file__).parent.parent / "README.md"


def readme_job_example() -> dict[str, object]:
    """The job JSON shown, as comment lines, under the first submit of the HTTP quickstart."""
    match = re.search(r"^# (\{\"id\":.*?\})$", README.read_text(), re.S | re.M)
    assert match, "the README's quickstart shows a job's JSON"
    text = re.sub(r"^#  ", "", match.group(1), flags=re.M)
    example: dict[str, object] = json.loads(text)
    return example


def test_readme_job_example_has_every_key_of_the_job_json() -> None:
    # Other fields may come; a key-set comparison makes whoever adds one show it here too.
    values: dict[str, object] = {f.name: None for f in fields(Job)}
    values["status"] = JobState.QUEUED
    shown, actual = set(readme_job_example()), set(Job(**values).to_json())
    assert shown == actual, f"missing: {actual - shown}, not in the job: {shown - actual}"
