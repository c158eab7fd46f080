"""Activation maximisation: all channels in one batch vs one channel at a time.

Both runs use the same layer, recipe and step count in one process, interleaved twice
(best of each kept); the figures are the time per channel of each and their ratio
(> 1: batching is faster).
"""
from __future__ import annotations

import time
from dataclasses import replace

from lifelens.tasks import TASKS, get_task

STEPS = 16
BATCHED_CHANNELS = 8
SINGLE_CHANNELS = 4
ROUNDS = 2


def _model():
    from lifelens.models import load_task_model

    for task_id in TASKS:
        spec = get_task(task_id)
        if spec.model_path.is_file():
            return task_id, load_task_model(spec).classifier
    from lifelens.models import build_model

    return "untrained-plant", build_model(get_task("plant"))


def run() -> dict:
    from lifelens import inside

    task_id, model = _model()
    layer = inside.block_output_layers(model)[-1]
    settings = replace(inside.settings_for(model), steps=STEPS)
    inside.maximise_channels(model, layer, [0], replace(settings, steps=2))  # trace the step once

    batched, single = float("inf"), float("inf")
    for _ in range(ROUNDS):  # interleaved, best of each: the machine is shared and noisy
        t0 = time.perf_counter()
        inside.maximise_channels(model, layer, range(BATCHED_CHANNELS), settings, batch_size=BATCHED_CHANNELS)
        batched = min(batched, (time.perf_counter() - t0) / BATCHED_CHANNELS)
        t0 = time.perf_counter()
        inside.maximise_channels(model, layer, range(SINGLE_CHANNELS), settings, batch_size=1)
        single = min(single, (time.perf_counter() - t0) / SINGLE_CHANNELS)

    return {
        "actmax_model": f"{task_id} {layer}, {STEPS} steps",
        "actmax_batched_s_per_channel": round(batched, 3),
        "actmax_single_s_per_channel": round(single, 3),
        "actmax_batched_speedup": round(single / batched, 2),
    }
