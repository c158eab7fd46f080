"""How the retina preparation's detail cap was chosen (validation images only, never test).

For each cap (grey levels; "none" = the plain local-average subtraction) it prints the
shipped retina ensemble's quadratic kappa and referable AUC on the validation share of
APTOS and of EyePACS (contrast-enhanced upstream, a shifted set nothing trains on).

    python bench/measure_fundus_cap.py none 9 5 3

Not a ``bench_*`` module: it measures a choice, not a time, so ``make bench`` skips it.
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from lifelens import data, imaging, scoring  # noqa: E402
from lifelens.models import load_task_model, member_probabilities  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402


def capped_preparation(cap: float | None):
    def prepare(image, size):
        return imaging.local_contrast(imaging.resize(image, size), max_detail_std=cap)

    prepare.__name__ = f"fundus_cap_{cap}"  # its own prepared-image cache
    return prepare


def main(caps: list[str]) -> None:
    spec = get_task("retina")
    val = data.task_splits(spec)["val"]
    for source in spec.extra_sources:
        val += data.source_splits(spec, source)["val"]
    labels = np.array([s.label for s in val])
    task_model = load_task_model(spec)
    for cap in caps:
        variant = dataclasses.replace(spec, prepare=capped_preparation(None if cap == "none" else float(cap)))
        probs = member_probabilities(task_model, data.load_prepared(variant, val)).mean(axis=0)
        row = {}
        for source, ix in data.by_source(val).items():
            m = scoring.headline_metrics(spec, labels[ix], probs[ix])
            row[source or spec.data_folder] = {k: round(m[k], 3) for k in ("quadratic_kappa", "referable_auc")}
        print(f"cap {cap}: {row}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["none", "9"])
