"""Settings of `geoloc serve`: CLI options, and the limits that protect the service."""

from __future__ import annotations

from dataclasses import dataclass

from locator.settings import option


@dataclass(frozen=True)
class ServiceSettings:
    host: str = option("127.0.0.1", "address to listen on (0.0.0.0 opens the service to the network)")
    port: int = option(8000, "port to listen on", minimum=0, maximum=65535)
    token: str | None = option(None, "bearer token that writes (POST and DELETE /v1/photos) must carry (default: "
                                     "$GEOLOC_TOKEN; without either, writes are open)")
    cors: str | None = option(None, "allow cross-origin requests from this origin (default: none)")
    uploads: str | None = option(None, "folder for photos added through the service (default: beside an Edge "
                                       "store, else ./geoloc-uploads)")
    max_upload_mb: float = option(20.0, "largest request body, MB (413 above)", minimum=0.01)
    max_photos: int = option(16, "most photos in one locate request (413 above)", minimum=1)
    timeout_s: float = option(60.0, "longest a request may take (504 after)", minimum=0.1)
    max_batch: int = option(32, "most photos of concurrent requests located together", minimum=1)
    batch_wait_ms: float = option(5.0, "under concurrent load, how long a batch's first photo waits for others to "
                                        "join it (a lone request starts at once)", minimum=0)
    warm_up: bool = option(True, "before listening, run the model over every photo shape and batch size it will meet, "
                                 "and locate one photo (a GPU's cuDNN plans each shape and size: seconds each, once)")
