"""What each kind of confidence is worth on real data: calibration, referral, OOD detection.

``head_predictions`` runs every method on precomputed features; ``confidence_report``
scores them on a labelled set (our test split); ``ood_auroc`` asks whether each
uncertainty separates this task's images from other tasks' images and from noise.
"""
from __future__ import annotations

import hashlib

import numpy as np
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from lifelens import config, data
from lifelens.tasks import TASKS, TaskSpec
from lifelens.uncertainty import frequentist, metrics
from lifelens.uncertainty.features import features_of, save_atomically
from lifelens.uncertainty.mc_dropout import DEFAULT_SAMPLES, mc_dropout_head
from lifelens.bayesian_layers import variational_samples

REFERRAL_FRACTIONS = tuple(round(f, 2) for f in np.arange(0.0, 0.501, 0.05))
NOISE_SOURCES = ("gaussian_noise", "uniform_noise")
OOD_PER_SOURCE = 40


def head_predictions(task_model, features: np.ndarray, temperature: float | None = None,
                     samples: int = DEFAULT_SAMPLES, seed: int | None = None,
                     ensemble: np.ndarray | None = None) -> dict:
    """Every method's output for (N, F) features of one TaskModel.

    Returns {"logits": (N, K), "softmax": (N, K), "temperature": (N, K) (softmax of
    logits / T, T = 1 if None), "mc_dropout": (T, N, K), "variational": (S, N, K) or
    None when no variational head is attached, "ensemble": the given (M, N, K) member
    softmaxes (:func:`lifelens.models.member_probabilities`) or None}. S = T = ``samples``.
    """
    logits = frequentist.head_logits(task_model.full.get_layer("probs"), features)
    head = task_model.variational_head
    return {
        "ensemble": ensemble if ensemble is not None and len(ensemble) > 1 else None,
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


def referral_at(spec, labels: np.ndarray, probs: np.ndarray, uncertainty: np.ndarray, fraction: float,
                threshold: float | None = None) -> dict:
    """Refer the most uncertain ``fraction`` (0..1) of images to a clinician; score the rest.

    Returns {"kept": int, "referred_per_1000": int, "accuracy": kept accuracy, the task's
    headline metrics on the kept images ("balanced_accuracy", "macro_auc", task scores; None
    where a class is missing among them)} (Leibig et al. 2017).
    """
    from lifelens.scoring import headline_metrics

    n = len(labels)
    keep = np.argsort(np.asarray(uncertainty), kind="stable")[: max(1, n - int(round(fraction * n)))]
    kept = headline_metrics(spec, np.asarray(labels)[keep], np.asarray(probs)[keep], threshold)
    return {**kept, "kept": int(len(keep)), "referred_per_1000": int(round(1000 * (n - len(keep)) / max(n, 1)))}


def referral_data(labels: np.ndarray, members: np.ndarray, sets: np.ndarray) -> dict:
    """Per test image what the referral simulator needs (JSON-able): labels, the ensemble's
    probabilities and each uncertainty score of :func:`lifelens.uncertainty.shift.scores`."""
    from lifelens.uncertainty.shift import scores

    return {"labels": np.asarray(labels).astype(int).tolist(),
            "probs": np.round(members.mean(axis=0), 5).tolist(),
            "scores": {k: np.round(v, 5).tolist() for k, v in scores(members, sets).items()}}


def posterior_accuracies(samples: np.ndarray, labels: np.ndarray) -> list[float]:
    """(S, N, K) samples -> S accuracies, one per sampled network (each in [0, 1])."""
    return np.mean(np.argmax(samples, axis=2) == np.asarray(labels)[None], axis=1).tolist()


def _method_scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    return {
        "accuracy": frequentist.accuracy_with_interval(probs, labels),
        # Class-weighted heads trade plain accuracy for minority classes; this shows the other side.
        "balanced_accuracy": float(balanced_accuracy_score(labels, np.argmax(probs, axis=1))),
        "ece": metrics.expected_calibration_error(probs, labels),
        "nll": metrics.negative_log_likelihood(probs, labels),
        "brier": metrics.brier_score(probs, labels),
        "reliability": metrics.reliability(probs, labels),
    }


def confidence_report(task_model, images: np.ndarray | None, labels: np.ndarray, temperature: float | None,
                      samples: int = DEFAULT_SAMPLES, seed: int = 0, features: np.ndarray | None = None,
                      ensemble: np.ndarray | None = None) -> dict:
    """Calibration and referral of every confidence method on a labelled set.

    images: (N, S, S, C) prepared inputs (or pass ``features`` (N, F) instead);
    labels: (N,) int; temperature: the fitted T (None -> 1). Returns a JSON-able dict
    with one entry per method ("softmax", "temperature" (also holding its "value"),
    "mc_dropout" and "variational" if a head is attached; the Bayesian ones scored on
    their posterior-mean probabilities), each {"accuracy" (with Wilson 95% interval),
    "balanced_accuracy", "ece", "nll", "brier", "reliability"}, plus "posterior_accuracy_histogram" (one accuracy per
    sampled network), "referral_curve" and the settings used. In the referral curve each
    ranking keeps its own method's predictions: max softmax ranks (and predicts with) the
    softmax, mutual information ranks (and predicts with) the posterior mean.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if features is None:
        features = features_of(task_model, images)
    if ensemble is None and images is not None and task_model.is_ensemble:
        from lifelens.models import member_probabilities

        ensemble = member_probabilities(task_model, images)
    out = head_predictions(task_model, features, temperature, samples, seed, ensemble)
    mc_mean = out["mc_dropout"].mean(axis=0)
    report = {
        "images": int(len(labels)),
        "samples": samples,
        "softmax": _method_scores(out["softmax"], labels),
        "temperature": {"value": float(temperature or 1.0), **_method_scores(out["temperature"], labels)},
        "mc_dropout": _method_scores(mc_mean, labels),
        "posterior_accuracy_histogram": {"mc_dropout": posterior_accuracies(out["mc_dropout"], labels)},
    }
    curve = {
        "fractions": list(REFERRAL_FRACTIONS),
        "retained": [max(1, len(labels) - int(round(f * len(labels)))) for f in REFERRAL_FRACTIONS],
        "max_softmax": referral_accuracy(out["softmax"], labels, 1.0 - out["softmax"].max(axis=1)),
        "mc_dropout_mutual_information": referral_accuracy(mc_mean, labels, metrics.mutual_information(out["mc_dropout"])),
    }
    for method in ("variational", "ensemble"):  # the posteriors that may be missing
        if out[method] is not None:
            mean = out[method].mean(axis=0)
            report[method] = _method_scores(mean, labels)
            report["posterior_accuracy_histogram"][method] = posterior_accuracies(out[method], labels)
            curve[f"{method}_mutual_information"] = referral_accuracy(
                mean, labels, metrics.mutual_information(out[method]))
    report["referral_curve"] = curve
    return report


# ----------------------------------------------------------------------------- out of distribution

def _pick(items: list, n: int) -> list:
    """n items spread evenly over a sorted list (deterministic)."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def ood_images(spec: TaskSpec, per_source: int = OOD_PER_SOURCE, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs this task's model was never meant to see, prepared as if a user uploaded them.

    Returns {source: float32 (n, S, S, C)}: for each other task, ``per_source`` images
    of its test split, and Gaussian and uniform noise images, all passed through THIS
    task's ``load_image``/``prepare_image``. Cached on disk.
    """
    out = {}
    for other in TASKS.values():
        if other.id == spec.id:
            continue
        chosen = _pick(data.task_splits(other)["test"], per_source)
        key = hashlib.sha256(("\n".join(s.path for s in chosen) + data.preparation_key(spec)).encode()).hexdigest()[:12]
        cache = config.cache_root() / f"ood-{spec.id}-{spec.input_size}-{other.id}-{key}.npy"
        if cache.is_file():
            out[other.id] = np.load(cache).astype(np.float32)
            continue
        folder = other.data_dir() / "images"
        prepared = np.stack([spec.prepare_image(spec.load_image(folder / s.path)) for s in chosen])
        save_atomically(cache, np.clip(prepared + 0.5, 0, 255).astype(np.uint8))
        out[other.id] = np.load(cache).astype(np.float32)
    rng = np.random.default_rng(seed)
    shape = (per_source, 256, 256, spec.channels)
    noise = {
        "gaussian_noise": np.clip(rng.normal(127.5, 50.0, shape), 0, 255).astype(np.uint8),
        "uniform_noise": rng.integers(0, 256, shape, dtype=np.uint8),
    }
    for name in NOISE_SOURCES:
        out[name] = np.stack([spec.prepare_image(image) for image in noise[name]])
    return out


def ood_auroc(task_model, in_features: np.ndarray, ood: dict[str, np.ndarray],
              samples: int = DEFAULT_SAMPLES, seed: int = 0, ensemble: np.ndarray | None = None) -> dict:
    """AUROC of each uncertainty score at telling OOD inputs (positive) from in-distribution ones.

    in_features: (N, F) features of this task's test images; ood: {source: (n, S, S, C)
    prepared images}; ensemble: the (M, N, K) member softmaxes of the same test images
    (:func:`lifelens.models.member_probabilities`), for a deep ensemble. Returns
    {"mutual_information": {source: auc} (MC dropout), "max_softmax": {source: auc} (score
    1 - max softmax), "variational_mutual_information": {...} if a head is attached,
    "ensemble_mutual_information": {...} (the members' disagreement) when ``ensemble`` has
    two or more members, "images": {"in_distribution": N, source: n}}. 0.5 is chance, 1.0
    perfect separation, below 0.5 means OOD inputs look MORE certain.
    """
    from lifelens.models import member_probabilities

    def scores(features, offset, members):
        out = head_predictions(task_model, features, None, samples, seed + offset, members)
        found = {"mutual_information": metrics.mutual_information(out["mc_dropout"]),
                 "max_softmax": 1.0 - out["softmax"].max(axis=1)}
        if out["variational"] is not None:
            found["variational_mutual_information"] = metrics.mutual_information(out["variational"])
        if out["ensemble"] is not None:
            found["ensemble_mutual_information"] = metrics.mutual_information(out["ensemble"])
        return found

    with_members = ensemble is not None and len(ensemble) > 1
    inside = scores(in_features, 0, ensemble if with_members else None)
    report = {name: {} for name in inside}
    report["images"] = {"in_distribution": int(len(in_features))}
    for i, (source, images) in enumerate(ood.items(), start=1):
        outside = scores(features_of(task_model, images), 10 * i,
                         member_probabilities(task_model, images) if with_members else None)
        truth = np.r_[np.zeros(len(in_features)), np.ones(len(images))]
        for name in inside:
            report[name][source] = float(roc_auc_score(truth, np.r_[inside[name], outside[name]]))
        report["images"][source] = int(len(images))
    return report
