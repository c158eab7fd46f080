"""What fusing the boosted model costs a prediction, on the shipped skin ensemble (fused).

Figures (measured in one run, on one real test image and on a batch of 32):

* ``fusion_one_image_ratio``: the shipped members' prediction of one image with the boosted
  model fused in, divided by the same members' prediction without it;
* ``fusion_one_image_ms`` / ``networks_one_image_ms``: the two times behind that ratio, and
  ``fusion_one_image_overhead_ms`` their difference: a fixed cost (features and trees), so the
  ratio grows as the networks get faster; goal <= 25 ms, a fortieth of an interaction's second;
* ``fusion_batch_ratio``: the same ratio for a batch of 32 test images;
* ``fusion_first_load_s``: what the first fused task a process opens adds to its start, in a
  fresh interpreter that has already imported what a task page imports (the library, the
  conformal sets, the gate, MAPIE): importing skops, which lists every scikit-learn estimator
  to know its trusted types (``fusion_skops_import_s``: the first read of skin's boosted model
  less a second one), and scikit-image's patterns (``fusion_patterns_import_s``), plus reading
  skin's boosted model; ``fusion_first_load_over_plant_load``: that over then loading plant (three
  members, not fused since 2026-12-04; the imports already paid) in the same process. Since plant,
  the first page, no longer fuses, the cold start does not pay this; the first skin or retina page does.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from timing import best_of

TASK = "skin"
REPEATS = 7

# Run in a fresh interpreter: the import cost is paid once per process.
FIRST_LOAD = """
import json, time
from lifelens import fusion
from lifelens.models import load_task_model
from lifelens.tasks import get_task
from lifelens.uncertainty import conformal, gate
import mapie
skin = fusion.companion_path(get_task("skin"))
t = time.perf_counter(); fusion.load_companion(skin); first = time.perf_counter() - t
t = time.perf_counter(); fusion.load_companion(skin); read = time.perf_counter() - t
t = time.perf_counter(); from skimage.feature import local_binary_pattern; patterns_import = time.perf_counter() - t
t = time.perf_counter(); load_task_model(get_task("plant")); plant = time.perf_counter() - t
print(json.dumps({"plant": plant, "first": first, "read": read, "patterns": patterns_import}))
"""


def run() -> dict:
    from lifelens import data
    from lifelens.models import ModelError, load_task_model, member_probabilities
    from lifelens.tasks import get_task

    spec = get_task(TASK)
    try:
        fused = load_task_model(spec)
    except ModelError as exc:
        return {"fusion_skipped": str(exc)}
    if fused.companion is None:
        return {"fusion_skipped": f"the {TASK} card does not fuse the boosted model"}
    networks = dataclasses.replace(fused, companion=None)
    batch = data.load_prepared(spec, data.task_splits(spec)["test"][:32]).astype(np.float32)
    one = batch[:1]
    times = {name: {size: best_of(lambda m=model, x=x: member_probabilities(m, x), REPEATS)
                    for size, x in (("one", one), ("batch", batch))}
             for name, model in (("fused", fused), ("networks", networks))}
    first = _first_load()
    return {
        **first,
        "fusion_one_image_ratio": round(times["fused"]["one"] / times["networks"]["one"], 3),
        "fusion_one_image_ms": round(times["fused"]["one"] * 1e3, 1),
        "networks_one_image_ms": round(times["networks"]["one"] * 1e3, 1),
        "fusion_one_image_overhead_ms": round((times["fused"]["one"] - times["networks"]["one"]) * 1e3, 1),
        "fusion_batch_ratio": round(times["fused"]["batch"] / times["networks"]["batch"], 3),
    }


def _first_load() -> dict:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", FIRST_LOAD], capture_output=True, text=True, cwd=root, timeout=300,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if out.returncode != 0:
        return {"fusion_first_load_skipped": out.stderr.strip().splitlines()[-1:]}
    found = json.loads(out.stdout.strip().splitlines()[-1])
    first = found["first"] + found["patterns"]
    return {"fusion_first_load_s": round(first, 2), "fusion_skops_import_s": round(found["first"] - found["read"], 2),
            "fusion_patterns_import_s": round(found["patterns"], 2),
            "fusion_first_load_over_plant_load": round(first / found["plant"], 2)}
