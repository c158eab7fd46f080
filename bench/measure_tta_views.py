"""Do more test-time views pay? (validation images only, never test)

Every training augmentation but the film's rotates through the full circle, so the eight
dihedral views (four quarter turns, each also mirrored) are all images like the training ones.
For the shipped ensemble of a task this prints, on every source's validation images, the
selection score (what ``choose_tta`` decides by), the NLL at a temperature fitted on the same
images, and the key metrics per source, for one view, the three flips the card may use
(``models.flip_views``) and the eight dihedral views.

    python bench/measure_tta_views.py skin

Not a ``bench_*`` module: it measures a choice, not a time, so ``make bench`` skips it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from lifelens import data, scoring  # noqa: E402
from lifelens.evaluate import fit_temperature  # noqa: E402
from lifelens.models import load_task_model, predict_proba, temper  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402
from lifelens.uncertainty.metrics import negative_log_likelihood  # noqa: E402

# (quarter turns, mirrored): flip_views' up-down mirror is a half turn of the left-right one
VIEW_SETS = {"one view": [(0, False)], "three flips": [(0, False), (0, True), (2, True)],
             "eight dihedral": [(k, m) for k in range(4) for m in (False, True)]}


def dihedral_view(x: np.ndarray, quarter_turns: int, mirrored: bool) -> np.ndarray:
    """(N, S, S, C) images turned by quarter turns, then mirrored left-right."""
    v = np.rot90(x, quarter_turns, axes=(1, 2))
    return np.ascontiguousarray(v[:, :, ::-1] if mirrored else v)


def main(task_id: str) -> None:
    spec = get_task(task_id)
    if spec.augmentation == "film":
        print(f"{task_id}: films are turned to face left before the network sees them; no views to add")
        return
    task_model = load_task_model(spec)
    val = data.training_splits(spec)["val"]
    labels = np.array([s.label for s in val])
    x = data.load_prepared(spec, val).astype(np.float32)
    raw = {view: np.stack([predict_proba(m, dihedral_view(x, *view)) for m in task_model.members])
           for view in VIEW_SETS["eight dihedral"]}
    sources = data.by_source(val)
    for name, views in VIEW_SETS.items():
        members = np.mean([raw[v] for v in views], axis=0)  # (M, N, K), untempered
        t = fit_temperature(members, labels)
        probs = temper(members, t).mean(axis=0)
        per = "; ".join(f"{src or 'own'}: {_key(spec, labels[ix], probs[ix])}" for src, ix in sources.items())
        print(f"{task_id} {name}: selection score {scoring.selection_score(spec, members.mean(axis=0), labels):.4f}, "
              f"NLL {negative_log_likelihood(probs, labels):.4f} (T {t}); {per}", flush=True)


def _key(spec, labels, probs) -> str:
    metrics = scoring.headline_metrics(spec, labels, probs)
    return ", ".join(f"{m} {metrics[m]:.4f}" for m in spec.key_metrics if isinstance(metrics.get(m), float))


if __name__ == "__main__":
    main(sys.argv[1])
