"""The research pipeline's work, simulated: find the papers on a topic, download each PDF,
and write a synthesis of them all.

`collect` fans out one `fetch_pdf` job per paper from inside its own job (`ctx.submit`) and
ends with `ctx.continue_with("synthesise", after=...)`: no slot waits while the PDFs come in,
and the synthesis runs once, after the last one, with every result and file. Each download
is recorded in the server's data directory (SCHOLARSOURCE_DATA_DIR, else
./scholarsource-data), one line per attempt, so that anyone can see none ran twice.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from scholarsource import Context, task


def _data_dir() -> Path:
    path = Path(os.environ.get("SCHOLARSOURCE_DATA_DIR", "scholarsource-data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def paper_urls(topic: str, papers: int) -> list[str]:
    """The search's answer, simulated: `papers` PDF URLs that depend on the topic alone."""
    seed = hashlib.sha256(topic.encode()).hexdigest()[:8]
    return [f"https://papers.example.org/{seed}/{i:04d}.pdf" for i in range(papers)]


@task("collect", queue="research", timeout=300)
def collect(ctx: Context, topic: str, papers: int = 20) -> Any:
    """Find the papers, submit one download each, and hand the synthesis its children."""
    time.sleep(0.1)  # the search itself
    urls = paper_urls(topic, papers)
    ctx.progress(0.5, f"found {len(urls)} papers on {topic!r}")
    fetches = [ctx.submit("fetch_pdf", {"url": url}) for url in urls]
    ctx.progress(1.0, f"asked for {len(fetches)} downloads")
    return ctx.continue_with("synthesise", {"topic": topic}, after=fetches)


@task("fetch_pdf", queue="downloads", timeout=120, max_attempts=3)
def fetch_pdf(ctx: Context, url: str) -> dict[str, Any]:
    """Download one PDF (a short wait here) and keep it as the job's artifact."""
    with open(_data_dir() / "fetches.log", "a") as log:
        log.write(f"{time.time():.6f} {ctx.job_id} {ctx.attempt} {url}\n")
    time.sleep(0.5)  # the download
    body = f"%PDF-1.4\n% {url}\n".encode() + hashlib.sha256(url.encode()).digest() * 64
    ctx.artifact("paper.pdf").write_bytes(body)
    pages = 4 + body[-1] % 20
    return {"url": url, "title": f"Paper {url.rsplit('/', 1)[-1][:-4]}", "pages": pages}


@task("synthesise", queue="research", timeout=600)
def synthesise(ctx: Context, topic: str) -> dict[str, Any]:
    """Read every paper (the results and the PDFs themselves) and write the synthesis."""
    papers = sorted(ctx.parent_results.values(), key=lambda paper: paper["url"])
    read = sum(len(files["paper.pdf"].read_bytes())
               for files in ctx.parent_artifacts.values())
    pages = sum(paper["pages"] for paper in papers)
    lines = [f"# {topic}: a synthesis of {len(papers)} papers ({pages} pages)", ""]
    lines += [f"- {paper['title']} ({paper['pages']} pages): {paper['url']}" for paper in papers]
    ctx.artifact("synthesis.md").write_text("\n".join(lines) + "\n")
    ctx.progress(1.0, "synthesis written")
    return {"topic": topic, "papers": len(papers), "pages": pages, "pdf_bytes_read": read,
            "sources": [paper["url"] for paper in papers]}
