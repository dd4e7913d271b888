"""`GET /api/jobs/{job_id}/artifacts/{name}`: download one of a job's files.

The file is opened once, one path component at a time and through no link, and its
descriptor is what is served: a name swapped after the checks (for a link, or another file)
is never followed. Starlette's FileResponse then streams it in chunks from a thread (the
worker's memory stays flat however big the file) and answers `Range` (206, several ranges as
multipart) and `If-Range`. What it lacks is added here: the ETag is the file's sha256 (the
job JSON's), and `If-None-Match` answers 304; a file whose size is not the one recorded
answers 409 `artifact_changed`, and one that shrinks while sent is cut off (a rewrite at the
same size, by a writer the task left running, is not seen: hashing every download would
cost as much as sending it twice); a range that is
malformed or past the end gets a JSON error like every other refusal, with or without
If-Range (FileResponse would answer plain text). The file is read from this box's
artifacts_dir: with several boxes, a file another box wrote is only here on shared storage,
and otherwise answers 404 `artifact_unavailable`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from scholarsource.api.jobs import find_job
from scholarsource.api.state import services
from scholarsource.artifacts import check_name
from scholarsource.errors import BadRequest, Conflict, NotFound, RangeUnsatisfiable
from scholarsource.store.base import Artifact

# FileResponse's own range parser, so that its errors can be ours: checked at import, as any
# private API we depend on must be.
_parse_range = FileResponse._parse_range_header
# Bytes per read: against Starlette's 64 KiB, a quarter of the worker's CPU per GB sent and
# 1.3-1.7x the rate (bench/artifact_download.py); the memory stays flat either way.
_CHUNK = 1024**2
# Each directory along JOB/ATTEMPT, then the file: never through a link. O_NONBLOCK: a fifo
# put in the file's place cannot hold the open (its fstat then refuses it).
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK

log = logging.getLogger("scholarsource.api")


class ArtifactResponse(FileResponse):
    """A FileResponse of a file this worker already opened, in bigger chunks; it owns the
    descriptor and closes it once sent.

    FileResponse opens its path again as it sends: the path given is /proc/self/fd/N, which
    Linux resolves to the very file the descriptor holds, whatever became of its name since
    (renamed, replaced by a link, deleted)."""

    chunk_size = _CHUNK

    def __init__(self, fd: int, info: os.stat_result, job_id: str, artifact: Artifact) -> None:
        self.fd = fd
        self.job_id = job_id
        super().__init__(f"/proc/self/fd/{fd}", media_type=artifact.content_type,
                         filename=artifact.name, stat_result=info,
                         headers={"ETag": f'"{artifact.sha256}"',
                                  "X-Content-Type-Options": "nosniff"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No ASGI pathsend: the server would open the path itself, maybe after this returns
        # and the descriptor (and so the path) is gone.
        extensions = {key: value for key, value in scope.get("extensions", {}).items()
                      if key != "http.response.pathsend"}
        try:
            bounded = send if scope.get("method") == "HEAD" else _bounded(send)  # no body
            await super().__call__({**scope, "extensions": extensions}, receive, bounded)
        except _Complete:
            pass
        except _Shrunk as exc:
            # The head is gone with its Content-Length: all that is left is to end the
            # connection, which the client sees as a cut-off body (and no traceback here).
            log.warning("artifact %r of job %s shrank while it was sent (%d bytes missing): "
                        "the download was cut off", self.filename, self.job_id, exc.args[0])
        finally:
            os.close(self.fd)


class _Complete(Exception):
    """The body has its Content-Length: what FileResponse would read past it is not sent."""


class _Shrunk(Exception):
    """The file ended before its Content-Length (a writer the task left running truncated
    it after the size check): its last body message is not sent; args[0]: bytes missing."""


def _bounded(send: Send) -> Send:
    """`send` that never lets a body run past its Content-Length, nor end short of it.
    FileResponse reads to the end of the file, so a task's thread still appending to it
    after the size was checked pushed the body past its header, and one truncating it ended
    the body early: either way a cut-off download and a server error's traceback."""
    left: int | None = None
    done = False

    async def bounded(message: Message) -> None:
        nonlocal left, done
        if message["type"] == "http.response.start":
            left = next((int(value) for key, value in message["headers"]
                         if key == b"content-length"), None)
        elif message["type"] == "http.response.body" and left is not None:
            if done:
                raise _Complete
            body = message.get("body", b"")[:left]
            left -= len(body)
            done = not message.get("more_body", False) or left == 0
            if done and left:
                raise _Shrunk(left)
            message = {**message, "body": body, "more_body": not done}
        await send(message)

    return bounded


async def download(request: Request) -> Response:
    """Stream one artifact of the tenant's job (another tenant's job: the same 404 as an
    unknown one)."""
    job_id, name = request.path_params["job_id"], request.path_params["name"]
    job = await find_job(request, job_id)
    artifact = next((a for a in job.artifacts or () if a.name == name), None)
    if artifact is None:
        raise NotFound(f"job {job_id} has no artifact {name[:200]!r}")
    if _matches(request.headers.get("if-none-match"), f'"{artifact.sha256}"'):
        return Response(status_code=304, headers={"ETag": f'"{artifact.sha256}"'})
    return respond(request, services(request).config.artifacts_path, job_id, artifact)


def respond(request: Request, root: Path, job_id: str, artifact: Artifact) -> Response:
    """The artifact's file as the answer to `request`: opened, checked against what was
    recorded, its range checked; or the ApiError that refuses it."""
    fd = _open(root, job_id, artifact)
    with contextlib.ExitStack() as closing:
        closing.callback(os.close, fd)
        info = os.fstat(fd)
        if info.st_size != artifact.size:
            raise Conflict(f"job {job_id}'s artifact {artifact.name!r} has changed since its "
                           f"attempt recorded it ({artifact.size} bytes, {info.st_size} now): "
                           f"it is not served", code="artifact_changed")
        response = ArtifactResponse(fd, info, job_id, artifact)
        _check_range(request, response, info.st_size)
        closing.pop_all()  # the response closes it once sent
    return response


def _open(root: Path, job_id: str, artifact: Artifact) -> int:
    """The artifact's file on this box, opened: a plain file at JOB/ATTEMPT/NAME of this very
    job inside the artifacts directory, reached through no link; or 404
    artifact_unavailable."""
    parts = artifact.path.split("/")
    # The stored path is ours, but never leave the directory: JOB/ATTEMPT/NAME of this very
    # job, each component a name (no "..") opened below the one before it.
    if len(parts) == 3 and parts[0] == job_id and parts[1].isdigit() \
            and parts[2] == artifact.name:
        try:
            for part in parts:
                check_name(part)
            return _open_below(root, parts)
        except (ValueError, OSError):
            pass
    raise NotFound(f"job {job_id}'s artifact {artifact.name!r} is recorded, but its file "
                   f"is not on this server (with several boxes, artifacts_dir must be "
                   f"storage they all share)", code="artifact_unavailable")


def _open_below(root: Path, parts: list[str]) -> int:
    """The plain file at `parts` below `root`, each component opened relative to the one
    before (openat): a link anywhere along it fails with ELOOP or ENOTDIR. `root` itself may
    be a link (an operator's choice of artifacts_dir). Raises OSError."""
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            below = os.open(part, _DIRECTORY, dir_fd=directory)
            os.close(directory)
            directory = below
        fd = os.open(parts[-1], _FILE, dir_fd=directory)
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{parts[-1]!r} is not a plain file")
    return fd


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (weakly, as RFC 9110 compares)."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _check_range(request: Request, response: FileResponse, size: int) -> None:
    """A Range header FileResponse would refuse, refused as JSON instead. It reads the header
    unless an If-Range names another version of the file (then it sends the whole file):
    the same test here, so that no refusal of its own is left to it."""
    header = request.headers.get("range")
    if header is None or not _range_applies(request.headers.get("if-range"), response):
        return
    try:
        _parse_range(header, size)
    except MalformedRangeHeader as exc:
        raise BadRequest(str(exc.content), code="bad_range") from None
    except RangeNotSatisfiable:
        raise RangeUnsatisfiable(f"the file has {size} bytes: no byte of the range "
                                 f"{header[:100]!r} is in it",
                                 headers={"Content-Range": f"bytes */{size}"}) from None


def _range_applies(if_range: str | None, response: FileResponse) -> bool:
    """Whether FileResponse reads the Range header: without If-Range, or with one that is
    this file's strong ETag or its Last-Modified date."""
    return if_range is None or (not if_range.startswith("W/") and if_range in (
        response.headers["etag"], response.headers["last-modified"]))


routes = [Route("/api/jobs/{job_id}/artifacts/{name}", download, methods=["GET"])]
