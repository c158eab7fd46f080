"""Warnings whose thresholds are measured, not guessed.

For each Bayesian method, the thresholds are the ``QUANTILE`` of the in-distribution
values on our validation split: a warning is then shown for about 1 in 20 images like the
training data, and far more often for images unlike it. The rate each warning fired on
the validation split and on the test split is stored beside it, so the screen can say
how often it fires.
"""
from __future__ import annotations

import numpy as np

from lifelens.uncertainty import metrics

QUANTILE = 0.95
SIGNALS = ("predictive_entropy", "mutual_information", "confidence_gap")


def signals(softmax: np.ndarray, draws: np.ndarray) -> dict[str, np.ndarray]:
    """Per image, the values the warnings look at.

    softmax: (N, K) the (temperature-scaled) single-pass softmax; draws: (S, N, K) posterior
    samples of one method. Returns {"predictive_entropy", "mutual_information" (nats),
    "confidence_gap" (|softmax of its top class - posterior mean of that class|, 0..1),
    "disagree" (bool: the two pick different classes)}, each (N,).
    """
    mean = draws.mean(axis=0)
    top = softmax.argmax(axis=1)
    rows = np.arange(len(top))
    return {
        "predictive_entropy": metrics.entropy(mean),
        "mutual_information": metrics.mutual_information(draws),
        "confidence_gap": np.abs(softmax[rows, top] - mean[rows, top]),
        "disagree": top != mean.argmax(axis=1),
    }


def fit_thresholds(softmax_val: np.ndarray, draws_val: dict, softmax_test: np.ndarray, draws_test: dict) -> dict:
    """{method: {"thresholds": {signal: value}, "rate_val": {...}, "rate_test": {...}}} for
    every method in ``draws_val`` ({method: (S, N, K)}); rates are the share of images a
    warning fires on (``disagree`` has no threshold: it fires whenever the classes differ)."""
    out = {"quantile": QUANTILE, "split": "thresholds from our validation split; rates on validation and test"}
    for method, draws in draws_val.items():
        val = signals(softmax_val, draws)
        thresholds = {name: float(np.quantile(val[name], QUANTILE)) for name in SIGNALS}
        test = signals(softmax_test, draws_test[method])
        out[method] = {"thresholds": thresholds, "rate_val": fire_rates(val, thresholds),
                       "rate_test": fire_rates(test, thresholds)}
    return out


def fire_rates(values: dict, thresholds: dict) -> dict:
    """Share of images each warning fires on, and ``any`` (at least one)."""
    fired = {name: values[name] > thresholds[name] for name in SIGNALS}
    rates = {name: float(np.mean(v)) for name, v in fired.items()}
    rates["any"] = float(np.mean(np.any(np.stack(list(fired.values())), axis=0)))
    return rates


def firing(calibrated: dict | None, method: str, softmax_row, draws) -> dict[str, bool]:
    """Which warnings fire for one image: {signal: bool, "disagree": bool}; empty when the
    card has no thresholds for ``method``. draws: (S, K) posterior samples of the image."""
    record = (calibrated or {}).get(method)
    if not record:
        return {}
    values = signals(np.asarray(softmax_row, float)[None], np.asarray(draws, float)[:, None, :])
    out = {name: bool(values[name][0] > record["thresholds"][name]) for name in SIGNALS}
    out["disagree"] = bool(values["disagree"][0])
    return out
