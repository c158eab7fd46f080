"""Split conformal prediction sets for a classifier's softmax, calibrated on a held-out split.

A conformal set holds every class the calibration data cannot rule out at the chosen
coverage level: on data exchangeable with the calibration split, the true class lies in
the set at least ``level`` of the time, whatever the network (Vovk et al. 2005).

Methods:

* ``"lac"`` - least ambiguous set-valued classifier (Sadinle, Lei & Wasserman 2019): every
  class whose probability is at least ``1 - q``; the smallest sets on average, and coverage
  close to the level from above (the shipped default). A LAC set may be EMPTY: when the
  model is right more often than the level asks, the least sure images need no class to
  reach it; forcing the top class in would push coverage up to the accuracy and the
  promised level would no longer be the delivered one;

The methods below give sets that are never empty and always hold the top class:

* ``"aps"`` - adaptive prediction sets (Romano, Sesia & Candes 2020): classes in order of
  decreasing probability until their cumulative probability reaches the threshold;
* ``"raps"`` - regularised APS (Angelopoulos, Bates, Jordan & Malik 2021): APS plus a
  penalty ``lambda * max(0, rank - k_reg)`` on the cumulative mass, which keeps the long
  tail of unlikely classes out;
* ``"ordinal"`` - ordinal APS (Lu, Angelopoulos, Bates, Jordan & Kalpathy-Cramer 2022) for
  ordered grades: an interval of adjacent grades grown from the argmax, each step taking the
  more probable neighbour, until its probability mass passes the threshold. Score: the mass
  the interval holds before the true grade joins (deterministic, no random tie-break).

APS and RAPS are calibrated by MAPIE (``mapie.classification.SplitConformalClassifier``);
the ordinal variant is not in MAPIE and is written here. Only the thresholds are kept
(:class:`ConformalCalibration`, JSON-able for the model card), and :func:`prediction_sets`
forms sets from them without the calibration data by the same rule MAPIE's ``predict_set``
uses with ``include_last_label=True`` (the tests check both give the same sets).

MAPIE's APS/RAPS calibration score is randomised (``cum. mass - U * p_true``, U uniform,
seeded by ``random_state``) but the sets are not: with ``include_last_label=True`` the class
whose mass crosses the threshold is kept, so a set contains the randomised one and the
coverage guarantee (>= level) holds, sets are never empty, and the same probabilities always
give the same set. MAPIE's fully randomised sets (``"randomized"``) can be empty, so we do not
use them. The price is over-coverage: keeping the crossing class makes sets a little larger
than the level needs (e.g. ~0.95 observed at level 0.8 on a confident model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

METHODS = ("lac", "aps", "raps", "ordinal")
DEFAULT_LEVELS = (0.8, 0.9, 0.95)
# MAPIE's own tolerance (mapie._machine_precision.EPSILON): the same one keeps our sets equal to its sets.
EPSILON = 1e-8


def level_key(level: float | str) -> str:
    """The key of a coverage level in :attr:`ConformalCalibration.thresholds`: 0.9 -> "0.9"."""
    return f"{float(level):g}"


@dataclass
class ConformalCalibration:
    """What is needed to form conformal sets on new images of one model.

    Attributes
    ----------
    method : {"aps", "raps", "ordinal"}
    num_classes : int
        K, the number of columns of the probabilities the thresholds were calibrated on.
    n_calibration : int
        Number of labelled calibration images.
    thresholds : dict of str to dict of str to float
        Per coverage level key ("0.8", "0.9", "0.95"): ``{"threshold": q}`` for "aps" and
        "ordinal", ``{"threshold": q, "lambda": lambda, "k_reg": k_reg}`` for "raps". ``q`` is
        a (regularised) cumulative probability, in [0, 1] for "aps"/"ordinal".
    library : str
        Who computed the thresholds, e.g. "mapie 1.6.0" (for the model card).
    options : dict
        The calibration options (``random_state``, and ``size_raps`` for "raps").
    """

    method: str
    num_classes: int
    n_calibration: int
    thresholds: dict
    library: str = ""
    options: dict = field(default_factory=dict)

    @property
    def levels(self) -> list[str]:
        """The calibrated coverage level keys, lowest first."""
        return sorted(self.thresholds, key=float)

    def to_dict(self) -> dict:
        """A JSON-able dict (plain str, int and float only); :meth:`from_dict` inverts it."""
        return {
            "method": self.method, "num_classes": int(self.num_classes), "n_calibration": int(self.n_calibration),
            "thresholds": {level_key(k): {name: float(v) for name, v in row.items()}
                           for k, row in self.thresholds.items()},
            "library": self.library, "options": dict(self.options),
        }

    @classmethod
    def from_dict(cls, record: dict) -> "ConformalCalibration":
        """The calibration written by :meth:`to_dict` (e.g. read back from a model card)."""
        if record.get("method") not in METHODS:
            raise ValueError(f"Unknown conformal method {record.get('method')!r}; expected one of {METHODS}.")
        needed = ("threshold", "lambda", "k_reg") if record["method"] == "raps" else ("threshold",)
        thresholds = {}
        for key, row in record["thresholds"].items():
            missing = [name for name in needed if name not in row]
            if missing:
                raise ValueError(f"Conformal level {key} lacks {missing}.")
            thresholds[level_key(key)] = {name: float(row[name]) for name in needed}
        return cls(record["method"], int(record["num_classes"]), int(record["n_calibration"]), thresholds,
                   str(record.get("library", "")), dict(record.get("options", {})))


class _GivenProbabilities(ClassifierMixin, BaseEstimator):
    """A prefit scikit-learn classifier whose input is a column of row indices into a table
    of precomputed probabilities: MAPIE wants an estimator, our networks are Keras models."""

    def __init__(self, table: np.ndarray):
        self.table = table
        self.classes_ = np.arange(table.shape[1])  # marks it fitted for MAPIE's prefit check

    def fit(self, X, y=None):  # noqa: N803 - scikit-learn's argument names
        return self

    def predict_proba(self, X) -> np.ndarray:  # noqa: N803
        return self.table[np.asarray(X)[:, 0].astype(np.int64)]

    def predict(self, X) -> np.ndarray:  # noqa: N803
        return self.predict_proba(X).argmax(axis=1)


def _check_probs(probs, num_classes: int | None = None) -> np.ndarray:
    """(N, K) probabilities as float64 rows renormalised to sum to 1.

    float32 softmax rows drift from 1 by ~1e-7 and MAPIE rejects rows off by more than 1e-5,
    so tiny drift is divided out; anything larger is not a probability vector.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"Expected (N, K) probabilities with K >= 2, got shape {probs.shape}.")
    if num_classes is not None and probs.shape[1] != num_classes:
        raise ValueError(f"The calibration is for {num_classes} classes, the probabilities have {probs.shape[1]}.")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("Probabilities must be finite and non-negative.")
    sums = probs.sum(axis=1, keepdims=True)
    if np.any(np.abs(sums - 1.0) > 1e-3):
        raise ValueError("Each row of probabilities must sum to 1 (softmax outputs).")
    return probs / sums


def _check_labels(labels, n: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"Expected ({n},) integer labels, got {labels.shape} {labels.dtype}.")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"Labels must be class indices in [0, {num_classes}).")
    return labels.astype(np.int64)


def _check_levels(levels, n: int) -> list[float]:
    levels = [float(level) for level in levels]
    for level in levels:
        if not 0.0 < level < 1.0:
            raise ValueError(f"Coverage levels must lie in (0, 1), got {level}.")
        # The conformal quantile is the ceil((n + 1) * level)-th smallest score: it must exist.
        if math.ceil((n + 1) * level) > n or n < 1.0 / (1.0 - level):
            raise ValueError(f"{n} calibration images are too few for coverage {level}.")
    return levels


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal threshold: the ``ceil((n + 1) * level)``-th smallest of n scores
    (MAPIE's finite-sample rule, so that P(new score <= it) >= level on exchangeable data)."""
    n = len(scores)
    return float(np.quantile(scores, math.ceil((n + 1) * level) / n, method="lower"))


def _fit_mapie(table: np.ndarray, labels: np.ndarray, index: np.ndarray, method: str, levels, *,
               size_raps: float = 0.2, random_state: int = 0):
    """MAPIE's split conformal classifier over ``table`` rows, conformalised on rows ``index``.

    Returns (SplitConformalClassifier, its conformity score object). Imported here so the
    app, which only forms sets from stored thresholds, never loads MAPIE.
    """
    from mapie.classification import SplitConformalClassifier
    from mapie.conformity_scores import APSConformityScore, LACConformityScore, RAPSConformityScore

    score = {"lac": LACConformityScore, "aps": APSConformityScore}.get(method, lambda: RAPSConformityScore(
        size_raps=size_raps))()
    mapie = SplitConformalClassifier(estimator=_GivenProbabilities(table), confidence_level=list(levels),
                                     conformity_score=score, prefit=True, random_state=random_state)
    mapie.conformalize(np.asarray(index).reshape(-1, 1), labels)
    return mapie, score


def _mapie_thresholds(probs: np.ndarray, labels: np.ndarray, method: str, levels, **options) -> tuple[dict, str]:
    """({level key: thresholds}, library) from MAPIE's APS or RAPS calibration on all rows."""
    import mapie

    model, score = _fit_mapie(probs, labels, np.arange(len(labels)), method, levels, **options)
    # MAPIE computes its quantiles (and RAPS its lambda and k_reg) when it first forms sets.
    model.predict_set(np.arange(len(labels)).reshape(-1, 1), conformity_score_params={"include_last_label": True})
    quantiles = np.asarray(score.quantiles_, dtype=np.float64).ravel()
    out = {}
    for i, level in enumerate(levels):
        row = {"threshold": float(quantiles[i])}
        if method == "raps":
            row["lambda"] = float(np.broadcast_to(score.lambda_star, (len(levels),))[i])
            row["k_reg"] = float(np.broadcast_to(score.k_star, (len(levels),))[i])
        out[level_key(level)] = row
    return out, f"mapie {mapie.__version__}"


def ordinal_order(probs: np.ndarray) -> np.ndarray:
    """(N, K) -> (N, K) int: the order in which grades join the ordinal interval.

    The interval starts at the argmax and grows by one adjacent grade a step, the more
    probable neighbour first; on a tie the higher grade, as under-grading a disease is the
    costlier mistake in screening. The first j entries of a row are always an interval.
    """
    probs = np.asarray(probs, dtype=np.float64)
    n, k = probs.shape
    rows = np.arange(n)
    lo = hi = probs.argmax(axis=1)
    order = np.empty((n, k), dtype=np.int64)
    order[:, 0] = lo
    padded = np.pad(probs, ((0, 0), (1, 1)), constant_values=-np.inf)  # no grade beyond either end
    for step in range(1, k):
        below, above = padded[rows, lo], padded[rows, hi + 2]
        take_above = above >= below
        hi = np.where(take_above, hi + 1, hi)
        lo = np.where(take_above, lo, lo - 1)
        order[:, step] = np.where(take_above, hi, lo)
    return order


def _ordinal_path(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, mass_before), both (N, K): :func:`ordinal_order` and, per step, the mass of the
    interval before that grade joins; one computation for scores and sets, so they agree."""
    order = ordinal_order(probs)
    mass = np.cumsum(np.take_along_axis(probs, order, axis=1), axis=1)
    return order, np.concatenate([np.zeros((len(probs), 1)), mass[:, :-1]], axis=1)


def _ordinal_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability mass the interval holds just before the true grade joins it (0 when
    the argmax is right).

    This is Lu et al.'s score for their nested intervals, inf{t: the true grade is in the
    first interval of mass >= t}, so the sets {grade: score <= q} cover exactly as split
    conformal promises without a random tie-break; the mass after the true grade joins
    would also be valid but puts every right, confident answer near 1 and inflates q.
    """
    order, mass_before = _ordinal_path(probs)
    step = np.argmax(order == labels[:, None], axis=1)
    return mass_before[np.arange(len(labels)), step]


def calibrate(probs_val, labels_val, method: str = "aps", levels=DEFAULT_LEVELS, *,
              size_raps: float = 0.2, random_state: int = 0) -> ConformalCalibration:
    """Calibrate conformal sets on a labelled validation split.

    Parameters
    ----------
    probs_val : array-like of shape (N, K)
        Softmax probabilities of the model on the calibration images (rows sum to 1).
    labels_val : array-like of shape (N,)
        True class indices in [0, K). Must not have been used to train the model.
    method : {"aps", "raps", "ordinal"}, default="aps"
        "ordinal" treats the classes as ordered grades 0 < 1 < ... < K-1.
    levels : sequence of float in (0, 1), default=(0.8, 0.9, 0.95)
        Target coverage levels.
    size_raps : float in (0, 1), default=0.2
        RAPS only: fraction of the calibration images MAPIE sets aside to choose
        ``lambda`` and ``k_reg``; the thresholds come from the rest.
    random_state : int, default=0
        Seed of MAPIE's randomised calibration score and of its RAPS split, so that the same
        data always give the same thresholds.

    Returns
    -------
    ConformalCalibration
    """
    if method not in METHODS:
        raise ValueError(f"Unknown conformal method {method!r}; expected one of {METHODS}.")
    probs = _check_probs(probs_val)
    labels = _check_labels(labels_val, len(probs), probs.shape[1])
    levels = list(levels)
    if method == "raps":  # MAPIE's stratified split: ceil(size_raps * N) images choose lambda and k_reg
        n_tune = math.ceil(size_raps * len(labels))
        _check_levels(levels, n_tune)
        levels = _check_levels(levels, len(labels) - n_tune)
    else:
        levels = _check_levels(levels, len(labels))
    options = {"random_state": int(random_state)}
    if method == "ordinal":
        scores = _ordinal_scores(probs, labels)
        thresholds = {level_key(lv): {"threshold": conformal_quantile(scores, lv)} for lv in levels}
        library, options = "lifelens (ordinal APS, Lu et al. 2022)", {}
    else:
        if method == "raps":
            options["size_raps"] = float(size_raps)
        thresholds, library = _mapie_thresholds(probs, labels, method, levels, **options)
    return ConformalCalibration(method, probs.shape[1], len(labels), thresholds, library, options)


def _aps_sets(probs: np.ndarray, threshold: float, lam: float = 0.0, k_reg: float = 0.0) -> np.ndarray:
    """MAPIE's APS/RAPS set rule with ``include_last_label=True``, from a stored threshold.

    Classes in decreasing probability join until the (regularised) cumulative mass first
    reaches ``threshold``; every class at least as probable as that last one is in the set.
    """
    n, k = probs.shape
    index_sorted = np.flip(np.argsort(probs, axis=1), axis=1)
    cum_sorted = np.cumsum(np.take_along_axis(probs, index_sorted, axis=1), axis=1)
    cum_sorted += lam * np.maximum(0.0, np.arange(1, k + 1) - k_reg)
    cum = np.take_along_axis(cum_sorted, np.argsort(index_sorted, axis=1), axis=1)
    reached = cum - threshold >= -EPSILON
    # A threshold no cumulative mass reaches (only rounding can cause it) keeps every class.
    last = np.where(reached, cum, np.inf).argmin(axis=1)
    p_last = probs[np.arange(n), last]
    # As MAPIE: a zero-probability last class stands for the least probable non-zero one,
    # so classes the network gives exactly 0 do not all tie into the set.
    smallest = np.where(probs > EPSILON, probs, np.inf).min(axis=1)
    p_last = np.where(p_last <= EPSILON, smallest, p_last)
    mask = probs - p_last[:, None] >= -EPSILON
    mask[~reached.any(axis=1)] = True
    return mask


def _ordinal_sets(probs: np.ndarray, threshold: float) -> np.ndarray:
    """The grades whose score (interval mass before they join) is at most ``threshold``:
    the first interval of the greedy path whose mass exceeds it."""
    order, mass_before = _ordinal_path(probs)
    joins = mass_before - threshold <= EPSILON  # a tie joins: the guarantee needs score <= q
    joins[:, 0] = True  # the argmax always (its score is 0)
    mask = np.zeros(probs.shape, dtype=bool)
    np.put_along_axis(mask, order, joins, axis=1)
    return mask


def prediction_sets(calibration: ConformalCalibration, probs, level: float | str = 0.9) -> np.ndarray:
    """Conformal prediction sets for new images.

    Parameters
    ----------
    calibration : ConformalCalibration
        From :func:`calibrate` (or :meth:`ConformalCalibration.from_dict`).
    probs : array-like of shape (N, K) or (K,)
        Softmax probabilities of the same model on the new images.
    level : float or str, default=0.9
        One of the calibrated coverage levels (``calibration.levels``).

    Returns
    -------
    ndarray of bool, shape (N, K) (or (K,) for one image)
        True where the class is in the set. Every row has at least one True (the top class);
        for "ordinal" the True entries of a row are adjacent grades.
    """
    key = level_key(level)
    if key not in calibration.thresholds:
        raise KeyError(f"Coverage level {key} was not calibrated (have {calibration.levels}).")
    single = np.ndim(probs) == 1
    probs = _check_probs(np.atleast_2d(probs), calibration.num_classes)
    row = calibration.thresholds[key]
    if calibration.method == "ordinal":
        mask = _ordinal_sets(probs, row["threshold"])
    elif calibration.method == "lac":
        mask = probs >= 1.0 - row["threshold"] - EPSILON  # may be empty, as LAC is (see the module docstring)
    else:
        mask = _aps_sets(probs, row["threshold"], row.get("lambda", 0.0), row.get("k_reg", 0.0))
    return mask[0] if single else mask


def set_report(calibration: ConformalCalibration, probs, labels, class_ids) -> dict:
    """Empirical coverage and set size of the conformal sets on a labelled split.

    Parameters
    ----------
    calibration : ConformalCalibration
    probs : array-like of shape (N, K)
    labels : array-like of shape (N,)
        True class indices in [0, K).
    class_ids : sequence of str, length K
        Keys of ``per_class_coverage``.

    Returns
    -------
    dict
        Per level key: ``{"coverage": float in [0, 1], "mean_set_size": float in [1, K],
        "per_class_coverage": {class_id: float in [0, 1] or None when the class has no
        image}, "n": int}``; plain Python values, JSON-able.
    """
    probs = _check_probs(probs, calibration.num_classes)
    labels = _check_labels(labels, len(probs), calibration.num_classes)
    if len(class_ids) != calibration.num_classes:
        raise ValueError(f"Expected {calibration.num_classes} class ids, got {len(class_ids)}.")
    report = {}
    for key in calibration.levels:
        mask = prediction_sets(calibration, probs, key)
        covered = mask[np.arange(len(labels)), labels]
        per_class = {str(cid): (float(covered[labels == i].mean()) if np.any(labels == i) else None)
                     for i, cid in enumerate(class_ids)}
        report[key] = {
            "coverage": float(covered.mean()) if len(labels) else None,
            "mean_set_size": float(mask.sum(axis=1).mean()) if len(labels) else None,
            "per_class_coverage": per_class,
            "n": int(len(labels)),
        }
    return report


def describe_set(mask_row, class_names, probs_row) -> list[dict]:
    """The classes of one conformal set, most probable first.

    Parameters
    ----------
    mask_row : array-like of bool, shape (K,)
        One row of :func:`prediction_sets`.
    class_names : sequence of str, length K
    probs_row : array-like of shape (K,)
        The image's probabilities.

    Returns
    -------
    list of dict
        ``[{"class": name, "index": int, "probability": float in [0, 1]}, ...]`` sorted by
        probability, descending (ties by index).
    """
    mask_row = np.asarray(mask_row, dtype=bool)
    probs_row = np.asarray(probs_row, dtype=np.float64)
    if mask_row.shape != probs_row.shape or mask_row.ndim != 1 or len(class_names) != len(mask_row):
        raise ValueError("describe_set needs a (K,) mask, K class names and (K,) probabilities.")
    members = sorted(np.flatnonzero(mask_row).tolist(), key=lambda i: (-probs_row[i], i))
    return [{"class": str(class_names[i]), "index": int(i), "probability": float(probs_row[i])} for i in members]


# ----------------------------------------------------------------------------- a shipped model's sets

def methods_for(num_classes: int, ordinal: bool) -> tuple[str, ...]:
    """The set methods calibrated for a task: LAC (the default), APS and RAPS (more than two
    classes: MAPIE allows only LAC for a binary target, where the sets coincide anyway), and
    the ordinal interval for ordered grades."""
    return ("lac",) + (("aps", "raps") if num_classes > 2 else ()) + (("ordinal",) if ordinal else ())


def card_entry(val_probs, val_labels, test_probs, test_labels, class_ids, ordinal: bool) -> dict:
    """The model card's ``conformal`` record: every method calibrated on the validation
    probabilities, and its coverage and set sizes on the test split.

    Returns {"default": "lac", "calibrated_on", "methods": {method: ConformalCalibration.to_dict()},
    "test": {method: :func:`set_report`}}.
    """
    methods, test = {}, {}
    for method in methods_for(len(class_ids), ordinal):
        cal = calibrate(val_probs, val_labels, method=method)
        methods[method] = cal.to_dict()
        test[method] = set_report(cal, test_probs, test_labels, class_ids)
    return {"default": "lac", "calibrated_on": f"our validation split ({len(val_labels)} images), ensemble mean",
            "methods": methods, "test": test}


def from_card(card: dict) -> dict[str, ConformalCalibration]:
    """{method: calibration} stored in a model card ({} when the card has none)."""
    record = card.get("conformal") or {}
    return {m: ConformalCalibration.from_dict(r) for m, r in record.get("methods", {}).items()}


def image_sets(calibrations: dict, probs_row, class_names, level: float = 0.9) -> dict:
    """One image's sets: {"level", "default", method: [{"class", "index", "probability"}, ...],
    "by_level": {level key: [class names] of the default method}}."""
    probs_row = np.asarray(probs_row, dtype=np.float64)
    probs_row = probs_row / probs_row.sum()
    out = {"level": level_key(level), "default": "lac"}
    for method, cal in calibrations.items():
        out[method] = describe_set(prediction_sets(cal, probs_row, level), class_names, probs_row)
    if "lac" in calibrations:
        lac = calibrations["lac"]
        out["by_level"] = {k: [class_names[i] for i in np.flatnonzero(prediction_sets(lac, probs_row, k))]
                           for k in lac.levels}
    return out
