"""How well predictors hold up when the camera changes (validation images only, never test).

Each argument after the task is one predictor: a model file, or several joined by commas
(the mean of their softmaxes, as the ensemble predicts). For a fixed subset of every source's
validation images it applies each acquisition shift of ``lifelens.uncertainty.shift.SHIFTS``
(blur, noise, JPEG, exposure, contrast, rotation, crop; three severities) to the decoded photo,
prepares it as the app does, and prints the selection score (balanced accuracy; AUC for a
binary task) per shift and severity, clean first, then the mean over the photometric shifts
(the kinds a training fault may imitate, ``FAULT_RANGES``) and over the geometric ones.

    python bench/measure_shift_robustness.py plant models/plant.keras models/trials/plant_faults/plant.keras

``--shift KIND=A,B`` (repeatable) measures only those kinds at those amounts instead, and
``--key-metrics`` prints the task's key metrics per source instead of the selection score:

    python bench/measure_shift_robustness.py retina models/retina.keras --shift jpeg=90,75,50 --shift noise=3,6 --key-metrics

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

from lifelens import data, scoring  # noqa: E402
from lifelens.models import load_model_file, predict_proba, split_views  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402
from lifelens.uncertainty.shift import FAULT_RANGES, SHIFTS, apply_shift  # noqa: E402


def predictor_probabilities(spec, predictors: list[str]):
    """``predictors``: model files, or files joined by commas (the mean of their softmaxes).
    Returns a function: decoded images (and a preparation, the app's by default) -> one
    (N, K) probability array per predictor. Each file is loaded once, and run once per call
    however many predictors share it."""
    groups = [p.split(",") for p in predictors]
    models = {f: split_views(load_model_file(f))[0] for g in groups for f in g}

    def mean_probs(images: list[np.ndarray], prepare=spec.prepare_image) -> list[np.ndarray]:
        x = np.stack([prepare(im) for im in images]).astype(np.float32)
        probs = {f: predict_proba(m, x) for f, m in models.items()}
        return [np.mean([probs[f] for f in g], axis=0) for g in groups]

    return mean_probs


def predictor_names(predictors: list[str]) -> list[str]:
    return [p if "," not in p else f"{p.split(',')[0]} and {p.count(',')} more" for p in predictors]


def main(task_id: str, predictors: list[str], n: int, shifts: dict[str, tuple] | None = None,
         key_metrics: bool = False, seed: int = 0) -> None:
    spec = get_task(task_id)
    val = data.training_splits(spec)["val"]
    keep = np.sort(np.random.default_rng(seed).permutation(len(val))[:n])
    samples = [val[i] for i in keep]
    labels = np.array([s.label for s in samples])
    sources = data.by_source(samples)
    raw = [spec.load_image(spec.image_path(s)) for s in samples]
    print(f"{spec.id}: {len(samples)} validation images of {len(val)} "
          f"({', '.join(f'{k or spec.data_folder} {len(v)}' for k, v in sources.items())})", flush=True)
    mean_probs = predictor_probabilities(spec, predictors)

    def per_source(probs: np.ndarray) -> str:
        parts = []
        for source, ix in sources.items():
            found = scoring.headline_metrics(spec, labels[ix], probs[ix])
            values = ", ".join(f"{k} {found[k]:.3f}" for k in spec.key_metrics if found.get(k) is not None)
            parts.append(f"{source or spec.data_folder}: {values}")
        return "; ".join(parts)

    def score(images: list[np.ndarray]) -> list:
        return [per_source(p) if key_metrics else scoring.selection_score(spec, p, labels) for p in mean_probs(images)]

    chosen = SHIFTS if shifts is None else shifts
    rows = {"clean": score(raw)}
    for kind, amounts in chosen.items():
        for severity, amount in enumerate(amounts, start=1):
            name = f"{kind} {severity}" if shifts is None else f"{kind} {amount:g}"
            rows[name] = score([apply_shift(im, kind, amount) for im in raw])
        print(f"  {kind} done", flush=True)
    names = predictor_names(predictors)
    print("| condition | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(v if isinstance(v, str) else f"{v:.3f}" for v in values) + " |")
    if shifts is not None or key_metrics:
        return
    for label, kinds in (("photometric", [k for k in SHIFTS if k in FAULT_RANGES]),
                         ("geometric", [k for k in SHIFTS if k not in FAULT_RANGES])):
        for severities, tag in (((1, 2), "severity 1-2"), ((3,), "severity 3")):
            means = np.mean([rows[f"{k} {s}"] for k in kinds for s in severities], axis=0)
            print(f"| mean {label}, {tag} | " + " | ".join(f"{v:.3f}" for v in means) + " |")


def parse_shift(text: str) -> tuple[str, tuple[float, ...]]:
    """"jpeg=90,75" -> ("jpeg", (90.0, 75.0))."""
    kind, _, amounts = text.partition("=")
    if kind not in SHIFTS or not amounts:
        raise argparse.ArgumentTypeError(f"{text!r}: give KIND=A,B with KIND one of {', '.join(SHIFTS)}")
    return kind, tuple(float(a) for a in amounts.split(","))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("predictors", nargs="+", help="a model file, or files joined by commas (their mean)")
    parser.add_argument("--n", type=int, default=300, help="validation images (a fixed random subset)")
    parser.add_argument("--shift", type=parse_shift, action="append",
                        help="KIND=A,B: only this kind at these amounts (repeatable)")
    parser.add_argument("--key-metrics", action="store_true",
                        help="the task's key metrics per source instead of the selection score")
    args = parser.parse_args()
    main(args.task, args.predictors, args.n, dict(args.shift) if args.shift else None, args.key_metrics)
