"""API keys and dashboard session tokens: how they are made, spelled, hashed and checked.

A key reads `ss_<id>_<secret>`: the id (12 hex digits) is not secret and finds the key's row;
the secret is 256 random bits. The store keeps only a SHA-256 digest of the whole key. A slow
password hash buys nothing for a 256-bit secret (no dictionary to try), and a fast one keeps a
check in microseconds. The digest is compared with `hmac.compare_digest`, and a key whose id
finds no row is compared against a dummy digest, so a wrong key costs what a right one does.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

ROLES = ("read", "submit", "admin")
Role = Literal["read", "submit", "admin"]
PREFIX = "ss"
_SHAPE = re.compile(r"ss_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", re.ASCII)
# Compared against when the id finds no key: the same work as for a key that exists.
_DUMMY_DIGEST = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """A key as the store keeps it: never the key itself, only its digest."""

    id: str
    tenant: str
    role: Role
    name: str = ""
    rate: str | None = None  # the key's own submit rate ("60/m"), None: only the tenant's
    created_at: float = 0.0
    revoked_at: float | None = None
    digest: str = field(default="", repr=False)

    @property
    def live(self) -> bool:
        """Not revoked."""
        return self.revoked_at is None


def digest(text: str) -> str:
    """The SHA-256 digest (hex) that the store keeps of a key or a session token."""
    return hashlib.sha256(text.encode()).hexdigest()


def new_key(tenant: str, role: Role, name: str = "", rate: str | None = None
            ) -> tuple[str, ApiKey]:
    """A fresh key: its text (shown once, never stored) and its record."""
    key_id = secrets.token_hex(6)
    text = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return text, ApiKey(key_id, tenant, role, name, rate, time.time(), None, digest(text))


def key_id_of(text: str) -> str | None:
    """The id part of a well-formed key; None for anything else."""
    match = _SHAPE.fullmatch(text)
    return None if match is None else match[1]


def matches(key: ApiKey | None, text: str) -> bool:
    """Whether `text` is `key` and `key` is live, in constant time (also when it is None)."""
    expected = key.digest if key is not None else _DUMMY_DIGEST
    same = hmac.compare_digest(digest(text), expected)
    return same and key is not None and key.live


def new_session_token() -> str:
    """A dashboard session's cookie value: 256 random bits (the store keeps its digest)."""
    return secrets.token_urlsafe(32)
