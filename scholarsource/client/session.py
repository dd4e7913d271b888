"""What the sync and async clients share: the server's URL, the headers every request
carries, and the retry policy."""

from __future__ import annotations

from scholarsource import __version__
from scholarsource.client.retry import RetryPolicy


class Session:
    """The settings of one client; the API key stays out of every repr."""

    def __init__(self, url: str, api_key: str | None, retries: int,
                 retry_policy: RetryPolicy | None) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
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
