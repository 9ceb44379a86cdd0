"""Fitting the fused method's model (locator.fusion) on held-out training photos only.

The training photos are split by owner. On the larger part, a head of the bundle's default kind and (when the bundle
has one) an RRM are trained again with the bundle's own settings (the RRM up to the step the bundle kept its own
at), so that the held-out photos are as new to them as an evaluation photo is to the real models. The larger part's
placeable photos are the reference collection; each held-out photo is classified and searched against it exactly
(within its best cell, within its best `cells` cells, and globally), and every candidate location gets its evidence
and its true error. Logistic scorers and conditional-logit rankers per distance threshold are fitted on all
candidates; the confidence calibration and the radius model are fitted on out-of-fold choices (folds grouped by
owner). No evaluation set is ever read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from locator.bundle import Bundle
from locator.encoder import PhotoEncoder
from locator.errors import DataError
from locator.feature_cache import group_ids
from locator.candidates import BASELINES, FEATURES, gather_evidence
from locator.fusion import (CONFIDENCE_KM, THRESHOLDS_KM, FusionModel, LinearQuantile, Logistic, Monotone, Ranker,
                            candidate_scores, choose_indices, radius_inputs)
from locator.geo import haversine_km
from locator.heads import Head
from locator.metrics import THRESHOLDS_KM as EVALUATION_THRESHOLDS_KM
from locator.metrics import reliability, threshold_label
from locator.rrm import embed
from locator.settings import from_mapping
from locator.store import Hits, VectorStore
from training.batches import TrainingRows
from training.conditional_logit import fit_conditional_logit, informative_groups
from training.heads import resolve_device, train_head
from training.placeable import predicted_cells
from training.reference_index import ReferenceIndex
from training.rrm import train_rrm
from training.settings import FusionSettings, HeadSettings, RRMSettings

MIN_CLASS_ROWS = 5  # a threshold's scorer needs this many candidates on each side, its ranker as many photos
QUERY_CHUNK = 2048  # held-out photos located together (their cell probabilities: 2,048 × cells × 8 bytes)


@dataclass
class CalibrationSet:
    """Every candidate of every held-out photo: evidence, true error, photo index and owner group."""

    features: np.ndarray
    errors_km: np.ndarray
    lat: np.ndarray  # candidate locations
    lon: np.ndarray
    query: np.ndarray
    groups: np.ndarray
    baselines: dict[str, np.ndarray]  # per photo: error of swc, retrieval and classifier estimates
    references: int
    sources: np.ndarray  # per photo: an added reference's source; "" for a held-out training photo


class StoreIndex:
    """The collection itself as the reference index, each query's own point left out (leave-one-out)."""

    def __init__(self, store: VectorStore, own_ids: np.ndarray) -> None:
        self.store, self.own_ids = store, np.asarray(own_ids, dtype=np.int64)

    def search(self, queries: np.ndarray, allowed: list[np.ndarray] | None, k: int):
        cells = [[int(c) for c in a] for a in allowed] if allowed is not None else None
        hits = self.store.search(queries, cells, k=k + 1)  # within cells exact; globally as at locate time
        keep = hits.ids != self.own_ids[:, None]
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # own point (if found) moves to the end
        ids = np.where(np.take_along_axis(keep, order, 1), np.take_along_axis(hits.ids, order, 1), -1)
        return (ids, *(np.take_along_axis(a, order, 1) for a in (hits.scores, hits.lat, hits.lon)))


def collection_set(bundle: Bundle, store: VectorStore, training_sources: set[str], settings: FusionSettings,
                   device: torch.device | None = None, progress: bool = True) -> CalibrationSet | None:
    """Reference photos added from sources the models never trained on, each located against the rest of the
    collection (the case of a grown collection); None when the collection holds no such photo."""
    ids = store.all_ids()
    payloads = {}  # of the added references only: the collection may hold millions of training photos
    for s in range(0, len(ids), 10_000):
        payloads.update({i: p for i, p in store.payloads(ids[s:s + 10_000]).items()
                         if p.get("source") not in training_sources})
    added = np.array(sorted(payloads), np.int64)
    if not len(added):
        return None
    if len(added) > settings.max_queries:
        added = np.sort(np.random.default_rng(settings.seed).choice(added, settings.max_queries, replace=False))
    encoder = PhotoEncoder(bundle, device)
    parts, used = [], []
    for s in tqdm(range(0, len(added), 64), desc="fusion: added references", unit="batch", disable=not progress):
        chunk = added[s:s + 64]
        encoded = encoder.encode_photos([payloads[int(i)].get("image", "") for i in chunk])
        ok = encoded.ok
        if not ok.any():
            continue
        chunk = chunk[ok]
        lat = np.array([payloads[int(i)]["lat"] for i in chunk])
        lon = np.array([payloads[int(i)]["lon"] for i in chunk])
        parts.append(_calibrate_chunk(bundle.default_head, StoreIndex(store, chunk), encoded.features[ok], lat, lon,
                                      bundle.retrieval_rrm, bundle.partitions[-1], settings))
        used.append(chunk)
    if not parts:
        return None
    used_ids = np.concatenate(used)
    return _from_chunks(parts, group_ids([str(payloads[int(i)].get("owner", i)) for i in used_ids]), len(ids),
                        sources=np.array([str(payloads[int(i)].get("source", "")) for i in used_ids]))


def _settings_from(config: dict, cls: type):
    names = {f.name for f in dataclasses.fields(cls)}
    return from_mapping(cls, {k: v for k, v in (config or {}).items() if k in names}, "the bundle's training record")


def retrain_head(bundle: Bundle, data: TrainingRows, device: torch.device | None = None) -> Head:
    """A head of the bundle's default kind, trained like the bundle's on `data.usable` only."""
    kind = bundle.default_head.kind
    heads = bundle.config["heads"]
    init = None
    if kind == "mvmf" and heads["mvmf"]["training"].get("init_from_ce") and "ce" in heads:
        init, _ = train_head("ce", data, bundle.partitions, _settings_from(heads["ce"]["training"], HeadSettings),
                             device=device, progress=False)
    head, _ = train_head(kind, data, bundle.partitions, _settings_from(heads[kind]["training"], HeadSettings),
                         init_from=init, device=device, progress=False)
    return head


def owner_folds(groups: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """Fold of each row: owners shuffled with `seed`, each (largest first) given to the smallest fold so far."""
    owners, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(owners))
    order = order[np.argsort(-sizes[order], kind="stable")]
    load, fold_of = np.zeros(folds, dtype=np.int64), np.zeros(len(owners), dtype=np.int64)
    for owner in order:
        fold_of[owner] = int(np.argmin(load))
        load[fold_of[owner]] += sizes[owner]
    return fold_of[inverse]


def calibration_set(bundle: Bundle, data: TrainingRows, settings: FusionSettings, device: torch.device | None = None,
                    progress: bool = True) -> CalibrationSet:
    """Each owner-grouped fold in turn is held out and located against models retrained on the other folds."""
    folds = np.full(len(data), -1, dtype=np.int64)
    folds[data.usable] = owner_folds(data.groups[data.usable], settings.folds, settings.seed)
    if len(set(folds[data.usable].tolist())) < 2:
        raise DataError(f"too few owners ({len(np.unique(data.groups[data.usable]))}) to hold any out for the "
                        "fusion model")
    rng = np.random.default_rng(settings.seed)
    per_fold = max(1, settings.max_queries // settings.folds)
    parts = []
    for fold in tqdm(range(settings.folds), desc="fusion: folds", unit="fold", disable=not progress):
        held = np.flatnonzero(folds == fold)
        if len(held) > per_fold:
            held = np.sort(rng.choice(held, per_fold, replace=False))
        fit = np.flatnonzero((folds >= 0) & (folds != fold))
        parts.append(_calibrate_fold(bundle, dataclasses.replace(data, usable=fit), held, settings, device))
    return merge(parts)


def _calibrate_fold(bundle: Bundle, fit: TrainingRows, held: np.ndarray, settings: FusionSettings,
                    device: torch.device | None) -> CalibrationSet:
    fine = bundle.partitions[-1]
    cells = fine.lookup(fit.lat, fit.lon)
    head = retrain_head(bundle, fit, device)
    rrm = None
    if bundle.retrieval_space == "rrm":
        recorded = bundle.config["rrm"]["training"]
        rrm_settings = _settings_from(recorded, RRMSettings)
        # The bundle's schedule, up to the step its own RRM was kept at: later steps would only be discarded.
        rrm, _ = train_rrm(fit, cells, dataclasses.replace(rrm_settings, space="rrm"), device=device, progress=False,
                           stop_at=recorded.get("best_step") or None)
    predicted = predicted_cells(head, fit, fit.usable, device)
    refs = fit.usable[(predicted == cells[fit.usable]) & (cells[fit.usable] >= 0)]
    if not len(refs):
        raise DataError("no training photo is placeable by the retrained head: too few photos for the fusion model")
    embed_on = resolve_device(device)

    def embed_rows(rows: np.ndarray) -> np.ndarray:
        return embed(rrm, fit.gather(rows).astype(np.float32), device=embed_on)

    # The global search streams the whole index once per chunk of queries: chunks as large as memory allows.
    with ReferenceIndex.build(embed_rows, refs, fit.dim, fit.lat[refs], fit.lon[refs], cells[refs]) as index:
        parts = [_calibrate_chunk(head, index, fit.gather(held[s:s + QUERY_CHUNK]).astype(np.float32),
                                  fit.lat[held[s:s + QUERY_CHUNK]], fit.lon[held[s:s + QUERY_CHUNK]], rrm, fine,
                                  settings) for s in range(0, len(held), QUERY_CHUNK)]
    return _from_chunks(parts, fit.groups[held], len(refs))


def _from_chunks(parts: list, groups: np.ndarray, references: int, sources: np.ndarray | None = None) -> CalibrationSet:
    offsets = np.cumsum([0] + [len(p[2]) for p in parts])
    return CalibrationSet(
        features=np.concatenate([p[0] for p in parts]), errors_km=np.concatenate([p[1] for p in parts]),
        lat=np.concatenate([p[5] for p in parts]), lon=np.concatenate([p[6] for p in parts]),
        query=np.concatenate([p[3] + offsets[i] for i, p in enumerate(parts)]),
        groups=groups, baselines={name: np.concatenate([p[4][name] for p in parts]) for name in BASELINES},
        references=references, sources=np.full(len(groups), "") if sources is None else sources)


def merge(sets: list[CalibrationSet]) -> CalibrationSet:
    offsets = np.cumsum([0] + [len(s.groups) for s in sets])
    return CalibrationSet(
        features=np.concatenate([s.features for s in sets]), errors_km=np.concatenate([s.errors_km for s in sets]),
        lat=np.concatenate([s.lat for s in sets]), lon=np.concatenate([s.lon for s in sets]),
        query=np.concatenate([s.query + o for s, o in zip(sets, offsets)]),
        groups=np.concatenate([s.groups for s in sets]),
        baselines={name: np.concatenate([s.baselines[name] for s in sets]) for name in BASELINES},
        references=int(np.mean([s.references for s in sets])),
        sources=np.concatenate([s.sources for s in sets]))


@torch.inference_mode()
def _calibrate_chunk(head: Head, index: ReferenceIndex, features: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                     rrm, fine, settings: FusionSettings):
    x = torch.from_numpy(np.asarray(features, np.float32))
    probabilities = head.cell_probabilities(x).numpy().astype(np.float64)
    prediction = head.predict(x)
    ranked = np.argsort(-probabilities, axis=1, kind="stable")
    queries = embed(rrm, features)
    searches = [Hits(*index.search(queries, allowed, settings.k))
                for allowed in ([r[:1] for r in ranked], [r[:settings.cells] for r in ranked], None)]
    found = gather_evidence(*searches, np.asarray(prediction.lat, float), np.asarray(prediction.lon, float),
                            probabilities, fine)
    photo, slot = np.nonzero(found.candidates.valid)
    c_lat, c_lon = found.candidates.lat[photo, slot], found.candidates.lon[photo, slot]
    paper = {name: haversine_km(lat, lon, found.estimates[:, b, 0], found.estimates[:, b, 1])
             for b, name in enumerate(BASELINES)}
    return (found.features[photo, slot], haversine_km(lat[photo], lon[photo], c_lat, c_lon),
            found.candidates.valid.sum(axis=1).tolist(), photo, paper, c_lat, c_lon)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, scale = x.mean(axis=0), x.std(axis=0)
    return mean, np.where(scale > 1e-12, scale, 1.0)


def fit_scorers(x: np.ndarray, errors: np.ndarray, c: float) -> dict[float, Logistic]:
    """One logistic scorer P(error < t) per threshold with enough candidates on both sides."""
    from sklearn.linear_model import LogisticRegression
    mean, scale = _standardise(x)
    scorers = {}
    for t in THRESHOLDS_KM:
        y = errors < t
        if min(y.sum(), (~y).sum()) < MIN_CLASS_ROWS:
            if t == CONFIDENCE_KM:
                raise DataError(f"{int(y.sum())} of {len(y)} held-out candidates lie within {t:g} km of the truth: "
                                f"too few to fit the fusion model's confidence (need {MIN_CLASS_ROWS} on each side)")
            continue
        model = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y)
        scorers[t] = Logistic(mean, scale, model.coef_[0].copy(), float(model.intercept_[0]))
    return scorers


def fit_rankers(x: np.ndarray, errors: np.ndarray, query: np.ndarray, c: float) -> dict[float, Ranker]:
    """One conditional-logit ranker per threshold with enough photos that have candidates on both sides of it."""
    mean, scale = _standardise(x)
    rankers = {}
    for t in THRESHOLDS_KM:
        if informative_groups(errors < t, query) >= MIN_CLASS_ROWS:
            rankers[t] = Ranker(mean, scale, fit_conditional_logit((x - mean) / scale, errors < t, query, c))
    return rankers


@dataclass
class Choices:
    """Out-of-fold choices per held-out photo: index of the chosen candidate row, raw P(<25 km), errors."""

    rows: np.ndarray
    p_confidence: np.ndarray
    errors_km: np.ndarray


def out_of_fold_choices(data: CalibrationSet, settings: FusionSettings) -> Choices:
    from sklearn.model_selection import GroupKFold
    photos = len(data.groups)
    folds = min(settings.scorer_folds, len(set(data.groups.tolist())))
    rows, p_conf = np.zeros(photos, np.int64), np.zeros(photos)
    for train, test in GroupKFold(n_splits=folds).split(np.zeros(photos), groups=data.groups):
        in_train = np.isin(data.query, train)
        scorers = fit_scorers(data.features[in_train], data.errors_km[in_train], settings.c)
        rankers = fit_rankers(data.features[in_train], data.errors_km[in_train], data.query[in_train], settings.c)
        slots = _slots(data.query, test, 3 * settings.k + 1)  # each photo's candidate rows, padded as at locate time
        valid = slots >= 0
        x, lat, lon = (a[np.clip(slots, 0, None)] for a in (data.features, data.lat, data.lon))
        probabilities, shares = candidate_scores(scorers, rankers, x, valid)
        best, _ = choose_indices(x, lat, lon, valid, probabilities, shares, settings.refine_km, settings.duplicate_sim)
        picked = np.arange(len(test))
        rows[test], p_conf[test] = slots[picked, best], probabilities[CONFIDENCE_KM][picked, best]
    return Choices(rows, p_conf, data.errors_km[rows])


def _slots(query: np.ndarray, photos: np.ndarray, width: int) -> np.ndarray:
    """(photos, width) indices of each photo's candidate rows (`query` holds each row's photo, in order), -1 where
    padded."""
    first = np.searchsorted(query, photos, side="left")
    count = np.searchsorted(query, photos, side="right") - first
    if len(count) and (count.max() > width or count.min() == 0):
        raise ValueError(f"photos have {count.min()}-{count.max()} candidates; their searches give 1 to {width}")
    position = np.arange(width)
    return np.where(position < count[:, None], first[:, None] + position, -1)


def fit_confidence(choices: Choices) -> Monotone:
    from sklearn.isotonic import IsotonicRegression
    success = (choices.errors_km < CONFIDENCE_KM).astype(float)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(choices.p_confidence, success)
    return Monotone(np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float))


def fit_radius(data: CalibrationSet, choices: Choices, confidence: Monotone) -> LinearQuantile:
    from sklearn.linear_model import QuantileRegressor
    x = radius_inputs(data.features[choices.rows], confidence(choices.p_confidence))
    mean, scale = _standardise(x)
    model = QuantileRegressor(quantile=0.5, alpha=1e-3, solver="highs").fit((x - mean) / scale,
                                                                           np.log1p(choices.errors_km))
    return LinearQuantile(mean, scale, model.coef_.copy(), float(model.intercept_))


def fit_fusion(bundle: Bundle, rows: TrainingRows, settings: FusionSettings = FusionSettings(),
               device: str | torch.device | None = None, progress: bool = True,
               collection: CalibrationSet | None = None) -> tuple[FusionModel, dict]:
    """Fit the fused method's model on held-out training photos (and, when given, on references of a grown
    collection located against the rest of it); returns it and a report."""
    training = calibration_set(bundle, rows, settings, device, progress)
    data = merge([training, collection]) if collection is not None else training
    choices = out_of_fold_choices(data, settings)
    confidence = fit_confidence(choices)
    radius = fit_radius(data, choices, confidence)
    scorers = fit_scorers(data.features, data.errors_km, settings.c)
    rankers = fit_rankers(data.features, data.errors_km, data.query, settings.c)
    report = _report(data, choices, confidence, radius, settings)
    report["collection_queries"] = len(collection.groups) if collection is not None else 0
    if collection is not None:
        report["added_references"] = _added_report(data, choices, confidence)
    model = FusionModel(settings.k, settings.cells, 1.0, settings.refine_km, scorers, rankers, confidence, radius,
                        report, settings.duplicate_sim)
    return model, report


def _added_report(data: CalibrationSet, choices: Choices, confidence: Monotone) -> dict:
    """The added references' choices (scores out of fold; the calibration map is fitted on them, pooled with the
    training photos), all together and per source: mean confidence, share within 25 km, calibration error."""
    c, errors = confidence(choices.p_confidence), choices.errors_km

    def summary(rows: np.ndarray) -> dict:
        return {"photos": int(len(rows)), "mean_confidence": float(np.mean(c[rows])),
                "share_within_25km": float(np.mean(errors[rows] < CONFIDENCE_KM)),
                "ece": reliability("", c[rows], errors[rows], CONFIDENCE_KM).ece}

    added = np.flatnonzero(data.sources != "")
    return {"all": summary(added), **{str(s): summary(np.flatnonzero(data.sources == s))
                                      for s in np.unique(data.sources[added])}}


def _report(data: CalibrationSet, choices: Choices, confidence: Monotone, radius: LinearQuantile,
            settings: FusionSettings) -> dict:
    photos = len(data.groups)
    # At the evaluation's thresholds (the paper's, 0.1-2500 km), not only at those the model is fitted for.
    rows = {name: {threshold_label(t): float(np.mean(errors < t)) for t in EVALUATION_THRESHOLDS_KM}
            for name, errors in {"fused (out of fold)": choices.errors_km, **data.baselines}.items()}
    predicted = np.expm1(radius(radius_inputs(data.features[choices.rows], confidence(choices.p_confidence))))
    return {"settings": dataclasses.asdict(settings), "held_out_photos": photos, "references": data.references,
            "owners": len(set(data.groups.tolist())), "candidates": len(data.errors_km),
            "positives": {f"{t:g} km": int((data.errors_km < t).sum()) for t in THRESHOLDS_KM},
            "accuracy_on_held_out": rows,
            "share_within_radius": float(np.mean(choices.errors_km < np.maximum(predicted, 0.1))),
            "features": list(FEATURES)}

