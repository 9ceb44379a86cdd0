"""Headless Chromium for the browser tests (Debian's `chromium`, driven by Playwright); a test skips with the
reason where it cannot start."""

from __future__ import annotations

import shutil

import pytest

_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--no-first-run", "--disable-sync"]


def launch(playwright):
    """A browser from a started `sync_playwright()`, or a skip of the calling test."""
    try:
        return playwright.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=_ARGS)
    except Exception as exc:  # no browser on this machine: the test cannot run here
        pytest.skip(f"Chromium cannot start: {str(exc).splitlines()[0]}")
