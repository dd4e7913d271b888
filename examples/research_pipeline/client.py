"""Drive the research pipeline as its web app does: start a collection on a topic, show the
user its progress live (Server-Sent Events, no polling), then print the synthesis.

    python client.py --topic "sleep and memory" --papers 20 [--url http://127.0.0.1:8000]

1. Submit `collect` and follow its own events: the search, then the downloads it asked for.
2. Once it has ended, its tree is whole (its fetches and the synthesis that waits for them):
   follow the workflow's events, one stream for every job of the tree, and print a line as
   each paper comes in.
3. Print the synthesis (its result and its synthesis.md artifact).

Ends with a JSON summary line; exits 1 if the synthesis did not succeed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import httpx

from scholarsource import Client
from scholarsource.client.sse import SseDecoder


def workflow_events(http: httpx.Client, workflow_id: str) -> Iterator[dict[str, Any]]:
    """Every event of the workflow's jobs, each naming its job, until all of them have
    ended (the server then closes the stream). A browser would use EventSource."""
    decoder = SseDecoder()
    with http.stream("GET", f"/api/workflows/{workflow_id}/events") as response:
        response.raise_for_status()
        for line in response.iter_lines():
            message = decoder.feed(line)
            if message is not None:
                yield {"kind": message.event, **json.loads(message.data)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SCHOLARSOURCE_URL",
                                                        "http://127.0.0.1:8000"))
    parser.add_argument("--topic", default="sleep and memory")
    parser.add_argument("--papers", type=int, default=20)
    args = parser.parse_args()
    seen = {"collect_progress": 0, "fetched": 0}
    with Client(args.url) as client, httpx.Client(base_url=args.url, timeout=60) as http:
        root = client.submit("collect", {"topic": args.topic, "papers": args.papers})
        print(f"collecting {args.topic!r}: job {root.id}", flush=True)
        for event in client.events(root.id):
            if event.kind == "progress":
                seen["collect_progress"] += 1
                print(f"collect: {event.data['message']}", flush=True)
        root = client.get(root.id)
        if root.status != "succeeded":
            print(f"collect ended {root.status}: {root.error}", flush=True)
            return 1
        synthesis_id = root.result["continued_by"]
        for change in workflow_events(http, root.id):
            if change["job_id"] == synthesis_id:
                if change["kind"] == "state":
                    print(f"synthesis: {change['status']}", flush=True)
                continue
            if (change["job_id"] != root.id and change["kind"] == "state"
                    and change["status"] == "succeeded"):
                seen["fetched"] += 1
                print(f"fetched {seen['fetched']} of {args.papers} papers", flush=True)
        synthesis = client.wait(synthesis_id, timeout=60)
        if synthesis.status != "succeeded":
            print(f"synthesis ended {synthesis.status}: {synthesis.error}", flush=True)
            return 1
        download = http.get(f"/api/jobs/{synthesis_id}/artifacts/synthesis.md")
        download.raise_for_status()
        text = download.text
    print(text, flush=True)
    print(json.dumps({"collect": root.id, "synthesis": synthesis_id, "seen": seen,
                      "result": synthesis.result, "synthesis_md": text}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
