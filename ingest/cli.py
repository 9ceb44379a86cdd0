"""`geoloc-ingest`: embeds photos and writes them to the vector store."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("geoloc-ingest: the Ray ingest pipeline is not implemented yet (tracked in issue #4).", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
