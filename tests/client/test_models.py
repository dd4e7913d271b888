"""The client's Job mirrors the server's job JSON: a field the server adds shows up here."""

from __future__ import annotations

from dataclasses import fields

from scholarsource.client import Job
from scholarsource.store.base import Job as StoredJob
from scholarsource.store.base import JobState


def test_the_client_job_has_a_field_for_every_key_of_the_job_json() -> None:
    values: dict[str, object] = {f.name: None for f in fields(StoredJob)}
    values["status"] = JobState.QUEUED
    served = StoredJob(**values).to_json()
    assert {f.name for f in fields(Job)} - {"raw"} == set(served)
    assert Job.from_json(served).raw is served
