"""Task-specific scores, declared on each :class:`~lifelens.tasks.TaskSpec` (``scores``).

Each score is a small callable ``score(labels (N,), probs (N, K), threshold) -> {name: value}``
that knows nothing of any task: a task spec picks and parameterises them, so the
evaluation code has no per-task branches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm


def safe_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC, or None when only one class is present."""
    if len(np.unique(y_true)) < 2:
        return None
    return float(skm.roc_auc_score(y_true, score))


def macro_auc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Mean over classes of the one-vs-rest ROC AUC of (N, K) ``probs``; None unless every class is present."""
    aucs = [safe_auc(np.asarray(labels) == i, np.asarray(probs)[:, i]) for i in range(np.shape(probs)[1])]
    return float(np.mean(aucs)) if all(a is not None for a in aucs) else None


@dataclass(frozen=True)
class MeanOfClassAUCs:
    """One-vs-rest AUC of the named classes and their mean (ISIC 2017's challenge score)."""

    class_indices: tuple[int, ...]
    class_ids: tuple[str, ...]
    name: str

    def __call__(self, labels, probs, threshold=None) -> dict:
        out = {f"{cid}_auc": safe_auc(labels == i, probs[:, i]) for i, cid in zip(self.class_indices, self.class_ids)}
        values = list(out.values())
        out[self.name] = None if any(v is None for v in values) else float(np.mean(values))
        return out


@dataclass(frozen=True)
class OrdinalGrades:
    """Quadratic-weighted kappa of an ordered grade, and the AUC/accuracy of "grade >=
    ``referable_from``" scored by the summed probability of those grades.

    The grade called is the argmax, or, given ``threshold`` as K-1 increasing cut points,
    the expected grade ``probs @ [0..K-1]`` cut at them (:func:`fit_grade_cut_points`).
    """

    referable_from: int

    def __call__(self, labels, probs, threshold=None) -> dict:
        pred = decode_grades(probs, threshold)
        referable = labels >= self.referable_from
        kappa = skm.cohen_kappa_score(labels, pred, weights="quadratic") if len(np.unique(labels)) > 1 else None
        return {
            "quadratic_kappa": None if kappa is None or np.isnan(kappa) else float(kappa),
            "referable_auc": safe_auc(referable, probs[:, self.referable_from:].sum(axis=1)),
            "referable_accuracy": float(((pred >= self.referable_from) == referable).mean()) if len(labels) else None,
        }


def decode_grades(probs: np.ndarray, cut_points=None) -> np.ndarray:
    """(N, K) probabilities -> (N,) grades: the argmax without cut points, else the expected
    grade cut at the K-1 increasing ``cut_points``."""
    probs = np.asarray(probs)
    if cut_points is None or np.isscalar(cut_points):
        return probs.argmax(axis=1)
    expected = probs @ np.arange(probs.shape[1])
    return np.digitize(expected, np.asarray(cut_points, dtype=np.float64))


def fit_grade_cut_points(labels: np.ndarray, probs: np.ndarray, passes: int = 3) -> list[float]:
    """The K-1 increasing cut points on the expected grade that maximise quadratic kappa on
    (``labels``, ``probs``), the validation split (as APTOS 2019 entries did). Kappa is a step
    function of the cuts, so a gradient-free coordinate search: each cut in turn moves to the
    best of 200 values between its neighbours, ``passes`` times over, from two starts (the
    midpoints 0.5, 1.5, ... and the cuts that match the grades' frequencies); the better wins."""
    labels = np.asarray(labels, dtype=int)
    k = probs.shape[1]
    expected = np.asarray(probs) @ np.arange(k)

    def kappa(cuts):
        return skm.cohen_kappa_score(labels, np.digitize(expected, cuts), weights="quadratic")

    def search(cuts):
        best = kappa(cuts)
        for _ in range(passes):
            for i in range(k - 1):
                low = cuts[i - 1] if i > 0 else 0.0
                high = cuts[i + 1] if i < k - 2 else float(k - 1)
                for value in np.linspace(low, high, 202)[1:-1]:
                    trial = cuts.copy()
                    trial[i] = value
                    score = kappa(trial)
                    if score > best:
                        best, cuts = score, trial
        return best, cuts

    # Two starts: the midpoints, and the cuts that call each grade as often as it occurs.
    shares = np.cumsum(np.bincount(labels, minlength=k))[:-1] / len(labels)
    starts = [np.arange(k - 1) + 0.5, np.maximum.accumulate(np.quantile(expected, shares))]
    _, cuts = max((search(start) for start in starts), key=lambda found: found[0])
    return [round(float(c), 4) for c in cuts]


@dataclass(frozen=True)
class OperatingPoint:
    """AUC of the positive class and, at the operating threshold (chosen on validation and
    stored in the card; 0.5 when none is given), sensitivity and specificity."""

    positive: int
    auc_name: str

    def __call__(self, labels, probs, threshold=None) -> dict:
        score = probs[:, self.positive]
        t = 0.5 if threshold is None else float(threshold)
        called = score >= t
        pos, neg = labels == self.positive, labels != self.positive
        return {
            self.auc_name: safe_auc(pos, score),
            "threshold": t,
            "sensitivity": float(called[pos].mean()) if pos.any() else None,
            "specificity": float((~called[neg]).mean()) if neg.any() else None,
        }


def headline_metrics(spec, labels: np.ndarray, probs: np.ndarray, threshold: float | None = None) -> dict:
    """accuracy, balanced accuracy, macro AUC and the task's own scores: the cheap part of
    the evaluate contract (what the bootstrap resamples)."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    pred = predicted_class(spec, probs, threshold)  # the call the screen makes, at the task's threshold
    out = {
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else None,
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, pred)) if len(labels) else None,
        "macro_auc": macro_auc(labels, probs),
    }
    for score in spec.scores:
        out.update(score(labels, probs, threshold))
    return out


def predicted_class(spec, probs: np.ndarray, threshold) -> np.ndarray:
    """(N, K) probabilities -> (N,) the class each image is called by the card's decision
    rule (``card["threshold"]``, chosen on validation): a threshold on the positive class
    for a binary task, cut points on the expected grade for ordered grades, else the argmax."""
    probs = np.asarray(probs)
    if threshold is None:
        return probs.argmax(axis=1)
    if spec.ordinal and not np.isscalar(threshold):
        return decode_grades(probs, threshold)
    point = spec.operating_point
    if point is None:
        return probs.argmax(axis=1)
    other = 1 - point.positive
    return np.where(probs[:, point.positive] >= threshold, point.positive, other)


def fit_decision_rule(spec, labels: np.ndarray, probs: np.ndarray):
    """The card's ``threshold`` fitted on validation (labels, probs): the maximum-Youden-J
    threshold of a binary task, the grade cut points of an ordinal one, else None."""
    if spec.operating_point is not None:
        fpr, tpr, thresholds = skm.roc_curve(labels, np.asarray(probs)[:, spec.operating_point.positive])
        return float(min(thresholds[int(np.argmax(tpr - fpr))], 1.0))
    if spec.ordinal:
        cuts = fit_grade_cut_points(labels, probs)
        kappa = lambda pred: skm.cohen_kappa_score(labels, pred, weights="quadratic")  # noqa: E731
        # Kept only where it beats the argmax on validation; else the argmax stays the rule.
        return cuts if kappa(decode_grades(probs, cuts)) > kappa(np.asarray(probs).argmax(axis=1)) else None
    return None


DECISION_RULES = {
    "binary": "maximum Youden J on the validation split",
    "ordinal": ("expected grade (probability-weighted mean grade) cut at the points that maximise quadratic "
                "kappa on the validation split"),
}


def selection_score(spec, probs: np.ndarray, labels: np.ndarray) -> float:
    """What epochs, test-time augmentation and other choices are selected by on validation:
    balanced accuracy, or ROC AUC of the positive class for a binary task."""
    if spec.num_classes == 2 and len(np.unique(labels)) == 2:
        return float(skm.roc_auc_score(labels, np.asarray(probs)[:, 1]))
    return float(skm.balanced_accuracy_score(labels, np.asarray(probs).argmax(axis=1)))
