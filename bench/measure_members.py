"""How many ensemble members to ship (validation images only, never test).

Validation images are those of the task's own folder and of every extra source it trains on.
For each member file alone it prints the task's key metrics; then for the first 3, 4, ...
of the files the validation NLL of their tempered mean (the temperature fitted on the same
validation images), the selection score and the key metrics, also per
source where the task has extra ones. A member is shipped when it
lowers that NLL: the proper score the ensemble claims to improve. Last, the greedy selection
from the first file (member 0): where later members are better (plant's 45-epoch members
against its 30-epoch ones), the members it chooses are shipped and the others dropped
(``ship --drop``), at most five of them: that cap is the app's speed budget (plant's seven
members broke the slowest-interaction and cold-start goals, five kept them; bench/HISTORY.md).
The recipe's ``members`` then records how many were shipped.

    python bench/measure_members.py skin models/skin.keras models/skin.m1.keras ... runs/stage/skin.m4.keras

Each file sees the validation images prepared at its own input size, so a trial trained at
another size (``train --input-size``) is measured beside the shipped members.

Not a ``bench_*`` module: it measures a choice, not a time, so ``make bench`` skips it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

SPEED_CAP = 5  # members an ensemble view can afford on 2 cores: more slow every ensemble view

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402

from lifelens import data, scoring  # noqa: E402
from lifelens.evaluate import fit_temperature  # noqa: E402
from lifelens.models import load_model_file, predict_proba, split_views, temper  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402
from lifelens.uncertainty.metrics import negative_log_likelihood  # noqa: E402


def main(task_id: str, files: list[str]) -> None:
    spec = get_task(task_id)
    val = data.training_splits(spec)["val"]  # the own folder's and every training source's
    labels = np.array([s.label for s in val])
    images: dict[int, np.ndarray] = {}  # by input size: prepared once, shared by the files of that size
    raw = np.stack([validation_probabilities(spec, val, f, images) for f in files])
    sources = data.by_source(val)
    for f, probs in zip(files, raw):
        print(f"{f} alone: {key_metrics(spec, labels, probs)}{per_source(spec, sources, labels, probs)}", flush=True)
    for k in range(min(3, len(files)), len(files) + 1):
        probs, t = tempered_mean(raw[:k], labels)
        print(f"{k} members: validation NLL {negative_log_likelihood(probs, labels):.4f} (T {t}), selection score "
              f"{scoring.selection_score(spec, probs, labels):.4f}, {key_metrics(spec, labels, probs)}"
              f"{per_source(spec, sources, labels, probs)}", flush=True)
    chosen = greedy_selection(raw, labels)
    print("greedy selection from the first file (each step adds the file that lowers the tempered NLL most, "
          "until none does, three at least): " + " -> ".join(f"{files[i]} ({nll:.4f})" for i, nll in chosen), flush=True)
    print(f"to ship (at most {SPEED_CAP}, the app's speed budget): "
          + ", ".join(files[i] for i, _ in chosen[:SPEED_CAP]), flush=True)


def tempered_mean(raw: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """(the (M, N, K) members' mean at the temperature fitted on the same images, that temperature)."""
    t = fit_temperature(raw, labels)
    return temper(raw, t).mean(axis=0), t


def tempered_nll(raw: np.ndarray, labels: np.ndarray) -> float:
    """Validation NLL of the members' tempered mean (:func:`tempered_mean`)."""
    return negative_log_likelihood(tempered_mean(raw, labels)[0], labels)


def greedy_selection(raw: np.ndarray, labels: np.ndarray, at_least: int = 3) -> list[tuple[int, float]]:
    """Forward selection without replacement (Caruana et al. 2004) from member 0, the task's model
    file: [(file index, tempered NLL of the members chosen so far)], stopping when no file lowers
    it, but not before ``at_least`` members (the issue asks for three or more: until then the best
    file is added even if the NLL rises). Used when later members are better than earlier ones, so
    the ensemble in training order is not the best one the validation images can tell apart."""
    chosen, rest = [(0, tempered_nll(raw[:1], labels))], list(range(1, len(raw)))
    while rest:
        trials = {i: tempered_nll(raw[[c for c, _ in chosen] + [i]], labels) for i in rest}
        best = min(trials, key=trials.get)
        if trials[best] >= chosen[-1][1] and len(chosen) >= at_least:
            break
        chosen.append((best, trials[best]))
        rest.remove(best)
    return chosen


def validation_probabilities(spec, val, file: str, images: dict[int, np.ndarray]) -> np.ndarray:
    """(N, K) softmax of one model file on the validation images prepared at its input size
    (``images``: the prepared validation images by size, filled as sizes are met)."""
    model = split_views(load_model_file(file))[0]
    size = int(model.input_shape[1])
    if size not in images:
        images[size] = data.load_prepared(dataclasses.replace(spec, input_size=size), val).astype(np.float32)
    return predict_proba(model, images[size])


def key_metrics(spec, labels: np.ndarray, probs: np.ndarray) -> str:
    metrics = scoring.headline_metrics(spec, labels, probs)
    return ", ".join(f"{m} {metrics[m]:.4f}" for m in spec.key_metrics if isinstance(metrics.get(m), float))


def per_source(spec, sources: dict[str, list[int]], labels: np.ndarray, probs: np.ndarray) -> str:
    """The key metrics on each source's validation images, where there is more than one source."""
    if len(sources) < 2:
        return ""
    return "".join(f"; {src or 'own'}: NLL {negative_log_likelihood(probs[ix], labels[ix]):.4f}, "
                   f"{key_metrics(spec, labels[ix], probs[ix])}" for src, ix in sources.items())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
