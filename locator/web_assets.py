"""The web assets that the service's page and the HTML map of `geoloc locate --map` share: the project's own
scripts (`service/static/`) and the npm packages that `make install` fetches from the registry (Leaflet,
topojson-client, world-atlas; `service/web/`), never from a CDN at page load."""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "service" / "static"
VENDOR = Path(__file__).parent / "service" / "web" / "node_modules"


def read_asset(relative: str, root: Path = VENDOR) -> str | None:
    """The text of an installed asset, or None when it is not installed (npm did not run)."""
    path = root / relative
    return path.read_text(encoding="utf-8") if path.is_file() else None
