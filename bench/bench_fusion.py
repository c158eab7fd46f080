"""What fusing the boosted model costs a prediction, on the shipped skin ensemble (fused).

Figures (measured in one run, on one real test image and on a batch of 32):

* ``fusion_one_image_ratio``: the shipped members' prediction of one image with the boosted
  model fused in, divided by the same members' prediction without it (goal <= 1.5: the
  colour-texture features and 300 small trees cost less than half a forward pass);
* ``fusion_one_image_ms`` / ``networks_one_image_ms``: the two times behind that ratio;
* ``fusion_batch_ratio``: the same ratio for a batch of 32 test images.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from timing import best_of

TASK = "skin"
REPEATS = 7


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
    return {
        "fusion_one_image_ratio": round(times["fused"]["one"] / times["networks"]["one"], 3),
        "fusion_one_image_ms": round(times["fused"]["one"] * 1e3, 1),
        "networks_one_image_ms": round(times["networks"]["one"] * 1e3, 1),
        "fusion_batch_ratio": round(times["fused"]["batch"] / times["networks"]["batch"], 3),
    }
