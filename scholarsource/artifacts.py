"""Artifacts: the files a task leaves as its job's results, and where they live.

Layout: ``artifacts_dir/JOB_ID/ATTEMPT/NAME``. Each attempt writes into its own directory
(`ctx.artifact(name)`), so a retry never sees a failed attempt's files. When an attempt
succeeds, its slot process checks, hashes and makes read-only what the directory holds
(`collect`) before it reports success: a 200 MB file is hashed in the job's own process,
never on the pool's event loop. The files then stay where they are; the store records one
row per file (the job's `artifacts`). A failed, timed-out or cancelled attempt's directory
is deleted (`discard`), and what a crash or a lost answer leaves behind is swept when a
pool starts and every `artifacts_sweep_interval` after (`strays`).

Only plain files directly in the attempt's directory count: a symlink, a directory or any
other kind of file fails the attempt (`bad_artifact`) and is never followed.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import shutil
import stat
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from scholarsource.store.base import Artifact

# A name is one path component; filesystems allow 255 bytes.
MAX_NAME_BYTES = 255
# A settled artifact's mode: readable by all, writable by none (deleting it needs write
# permission on its directory, not on the file: discard, the sweep and retention still can).
READ_ONLY = 0o444
_CHUNK = 1024**2  # bytes per read while hashing


class ArtifactRefused(Exception):
    """Raised when an attempt's directory holds what cannot become an artifact: a symlink, a
    directory, a special file or a name that `check_name` refuses."""


class ArtifactTooLarge(Exception):
    """Raised when an attempt's files add up to more than max_artifact_bytes."""


def check_name(name: object) -> str:
    """`name` if it can name an artifact: one path component of printable text (no "/",
    no "\\", no NUL or other control character, not "." or ".."), at most MAX_NAME_BYTES of
    UTF-8. Raises ValueError otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"an artifact name is a string, not {type(name).__name__}")
    if name in ("", ".", ".."):
        raise ValueError(f"{name!r} cannot name an artifact")
    if "/" in name or "\\" in name:
        raise ValueError(f"artifact name {name[:80]!r} must not contain a path separator")
    # Cc: C0 and C1 controls; Cf: format characters, such as the bidirectional overrides
    # that would show "evil\u202etxt.exe" as "evilexe.txt".
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        raise ValueError(f"artifact name {name[:80]!r} must not contain control characters")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(f"artifact name {name[:80]!r} is not valid text") from None
    if size > MAX_NAME_BYTES:
        raise ValueError(f"artifact name is {size} bytes long, more than {MAX_NAME_BYTES}")
    return name


def attempt_dir(root: Path, job_id: str, attempt: int) -> Path:
    """The directory one attempt of a job writes its artifacts into."""
    return root / job_id / str(attempt)


def relative_path(job_id: str, attempt: int, name: str) -> str:
    """Where an artifact lies under the artifacts directory, as the store records it."""
    return f"{job_id}/{attempt}/{name}"


def content_type(name: str) -> str:
    """The media type a file of this name is served as, guessed from its extension."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


@dataclass(frozen=True)
class Produced:
    """One file an attempt left, as its slot checked it."""

    name: str
    size: int
    sha256: str
    content_type: str


def collect(directory: Path, max_bytes: int) -> list[Produced]:
    """The files of a finished attempt's directory, checked, hashed and made read-only, by
    name. Raises ArtifactRefused for anything but plain files with good names,
    ArtifactTooLarge when they add up to more than `max_bytes` (checked before any hashing,
    and again on the sizes recorded)."""
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    total = 0
    for entry in entries:
        try:
            check_name(entry.name)
        except ValueError as exc:
            raise ArtifactRefused(str(exc)) from None
        info = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            raise ArtifactRefused(f"{entry.name!r} is {_kind(info.st_mode)}, not a plain file: "
                                  f"only files written with ctx.artifact() can be artifacts")
        total += info.st_size
    _check_total(total, max_bytes)
    produced = [_settle(directory, entry.name) for entry in entries]
    _check_total(sum(p.size for p in produced), max_bytes)  # one grew since the scan
    return produced


def _check_total(total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise ArtifactTooLarge(f"the attempt left {total} bytes of files, more than "
                               f"max_artifact_bytes ({max_bytes})")


def _settle(directory: Path, name: str) -> Produced:
    """One file made read-only, then measured and hashed: exactly the bytes up to the size
    recorded, so that a writer still at work (a thread the task left running) can never
    make the hash describe other bytes than the size does."""
    # O_NOFOLLOW: a file swapped for a link after the scan is refused, never followed.
    # O_NONBLOCK: a fifo swapped in after the scan cannot hold the open (fstat refuses it).
    try:
        fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise ArtifactRefused(f"{name!r} cannot be read: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "rb", buffering=0) as file:
            first = os.fstat(fd)
            if not stat.S_ISREG(first.st_mode):
                raise ArtifactRefused(f"{name!r} is {_kind(first.st_mode)}, not a plain file")
            # Before the size is read: from here on, opening it to write fails with EACCES
            # (for every user but root). A writer that holds it open already still can: the
            # download compares the size with the recorded one and refuses a file that
            # changed. Not a file with other names: the mode is the inode's, and a task that
            # hard-linked a file of its own must not find that file read-only.
            if first.st_nlink == 1:
                os.fchmod(fd, READ_ONLY)
            info = os.fstat(fd)
            digest = hashlib.sha256()
            buffer = memoryview(bytearray(_CHUNK))
            left = info.st_size
            while left:
                read = file.readinto(buffer[:min(left, _CHUNK)])
                if not read:
                    raise ArtifactRefused(f"{name!r} shrank while it was hashed")
                digest.update(buffer[:read])
                left -= read
    except OSError as exc:  # the attempt's failure (bad_artifact), never the slot's death
        raise ArtifactRefused(f"{name!r} cannot be read: {exc.strerror or exc}") from None
    return Produced(name, info.st_size, digest.hexdigest(), content_type(name))


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a special file"


def discard(directory: Path) -> None:
    """Delete an attempt's directory and, once it is empty, its job's. Never fails."""
    shutil.rmtree(directory, ignore_errors=True)
    try:
        directory.parent.rmdir()
    except OSError:
        pass  # other attempts' files are still there, or it is gone already


def paths(root: Path, found: Mapping[str, list[Artifact]]) -> dict[str, dict[str, Path]]:
    """Store.artifacts_of's answer as files: job id -> name -> path (ctx.parent_artifacts)."""
    return {job_id: {a.name: root / a.path for a in listed} for job_id, listed in found.items()}


def listing(root: Path) -> dict[str, list[str]]:
    """Each job directory under `root` and the attempt directories in it."""
    try:
        jobs = [entry for entry in os.scandir(root) if entry.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return {}
    found = {}
    for job in jobs:
        try:
            found[job.name] = [entry.name for entry in os.scandir(job.path)]
        except OSError:
            continue
    return found


def strays(root: Path, listed: dict[str, list[str]], kept: dict[str, set[int]]) -> list[Path]:
    """The attempt directories of `listed` (read before `kept`) that no job keeps: `kept`
    maps each listed job that still exists to the attempts it wants (holding its artifacts,
    or running now); a job missing from it is gone, and all of its directories with it.
    Listing first means a directory made after the listing is never judged by an older
    answer."""
    return [root / job_id / name for job_id, names in listed.items() for name in names
            if not name.isdigit() or int(name) not in kept.get(job_id, set())]
