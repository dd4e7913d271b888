"""The `database` setting: which store serves this server, with its password masked.

Empty means the embedded SQLite store in `data_dir`; a `postgresql://` (or `postgres://`) URL
means PostgreSQL. The URL may carry a password, so the value masks it wherever it is shown
(repr, str, format, messages): only `reveal()` hands the real URL to a driver.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from scholarsource.errors import ConfigError

POSTGRES_SCHEMES = ("postgresql", "postgres")
_MASK = "********"


def mask(url: str) -> str:
    """`url` with its password, if any, replaced by ********."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # a malformed URL: show nothing of what follows the scheme
        scheme, sep, _ = url.partition("://")
        return f"{scheme}{sep}{_MASK}" if sep else _MASK
    if not password:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{_MASK}@{host}"))


class DatabaseUrl(str):
    """The `database` setting: a str (so it layers and compares like any text setting)
    whose repr, str and format mask the password."""

    __slots__ = ()

    def __new__(cls, value: str = "", setting: str = "database") -> DatabaseUrl:
        url = super().__new__(cls, value)
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if value and scheme not in POSTGRES_SCHEMES:
            raise ConfigError(f"{setting} must be empty (SQLite in data_dir) or a "
                              f"postgresql:// URL, not {mask(value)!r}")
        return url

    @property
    def is_postgres(self) -> bool:
        """Whether it names a PostgreSQL server (else: SQLite in data_dir)."""
        return bool(self)

    def reveal(self) -> str:
        """The URL with its password, for the driver only: never log it."""
        return str.__str__(self)

    def __str__(self) -> str:
        return mask(self.reveal())

    def __repr__(self) -> str:
        return repr(str(self))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)
