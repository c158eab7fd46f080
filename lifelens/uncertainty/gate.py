"""The input gate: does an image look like the images the model was trained on?

A network's softmax cannot say so (it must spread its probability over the classes it
knows), so the gate looks at two descriptions of the image instead: the network's pooled
``features`` and hand-made colour and texture statistics (:mod:`lifelens.baseline`; they
tell a fundus photograph from a leaf even where a network trained on one never learned
to). For each, the Mahalanobis distance to the nearest class mean under one shared
covariance (Lee et al. 2018), shrunk by Ledoit-Wolf (scikit-learn) because there are
hundreds of features for a few thousand images. A view's typicality is the share of our
validation images at least as far away (1 = as typical as they come, 0 = farther than every
one); the image's ``typicality`` is the smaller of the two, and it is ``in_domain`` when
that is at least ``alpha / 2`` (Bonferroni: about ``alpha`` of images like ours are flagged).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

ALPHA = 0.02  # about 1 in 50 images like ours is flagged; 0.01 let in 10-15 % of other tasks on 193 validation images


@dataclass
class Gate:
    """means: (K, F) class means of the training features; precision: (F, F) inverse shared
    covariance; reference: (V,) sorted distances of the validation images; alpha in (0, 1)."""

    means: np.ndarray
    precision: np.ndarray
    reference: np.ndarray
    alpha: float = ALPHA

    def distance(self, features: np.ndarray) -> np.ndarray:
        """(N, F) features -> (N,) Mahalanobis distance to the nearest class mean."""
        diff = np.asarray(features, np.float64)[:, None, :] - self.means[None]
        squared = np.einsum("nkf,fg,nkg->nk", diff, self.precision, diff)
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))

    def typicality(self, features: np.ndarray) -> np.ndarray:
        """(N, F) -> (N,) in [0, 1]: the share of validation images at least as far away."""
        d = self.distance(features)
        farther = len(self.reference) - np.searchsorted(self.reference, d, side="left")
        return farther / len(self.reference)

    def in_domain(self, features: np.ndarray) -> np.ndarray:
        """(N, F) -> (N,) bool: typicality >= alpha."""
        return self.typicality(features) >= self.alpha

    def arrays(self, prefix: str) -> dict:
        return {f"{prefix}means": self.means.astype(np.float32), f"{prefix}precision": self.precision.astype(np.float32),
                f"{prefix}reference": self.reference.astype(np.float32)}


def image_statistics(images: np.ndarray) -> np.ndarray:
    """(N, S, S, C) prepared images in [0, 255] -> (N, F) colour and texture statistics."""
    from lifelens.baseline import colour_texture_features

    return colour_texture_features(images)


@dataclass
class InputGate:
    """Two :class:`Gate` views of an image: ``deep`` on the network's pooled features and
    ``pixels`` on :func:`image_statistics`."""

    deep: Gate
    pixels: Gate
    alpha: float = ALPHA

    def typicality(self, features: np.ndarray, images: np.ndarray) -> np.ndarray:
        """features (N, F) of the images and the prepared images (N, S, S, C) -> (N,) in [0, 1]."""
        return np.minimum(self.deep.typicality(features), self.pixels.typicality(image_statistics(images)))

    def in_domain(self, typicality: np.ndarray) -> np.ndarray:
        return np.asarray(typicality) >= self.alpha / 2

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **self.deep.arrays("deep_"), **self.pixels.arrays("pixels_"),
                            alpha=np.float32(self.alpha))

    @classmethod
    def load(cls, path: Path) -> "InputGate | None":
        """The gate saved beside a model, or None when there is none."""
        if not Path(path).is_file():
            return None
        with np.load(path) as f:
            views = [Gate(f[f"{p}means"].astype(np.float64), f[f"{p}precision"].astype(np.float64),
                          np.sort(f[f"{p}reference"].astype(np.float64))) for p in ("deep_", "pixels_")]
            return cls(*views, float(f["alpha"]))


def fit_gate(train_features: np.ndarray, train_labels: np.ndarray, val_features: np.ndarray,
             alpha: float = ALPHA) -> Gate:
    """Class means and a shrunk shared covariance on training features (N, F), the reference
    distances on validation features (V, F), which the means never saw."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(train_features, np.float64)
    labels = np.asarray(train_labels)
    classes = np.unique(labels)
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])
    centred = x - means[np.searchsorted(classes, labels)]
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    gate = Gate(means, precision, np.zeros(1), alpha)
    gate.reference = np.sort(gate.distance(val_features))
    return gate


def fit_input_gate(train: tuple, val: tuple, alpha: float = ALPHA) -> InputGate:
    """train, val: (features (N, F), prepared images (N, S, S, C), labels (N,)) -> InputGate."""
    deep = fit_gate(train[0], train[2], val[0])
    pixels = fit_gate(image_statistics(train[1]), train[2], image_statistics(val[1]))
    return InputGate(deep, pixels, alpha)


def gate_path(spec) -> Path:
    return spec.model_path.with_suffix(".gate.npz")
