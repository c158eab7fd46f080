"""Late fusion of the deep ensemble with the gradient-boosted colour-texture model.

Each member's softmax ``p_m`` (N, K) and the boosted model's ``q`` (N, K) are combined in log
space, ``softmax(a log p_m + b log q)``: a product of experts whose two weights are fitted on
validation by NLL. With ``b = 0`` this is temperature scaling (``a = 1 / T``), so fusion nests
the shipped calibration and is adopted only when it lowers the validation NLL on images it was
not fitted on (grouped cross-fitting) by more than twice the gain's standard error. The fused members stay the posterior samples: their
mean is the prediction and their spread the networks' disagreement. Every explanation still
explains the networks; the boosted model is a second, simpler opinion inside the prediction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

WEIGHT_BOUNDS = ((0.1, 5.0), (0.0, 3.0))  # network weight a (1/T), boosted weight b


def fuse(members: np.ndarray, companion: np.ndarray, network_weight: float, companion_weight: float) -> np.ndarray:
    """(M, N, K) member softmax and (N, K) boosted-model probabilities -> (M, N, K) fused,
    ``softmax(a log p_m + b log q)`` per member, rows summing to 1."""
    return _fuse64(members, companion, network_weight, companion_weight).astype(np.float32)


def _fuse64(members, companion, network_weight, companion_weight) -> np.ndarray:
    # float64 throughout: the weights are fitted by finite differences, which float32 rounding flattens
    log_p = np.log(np.clip(np.asarray(members, np.float64), 1e-12, 1.0))
    log_q = np.log(np.clip(np.asarray(companion, np.float64), 1e-12, 1.0))
    logits = network_weight * log_p + companion_weight * log_q[None]
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=-1, keepdims=True)


def _image_nll(members, companion, labels, weights) -> np.ndarray:
    mean = _fuse64(members, companion, *weights).mean(axis=0)
    return -np.log(np.clip(mean[np.arange(len(labels)), labels], 1e-12, 1.0))


def _nll(members, companion, labels, weights) -> float:
    return float(_image_nll(members, companion, labels, weights).mean())


def fit_weights(members: np.ndarray, companion: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) minimising the NLL of the fused ensemble mean on (``members`` (M, N, K),
    ``companion`` (N, K), ``labels`` (N,))."""
    from scipy.optimize import minimize

    labels = np.asarray(labels, dtype=int)
    found = minimize(lambda w: _nll(members, companion, labels, w), x0=np.array([1.0, 0.2]),
                     bounds=WEIGHT_BOUNDS, method="L-BFGS-B")
    return round(float(found.x[0]), 4), round(float(found.x[1]), 4)


def cross_fitted_nll(members: np.ndarray, companion: np.ndarray, labels: np.ndarray, groups, folds: int = 5,
                     seed: int = 0) -> dict:
    """Validation NLL of the networks alone (temperature) and fused, each fold scored with the
    weights fitted on the other folds; images of one patient or lesion (``groups``) stay in one
    fold. Returns {"networks": float, "fused": float, "gain": mean per-image NLL gain of fusion,
    "gain_standard_error": its standard error, "folds": int}."""
    from sklearn.model_selection import GroupKFold

    from lifelens.evaluate import fit_temperature

    labels = np.asarray(labels, dtype=int)
    losses = {"networks": np.zeros(len(labels)), "fused": np.zeros(len(labels))}
    splitter = GroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fit_ix, score_ix in splitter.split(labels, labels, groups):
        m_fit, m_score = members[:, fit_ix], members[:, score_ix]
        weights = {"networks": (1.0 / fit_temperature(m_fit, labels[fit_ix]), 0.0),  # the shipped calibration
                   "fused": fit_weights(m_fit, companion[fit_ix], labels[fit_ix])}
        for name, w in weights.items():
            losses[name][score_ix] = _image_nll(m_score, companion[score_ix], labels[score_ix], w)
    gain = losses["networks"] - losses["fused"]
    return {"networks": round(float(losses["networks"].mean()), 4), "fused": round(float(losses["fused"].mean()), 4),
            "gain": round(float(gain.mean()), 4), "gain_standard_error": round(float(gain.std(ddof=1) / np.sqrt(len(gain))), 4),
            "folds": folds}


def choose_fusion(members: np.ndarray, companion: np.ndarray, labels: np.ndarray, groups) -> dict:
    """The card's ``fusion`` record, chosen on validation: fitted weights, the cross-fitted NLL
    of the networks alone and fused, and ``used``: fusion lowers that NLL by more than twice
    the gain's standard error over the images (a random second opinion can lower it by chance)."""
    crossed = cross_fitted_nll(members, companion, labels, groups)
    a, b = fit_weights(members, companion, labels)
    return {"used": bool(b > 0 and crossed["gain"] > 2 * crossed["gain_standard_error"]),
            "network_weight": a, "companion_weight": b,
            "validation": {"images": int(len(labels)), "cross_fitted_nll": crossed},
            "formula": "each member softmax(a log p_member + b log q_boosted); the prediction is their mean",
            "rule": "used when it lowers the validation NLL on images the weights were not fitted on "
                    "(grouped 5-fold cross-fitting against temperature scaling alone) by more than twice "
                    "the standard error of the per-image gain"}


# ----------------------------------------------------------------------------- the fitted boosted model on disk

def companion_path(spec) -> Path:
    """Where a task's fitted boosted model lives: ``models/<task>.boosted.skops``."""
    return spec.model_path.parent / f"{spec.id}.boosted.skops"


# The one type a fitted HistGradientBoostingClassifier holds beyond skops' defaults. skops loads
# without pickle and refuses any other type, so a tampered file cannot run code.
TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]


def _skops_io():
    """The ``skops.io`` module. At import, skops lists every scikit-learn estimator (its trusted
    types) by walking every scikit-learn package, and the walk imports PyTorch, where it is
    installed, through scikit-learn's array-API shim: 0.9 of its 1.2 s on 2 cores, on the first
    page's cold start, for nothing a boosted model uses. So unless something has already
    imported PyTorch, it is hidden for that one import (the shim is skipped, no estimator lost)
    and importable again right after."""
    import sys

    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io

        return skops.io
    sys.modules["torch"] = None  # makes `import torch` raise ImportError, which the walk skips
    try:
        import skops.io
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return skops.io


def save_companion(fitted, path: Path) -> str:
    """Write a fitted :class:`lifelens.baseline.Baseline` (``boosted``) with skops; returns its sha256."""
    import zipfile

    from lifelens.models import sha256_file

    _skops_io().dump(fitted.estimator, path, compression=zipfile.ZIP_DEFLATED, compresslevel=9)
    return sha256_file(path)


def load_companion(path: Path, expected_sha256: str | None = None):
    """The fitted boosted model as a :class:`lifelens.baseline.Baseline`, after checking the
    file's sha256 against the card."""
    from lifelens.baseline import BOOSTED_DESCRIPTION, Baseline, boosted_features
    from lifelens.models import ModelError, sha256_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"The boosted model file {path.name} is missing from {path.parent}; the card fuses it "
                         "into the prediction. Restore it from git or run `python -m lifelens evaluate --card`.")
    if expected_sha256 and sha256_file(path) != expected_sha256:
        raise ModelError(f"The boosted model file {path.name} does not match the sha256 in the model card "
                         "(damaged or replaced). Restore it from git or run `python -m lifelens evaluate --card`.")
    try:
        estimator = _skops_io().load(path, trusted=TRUSTED_TYPES)
    except Exception as exc:  # truncated, not a skops file, or holding a type we do not trust
        raise ModelError(f"The boosted model file {path.name} cannot be read ({type(exc).__name__}). "
                         "Restore it from git or run `python -m lifelens evaluate --card`.") from None
    return Baseline("boosted", boosted_features, estimator, BOOSTED_DESCRIPTION)


def companion_probabilities(companion, images: np.ndarray) -> np.ndarray:
    """(N, S, S, C) prepared images (float 0-255 or uint8) -> (N, K) boosted-model probabilities."""
    images = np.asarray(images)
    return companion.predict_proba(images[None] if images.ndim == 3 else images).astype(np.float32)
