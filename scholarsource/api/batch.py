"""POST /api/jobs/batch: many jobs in one request and one transaction, all or nothing.

Every job is validated before anything is written: the first bad one answers with the code
a single submit would give, its message prefixed `jobs[INDEX]: ` and its index in the JSON.
The quotas count every new job of the batch (store/admission.py), so a batch that does not
fit is refused whole.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from scholarsource.api import prefer
from scholarsource.api.jobs import SubmitParser
from scholarsource.api.schemas import parse_idempotency_key, read_json
from scholarsource.api.state import services
from scholarsource.api.submits import ask_of
from scholarsource.api.tenancy import principal_of
from scholarsource.errors import ApiError, ValidationFailed
from scholarsource.store.base import Job, NewJob

KEY_FIELD = "idempotency_key"


def _jobs(body: Any, max_batch: int) -> list[Any]:
    if not isinstance(body, dict) or set(body) != {"jobs"} or not isinstance(body["jobs"], list):
        raise ValidationFailed('the body must be {"jobs": [submit body, ...]}', field="jobs")
    items = body["jobs"]
    if not items:
        raise ValidationFailed("jobs: at least one job", field="jobs")
    if len(items) > max_batch:
        raise ValidationFailed(f"jobs: {len(items)} jobs, more than max_batch ({max_batch}); "
                               f"split the batch", code="batch_too_large", limit=max_batch)
    return items


async def _item(parser: SubmitParser, item: Any) -> NewJob:
    if not isinstance(item, dict):
        raise ValidationFailed("must be a submit body, a JSON object")
    key = item.get(KEY_FIELD)
    if KEY_FIELD in item:  # a null key is no key, not an unknown field
        if key is not None and not isinstance(key, str):
            raise ValidationFailed(f"{KEY_FIELD}: a string", field=KEY_FIELD)
        item = {name: value for name, value in item.items() if name != KEY_FIELD}
    return await parser.parse(item, parse_idempotency_key(key))


async def submit_batch(request: Request) -> JSONResponse:
    """Validate every job, then submit them all in one transaction; 202 if any is new."""
    svc = services(request)
    config = svc.config
    # The envelope adds two levels around each job's submit body.
    items = _jobs(await read_json(request, config, config.max_batch_body_bytes, around=3),
                  config.max_batch)
    parser = SubmitParser(request)
    news = []
    for index, item in enumerate(items):
        try:
            news.append(await _item(parser, item))
        except ApiError as exc:
            raise type(exc)(f"jobs[{index}]: {exc.message}", code=exc.code,
                            headers=exc.headers, **{**exc.extra, "index": index}) from None
    admitted = await svc.submits.admit(ask_of(principal_of(request)), news, batch=True)
    new = any(reused is None for _, reused in admitted.jobs)
    short = prefer.wants_minimal(request)
    shape = prefer.minimal if short else Job.to_json
    return JSONResponse({"jobs": [shape(job) for job, _ in admitted.jobs]},
                        status_code=202 if new else 200,
                        headers={**admitted.headers, **prefer.APPLIED} if short
                        else admitted.headers)


routes = [Route("/api/jobs/batch", submit_batch, methods=["POST"])]
