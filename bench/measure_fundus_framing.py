"""How the retina predictors read a photo framed as another camera frames it, with and
without :func:`lifelens.imaging.frame_fundus` (validation images only, never test).

Each condition reframes the decoded validation photo as a camera might: the fundus shrunk
inside a wider black surround ("margin 0.8": the fundus spans 80 % of the frame), squeezed
sideways ("narrow 0.75"), or zoomed so the circle is clipped ("zoom 0.9"). Each is then
prepared twice, as the task prepares it (framed first) and without the framing step, and
the mean of the predictors' softmaxes is scored per source (quadratic kappa, referable AUC).

    python bench/measure_fundus_framing.py models/retina.keras,models/retina.m1.keras,models/retina.m2.keras

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

from lifelens import data, imaging  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402
from lifelens.uncertainty.shift import apply_shift  # noqa: E402
from measure_shift_robustness import predictor_names, predictor_probabilities  # noqa: E402


CONDITIONS = {
    "as photographed": lambda p: p,
    "margin 0.8": lambda p: imaging.shrink_into_frame(p, 0.8, 0.8),
    "margin 0.65": lambda p: imaging.shrink_into_frame(p, 0.65, 0.65),
    "narrow 0.75": lambda p: imaging.shrink_into_frame(p, 0.75, 1.0),
    "zoom 0.9": lambda p: apply_shift(p, "crop", 0.9),
}


def main(predictors: list[str], n: int, seed: int = 0) -> None:
    spec = get_task("retina")
    score = next(s for s in spec.scores if hasattr(s, "referable_from"))
    val = data.training_splits(spec)["val"]
    keep = np.sort(np.random.default_rng(seed).permutation(len(val))[:n])
    samples = [val[i] for i in keep]
    labels = np.array([s.label for s in samples])
    sources = np.array([s.source or spec.data_folder for s in samples])
    photos = [spec.load_image(spec.image_path(s)) for s in samples]
    mean_probs = predictor_probabilities(spec, predictors)
    preparations = {
        "framed": spec.prepare_image,
        "not framed": lambda p: spec.prepare(imaging.to_channels(p, spec.channels), spec.input_size),
    }
    print(f"{len(samples)} validation photos: " + ", ".join(f"{s} {int((sources == s).sum())}" for s in np.unique(sources)))
    print("| condition | preparation | predictor | " + " | ".join(
        f"{s} kappa | {s} referable AUC" for s in np.unique(sources)) + " |")
    print("|---" * (3 + 2 * len(np.unique(sources))) + "|")
    for condition, reframe in CONDITIONS.items():
        shown = [reframe(p) for p in photos]
        for name, prepare in preparations.items():
            for mean, short in zip(mean_probs(shown, prepare), predictor_names(predictors)):
                cells = []
                for s in np.unique(sources):
                    result = score(labels[sources == s], mean[sources == s])
                    cells += [f"{result['quadratic_kappa']:.3f}", f"{result['referable_auc']:.3f}"]
                print(f"| {condition} | {name} | {short} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictors", nargs="+", help="a model file, or files joined by commas (their mean)")
    parser.add_argument("--n", type=int, default=400, help="validation photos (a fixed random subset)")
    args = parser.parse_args()
    main(args.predictors, args.n)
