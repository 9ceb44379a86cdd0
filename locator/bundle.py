"""Model bundle: one directory with everything the locator needs, fingerprinted.

    config.json            architectures, dims, preprocessing, partitions, heads, training summary, versions,
                           the SHA-256 of every file below and a fingerprint hash of all of it
    backbone.safetensors   backbone weights (no ImageNet classifier)
    heads/<kind>.safetensors
    rrm.safetensors        Residual Retrieval Module (optional until trained)
    fusion.json            the fused method's scorer and calibration (optional until fitted; locator.fusion)
    partitions/level<k>.csv  partitions coarse → fine, GeoEstimation format
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file

import locator
from locator.backbone import Backbone, Preprocessing, create_backbone
from locator.cells import Partition
from locator.bundle_config import (BACKBONE, CONFIG, FORMAT_VERSION, FUSION, RRM, BundleConfig, sha256_file,
                                    fingerprint_of)
from locator.errors import BundleError
from locator.fusion import FusionModel
from locator.heads import HEADS, Head, create_head
from locator.rrm import ResidualRetrievalModule
from locator.store.base import CollectionSpec



@dataclass
class Bundle:
    """A loaded (or being built) bundle. `heads` maps kind → head; `rrm` may be None until trained."""

    directory: Path
    config: dict
    backbone: Backbone
    partitions: list[Partition]
    heads: dict[str, Head] = field(default_factory=dict)
    rrm: ResidualRetrievalModule | None = None
    fusion: FusionModel | None = None

    @property
    def info(self) -> BundleConfig:
        return BundleConfig(self.directory, self.config)

    @property
    def fingerprint(self) -> str:
        return self.config["fingerprint"]

    @property
    def retrieval_space(self) -> str:
        return self.info.retrieval_space

    @property
    def retrieval_rrm(self) -> ResidualRetrievalModule | None:
        """The RRM that embeds photos for search, or None when the collection holds raw features."""
        return self.rrm if self.retrieval_space == "rrm" else None

    @property
    def embedding_dim(self) -> int:
        """Size of the vectors stored for search."""
        rrm = self.retrieval_rrm
        return rrm.dim if rrm is not None else self.backbone.feature_dim

    def collection_fingerprint(self) -> str:
        return self.info.collection_fingerprint()

    def collection_spec(self) -> CollectionSpec:
        return CollectionSpec(self.embedding_dim, len(self.partitions), self.collection_fingerprint())

    @property
    def default_head(self) -> Head:
        kind = self.config.get("default_head")
        if kind not in self.heads:
            raise BundleError(f"{self.directory}: no trained head (train one with `geoloc-train head`)")
        return self.heads[kind]

    @classmethod
    def create(cls, directory: str | Path, backbone: Backbone, partitions: list[Partition],
               weights_source: str, training: dict | None = None) -> Bundle:
        """Start a bundle from a backbone and partitions (coarse → fine); heads and RRM are added later."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": FORMAT_VERSION,
            "backbone": {"arch": backbone.arch, "feature_dim": backbone.feature_dim,
                         "preprocessing": backbone.preprocessing.to_json(), "weights_source": weights_source},
            "partitions": [],
            "heads": {},
            "default_head": None,
            "rrm": None,
            "training": training or {},
            "files": {},
        }
        bundle = cls(directory, config, backbone, list(partitions))
        bundle._write_partitions()
        bundle.set_backbone(backbone, weights_source)
        return bundle

    def _write_partitions(self) -> None:
        names = []
        for level, partition in enumerate(self.partitions):
            name = f"partitions/level{level}.csv"
            partition.write_csv(self.directory / name)
            names.append(name)
        self.config["partitions"] = names
        self.save()

    def set_backbone(self, backbone: Backbone, weights_source: str) -> None:
        self.backbone = backbone
        save_file({k: v.contiguous() for k, v in backbone.feature_state_dict().items()}, str(self.directory / BACKBONE))
        self.config["backbone"].update(arch=backbone.arch, feature_dim=backbone.feature_dim,
                                       preprocessing=backbone.preprocessing.to_json(), weights_source=weights_source)
        self.save()

    def set_head(self, head: Head, make_default: bool = False, training: dict | None = None) -> None:
        name = f"heads/{head.kind}.safetensors"
        (self.directory / "heads").mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(self.directory / name))
        self.heads[head.kind] = head
        self.config["heads"][head.kind] = {"file": name, "training": training or {}}
        if make_default or self.config["default_head"] is None:
            self.config["default_head"] = head.kind
        self.save()

    def set_rrm(self, rrm: ResidualRetrievalModule, training: dict | None = None, space: str = "rrm",
                decision: str = "") -> None:
        """Store the RRM, and which space the collection embeds (`space`, with the reason)."""
        if space not in ("rrm", "raw"):
            raise BundleError(f"retrieval space must be rrm or raw, got {space!r}")
        save_file({k: v.contiguous() for k, v in rrm.state_dict().items()}, str(self.directory / RRM))
        self.rrm = rrm
        self.config["rrm"] = {**rrm.config(), "file": RRM, "training": training or {}, "space": space,
                              "decision": decision}
        self.save()

    def set_fusion(self, model: FusionModel) -> None:
        """Store the fused method's model; the collection fingerprint does not change."""
        (self.directory / FUSION).write_text(model.dumps() + "\n")
        self.fusion = model
        self.config["fusion"] = {"file": FUSION, "info": model.info}
        self.save()

    def update_training(self, **summary: object) -> None:
        self.config["training"].update(summary)
        self.save()

    def save(self) -> None:
        files = [BACKBONE, *self.config["partitions"], *(h["file"] for h in self.config["heads"].values())]
        if self.config["rrm"]:
            files.append(RRM)
        if self.config.get("fusion"):
            files.append(FUSION)
        self.config["files"] = {name: sha256_file(self.directory / name) for name in files if (self.directory / name).exists()}
        self.config["versions"] = {"geoloc": locator.__version__, "torch": torch.__version__,
                                   "timm": timm.__version__, "python": platform.python_version()}
        self.config["fingerprint"] = fingerprint_of(self.config)
        (self.directory / CONFIG).write_text(json.dumps(self.config, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> Bundle:
        """Restore a bundle; a missing file, a changed file or a malformed config is a BundleError."""
        info = BundleConfig.load(directory)
        directory, config, partitions = info.directory, info.config, info.partitions()
        spec = config["backbone"]
        backbone = create_backbone(spec["arch"], weights=None)
        backbone.model.load_state_dict(load_file(str(directory / BACKBONE)))
        preprocessing = Preprocessing.from_json(spec["preprocessing"])
        backbone = Backbone(spec["arch"], backbone.model.eval(), preprocessing)
        bundle = cls(directory, config, backbone, partitions)
        for kind, entry in config["heads"].items():
            if kind not in HEADS:
                raise BundleError(f"{directory}: unknown head kind {kind!r} in config")
            head = create_head(kind, backbone.feature_dim, partitions)
            head.load_state_dict(load_file(str(directory / entry["file"])))
            bundle.heads[kind] = head.eval()
        if config["rrm"]:
            spec = config["rrm"]
            rrm = ResidualRetrievalModule(spec["dim"], spec["hidden_dim"], spec["residual"])
            rrm.load_state_dict(load_file(str(directory / RRM)))
            bundle.rrm = rrm.eval()
        if config.get("fusion"):
            try:
                bundle.fusion = FusionModel.from_json(json.loads((directory / FUSION).read_text()))
            except (ValueError, KeyError, TypeError) as exc:
                raise BundleError(f"{directory}: {FUSION} cannot be read ({exc}); fit it again with "
                                  "`geoloc-train fusion`") from exc
        return bundle


