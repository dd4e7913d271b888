"""API keys and dashboard sessions in the store, on every backend: only digests are kept, a
revoked key stays listed but ends its sessions, and a session ends when it expires."""

from __future__ import annotations

from pathlib import Path

from scholarsource import keys
from scholarsource.store.base import Store
from tests.store.backends import Backend
from tests.store.test_sqlite import run

NOW = 1_700_000_000.0


def test_a_key_is_stored_as_its_digest_and_found_by_its_id(tmp_path: Path,
                                                           backend: Backend) -> None:
    text, key = keys.new_key("acme", "submit", name="web", rate="60/m")

    async def body(store: Store) -> None:
        await store.create_key(key)
        found = await store.find_key(key.id)
        assert found == key
        assert found is not None and keys.matches(found, text)
        assert await store.find_key("0" * 12) is None
        # The key's secret is nowhere in the row.
        rows = await backend.query(store, "SELECT * FROM api_keys")
        assert len(rows) == 1 and not any(text in str(value) for value in rows[0])
        # (maxsplit: the url-safe secret may itself hold "_")
        assert text.split("_", 2)[2] not in str(rows[0])

    run(tmp_path / "q.db", body, backend)


def test_keys_are_listed_oldest_first_and_revoking_is_idempotent(tmp_path: Path,
                                                                 backend: Backend) -> None:
    _, first = keys.new_key("acme", "admin")
    _, second = keys.new_key("globex", "read")

    async def body(store: Store) -> None:
        await store.create_key(first)
        await store.create_key(second)
        assert [k.id for k in await store.list_keys()] == [first.id, second.id]
        revoked = await store.revoke_key(first.id, NOW)
        assert revoked is not None and revoked.revoked_at == NOW and not revoked.live
        again = await store.revoke_key(first.id, NOW + 5)
        assert again is not None and again.revoked_at == NOW  # the first revocation stands
        assert await store.revoke_key("0" * 12, NOW) is None
        listed = {k.id: k for k in await store.list_keys()}
        assert not listed[first.id].live and listed[second.id].live

    run(tmp_path / "q.db", body, backend)


def test_a_session_lives_until_it_expires_is_ended_or_its_key_is_revoked(
        tmp_path: Path, backend: Backend) -> None:
    _, key = keys.new_key("acme", "read")
    _, other = keys.new_key("acme", "read")

    async def body(store: Store) -> None:
        await store.create_key(key)
        await store.create_key(other)
        await store.create_session("a" * 64, key.id, NOW + 60, NOW)
        await store.create_session("b" * 64, key.id, NOW + 60, NOW)
        await store.create_session("c" * 64, other.id, NOW + 60, NOW)
        found = await store.find_session("a" * 64, NOW)
        assert found is not None and found.id == key.id
        assert await store.find_session("a" * 64, NOW + 60) is None  # expired
        assert await store.find_session("d" * 64, NOW) is None
        await store.end_session("b" * 64)
        assert await store.find_session("b" * 64, NOW) is None
        await store.revoke_key(key.id, NOW)
        assert await store.find_session("a" * 64, NOW) is None
        assert (await store.find_session("c" * 64, NOW)) is not None  # another key's
        # Starting a session sweeps the expired ones away.
        await store.create_session("e" * 64, other.id, NOW + 120, NOW + 100)
        left = await backend.query(store, "SELECT digest FROM sessions ORDER BY digest")
        assert [row[0] for row in left] == ["e" * 64]

    run(tmp_path / "q.db", body, backend)
