"""The demo's run folder: checked before any work, built aside, and swapped in only once complete.

A run folder carries a marker file. A new run is built in `<out>.partial`; `publish` then moves the previous
run to `<out>.previous`, the new one into place, and only then deletes the previous one. A folder without the
marker is never replaced: it may be someone's data.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from locator.errors import SettingsError

MARKER = ".geoloc-run.json"


def stage_of(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


def check_target(out: Path) -> None:
    """`out` must be absent, empty, or an earlier run (with the marker); anything else is refused."""
    if not out.exists():
        return
    if not out.is_dir():
        raise SettingsError(f"{out}: exists and is not a folder; choose another GEOLOC_OUT")
    if any(out.iterdir()) and not (out / MARKER).is_file():
        raise SettingsError(f"{out}: holds files that are not a geoloc run (no {MARKER}); it is never replaced. "
                            "Choose another GEOLOC_OUT, or empty it yourself")


def start(out: Path) -> Path:
    """A fresh, empty staging folder beside `out` (a leftover from an interrupted run is cleared)."""
    check_target(out)
    stage = stage_of(out)
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    return stage


def publish(stage: Path, out: Path, description: str) -> None:
    """Swap the complete run in `stage` into `out`; the previous run is deleted only after the swap."""
    check_target(out)
    if not stage.is_dir():
        raise SettingsError(f"{stage}: no staged run to publish")
    (stage / MARKER).write_text(json.dumps({"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                            "description": description}, indent=2) + "\n")
    previous = out.with_name(out.name + ".previous")
    if previous.exists():
        shutil.rmtree(previous)
    if out.exists():
        out.rename(previous)
    stage.rename(out)
    if previous.exists():
        shutil.rmtree(previous)
