"""Classification heads over S2 cells, one file each, behind one registry and factory."""

from __future__ import annotations

from locator.cells import Partition
from locator.heads.base import Head, HeadPrediction
from locator.heads.ce import CrossEntropyHead
from locator.heads.hc import HierarchicalHead
from locator.heads.mvmf import MvMFHead

HEADS: dict[str, type[Head]] = {cls.kind: cls for cls in (CrossEntropyHead, HierarchicalHead, MvMFHead)}


def create_head(kind: str, feature_dim: int, partitions: list[Partition]) -> Head:
    """A head of `kind` ("ce", "hc" or "mvmf") over `partitions` (ordered coarse → fine)."""
    if kind not in HEADS:
        raise ValueError(f"unknown head kind {kind!r}; choose one of {', '.join(HEADS)}")
    return HEADS[kind](feature_dim, partitions)


__all__ = ["HEADS", "Head", "HeadPrediction", "create_head"]
