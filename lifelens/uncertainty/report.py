"""What each kind of confidence is worth on real data: calibration, referral, OOD detection.

``head_predictions`` runs every method on precomputed features; ``confidence_report``
scores them on a labelled set (our test split); ``ood_auroc`` asks whether each
uncertainty separates this task's images from other tasks' images and from noise.
"""
from __future__ import annotations

import hashlib

import numpy as np
from sklearn.metrics import roc_auc_score

from lifelens import config, data
from lifelens.tasks import TASKS, TaskSpec
from lifelens.uncertainty import frequentist, metrics
from lifelens.uncertainty.features import features_of
from lifelens.uncertainty.mc_dropout import DEFAULT_SAMPLES, mc_dropout_head
from lifelens.uncertainty.variational import variational_samples

REFERRAL_FRACTIONS = tuple(round(f, 2) for f in np.arange(0.0, 0.501, 0.05))
NOISE_SOURCES = ("gaussian_noise", "uniform_noise")
OOD_PER_SOURCE = 40


def head_predictions(task_model, features: np.ndarray, temperature: float | None = None,
                     samples: int = DEFAULT_SAMPLES, seed: int | None = None) -> dict:
    """Every method's output for (N, F) features of one TaskModel.

    Returns {"logits": (N, K), "softmax": (N, K), "temperature": (N, K) (softmax of
    logits / T, T = 1 if None), "mc_dropout": (T, N, K), "variational": (S, N, K) or
    None when no variational head is attached}. S = T = ``samples``.
    """
    logits = frequentist.head_logits(task_model.full.get_layer("probs"), features)
    head = task_model.variational_head
    return {
        "logits": logits,
        "softmax": frequentist.softmax(logits),
        "temperature": frequentist.softmax(logits, temperature or 1.0),
        "mc_dropout": mc_dropout_head(task_model, features, samples, seed),
        "variational": None if head is None else variational_samples(
            head, features, samples, None if seed is None else seed + 1),
    }


def referral_accuracy(probs: np.ndarray, labels: np.ndarray, uncertainty: np.ndarray,
                      fractions=REFERRAL_FRACTIONS) -> list[float]:
    """Accuracy on the images kept when the most uncertain ``fraction`` are referred.

    probs: (N, K) predictions; labels: (N,); uncertainty: (N,) higher = less sure.
    Returns one accuracy in [0, 1] per fraction (Leibig et al. 2017).
    """
    order = np.argsort(uncertainty, kind="stable")
    correct = (np.argmax(probs, axis=1) == np.asarray(labels))[order]
    n = len(correct)
    return [float(correct[: max(1, n - int(round(f * n)))].mean()) for f in fractions]


def posterior_accuracies(samples: np.ndarray, labels: np.ndarray) -> list[float]:
    """(S, N, K) samples -> S accuracies, one per sampled network (each in [0, 1])."""
    return np.mean(np.argmax(samples, axis=2) == np.asarray(labels)[None], axis=1).tolist()


def _method_scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "accuracy": frequentist.accuracy_with_interval(probs, labels),
        "ece": metrics.expected_calibration_error(probs, labels),
        "nll": metrics.negative_log_likelihood(probs, labels),
        "brier": metrics.brier_score(probs, labels),
        "reliability": metrics.reliability(probs, labels),
    }


def confidence_report(task_model, images: np.ndarray | None, labels: np.ndarray, temperature: float | None,
                      samples: int = DEFAULT_SAMPLES, seed: int = 0, features: np.ndarray | None = None) -> dict:
    """Calibration and referral of every confidence method on a labelled set.

    images: (N, S, S, C) prepared inputs (or pass ``features`` (N, F) instead);
    labels: (N,) int; temperature: the fitted T (None -> 1). Returns a JSON-able dict
    with one entry per method ("softmax", "temperature", "mc_dropout", "variational"
    if a head is attached), each {"accuracy" (with Wilson 95% interval), "ece", "nll",
    "brier", "reliability"}, plus "posterior_accuracy_histogram" (one accuracy per
    sampled network), "referral_curve" and the settings used.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if features is None:
        features = features_of(task_model, images)
    out = head_predictions(task_model, features, temperature, samples, seed)
    mc_mean = out["mc_dropout"].mean(axis=0)
    report = {
        "images": int(len(labels)),
        "samples": samples,
        "temperature": float(temperature or 1.0),
        "softmax": _method_scores(out["softmax"], labels),
        "temperature_scaled": None,
        "mc_dropout": _method_scores(mc_mean, labels),
        "posterior_accuracy_histogram": {"mc_dropout": posterior_accuracies(out["mc_dropout"], labels)},
    }
    report["temperature"] = report.pop("temperature")
    report["temperature_scaled"] = None
    del report["temperature_scaled"]
    report["temperature_method"] = _method_scores(out["temperature"], labels)
    curve = {
        "fractions": list(REFERRAL_FRACTIONS),
        "retained": [max(1, len(labels) - int(round(f * len(labels)))) for f in REFERRAL_FRACTIONS],
        "max_softmax": referral_accuracy(out["softmax"], labels, 1.0 - out["softmax"].max(axis=1)),
        "mc_dropout_mutual_information": referral_accuracy(mc_mean, labels, metrics.mutual_information(out["mc_dropout"])),
    }
    if out["variational"] is not None:
        var_mean = out["variational"].mean(axis=0)
        report["variational"] = _method_scores(var_mean, labels)
        report["posterior_accuracy_histogram"]["variational"] = posterior_accuracies(out["variational"], labels)
        curve["variational_mutual_information"] = referral_accuracy(
            var_mean, labels, metrics.mutual_information(out["variational"]))
    report["referral_curve"] = curve
    return report
