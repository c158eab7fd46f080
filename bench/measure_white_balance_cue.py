"""How much a colour task's labels, and its predictors, lean on the camera's white balance
(validation images only, never test).

A photo's white balance is summed up by two numbers: the log red/green and blue/green ratios of
its shades-of-grey illuminant estimate (Minkowski norm, p = 6). The script prints

1. the balanced accuracy of a gradient-boosted classifier that sees only those two numbers
   (fitted on training photos, scored on validation photos): what the white balance alone
   tells about the label, a bias of the data when the classes were photographed in sessions;
2. for each predictor (a model file, or several joined by commas: their mean softmax), the
   selection score on the photos as they are, with every photo's white balance set to the
   training photos' median (the label's cue removed, the photo otherwise unchanged), and under
   a warmer and a cooler cast of ``SHIFTS["colour"]``'s first severity.

    python bench/measure_white_balance_cue.py plant models/plant.keras,models/plant.m1.keras

Not a ``bench_*`` module: it measures a choice, not a time, so ``make bench`` skips it.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.metrics import balanced_accuracy_score  # noqa: E402

from lifelens import data, imaging, scoring  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402
from lifelens.uncertainty.shift import SHIFTS, apply_shift  # noqa: E402
from measure_shift_robustness import predictor_names, predictor_probabilities  # noqa: E402

POWER = 6.0  # the shades-of-grey norm of imaging.shades_of_grey


def white_balance(image: np.ndarray) -> np.ndarray:
    """(log R/G, log B/G) of the photo's p-norm colour; (H, W, 3) -> (2,)."""
    x = imaging.resize(image, 128).reshape(-1, 3).astype(np.float64)
    norm = np.maximum(np.power(np.mean(np.power(x, POWER), axis=0), 1.0 / POWER), 1e-3)
    return np.log(norm[[0, 2]] / norm[1])


def with_white_balance(image: np.ndarray, balance: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The photo, whose white balance is ``balance``, with its red and blue gains set so its
    white balance is ``target``."""
    gain = np.exp(target - balance)
    return np.clip(image.astype(np.float32) * np.array([gain[0], 1.0, gain[1]], np.float32), 0, 255).astype(np.uint8)


def main(task_id: str, predictors: list[str], n: int, n_train: int, seed: int = 0) -> None:
    spec = get_task(task_id)
    if spec.channels != 3:
        raise SystemExit(f"{task_id}: greyscale images have no white balance.")
    splits = data.training_splits(spec)
    rng = np.random.default_rng(seed)
    train = [splits["train"][i] for i in np.sort(rng.permutation(len(splits["train"]))[:n_train])]
    val = [splits["val"][i] for i in np.sort(rng.permutation(len(splits["val"]))[:n])]
    train_wb = np.stack([white_balance(spec.load_image(spec.image_path(s))) for s in train])
    raw = [spec.load_image(spec.image_path(s)) for s in val]
    labels = np.array([s.label for s in val])
    val_wb = np.stack([white_balance(im) for im in raw])
    cue = HistGradientBoostingClassifier(max_iter=200, random_state=seed).fit(train_wb, [s.label for s in train])
    median = np.median(train_wb, axis=0)
    print(f"{spec.id}: {len(train)} training and {len(val)} validation photos; training white balance "
          f"median {median.round(3).tolist()}, spread (sd) {train_wb.std(axis=0).round(3).tolist()}")
    print(f"the white balance alone: balanced accuracy {balanced_accuracy_score(labels, cue.predict(val_wb)):.3f} "
          f"(chance {1 / spec.num_classes:.3f})", flush=True)

    mean_probs = predictor_probabilities(spec, predictors)

    def score(images: list[np.ndarray]) -> list[float]:
        return [scoring.selection_score(spec, p, labels) for p in mean_probs(images)]

    amount = SHIFTS["colour"][0]
    rows = {
        "as they are": score(raw),
        "white balance set to the training median": score([with_white_balance(im, wb, median) for im, wb in zip(raw, val_wb)]),
        f"warmer cast ({amount})": score([apply_shift(im, "colour", amount) for im in raw]),
        f"cooler cast ({-amount})": score([apply_shift(im, "colour", -amount) for im in raw]),
    }
    names = predictor_names(predictors)
    print("| validation photos | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("predictors", nargs="+", help="a model file, or files joined by commas (their mean)")
    parser.add_argument("--n", type=int, default=400, help="validation photos (a fixed random subset)")
    parser.add_argument("--n-train", type=int, default=2000, help="training photos for the white balance's classifier")
    args = parser.parse_args()
    main(args.task, args.predictors, args.n, args.n_train)
