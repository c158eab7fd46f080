"""Reading a film beside the same patient's other film (mammography's left and right breasts).

Radiologists compare the two breasts: an abnormality is usually on one side, and one patient's
breasts resemble each other more than two patients' do. The film network reads one film at a
time; the paired read adds how much more abnormal this film looks than the patient's other:

    s = l + w (l - l_other),   l = logit of the film read's positive-class probability

where ``l_other`` is the logit of the patient's other film in the same set. ``w`` is fixed at 1
beforehand (the film and its asymmetry count alike), so nothing but the map from ``s`` to a
probability is fitted, by logistic regression (Platt scaling) on validation films. It was chosen
on mini-MIAS, where a patient has two films, one of each breast (same view). A film whose patient
has no other film in the set keeps its own film read, and so does a patient with more than two
films: two views of one breast would show the same finding, and nothing here says which film is
which breast.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

ASYMMETRY_WEIGHT = 1.0
_EPS = 1e-6


def other_films(groups: Sequence[str]) -> list[list[int]]:
    """For each film (``groups``: its patient, length N) the indices of the same patient's other films."""
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(str(g), []).append(i)
    return [[j for j in by_group[str(g)] if j != i] for i, g in enumerate(groups)]


def in_pairs(groups: Sequence[str]) -> np.ndarray:
    """(N,) bool: the films whose patient has exactly two films in the set (the paired read's)."""
    return np.array([len(o) == 1 for o in other_films(groups)], dtype=bool)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def paired_scores(positive: np.ndarray, groups: Sequence[str], weight: float = ASYMMETRY_WEIGHT
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(s (N,), paired (N,) bool): the paired score of each film from its positive-class
    probability (N,) in [0, 1] and its patient's other film; s is the film's own logit where
    the patient does not have exactly two films (``paired`` False)."""
    logits = _logit(positive)
    paired = in_pairs(groups)
    other_logit = np.array([logits[o[0]] if p else logits[i]
                            for i, (o, p) in enumerate(zip(other_films(groups), paired))])
    return logits + weight * (logits - other_logit), paired


@dataclass(frozen=True)
class PairedRead:
    """The fitted map from paired score to probability: p = sigmoid(scale * s + bias)."""

    scale: float
    bias: float
    positive: int = 1
    weight: float = ASYMMETRY_WEIGHT

    def probabilities(self, probs: np.ndarray, groups: Sequence[str]) -> np.ndarray:
        """(N, 2) film-read probabilities -> (N, 2) paired-read probabilities; films of a
        patient without exactly two films in ``groups`` keep their row unchanged."""
        probs = np.asarray(probs, np.float64)
        s, has_other = paired_scores(probs[:, self.positive], groups, self.weight)
        out = probs.copy()
        pos = 1.0 / (1.0 + np.exp(-(self.scale * s + self.bias)))
        out[has_other, self.positive] = pos[has_other]
        out[has_other, 1 - self.positive] = 1.0 - pos[has_other]
        return out

    def read_beside(self, film: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
        """(K,) one film's paired read from its film-read probabilities (K,) and those of the
        same patient's other films (each (K,)); the film read itself unless there is exactly one."""
        rows = np.stack([np.asarray(film, np.float64), *[np.asarray(o, np.float64) for o in others]])
        return self.probabilities(rows, ["patient"] * len(rows))[0]

    def to_card(self) -> dict:
        return asdict(self)

    @classmethod
    def from_card(cls, record: dict | None) -> "PairedRead | None":
        """The card's ``paired_read`` entry, or None where it is missing or was not adopted."""
        if not record or not record.get("used"):
            return None
        return cls(**{k: record[k] for k in ("scale", "bias", "positive", "weight")})


def fit_paired_read(probs: np.ndarray, labels: np.ndarray, groups: Sequence[str], positive: int = 1) -> PairedRead:
    """Fit scale and bias on validation films (probs (N, 2), labels (N,) in {0, 1}); only the
    films whose patient has exactly two films in the set are used."""
    from sklearn.linear_model import LogisticRegression

    s, has_other = paired_scores(np.asarray(probs)[:, positive], groups)
    if has_other.sum() < 4 or len(np.unique(np.asarray(labels)[has_other])) < 2:
        raise ValueError("the paired read needs validation films of both classes whose patient has two films")
    fit = LogisticRegression(C=1e4).fit(s[has_other, None], np.asarray(labels)[has_other] == positive)
    return PairedRead(scale=round(float(fit.coef_[0, 0]), 6), bias=round(float(fit.intercept_[0]), 6),
                      positive=positive)
