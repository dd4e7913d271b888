"""The RAG platform's work, simulated in plain Python (no network, no model): chunk a text and
"embed" each chunk deterministically, then answer a question by the nearest chunk.

An ingested document's chunks and vectors are kept under the server's data directory
(SCHOLARSOURCE_DATA_DIR, else ./scholarsource-data), named by the ingest job's id, which is
unguessable: answer_question finds them there. The app checks, with the user's key, that
the document is the user's tenant's before it asks a question about it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from pathlib import Path
from typing import Any

from scholarsource import Context, task

DIMENSIONS = 32
WORD = re.compile(r"\w+")


def _index(document_id: str) -> Path:
    folder = Path(os.environ.get("SCHOLARSOURCE_DATA_DIR", "scholarsource-data"), "rag")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{document_id}.json"


def chunk(text: str, words: int) -> list[str]:
    """The text in pieces of at most `words` words."""
    found = WORD.findall(text)
    return [" ".join(found[i:i + words]) for i in range(0, len(found), words)]


def embed(text: str) -> list[float]:
    """A unit vector from hashed words: the same text always gives the same vector, and
    texts that share words point the same way (a stand-in for an embedding model)."""
    vector = [0.0] * DIMENSIONS
    for word in WORD.findall(text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        vector[digest[0] % DIMENSIONS] += 1.0 if digest[1] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


@task("ingest_document", queue="documents", timeout=600)
def ingest_document(ctx: Context, title: str, text: str, chunk_words: int = 50,
                    seconds_per_chunk: float = 0.01) -> dict[str, Any]:
    """Chunk and embed a document, reporting progress per chunk; keep the index for
    answer_question."""
    chunks = chunk(text, chunk_words)
    if not chunks:
        raise ValueError("the document has no words")
    vectors = []
    for i, piece in enumerate(chunks):
        if ctx.cancel_requested:
            return {"title": title, "chunks": i, "cancelled": True}
        time.sleep(seconds_per_chunk)  # the embedding model's time
        vectors.append(embed(piece))
        ctx.progress((i + 1) / len(chunks), f"embedded chunk {i + 1} of {len(chunks)}")
    _index(ctx.job_id).write_text(json.dumps({"title": title, "chunks": chunks,
                                              "vectors": vectors}))
    return {"title": title, "chunks": len(chunks), "dimensions": DIMENSIONS}


@task("answer_question", queue="documents", timeout=120)
def answer_question(ctx: Context, document_id: str, question: str) -> dict[str, Any]:
    """The chunk of the document nearest to the question, with its cosine score."""
    index = json.loads(_index(document_id).read_text())
    asked = embed(question)
    scores = [sum(a * b for a, b in zip(asked, vector, strict=True))
              for vector in index["vectors"]]
    best = max(range(len(scores)), key=scores.__getitem__)
    return {"title": index["title"], "answer": index["chunks"][best],
            "chunk": best, "score": round(scores[best], 4)}
