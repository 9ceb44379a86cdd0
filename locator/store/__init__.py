"""Vector stores, named by a location (the CLIs take it from --store or $GEOLOC_STORE):

    edge:/path/to/store              Qdrant Edge, embedded (the default)
    http://localhost:6333[/name]     a Qdrant server (gRPC on 6334 is used when reachable); collection `name`
    memory[:name]                    qdrant-client's in-process double of the server API (tests only)
"""

from __future__ import annotations

from locator.registry import Registry
from locator.store.base import (SOURCE_FIELD, CollectionSpec, Hits, Removal, StoreError, VectorStore, cell_field,
                                 point_id, token_field)
from locator.store.point import PhotoPoint

# One opener per location scheme: (location, spec, create, wait_s) -> VectorStore, imported on first use.
STORES = Registry("store", lazy={"edge": "locator.store.edge:open_edge", "memory": "locator.store.server:open_memory",
                                 "http": "locator.store.server:open_server", "https": "locator.store.server:open_server"})


def store_location(location: str | None) -> str:
    """`location`, which is required."""
    if not location:
        raise StoreError("no store given: name one such as edge:runs/demo/store or http://localhost:6333/geoloc "
                         "(the CLIs: --store or GEOLOC_STORE)")
    return location


def open_store(location: str | None, spec: CollectionSpec, create: bool = True, wait_s: float = 0.0) -> VectorStore:
    """Open the collection at `location` for `spec`, creating it if `create`; another bundle's is an error.
    An Edge store held by another process is retried for `wait_s` seconds."""
    location = store_location(location)
    scheme = location.partition(":")[0]
    if scheme not in STORES:
        raise StoreError(f"unknown store location {location!r}: use edge:/path, http://host:6333[/collection] or "
                         "memory")
    return STORES.create(scheme, location, spec, create, wait_s)


__all__ = ["SOURCE_FIELD", "STORES", "CollectionSpec", "Hits", "PhotoPoint", "Removal", "StoreError", "VectorStore",
           "cell_field", "open_store", "point_id", "store_location", "token_field"]
