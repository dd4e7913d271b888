"""What the sync and async clients share: the server's URL, the headers every request
carries, and the retry policy."""

from __future__ import annotations

import re

from scholarsource import __version__
from scholarsource.client.retry import RetryPolicy

# What a header value may carry: checked here because httpx's own error for a bad value
# quotes the whole header, key included, into a message that ends up in logs.
_KEY = re.compile(r"[\x21-\x7e]+")


class Session:
    """The settings of one client; the API key stays out of every repr."""

    def __init__(self, url: str, api_key: str | None, retries: int,
                 retry_policy: RetryPolicy | None) -> None:
        if api_key and not _KEY.fullmatch(api_key):
            raise ValueError("api_key must be printable ASCII with no spaces (not shown here)")
        self.url = url.rstrip("/")
        self._api_key = api_key or None
        self.retry_policy = retry_policy or RetryPolicy(retries=retries)

    def __repr__(self) -> str:
        key = ", api_key='********'" if self._api_key else ""
        return f"{type(self).__name__}({self.url!r}{key})"

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"scholarsource-client/{__version__}",
                   "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers
