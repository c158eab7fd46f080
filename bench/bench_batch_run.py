"""Folder runs: images per second serially and on Ray with 1 and 2 local workers over the
same folder of real plant photographs, with the plant ensemble (``predict --task plant``).

``ray_two_worker_speedup`` = (1-worker seconds) / (2-worker seconds) per image, measured in
one run. Each Ray run starts its workers and loads the model in each, a fixed cost paid once
per worker on a cluster too; it is taken out by timing a small and a large folder and using
the difference: seconds per image = (T(large) - T(small)) / (large - small).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

IMAGES = 192
SMALL = 32


def _folder(root: Path, n: int) -> Path:
    from lifelens.tasks import get_task

    source = get_task("plant").data_dir() / "images"
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
    for i, f in enumerate(files):
        (root / f"{i:04d}{f.suffix.lower()}").symlink_to(f)
    return root


class _Discard:
    def write(self, records):
        pass


def run() -> dict:
    import ray

    from lifelens import batch_run
    from lifelens.batch_run import ModelTarget
    from lifelens.commands.predict import PredictJob

    job = PredictJob(ModelTarget(task="plant"), samples=20, seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = batch_run.image_paths([_folder(Path(tmp), IMAGES)])
        job(paths[:4])  # the serial engine's model load and traces
        t0 = time.perf_counter()
        batch_run.run(job, paths, _Discard(), engine="serial")
        serial = time.perf_counter() - t0
        seconds, startup = {}, {}
        for workers in (1, 2):
            if ray.is_initialized():
                ray.shutdown()
            timed = {}
            for n in (SMALL, IMAGES):
                t0 = time.perf_counter()
                batch_run.run(job, paths[:n], _Discard(), engine="ray", workers=workers, batch_size=8)
                timed[n] = time.perf_counter() - t0
            per_image = (timed[IMAGES] - timed[SMALL]) / (IMAGES - SMALL)
            seconds[workers] = per_image * IMAGES
            startup[workers] = timed[SMALL] - per_image * SMALL
        ray.shutdown()
    return {
        "folder_serial_images_per_s": round(IMAGES / serial, 1),
        "ray_one_worker_images_per_s": round(IMAGES / seconds[1], 1),
        "ray_two_worker_images_per_s": round(IMAGES / seconds[2], 1),
        "ray_two_worker_speedup": round(seconds[1] / seconds[2], 2),
        "ray_startup_s_two_workers": round(startup[2], 1),
        "ray_cpus_here": os.cpu_count(),
    }
