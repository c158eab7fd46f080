"""Where the retina ensemble loses EyePACS (validation images only, never test).

For each source's validation photos, from the members' tempered mean: the referable AUC of
three ways to rank a photo (the summed probability of the referable grades, which the card
scores; the expected grade; the probability of any retinopathy), the quartiles of the
referable probability per true grade, and the referable AUC within quarters of the photos
ordered by sharpness (variance of the Laplacian of the green channel inside the fundus), to
tell a grading problem from a photo-quality one.

    python bench/measure_referable_by_grade.py models/retina.keras models/retina.m1.keras models/retina.m2.keras

Not a ``bench_*`` module: it measures a question, not a time, so ``make bench`` skips it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from lifelens import data, imaging  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402
from measure_members import tempered_mean, validation_probabilities  # noqa: E402


def sharpness(image: np.ndarray, size: int) -> float:
    """Variance of the Laplacian of the (lightly smoothed) green channel inside the fundus of a
    photo resized to ``size``: low for a blurred or washed-out photo."""
    small = imaging.resize(image, size).astype(np.float32)
    laplacian = cv2.Laplacian(cv2.GaussianBlur(small[..., 1], (0, 0), 1.0), cv2.CV_32F)
    inside = small.mean(axis=-1) > 10
    return float(laplacian[inside].var()) if inside.any() else 0.0


def main(files: list[str]) -> None:
    spec = get_task("retina")
    referable_from = spec.scores[0].referable_from
    val = data.training_splits(spec)["val"]
    labels = np.array([s.label for s in val])
    images: dict[int, np.ndarray] = {}
    probs, t = tempered_mean(np.stack([validation_probabilities(spec, val, f, images) for f in files]), labels)
    rankings = {"P(referable)": probs[:, referable_from:].sum(axis=1),
                "expected grade": probs @ np.arange(spec.num_classes),
                "P(any retinopathy)": probs[:, 1:].sum(axis=1)}
    referable = labels >= referable_from
    print(f"{len(files)} members, tempered mean (T {t})")
    for source, index in data.by_source(val).items():
        index = np.array(index)
        print(f"{source or spec.data_folder}: {len(index)} photos, referable share {referable[index].mean():.3f}")
        for name, score in rankings.items():
            print(f"  referable AUC ranked by {name}: {roc_auc_score(referable[index], score[index]):.4f}")
        for grade in range(spec.num_classes):
            chosen = index[labels[index] == grade]
            if len(chosen):
                q = np.percentile(rankings["P(referable)"][chosen], [25, 50, 75])
                print(f"  grade {grade} ({len(chosen)} photos): P(referable) quartiles {q.round(2).tolist()}")
        sharp = np.array([sharpness(spec.framed(spec.load_image(spec.image_path(val[i]))), spec.input_size)
                          for i in index])
        for k, part in enumerate(np.array_split(index[np.argsort(sharp)], 4)):
            print(f"  sharpness quarter {k + 1} of 4 ({len(part)} photos, referable share "
                  f"{referable[part].mean():.2f}): referable AUC "
                  f"{roc_auc_score(referable[part], rankings['P(referable)'][part]):.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
