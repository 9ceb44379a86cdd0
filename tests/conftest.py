"""Shared fixtures. Data from shared/ is found through GEOLOC_SHARED; tests needing it skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_dir() -> Path | None:
    value = os.environ.get("GEOLOC_SHARED")
    if not value:
        return None
    path = Path(value)
    return path if path.is_dir() else None


@pytest.fixture
def shared() -> Path:
    """The shared data folder; skips the test when GEOLOC_SHARED is unset or missing."""
    path = shared_dir()
    if path is None:
        pytest.skip("GEOLOC_SHARED is not set to an existing shared/ folder")
    return path
