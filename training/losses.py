"""The retrieval losses the RRM can train with, by name: infoNCE with a memory bank (the paper) and the
semi-hard triplet baseline. Each entry builds a callable `loss(embeddings, labels, partner)` from RRMSettings."""

from __future__ import annotations

from locator.registry import Registry

LOSSES = Registry("retrieval loss", lazy={"infonce": "training.infonce:from_settings",
                                          "triplet": "training.triplet:from_settings"})
