"""Calibration metrics and the information-theoretic split of predictive uncertainty.

All functions take numpy arrays: ``probs`` (N, K) rows summing to 1, ``labels`` (N,)
int class indices, ``samples`` (S, N, K) or (S, K) probabilities from S sampled
networks (MC-dropout masks or weight draws). Entropies are in nats, in [0, log K].
"""
from __future__ import annotations

import numpy as np

EPS = 1e-12
DEFAULT_BINS = 15  # as lifelens.evaluate, so the app shows one kind of ECE


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean of -log p(true class); 0 is perfect, log K is a uniform guess (probs clipped at 1e-12)."""
    from sklearn.metrics import log_loss

    probs = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0)
    probs /= probs.sum(axis=1, keepdims=True)  # sklearn wants rows that sum to 1; float32 outputs do within rounding
    return float(log_loss(np.asarray(labels, dtype=np.int64), probs, labels=list(range(probs.shape[1]))))


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean over images of sum_k (p_k - onehot_k)^2; in [0, 2], 0 is perfect.

    Written out rather than ``sklearn.metrics.brier_score_loss``: for two classes sklearn
    scores the positive class alone (half of this sum), and the cards compare across tasks."""
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(labels)), np.asarray(labels, dtype=np.int64)] = 1.0
    return float(np.mean(np.sum((probs - onehot) ** 2, axis=1)))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> dict:
    """Reliability diagram of the top-class confidence in ``bins`` equal-width bins on [0, 1].

    Returns {"edges": (bins + 1,), "confidence": mean top-class probability per bin,
    "accuracy": fraction correct per bin, "count": images per bin}; the confidence and
    accuracy of an empty bin are None (JSON null).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Right-closed bins, with a confidence of exactly 0 put in the first bin.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    out = {"edges": edges.tolist(), "confidence": [], "accuracy": [], "count": []}
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        out["count"].append(count)
        out["confidence"].append(float(confidence[members].mean()) if count else None)
        out["accuracy"].append(float(correct[members].mean()) if count else None)
    return out


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = DEFAULT_BINS) -> float:
    """ECE (Naeini et al. 2015): sum over bins of (count / N) * |accuracy - confidence|; in [0, 1]."""
    table = reliability(probs, labels, bins)
    n = sum(table["count"])
    if n == 0:
        return float("nan")
    return float(sum(c / n * abs(a - p) for c, a, p in zip(table["count"], table["accuracy"], table["confidence"]) if c))


def entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis``; in [0, log K]."""
    from scipy.stats import entropy as shannon

    return np.asarray(shannon(np.asarray(probs, dtype=np.float64), axis=axis), dtype=np.float64)


def uncertainty_decomposition(samples: np.ndarray) -> dict:
    """Split the predictive entropy of S sampled networks (Depeweg et al. 2018).

    samples: (S, K) for one image or (S, N, K) for N images. Returns arrays of shape ()
    or (N,): "predictive_entropy" H[mean_s p_s] (total), "expected_entropy" mean_s H[p_s]
    (aleatoric: noise the networks agree on) and "mutual_information" their difference
    (epistemic: disagreement between networks), all in nats; MI is in [0, log K].
    """
    samples = np.asarray(samples, dtype=np.float64)
    total = entropy(samples.mean(axis=0))
    aleatoric = entropy(samples).mean(axis=0)
    return {"predictive_entropy": total, "expected_entropy": aleatoric,
            "mutual_information": np.maximum(total - aleatoric, 0.0)}


def mutual_information(samples: np.ndarray) -> np.ndarray:
    """Epistemic uncertainty of (S, N, K) samples -> (N,) nats (see :func:`uncertainty_decomposition`)."""
    return uncertainty_decomposition(samples)["mutual_information"]


def bayesian_summary(samples: np.ndarray, frequentist: np.ndarray | None = None,
                     credible: float = 0.95) -> dict:
    """Everything the app shows for one image from S posterior samples.

    samples: (S, K) class probabilities, one row per sampled network. frequentist:
    optional (K,) deterministic softmax of the same image. Returns
    {"mean": (K,), "std": (K,), "interval": (K, 2) central ``credible`` interval from
    percentiles, "samples": (S, K) (for histograms), "top_class": int,
    "predictive_entropy", "expected_entropy", "mutual_information": floats in nats,
    "agrees_with_frequentist": bool or None}. Probabilities are in [0, 1].
    """
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or len(samples) == 0:
        raise ValueError("bayesian_summary needs (S, K) samples for one image, S > 0.")
    tail = (1 - credible) / 2 * 100
    mean = samples.mean(axis=0)
    parts = uncertainty_decomposition(samples)
    top = int(np.argmax(mean))
    return {
        "mean": mean,
        "std": samples.std(axis=0),
        "interval": np.percentile(samples, [tail, 100 - tail], axis=0).T,
        "samples": samples,
        "top_class": top,
        "predictive_entropy": float(parts["predictive_entropy"]),
        "expected_entropy": float(parts["expected_entropy"]),
        "mutual_information": float(parts["mutual_information"]),
        "agrees_with_frequentist": None if frequentist is None else bool(top == int(np.argmax(frequentist))),
    }
