"""Fusing classification and retrieval (beyond the paper): candidates from both, scored from their evidence.

The candidates of a photo (clusters of the neighbours found within its best cell, within its most probable cells
and in the whole collection, and maybe the classifier's own estimate) and their evidence come from
locator.candidates, for a whole batch at once; this module chooses among them.

A `FusionModel`, fitted by `geoloc-train fusion` on training photos held out by owner (never on an evaluation
set), holds two models per distance threshold t:

- a logistic scorer, P(error < t km | evidence), comparable across photos;
- a ranker (a conditional logit), P(this candidate is the one within t km | the photo's candidates), fitted on the
  differences between candidates of the same photo only, so that what all of a photo's candidates share (say, a
  place the classifier never saw, where cell probabilities mean little) cannot bias the choice between them.

The choice goes from coarse to fine: the region is that of the candidate with the highest expected number of
thresholds met, Σ_t P(error < t); then, for each threshold T from `refine_km` down, among the candidates within T
km of the current choice, the one with the highest Σ of the rankers' shares over the thresholds t below T wins
(each scale's evidence decides the place at that scale: P(error < 200 km) cannot tell apart two places 150 km
apart, P(error < 25 km) can). Its `confidence` is the scorer's P(error < 25 km), recalibrated on out-of-fold
choices (isotonic), and its `radius_km` a median error predicted by a linear quantile regression. Everything is
stored as JSON arrays and evaluated with numpy, for a batch at once: no pickles.

One rule comes first: a reference at least `duplicate_sim` (0.99) similar to the photo is taken to be the same
photo, and the candidate holding the most similar one is chosen. The held-out photos the model is fitted on are
never in the collection, so it has not learnt what a copy looks like: located as itself, a stored im2gps2k photo
came back within 1 km of its place 61 % of the time without the rule, 99.7 % with it. Re-encoded or cropped copies
fall below 0.99 (medians 0.84-0.95: benchmarks/results/self_lookup.md) and are left to the model; no held-out
photo came within 0.95 of a reference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from locator.candidates import FEATURES
from locator.geo import haversine_km

THRESHOLDS_KM = (1.0, 25.0, 200.0, 750.0, 2500.0)
CONFIDENCE_KM = 25.0
FORMAT = 3
DUPLICATE_SIM = 0.99
_CHOICE_VALUES = 1 << 22  # photos are chosen for in groups of about this many (candidate, model, feature) values


def _linear_terms(x: np.ndarray, models: list) -> np.ndarray:
    """(..., models) ((x - mean) / scale) · coef of each linear model, at once and as one by one: products summed
    row by row, not by BLAS, whose rounding of a row would depend on the rows around it (and a photo's choice on
    the batch it came in)."""
    mean, scale, coef = (np.stack([getattr(m, name) for m in models]) for name in ("mean", "scale", "coef"))
    return ((np.asarray(x, float)[..., None, :] - mean) / scale * coef).sum(axis=-1)


@dataclass(frozen=True)
class Logistic:
    """P(y = 1 | x) = σ(((x - mean) / scale) · coef + intercept), for rows of x."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.probability(_linear_terms(x, [self])[..., 0])

    def probability(self, z: np.ndarray) -> np.ndarray:
        """From z = ((x - mean) / scale) · coef."""
        z = z + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


@dataclass(frozen=True)
class Ranker:
    """Shares of a photo's candidates: softmax over its rows of ((x - mean) / scale) · coef. With `valid`, x holds
    one photo per row of candidates (photos, width, features), and padding gets no share."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray

    def __call__(self, x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        return self.shares(_linear_terms(x, [self])[..., 0], valid)

    @staticmethod
    def shares(z: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """From z = ((x - mean) / scale) · coef."""
        if valid is not None:
            z = np.where(valid, z, -np.inf)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class Monotone:
    """A non-decreasing piecewise-linear map (an isotonic regression's breakpoints), clipped at both ends."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, value: np.ndarray | float) -> np.ndarray:
        return np.interp(value, self.x, self.y)


@dataclass(frozen=True)
class LinearQuantile:
    """A linear model of a quantile of log(1 + error km), on standardised features."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return _linear_terms(x, [self])[..., 0] + self.intercept


@dataclass(frozen=True)
class Choice:
    index: int
    probabilities: dict[float, float]  # raw P(error < t km) of the chosen candidate
    confidence: float
    radius_km: float
    duplicate: bool = False  # chosen because it holds the same photo (see the module)


@dataclass(frozen=True)
class FusionModel:
    k: int
    cells: int
    eps_km: float
    refine_km: float
    scorers: dict[float, Logistic]
    rankers: dict[float, Ranker]
    confidence: Monotone
    radius: LinearQuantile
    info: dict[str, Any] = field(default_factory=dict)
    duplicate_sim: float = DUPLICATE_SIM

    def choose(self, features: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> Choice:
        """One photo's choice among its candidates (rows of `features`)."""
        return self.choose_batch(features[None], lat[None], lon[None], np.ones((1, len(lat)), bool))[0]

    def choose_batch(self, features: np.ndarray, lat: np.ndarray, lon: np.ndarray, valid: np.ndarray) -> list[Choice]:
        """Each photo's chosen candidate (the same photo's, else two stages: see the module), its confidence and
        radius; (photos, width) candidates, `valid` marking them (each photo has at least one)."""
        if not valid.any(axis=1).all():
            raise ValueError("every photo needs a candidate (at least the classifier's estimate)")
        models = len(self.scorers) + len(self.rankers)
        step = max(1, _CHOICE_VALUES // (valid.shape[1] * len(FEATURES) * max(models, 1)))
        return [choice for lo in range(0, len(valid), step)
                for choice in self._choose_rows(*(a[lo:lo + step] for a in (features, lat, lon, valid)))]

    def _choose_rows(self, features: np.ndarray, lat: np.ndarray, lon: np.ndarray, valid: np.ndarray) -> list[Choice]:
        probabilities, shares = candidate_scores(self.scorers, self.rankers, features, valid)
        best, duplicate = choose_indices(features, lat, lon, valid, probabilities, shares, self.refine_km,
                                         self.duplicate_sim)
        rows = np.arange(len(best))
        raw = {t: p[rows, best] for t, p in probabilities.items()}
        confidence = np.clip(self.confidence(raw[CONFIDENCE_KM]), 0.0, 1.0)
        log_radius = self.radius(radius_inputs(features[rows, best], confidence))
        radius = np.maximum(np.expm1(np.maximum(log_radius, 0.0)), 0.1)
        return [Choice(int(best[j]), {t: float(p[j]) for t, p in raw.items()}, float(confidence[j]),
                       float(radius[j]), bool(duplicate[j])) for j in rows]

    def to_json(self) -> dict:
        def arrays(obj: Any) -> dict:
            return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(obj).items()}
        return {"format": FORMAT, "features": list(FEATURES), "k": self.k, "cells": self.cells, "eps_km": self.eps_km,
                "refine_km": self.refine_km, "duplicate_sim": self.duplicate_sim,
                "scorers": [{"threshold_km": t, **arrays(s)} for t, s in self.scorers.items()],
                "rankers": [{"threshold_km": t, **arrays(r)} for t, r in self.rankers.items()],
                "confidence": arrays(self.confidence), "radius": arrays(self.radius), "info": self.info}

    @classmethod
    def from_json(cls, data: dict) -> FusionModel:
        if data.get("format") != FORMAT or data.get("features") != list(FEATURES):
            raise ValueError("fusion model of another format or feature set")

        def build(kind: type, entry: dict) -> Any:
            return kind(**{k: (np.asarray(v, float) if isinstance(v, list) else v) for k, v in entry.items()})
        def per_threshold(kind: type, entries: list[dict]) -> dict:
            return {float(e["threshold_km"]): build(kind, {k: v for k, v in e.items() if k != "threshold_km"})
                    for e in entries}
        return cls(int(data["k"]), int(data["cells"]), float(data["eps_km"]), float(data["refine_km"]),
                   per_threshold(Logistic, data["scorers"]), per_threshold(Ranker, data["rankers"]),
                   build(Monotone, data["confidence"]), build(LinearQuantile, data["radius"]), data.get("info", {}),
                   float(data.get("duplicate_sim", DUPLICATE_SIM)))

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True)


def candidate_scores(scorers: dict[float, Logistic], rankers: dict[float, Ranker], features: np.ndarray,
                     valid: np.ndarray) -> tuple[dict[float, np.ndarray], dict[float, np.ndarray]]:
    """The scorers' P(error < t) and the rankers' shares of each photo's (row's) candidates, all models evaluated
    in one broadcast; 0 and no share where padded."""
    models = [*scorers.values(), *rankers.values()]
    z = _linear_terms(features, models) if models else np.zeros((*valid.shape, 0))
    probabilities = {t: np.where(valid, scorer.probability(z[..., i]), 0.0)
                     for i, (t, scorer) in enumerate(scorers.items())}
    shares = {t: Ranker.shares(z[..., len(scorers) + i], valid) for i, t in enumerate(rankers)}
    return probabilities, shares


def choose_indices(features: np.ndarray, lat: np.ndarray, lon: np.ndarray, valid: np.ndarray,
                   probabilities: dict[float, np.ndarray], shares: dict[float, np.ndarray], refine_km: float,
                   duplicate_sim: float) -> tuple[np.ndarray, np.ndarray]:
    """Per photo (a row of candidates), the chosen candidate and whether it holds the same photo: the candidate
    holding the most similar reference when one is at least `duplicate_sim` similar, else `select_rows` by the
    scorers' `probabilities` and the rankers' `shares`."""
    similarity = np.where(valid, features[..., FEATURES.index("max_sim")], -np.inf)
    duplicate = (similarity >= duplicate_sim).any(axis=1)
    chosen = select_rows(probabilities, lat, lon, valid, refine_km, shares)
    return np.where(duplicate, np.argmax(similarity, axis=1), chosen), duplicate


def select(probabilities: dict[float, np.ndarray], lat: np.ndarray, lon: np.ndarray, refine_km: float,
           shares: dict[float, np.ndarray] | None = None) -> int:
    """`select_rows` for one photo's candidates."""
    def row(values: dict[float, np.ndarray] | None) -> dict[float, np.ndarray] | None:
        return None if values is None else {t: np.asarray(v)[None] for t, v in values.items()}
    valid = np.ones((1, len(lat)), bool)
    return int(select_rows(row(probabilities), np.asarray(lat)[None], np.asarray(lon)[None], valid, refine_km,
                           row(shares))[0])


def select_rows(probabilities: dict[float, np.ndarray], lat: np.ndarray, lon: np.ndarray, valid: np.ndarray,
                refine_km: float, shares: dict[float, np.ndarray] | None = None) -> np.ndarray:
    """Per photo, the index of the chosen candidate, coarse to fine: the best region by Σ_t P_t; then, for each
    threshold T from `refine_km` down, the best place within T km of the current choice by the Σ of the `shares`
    (default: P_t) of the thresholds t below T. Arrays are (photos, width); `valid` marks the candidates."""
    shares = shares or probabilities
    rows = np.arange(len(valid))
    chosen = np.argmax(np.where(valid, np.sum(list(probabilities.values()), axis=0), -np.inf), axis=1)
    for scale in sorted((t for t in probabilities if t <= refine_km), reverse=True):
        finer = [p for t, p in shares.items() if t < scale]
        if not finer:
            break
        near = valid & (haversine_km(lat[rows, chosen][:, None], lon[rows, chosen][:, None], lat, lon) < scale)
        chosen = np.argmax(np.where(near, np.sum(finer, axis=0), -np.inf), axis=1)
    return chosen


def radius_inputs(features: np.ndarray, confidence: np.ndarray | float) -> np.ndarray:
    """What the radius model sees: the chosen candidate's evidence and its calibrated confidence (as a logit)."""
    c = np.clip(np.broadcast_to(np.asarray(confidence, float), (len(features),)), 1e-4, 1 - 1e-4)
    return np.column_stack([features, np.log(c / (1 - c))])
