"""Classification heads over S2 cells, one file each, behind one registry and factory.

The registry names its heads without importing them (torch loads on first use), so CLIs list the choices fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from locator.registry import Registry

if TYPE_CHECKING:
    from locator.cells import Partition
    from locator.heads.base import Head, HeadPrediction

HEADS = Registry("head kind", lazy={"ce": "locator.heads.ce:CrossEntropyHead",
                                    "hc": "locator.heads.hc:HierarchicalHead",
                                    "mvmf": "locator.heads.mvmf:MvMFHead"})


def create_head(kind: str, feature_dim: int, partitions: list[Partition]) -> Head:
    """A head of `kind` ("ce", "hc" or "mvmf") over `partitions` (ordered coarse → fine)."""
    return HEADS.create(kind, feature_dim, partitions)


def __getattr__(name: str):
    if name in ("Head", "HeadPrediction"):
        from locator.heads import base
        return getattr(base, name)
    raise AttributeError(f"module 'locator.heads' has no attribute {name!r}")


__all__ = ["HEADS", "Head", "HeadPrediction", "create_head"]
