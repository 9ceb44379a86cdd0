"""Shared fixtures. Data from shared/ is found through GEOLOC_SHARED, else the `shared/` folder beside the
checkout; tests needing it skip when neither exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    value = os.environ.get("GEOLOC_SHARED")
    path = Path(value) if value else ROOT.parent / "shared"
    return path if path.is_dir() else None


@pytest.fixture
def shared() -> Path:
    """The shared data folder; skips the test when GEOLOC_SHARED is unset or missing."""
    path = shared_dir()
    if path is None:
        pytest.skip("no shared/ data: set GEOLOC_SHARED, or place shared/ beside the checkout")
    return path
