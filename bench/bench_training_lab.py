"""The training lab's default preset, from pressing Train to finished curves, on this machine
(``training_lab_default_run_s``, goal <= 60 s on 2 cores), including the subset's first
decoding in this process; and the "overfitting" preset for scale."""
from __future__ import annotations

import time


def run() -> dict:
    from lifelens import training_lab

    figures = {}
    for name in ("default", "overfitting"):
        queue = training_lab.LabQueue()  # the page's path: queued, trained in the worker thread
        t0 = time.perf_counter()
        lab_run = training_lab.wait(queue.submit(training_lab.preset_settings(name), "bench"), timeout=600)
        figures[f"training_lab_{name}_run_s"] = round(time.perf_counter() - t0, 1)
        figures[f"training_lab_{name}_val_accuracy"] = round(lab_run.history[-1]["val_accuracy"], 3)
        figures[f"training_lab_{name}_gap"] = round(lab_run.gap, 3)
    return figures
