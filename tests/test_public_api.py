"""The task-author surface is exactly what __all__ says, and it is pinned here."""

import scholarsource


def test_public_surface_is_pinned() -> None:
    assert sorted(scholarsource.__all__) == ["Context", "Retry", "__version__", "task"]
    for name in scholarsource.__all__:
        assert hasattr(scholarsource, name)
