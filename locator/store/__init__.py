"""Vector stores behind one setting: `GEOLOC_STORE` or an explicit location.

    edge:/path/to/store              Qdrant Edge, embedded (the default)
    http://localhost:6333[/name]     a Qdrant server (gRPC on 6334 is used when reachable); collection `name`
    memory[:name]                    qdrant-client's in-process double of the server API (tests only)
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from locator.store.base import CollectionSpec, Hits, StoreError, VectorStore, cell_field, point_id, token_field
from locator.store.point import PhotoPoint

DEFAULT_COLLECTION = "geoloc"


def store_location(location: str | None) -> str:
    """The explicit location, else $GEOLOC_STORE; one of them is required."""
    location = location or os.environ.get("GEOLOC_STORE")
    if not location:
        raise StoreError("no store given: pass --store (e.g. edge:runs/demo/store) or set GEOLOC_STORE")
    return location


def open_store(location: str | None, spec: CollectionSpec, create: bool = True, wait_s: float = 0.0) -> VectorStore:
    """Open the collection at `location` for `spec`, creating it if `create`; another bundle's is an error.
    An Edge store held by another process is retried for `wait_s` seconds."""
    location = store_location(location)
    if location.startswith("edge:"):
        from locator.store.edge import EdgeStore
        return EdgeStore(location[len("edge:"):], spec, create, wait_s)
    if location == "memory" or location.startswith("memory:"):
        from qdrant_client import QdrantClient

        from locator.store.server import ServerStore
        name = location.partition(":")[2] or DEFAULT_COLLECTION
        return ServerStore(QdrantClient(":memory:"), name, spec, location, create)
    if location.startswith(("http://", "https://")):
        from qdrant_client import QdrantClient

        from locator.store.server import ServerStore
        url = urlparse(location)
        name = url.path.strip("/") or DEFAULT_COLLECTION
        client = QdrantClient(url=f"{url.scheme}://{url.netloc}", prefer_grpc=True)
        return ServerStore(client, name, spec, location, create)
    raise StoreError(f"unknown store location {location!r}: use edge:/path, http://host:6333[/collection] or memory")


__all__ = ["CollectionSpec", "Hits", "PhotoPoint", "StoreError", "VectorStore", "cell_field", "open_store",
           "point_id", "store_location", "token_field"]
