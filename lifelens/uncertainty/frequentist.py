"""Frequentist confidence: the softmax point estimate, temperature scaling, Wilson intervals.

Temperature scaling (Guo et al. 2017) divides the logits by one scalar T fitted by
minimising the negative log-likelihood on a held-out split; T > 1 softens an
over-confident network, T < 1 sharpens an under-confident one. The top class never
changes, so accuracy is unchanged and only the stated confidence moves.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize, special, stats

TEMPERATURE_BOUNDS = (0.05, 20.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, K) logits -> (N, K) probabilities of ``softmax(logits / temperature)``; rows sum to 1."""
    if not temperature > 0:
        raise ValueError(f"The temperature must be positive (got {temperature}).")
    return special.softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=-1)


def head_logits(probs_layer, features: np.ndarray) -> np.ndarray:
    """(N, F) pooled features -> (N, K) logits of a softmax ``Dense`` head (the ``probs`` layer).

    Computed from the layer's own kernel and bias in float64, so saturated softmax
    outputs (probability exactly 0 in float32) still have finite logits.
    """
    kernel, bias = (np.asarray(w, dtype=np.float64) for w in probs_layer.get_weights())
    return np.asarray(features, dtype=np.float64) @ kernel + bias


def probabilities_to_logits(probs: np.ndarray) -> np.ndarray:
    """(N, K) probabilities -> log-probabilities usable as logits (softmax gives the input back).

    For models whose pre-softmax values are not reachable; probabilities are clipped at
    1e-12, so temperatures fitted on these are approximate for saturated outputs.
    """
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, bounds=TEMPERATURE_BOUNDS) -> float:
    """The temperature T in ``bounds`` minimising the mean NLL of ``softmax(logits / T)``.

    logits: (N, K) float; labels: (N,) int class indices in [0, K). Returns T > 0.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError("fit_temperature needs (N, K) logits and N labels, N > 0.")

    def nll(log_t: float) -> float:
        log_p = special.log_softmax(logits / np.exp(log_t), axis=1)
        return float(-np.mean(log_p[np.arange(len(labels)), labels]))

    # One-dimensional and smooth in log T: a bounded scalar search is exact enough and fast.
    result = optimize.minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded",
                                      options={"xatol": 1e-4})
    return float(np.exp(result.x))


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (e.g. accuracy = correct / n).

    Returns (low, high) in [0, 1]; (0.0, 1.0) when n == 0. Unlike the normal
    approximation it stays inside [0, 1] and behaves at 0 % and 100 %.
    """
    if n <= 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def accuracy_with_interval(probs: np.ndarray, labels: np.ndarray, confidence: float = 0.95) -> dict:
    """Top-1 accuracy of (N, K) ``probs`` against (N,) ``labels`` with its Wilson interval.

    Returns {"value", "low", "high", "correct", "n", "confidence"}; values in [0, 1].
    """
    labels = np.asarray(labels)
    correct = int(np.sum(np.argmax(probs, axis=1) == labels))
    n = int(len(labels))
    low, high = wilson_interval(correct, n, confidence)
    return {"value": correct / n if n else float("nan"), "low": low, "high": high,
            "correct": correct, "n": n, "confidence": confidence}
