"""Deterministic splits and cached, prepared image arrays for training and evaluation."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from lifelens import config
from lifelens.tasks import Sample, TaskSpec

SPLIT_FRACTIONS = {"plant": (0.15, 0.15), "skin": (0.15, 0.15), "retina": (0.15, 0.15), "mammo": (0.2, 0.2)}
SPLIT_SEED = 2026


def split_samples(samples: list[Sample], val: float, test: float, seed: int = SPLIT_SEED) -> dict[str, list[Sample]]:
    """Stratified split by label, grouped by ``Sample.group`` (no group straddles two splits).

    Deterministic for a given seed and sample list. Returns {"train", "val", "test"}.
    """
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.group, []).append(s)
    by_label: dict[int, list[str]] = {}
    for g, members in sorted(groups.items()):
        by_label.setdefault(max(m.label for m in members), []).append(g)
    rng = np.random.default_rng(seed)
    out = {"train": [], "val": [], "test": []}
    for label in sorted(by_label):
        names = by_label[label]
        rng.shuffle(names)
        n_test = int(round(len(names) * test))
        n_val = int(round(len(names) * val))
        for i, g in enumerate(names):
            part = "test" if i < n_test else "val" if i < n_test + n_val else "train"
            out[part].extend(groups[g])
    for part in out:
        out[part].sort(key=lambda s: s.path)
    return out


def task_splits(spec: TaskSpec, data_dir: Path | None = None) -> dict[str, list[Sample]]:
    val, test = SPLIT_FRACTIONS.get(spec.id, (0.15, 0.15))
    return split_samples(spec.samples(data_dir), val, test)


def describe_split(splits: dict[str, list[Sample]]) -> dict:
    """A JSON-able record of a split: counts per class and a digest of the file lists."""
    record = {}
    for part, items in splits.items():
        labels = [s.label for s in items]
        digest = hashlib.sha256("\n".join(s.path for s in items).encode()).hexdigest()[:16]
        record[part] = {"n": len(items), "per_class": np.bincount(labels).tolist() if labels else [], "paths_sha256_16": digest}
    record["seed"] = SPLIT_SEED
    record["method"] = "stratified by label, grouped by patient/film, sorted-path shuffle with numpy default_rng(seed)"
    return record


def load_prepared(spec: TaskSpec, samples: list[Sample], data_dir: Path | None = None,
                  progress=None) -> np.ndarray:
    """Prepared network inputs for ``samples`` as uint8 (N, S, S, C), cached on disk by content."""
    folder = spec.data_dir(data_dir)
    key = hashlib.sha256(
        json.dumps([spec.id, spec.input_size, spec.channels, getattr(spec.prepare, "__name__", ""), str(folder),
                    [s.path for s in samples]]).encode()
    ).hexdigest()[:20]
    cache = config.cache_root() / f"{spec.id}-{spec.input_size}-{key}.npy"
    if cache.is_file():
        return np.load(cache)
    out = np.zeros((len(samples), spec.input_size, spec.input_size, spec.channels), dtype=np.uint8)
    for i, s in enumerate(samples):
        image = spec.load_image(folder / "images" / s.path)
        out[i] = np.clip(spec.prepare_image(image) + 0.5, 0, 255).astype(np.uint8)
        if progress is not None:
            progress(i + 1, len(samples))
    np.save(cache, out)
    return out
