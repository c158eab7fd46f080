"""Folder runs: images per second serially and on Ray with 1 and 2 local workers over the
same folder of real plant photographs, with the plant ensemble (``predict --task plant``).

``ray_two_worker_speedup`` = (2-worker images/s) / (1-worker images/s), measured in one run.
Each Ray run starts its workers and loads the model in each (a fixed cost, paid once per
worker on a cluster too, inside ``ray_first_quarter_s_*``); the rate is taken from the batches
that arrive after the first quarter of the images is done, when every worker is up.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

IMAGES = 384
BATCH = 16


def _folder(root: Path, n: int) -> Path:
    from lifelens.tasks import TASKS

    spec = next(iter(TASKS.values()))
    source = spec.data_dir() / "images"
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    for i, f in enumerate(files):
        (root / f"{i:04d}{f.suffix.lower()}").symlink_to(f)
    return root


def _steady_rate(arrivals: list[tuple[float, int]], start: float) -> tuple[float, float]:
    """(images per second after the first quarter, seconds from the start to the first quarter done:
    Ray start, worker start and model load included)."""
    done, quarter_time, quarter_done = 0, None, 0
    for t, n in arrivals:
        done += n
        if quarter_time is None and done >= IMAGES / 4:
            quarter_time, quarter_done = t, done
    end = arrivals[-1][0]
    return (done - quarter_done) / max(end - quarter_time, 1e-9), quarter_time - start


def run() -> dict:
    import ray

    from lifelens import batch_run
    from lifelens.batch_run import ModelTarget
    from lifelens.commands.predict import PredictJob
    from lifelens.tasks import TASKS

    job = PredictJob(ModelTarget(task=next(iter(TASKS))), samples=20, seed=0)
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = batch_run.image_paths([_folder(Path(tmp), IMAGES)])
        job(paths[:4])  # the serial engine's model load and traces
        t0 = time.perf_counter()
        for batch in (paths[i:i + BATCH] for i in range(0, len(paths), BATCH)):
            job(batch)
        figures["folder_serial_images_per_s"] = round(IMAGES / (time.perf_counter() - t0), 1)
        rates = {}
        for workers in (1, 2):
            if ray.is_initialized():
                ray.shutdown()
            start = time.perf_counter()
            arrivals = [(time.perf_counter(), len(records))
                        for records in batch_run.ray_results(job, paths, workers, None, BATCH)]
            rates[workers], startup = _steady_rate(arrivals, start)
            figures[f"ray_{workers}_worker_images_per_s"] = round(rates[workers], 1)
            figures[f"ray_first_quarter_s_{workers}_workers"] = round(startup, 1)
        ray.shutdown()
    figures["ray_two_worker_speedup"] = round(rates[2] / rates[1], 2)
    figures["ray_cpus_here"] = os.cpu_count()
    return figures
