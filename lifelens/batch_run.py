"""Run one per-batch function over folders of any size: streamed, resumable, serial or on Ray.

    job = PredictJob(ModelTarget(task=TASK_ID), samples=30, seed=0)
    run(job, image_paths(["archive/"]), JsonLines("out/predictions.jsonl"), engine="serial")

* Images are read batch by batch inside the job (never all in memory); the driver holds
  only the list of paths still to do.
* Each batch's records are appended to a JSON Lines file and flushed to disk before the
  next batch, so a run killed at any point loses at most the batch in flight; a rerun
  skips every file already in the file (:func:`done_files`).
* ``engine="ray"`` runs the SAME job as a Ray Data ``map_batches`` over actors: one model
  load per worker, ``ray.init()`` on this machine or ``address`` for a cluster, a GPU per
  worker when the cluster has GPUs.
* A bad file gives a record ``{"file", "error"}``: reported on stderr, not written, so a
  rerun tries it again; the run goes on.
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".pgm", ".dcm")
BATCH_SIZE = 32


def image_paths(inputs: Iterable) -> list[str]:
    """Files named directly (kept even when they are not images: the job reports them), and
    every image file under the folders named, in sorted order, recursively."""
    found: list[str] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                found += [str(Path(folder) / f) for f in sorted(files) if f.lower().endswith(IMAGE_SUFFIXES)]
        else:
            found.append(str(path))
    return found


def done_files(jsonl: Path) -> set[str]:
    """The ``file`` of every complete record in a JSON Lines file (a line cut by a kill is ignored)."""
    done: set[str] = set()
    if not Path(jsonl).is_file():
        return done
    with open(jsonl, encoding="utf-8") as handle:
        for line in handle:
            try:
                done.add(json.loads(line)["file"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


class JsonLines:
    """Appends records to a JSON Lines file, on disk (flushed and fsynced) after every batch.
    A line cut short by an earlier kill is completed with a newline first."""

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as handle:
                handle.seek(-1, os.SEEK_END)
                torn = handle.read(1) != b"\n"
            if torn:
                with open(self.path, "ab") as handle:
                    handle.write(b"\n")

    def write(self, records: list[dict]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


class PrintLines:
    """Writes records to stdout, one JSON object per line (no resume)."""

    def write(self, records: list[dict]) -> None:
        for record in records:
            print(json.dumps(record), flush=True)


# ----------------------------------------------------------------------------- what a job runs on

@dataclass(frozen=True)
class ModelTarget:
    """A shipped task model (``task``) or a user's model file (``model`` + ``classes``),
    picklable so that every Ray worker opens it itself, once."""

    task: str | None = None
    model: str | None = None
    classes: tuple[str, ...] | None = None
    value_range: str = "0-255"
    channel_order: str = "rgb"
    input_size: int | None = None

    def load(self):
        """The TaskModel, or the OpenedModel; loaded once per process."""
        if self not in _LOADED:
            if self.task:
                from lifelens.models import load_task_model
                from lifelens.tasks import get_task

                _LOADED[self] = load_task_model(get_task(self.task))
            else:
                from lifelens.model_formats import Preprocessing, open_model

                path = Path(self.model)
                _LOADED[self] = open_model(path.read_bytes(), path.name, list(self.classes) if self.classes else None,
                                           Preprocessing(self.value_range, self.channel_order, self.input_size))
        return _LOADED[self]

    def class_names(self) -> list[str]:
        loaded = self.load()
        if self.task:
            return loaded.spec.class_names
        return list(self.classes) if self.classes else [f"class {i}" for i in range(loaded.num_classes)]

    def read(self, path: str):
        """(uint8 image, prepared float32 (S, S, C) in [0, 255]) of one file; raises InputError / OSError."""
        data = Path(path).read_bytes()
        loaded = self.load()
        if self.task:
            image = loaded.spec.load_image_bytes(data, Path(path).name)
            return image, loaded.spec.prepare_image(image)
        from lifelens import imaging
        from lifelens.model_formats import prepare_for_model

        image = imaging.decode_image(data, channels=3, name=Path(path).name)
        return image, prepare_for_model(image, loaded)


_LOADED: dict = {}


def read_batch(target: ModelTarget, paths: list[str]) -> tuple[list[str], list, list, list[dict]]:
    """(readable paths, their images, their prepared inputs, error records of the others)."""
    from lifelens.imaging import InputError

    good, images, prepared, errors = [], [], [], []
    for path in paths:
        try:
            image, x = target.read(path)
        except OSError as exc:
            errors.append({"file": path, "error": f"cannot read the file ({exc.strerror or type(exc).__name__})"})
            continue
        except InputError as exc:
            errors.append({"file": path, "error": str(exc)})
            continue
        good.append(path)
        images.append(image)
        prepared.append(x)
    return good, images, prepared, errors


# ----------------------------------------------------------------------------- engines

@dataclass
class Progress:
    """A progress bar on stderr with the rate and the estimated end (tqdm)."""

    total: int
    label: str = "images"
    skipped: int = 0
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="img", desc=self.label, file=sys.stderr, mininterval=1.0,
                        dynamic_ncols=True, disable=None if self.total else True)  # None: only on a terminal

    def update(self, records: list[dict]) -> None:
        self.bar.update(len(records))

    def close(self) -> None:
        self.bar.close()


def run(job, paths: list[str], sink, engine: str = "serial", workers: int = 2, address: str | None = None,
        batch_size: int = BATCH_SIZE, skip: set[str] | None = None, label: str = "images") -> dict:
    """Run ``job`` (paths -> records) over ``paths`` minus ``skip``, writing each batch to
    ``sink``; returns {"done", "skipped", "failed", "seconds"}. Error records are reported
    on stderr and not written."""
    skip = skip or set()
    todo = [p for p in paths if p not in skip]
    progress = Progress(len(todo), label, skipped=len(paths) - len(todo))
    if progress.skipped:
        print(f"lifelens: {progress.skipped} files already done, skipped", file=sys.stderr)
    batches = (todo[i:i + batch_size] for i in range(0, len(todo), batch_size))
    results = serial_results(job, batches) if engine == "serial" else ray_results(job, todo, workers, address, batch_size)
    done = failed = 0
    try:
        for records in results:
            good = [r for r in records if "error" not in r]
            for r in records:
                if "error" in r:
                    print(f"lifelens: {r['file']}: {r['error']}", file=sys.stderr)
            sink.write(good)
            done += len(good)
            failed += len(records) - len(good)
            progress.update(records)
    finally:
        progress.close()
    return {"done": done, "skipped": progress.skipped, "failed": failed,
            "seconds": round(time.perf_counter() - progress.started, 2)}


def serial_results(job, batches: Iterable[list[str]]) -> Iterator[list[dict]]:
    for batch in batches:
        yield job(batch)


class _RayBatch:
    """A Ray Data actor: the job, its model loaded once in this worker."""

    def __init__(self, job):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        self.job = job

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        records = self.job([str(p) for p in batch["path"]])
        return {"record": np.array([json.dumps(r) for r in records], dtype=object)}


def ray_results(job, paths: list[str], workers: int, address: str | None, batch_size: int) -> Iterator[list[dict]]:
    """The job as a Ray Data ``map_batches`` over ``workers`` actors; batches come back as
    they finish (not in order)."""
    import logging

    import ray

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # one line per operator and dataset otherwise
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=max(workers, 1), include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                     object_store_memory=256 * 1024 * 1024,
                     runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": os.pathsep.join(sys.path)}})
    if not paths:
        return
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= workers else 0
    blocks = max(1, -(-len(paths) // batch_size))
    dataset = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
    mapped = dataset.map_batches(_RayBatch, fn_constructor_kwargs={"job": job}, batch_size=batch_size,
                                 concurrency=workers, num_cpus=1, num_gpus=gpus, batch_format="numpy")
    for batch in mapped.iter_batches(batch_size=None, batch_format="numpy"):
        yield [json.loads(r) for r in batch["record"]]
