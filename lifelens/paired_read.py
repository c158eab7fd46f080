"""Reading an image beside the same patient's other image: the two breasts, the two eyes.

One image at a time is how the network reads; a reader of mammograms or fundus photographs
looks at the pair. The paired read combines an image's class probabilities ``p`` with those of
the patient's other image ``q`` (same set, same task) log-linearly:

    log p'_k = alpha log p_k + beta log q_k + bias_k   (then normalised over the classes k)

Two kinds, as the task spec says (``TaskSpec.paired_read``):

* ``asymmetry`` (mammography): an abnormality is usually on one side, so what counts is how much
  more abnormal a film looks than the other breast's. On the log-odds ``l`` of the positive
  class: ``s = l + w (l - l_other)`` with ``w = 1`` fixed beforehand (the film and its
  asymmetry count alike); only the map from ``s`` to a probability (scale and bias) is fitted,
  by logistic regression on validation films. So ``alpha = 2 scale``, ``beta = -scale``.
* ``agreement`` (diabetic retinopathy): the disease affects both eyes, so the other eye is
  evidence for this one; ``alpha`` and ``beta`` are fitted by the validation NLL (no bias).

Only a patient with exactly two images in the set is read in pairs (one image of each side, as
in the data it was chosen on); any other image keeps its own read, so do a patient's three
films (two views of one breast would show the same finding, and nothing says which is which).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

ASYMMETRY_WEIGHT = 1.0
_EPS = 1e-7


def other_films(groups: Sequence[str]) -> list[list[int]]:
    """For each image (``groups``: its patient, length N) the indices of the same patient's other images."""
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(str(g), []).append(i)
    return [[j for j in by_group[str(g)] if j != i] for i, g in enumerate(groups)]


def in_pairs(groups: Sequence[str]) -> np.ndarray:
    """(N,) bool: the images whose patient has exactly two images in the set (the paired read's)."""
    return np.array([len(o) == 1 for o in other_films(groups)], dtype=bool)


def partner_index(groups: Sequence[str]) -> np.ndarray:
    """(N,) int: each image's partner (the patient's other image), or -1 outside a pair."""
    return np.array([o[0] if len(o) == 1 else -1 for o in other_films(groups)], dtype=int)


@dataclass(frozen=True)
class PairedRead:
    """``log p' = alpha log p + beta log q + bias`` for an image in a pair (module docstring)."""

    kind: str
    alpha: float
    beta: float
    bias: tuple = ()  # (K,) or () for none

    def combine(self, probs: np.ndarray, partner_probs: np.ndarray) -> np.ndarray:
        """(N, K) probabilities of images and (N, K) of their partners -> (N, K) paired read."""
        z = self.alpha * np.log(np.clip(probs, _EPS, 1.0)) + self.beta * np.log(np.clip(partner_probs, _EPS, 1.0))
        if self.bias:
            z = z + np.asarray(self.bias, np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def probabilities(self, probs: np.ndarray, groups: Sequence[str]) -> np.ndarray:
        """(N, K) probabilities read one image at a time -> (N, K) paired read; an image whose
        patient does not have exactly two images in ``groups`` keeps its row unchanged."""
        probs = np.asarray(probs, np.float64)
        partner = partner_index(groups)
        out = probs.copy()
        paired = partner >= 0
        if paired.any():
            out[paired] = self.combine(probs[paired], probs[partner[paired]])
        return out

    def read_beside(self, image: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
        """(K,) one image's paired read from its probabilities (K,) and those of the same
        patient's other images (each (K,)); its own read unless there is exactly one other."""
        if len(others) != 1:
            return np.asarray(image, np.float64)
        return self.combine(np.asarray(image, np.float64)[None], np.asarray(others[0], np.float64)[None])[0]

    def to_card(self) -> dict:
        return {"kind": self.kind, "alpha": self.alpha, "beta": self.beta, "bias": list(self.bias)}

    @classmethod
    def from_card(cls, record: dict | None) -> "PairedRead | None":
        """The card's ``paired_read`` entry, or None where it is missing or was not adopted."""
        if not record or not record.get("used"):
            return None
        return cls(record["kind"], float(record["alpha"]), float(record["beta"]), tuple(record.get("bias") or ()))


def fit_paired_read(kind: str, probs: np.ndarray, labels: np.ndarray, groups: Sequence[str],
                    positive: int = 1) -> PairedRead:
    """Fit a paired read of ``kind`` on validation images (probs (N, K), labels (N,), groups (N,));
    only the images in pairs are used. ``positive``: the abnormal class of an asymmetry read."""
    probs, labels = np.asarray(probs, np.float64), np.asarray(labels)
    partner = partner_index(groups)
    paired = partner >= 0
    if paired.sum() < 4 or len(np.unique(labels[paired])) < 2:
        raise ValueError("the paired read needs validation images of more than one class whose patient has two")
    p, q, y = probs[paired], probs[partner[paired]], labels[paired]
    if kind == "asymmetry":
        return _fit_asymmetry(p, q, y, positive)
    if kind == "agreement":
        return _fit_agreement(p, q, y)
    raise ValueError(f"unknown paired read {kind!r}; 'asymmetry' or 'agreement'")


def _log_odds(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _fit_asymmetry(p, q, y, positive: int) -> PairedRead:
    from sklearn.linear_model import LogisticRegression

    own, other = _log_odds(p[:, positive]), _log_odds(q[:, positive])
    s = own + ASYMMETRY_WEIGHT * (own - other)
    fit = LogisticRegression(C=1e4).fit(s[:, None], y == positive)
    scale, bias = float(fit.coef_[0, 0]), float(fit.intercept_[0])
    biases = [0.0, 0.0]
    biases[positive] = bias
    return PairedRead("asymmetry", round(scale * (1 + ASYMMETRY_WEIGHT), 6), round(-scale * ASYMMETRY_WEIGHT, 6),
                      tuple(round(b, 6) for b in biases))


def _fit_agreement(p, q, y) -> PairedRead:
    from scipy.optimize import minimize

    from lifelens.uncertainty.metrics import negative_log_likelihood

    def nll(ab):
        return negative_log_likelihood(PairedRead("agreement", ab[0], ab[1]).combine(p, q), y)

    alpha, beta = minimize(nll, [1.0, 0.0], method="Nelder-Mead").x
    return PairedRead("agreement", round(float(alpha), 6), round(float(beta), 6))
