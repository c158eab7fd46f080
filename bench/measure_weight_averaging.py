"""Which weights a member keeps: its best epoch, its last, or the mean of its last n epochs'
(stochastic weight averaging), all read from one training run (validation images only, never test).

    python bench/measure_weight_averaging.py plant runs/plant_swa/member17 4 8 12

The run folder is ``member<k>`` (seed k) and must have been trained with ``average_last_epochs``
at least the largest n, so it holds those epochs' weights. Each candidate is finished as ``lifelens.train`` finishes a
member (the recipe's BatchNorm recalibration where it does better on validation) and saved in
``<run>/candidates/``; then each is scored alone on every source's validation images, as
``bench/measure_members.py`` scores a member file: its NLL, the task's key metrics, per source.
The candidates come from the same seed and the same epochs, so their differences are the
choice of weights alone.

Not a ``bench_*`` module: it measures a choice, not a time, so ``make bench`` skips it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from measure_members import key_metrics, per_source, validation_probabilities  # noqa: E402

from lifelens import data  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402
from lifelens.uncertainty.metrics import negative_log_likelihood  # noqa: E402


def candidates(spec, run: Path, averages: list[int], splits: dict, x_val: np.ndarray) -> dict[str, Path]:
    """{name: saved model file}: the best epoch, the last epoch and the mean of the last n, each
    finished by ``lifelens.train._final_model`` under the recipe that keeps it. ``splits``: the
    task's training splits; ``x_val``: their validation images, prepared."""
    from lifelens.train import _final_model

    state = json.loads((run / "state.json").read_text())
    epochs, seed = len(state["history"]), int(re.search(r"(\d+)$", run.name).group(1))  # member k has seed k
    x_train, y_val = data.load_prepared(spec, splits["train"]), np.array([s.label for s in splits["val"]])
    variants = {f"best epoch ({state['best_epoch']})": {"epoch_selection": "best", "average_last_epochs": 0},
                f"last epoch ({epochs})": {"epoch_selection": "last", "average_last_epochs": 0},
                **{f"last {n} epochs averaged": {"epoch_selection": "last", "average_last_epochs": n} for n in averages}}
    out = run / "candidates"
    out.mkdir(exist_ok=True)
    files = {}
    for name, change in variants.items():
        variant = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, **change))
        final, note = _final_model(variant, run, seed, epochs, x_train, x_val, y_val, log=print)
        files[name] = out / (name.split(" (")[0].replace(" ", "_") + ".keras")
        final.save(files[name])
        print(f"{name}: {note['batchnorm']}", flush=True)
    return files


def main(task_id: str, run: str, averages: list[int]) -> None:
    spec = get_task(task_id)
    splits = data.training_splits(spec)
    val = splits["val"]
    x_val = data.load_prepared(spec, val)
    files = candidates(spec, Path(run), averages, splits, x_val)
    labels = np.array([s.label for s in val])
    sources = data.by_source(val)
    images = {spec.input_size: x_val.astype(np.float32)}  # prepared once, for finishing and for scoring
    for name, file in files.items():
        probs = validation_probabilities(spec, val, str(file), images)
        print(f"{name}: validation NLL {negative_log_likelihood(probs, labels):.4f}, {key_metrics(spec, labels, probs)}"
              f"{per_source(spec, sources, labels, probs)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(n) for n in sys.argv[3:]])
