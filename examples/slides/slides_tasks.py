"""The slide service's work, simulated: extract a lecture video's frames, analyse them,
generate the slides, and a nightly clean-up of what the pipeline leaves behind.

Each step writes its output under the server's data directory (SCHOLARSOURCE_DATA_DIR, else
./scholarsource-data, the server's own default), so the next step and the clean-up find it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from scholarsource import Context, task


def _workdir(video_id: str) -> Path:
    path = Path(os.environ.get("SCHOLARSOURCE_DATA_DIR", "scholarsource-data"),
                "slides", video_id)
    path.mkdir(parents=True, exist_ok=True)
    return path


@task("extract_frames", queue="extraction", timeout=600)
def extract_frames(ctx: Context, video_id: str, frames: int = 8) -> dict[str, Any]:
    """Decode the video into frames: I/O-bound and memory-hungry, hence one at a time."""
    out = _workdir(video_id) / "frames"
    out.mkdir(exist_ok=True)
    for i in range(frames):
        if ctx.cancel_requested:  # the user deleted the upload: stop, keep what is done
            return {"video_id": video_id, "frames": i, "cancelled": True}
        time.sleep(0.08)  # reading and decoding
        (out / f"{i:04d}.frame").write_bytes(os.urandom(4096))
        ctx.progress((i + 1) / frames, f"frame {i + 1} of {frames}")
    return {"video_id": video_id, "frames": frames}


@task("analyze_frames", queue="analysis", timeout=600)
def analyze_frames(ctx: Context, video_id: str) -> dict[str, Any]:
    """Find the slide changes: a CPU burst per frame."""
    frames = sorted((_workdir(video_id) / "frames").glob("*.frame"))
    if not frames:
        raise RuntimeError(f"no frames for {video_id}: extract them first")
    changes = []
    for i, frame in enumerate(frames):
        digest = frame.read_bytes()
        for _ in range(2000):  # a small CPU burst
            digest = hashlib.sha256(digest).digest()
        if digest[0] % 2 == 0:
            changes.append(i)
        ctx.progress((i + 1) / len(frames), f"analysed {i + 1} of {len(frames)}")
    (_workdir(video_id) / "changes.json").write_text(json.dumps(changes))
    return {"video_id": video_id, "slide_changes": len(changes)}


@task("generate_slides", queue="generation", timeout=600)
def generate_slides(ctx: Context, video_id: str) -> dict[str, Any]:
    """Write the deck the user waits for: short, and never behind a long extraction."""
    changes = json.loads((_workdir(video_id) / "changes.json").read_text())
    time.sleep(0.2)  # rendering
    deck = _workdir(video_id) / "slides.json"
    deck.write_text(json.dumps({"video_id": video_id, "slides": changes}))
    ctx.progress(1.0, "slides ready")
    return {"video_id": video_id, "slides": len(changes), "path": str(deck)}


@task("nightly_maintenance", queue="maintenance", timeout=3600)
def nightly_maintenance(ctx: Context) -> dict[str, Any]:
    """Delete the frames of every video whose slides are done; keep the slides."""
    root = _workdir(".")
    removed = []
    for video in sorted(p for p in root.iterdir() if p.is_dir()):
        if (video / "slides.json").exists() and (video / "frames").exists():
            shutil.rmtree(video / "frames")
            removed.append(video.name)
    ctx.log(f"removed the frames of {len(removed)} videos")
    return {"frames_removed_for": removed}
