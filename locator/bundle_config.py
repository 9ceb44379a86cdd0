"""A bundle's config without its models: what it holds, its fingerprints and the collection it makes.

Reading it needs neither torch nor timm, so that processes which only orchestrate (the ingest driver, CLIs
checking their inputs) stay small. `Bundle.load` (locator.bundle) validates through here, then loads the models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from locator.cells import Partition, PartitionError
from locator.errors import BundleError
from locator.store.base import CollectionSpec

FORMAT_VERSION = 1
CONFIG = "config.json"
BACKBONE = "backbone.safetensors"
RRM = "rrm.safetensors"
FUSION = "fusion.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_of(config: dict) -> str:
    """SHA-256 of the canonical JSON of the config without its own fingerprint."""
    body = {k: v for k, v in config.items() if k != "fingerprint"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def read_config(directory: Path) -> dict:
    """The validated config of the bundle in `directory`, every file checked against its recorded SHA-256."""
    config = _read_config(directory)
    for name, digest in config["files"].items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{directory}: missing bundle file {name}")
        if sha256_file(path) != digest:
            raise BundleError(f"{directory}: {name} does not match the bundle's config (changed after saving)")
    return config


@dataclass(frozen=True)
class BundleConfig:
    directory: Path
    config: dict

    @classmethod
    def load(cls, directory: str | Path) -> BundleConfig:
        directory = Path(directory)
        return cls(directory, read_config(directory))

    @property
    def fingerprint(self) -> str:
        return self.config["fingerprint"]

    def fusion_unfitted_sources(self, sources) -> list[str]:
        """Those of `sources` that the fused model was fitted without (a refit with `--store` would learn to trust
        photos like theirs); none for a bundle without a fused model or one that did not record its sources."""
        fitted = ((self.config.get("fusion") or {}).get("info") or {}).get("fitted_sources")
        return [] if fitted is None else sorted(set(sources) - set(fitted))

    @property
    def retrieval_space(self) -> str:
        """What the collection embeds: "rrm" (the RRM's output) or "raw" (ℓ2-normalised backbone features)."""
        return self.config["rrm"].get("space", "rrm") if self.config["rrm"] else "raw"

    @property
    def embedding_dim(self) -> int:
        """Size of the vectors stored for search."""
        if self.retrieval_space == "rrm":
            return int(self.config["rrm"]["dim"])
        return int(self.config["backbone"]["feature_dim"])

    @property
    def preprocessing(self) -> dict:
        return self.config["backbone"]["preprocessing"]

    @property
    def default_head(self) -> str | None:
        return self.config.get("default_head")

    def partitions(self) -> list[Partition]:
        try:
            return [Partition.read_csv(self.directory / name) for name in self.config["partitions"]]
        except PartitionError as exc:
            raise BundleError(f"{self.directory}: {exc}") from exc

    def collection_fingerprint(self) -> str:
        """Identifies what a stored collection depends on: backbone weights, preprocessing, RRM and partitions.

        Training another head changes the bundle's fingerprint but not this one, so collections stay valid.
        """
        files = self.config["files"]
        rrm = files.get(RRM) if self.retrieval_space == "rrm" else None
        parts = {"backbone": files[BACKBONE], "preprocessing": self.preprocessing,
                 "rrm": rrm, "partitions": [files[name] for name in self.config["partitions"]]}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def collection_spec(self) -> CollectionSpec:
        return CollectionSpec(self.embedding_dim, len(self.config["partitions"]), self.collection_fingerprint())


def _read_config(directory: Path) -> dict:
    path = directory / CONFIG
    if not path.is_file():
        raise BundleError(f"{directory}: not a model bundle (no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    required = {"format_version", "backbone", "partitions", "heads", "rrm", "files", "fingerprint"}
    if not isinstance(config, dict) or required - set(config):
        raise BundleError(f"{path}: missing keys {sorted(required - set(config or {}))}")
    if config["format_version"] != FORMAT_VERSION:
        raise BundleError(f"{path}: bundle format {config['format_version']} is not supported (need {FORMAT_VERSION})")
    if fingerprint_of(config) != config["fingerprint"]:
        raise BundleError(f"{path}: fingerprint does not match the config (edited by hand?)")
    return config
