"""`GET /api/jobs/{job_id}/artifacts/{name}`: download one of a job's files.

Starlette's FileResponse streams the file in chunks from a thread (the worker's memory stays
flat however big the file) and answers `Range` (206, several ranges as multipart, 416) and
`If-Range`. What it lacks is added here: the ETag is the file's sha256 (the job JSON's), and
`If-None-Match` answers 304; a range that is malformed or past the end gets a JSON error
like every other refusal (FileResponse would answer plain text). The file is read from this
box's artifacts_dir: with several boxes, a file another box wrote is only here on shared
storage, and otherwise answers 404 `artifact_unavailable`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.routing import Route

from scholarsource.api.jobs import find_job
from scholarsource.api.state import services
from scholarsource.artifacts import check_name
from scholarsource.errors import BadRequest, NotFound, RangeUnsatisfiable
from scholarsource.store.base import Artifact

# FileResponse's own range parser, so that its errors can be ours: checked at import, as any
# private API we depend on must be.
_parse_range = FileResponse._parse_range_header
# Bytes per read: against Starlette's 64 KiB, a quarter of the worker's CPU per GB sent and
# 1.3-1.7x the rate (bench/artifact_download.py); the memory stays flat either way.
_CHUNK = 1024**2


class ArtifactResponse(FileResponse):
    """A FileResponse that reads bigger chunks."""

    chunk_size = _CHUNK


async def download(request: Request) -> Response:
    """Stream one artifact of the tenant's job (another tenant's job: the same 404 as an
    unknown one)."""
    job_id, name = request.path_params["job_id"], request.path_params["name"]
    job = await find_job(request, job_id)
    artifact = next((a for a in job.artifacts or () if a.name == name), None)
    if artifact is None:
        raise NotFound(f"job {job_id} has no artifact {name[:200]!r}")
    path = _file(services(request).config.artifacts_path, job_id, artifact)
    etag = f'"{artifact.sha256}"'
    if _matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers={"ETag": etag})
    info = os.stat(path, follow_symlinks=False)
    _check_range(request, info.st_size)
    return ArtifactResponse(path, media_type=artifact.content_type, filename=artifact.name,
                            stat_result=info, headers={"ETag": etag})


def _file(root: Path, job_id: str, artifact: Artifact) -> Path:
    """Where the artifact's file is on this box: a plain file inside the artifacts
    directory, or 404 artifact_unavailable."""
    parts = artifact.path.split("/")
    info = None
    # The stored path is ours, but never leave the directory: JOB/ATTEMPT/NAME of this very
    # job, and no link anywhere along it (a directory swapped for a link is not followed).
    if len(parts) == 3 and parts[0] == job_id and parts[1].isdigit() \
            and parts[2] == artifact.name:
        try:
            for part in parts:
                check_name(part)
            inside = os.path.realpath(root.joinpath(*parts)) == os.path.join(
                os.path.realpath(root), *parts)
            info = os.stat(root.joinpath(*parts), follow_symlinks=False) if inside else None
        except (ValueError, OSError):
            info = None
    if info is None or not stat.S_ISREG(info.st_mode):
        raise NotFound(f"job {job_id}'s artifact {artifact.name!r} is recorded, but its file "
                       f"is not on this server (with several boxes, artifacts_dir must be "
                       f"storage they all share)", code="artifact_unavailable")
    return root.joinpath(*parts)


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (weakly, as RFC 9110 compares)."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _check_range(request: Request, size: int) -> None:
    """A Range header FileResponse would refuse, refused as JSON instead (With If-Range,
    FileResponse decides whether the range applies at all)."""
    header = request.headers.get("range")
    if header is None or "if-range" in request.headers:
        return
    try:
        _parse_range(header, size)
    except MalformedRangeHeader as exc:
        raise BadRequest(str(exc.content), code="bad_range") from None
    except RangeNotSatisfiable:
        raise RangeUnsatisfiable(f"the file has {size} bytes: no byte of the range "
                                       f"{header[:100]!r} is in it",
                                       headers={"Content-Range": f"bytes */{size}"}) from None


routes = [Route("/api/jobs/{job_id}/artifacts/{name}", download, methods=["GET"])]
