"""Deterministic splits and cached, prepared image arrays for training and evaluation."""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
from pathlib import Path

import numpy as np

from lifelens import config, imaging
from lifelens.tasks import Sample, TaskSpec

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
    """The splits of the task's own folder (the headline test split)."""
    val, test = spec.recipe.split_fractions
    return split_samples(spec.samples(data_dir), val, test)


def grouped_folds(samples: list[Sample], k: int, seed: int = SPLIT_SEED) -> list[list[int]]:
    """Indices of ``samples`` in ``k`` cross-validation folds, stratified by label and grouped
    by ``Sample.group`` (scikit-learn's StratifiedGroupKFold): deterministic for a seed."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    labels = [s.label for s in samples]
    return [sorted(int(i) for i in test) for _, test in
            splitter.split(np.zeros(len(samples)), labels, [s.group for s in samples])]


def training_splits(spec: TaskSpec, data_dir: Path | None = None) -> dict[str, list[Sample]]:
    """The task's own splits plus each extra source split the same way, on its own groups.

    Splitting every folder separately keeps the own folder's splits exactly as
    :func:`task_splits` gives them; ``Sample.source`` says where each sample came from.
    """
    out = {k: list(v) for k, v in task_splits(spec, data_dir).items()}
    if data_dir is not None:  # a folder given by hand is trained on alone
        return out
    for source in spec.extra_sources:
        for part, items in source_splits(spec, source).items():
            if source.trains or part == "test":
                out[part].extend(items)
    return out


def source_splits(spec: TaskSpec, source) -> dict[str, list[Sample]]:
    """An extra source's own train/val/test splits (on its groups), whether it trains or not."""
    return split_samples(spec.source_samples(source), *spec.recipe.split_fractions)


def by_source(samples: list[Sample]) -> dict[str, list[int]]:
    """Indices of ``samples`` per source ("" = the task's own folder)."""
    out: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        out.setdefault(s.source, []).append(i)
    return out


def describe_split(splits: dict[str, list[Sample]]) -> dict:
    """A JSON-able record of a split: counts per class and a digest of the file lists."""
    record = {}
    for part, items in splits.items():
        labels = [s.label for s in items]
        own = [s.path for s in items if not s.source]  # the digest of the own folder's split stays comparable
        digest = hashlib.sha256("\n".join(own).encode()).hexdigest()[:16]
        record[part] = {"n": len(items), "per_class": np.bincount(labels).tolist() if labels else [], "paths_sha256_16": digest}
        sources = {s.source for s in items if s.source}
        if sources:
            record[part]["per_source"] = {src or "own": len(ix) for src, ix in by_source(items).items()}
    record["seed"] = SPLIT_SEED
    record["method"] = "stratified by label, grouped by patient/film, sorted-path shuffle with numpy default_rng(seed)"
    return record


def every_class_in_turn(samples: list[Sample], n: int | None = None, reverse: bool = False) -> list[Sample]:
    """The samples reordered so classes take turns (first of each class, then the second of
    each ...), each class keeping its own order; the first ``n`` of them (all when None).
    ``reverse``: classes take turns from the highest label down."""
    by_label: dict[int, list[Sample]] = {}
    for s in samples:
        by_label.setdefault(s.label, []).append(s)
    out, i = [], 0
    limit = len(samples) if n is None else min(n, len(samples))
    while len(out) < limit:
        for label in sorted(by_label, reverse=reverse):
            if i < len(by_label[label]) and len(out) < limit:
                out.append(by_label[label][i])
        i += 1
    return out


def preparation_key(spec: TaskSpec) -> str:
    """A short key of how ``spec`` prepares an image (its size, channels, the framing's and
    preparation's code and the imaging module's): every on-disk cache of prepared images or of
    what a network makes of them includes it, so a new contrast rule, say, is never read stale."""
    key = f"{spec.input_size}-{spec.channels}-{_preparation_fingerprint(spec.prepare)}"
    return key if spec.frame is None else f"{key}-{_preparation_fingerprint(spec.frame)}"


@functools.lru_cache(maxsize=None)
def _preparation_fingerprint(prepare) -> str:
    try:
        code = inspect.getsource(prepare)
    except (OSError, TypeError):
        code = ""
    imaging_code = Path(imaging.__file__).read_bytes()
    return getattr(prepare, "__name__", "") + hashlib.sha256(code.encode() + imaging_code).hexdigest()[:12]


def load_prepared(spec: TaskSpec, samples: list[Sample], data_dir: Path | None = None,
                  progress=None, fault_seed: int | None = None) -> np.ndarray:
    """Prepared network inputs for ``samples`` as uint8 (N, S, S, C), cached on disk by content.

    With ``fault_seed``, each decoded image first goes through one random camera fault
    (:func:`lifelens.uncertainty.shift.random_fault`, drawn from ``fault_seed`` and its index),
    as another camera would have taken it, and is then prepared like any other.
    """
    from lifelens.uncertainty.shift import FAULT_RANGES, random_fault

    paths = [spec.image_path(s, data_dir) for s in samples]
    # Keyed by each file's size and modification time too, so an edited image is re-read.
    stats = [(str(p), *(lambda st: (st.st_size, st.st_mtime_ns))(p.stat())) if p.is_file() else (str(p), 0, 0)
             for p in paths]
    faults = None if fault_seed is None else [fault_seed, FAULT_RANGES]
    key = hashlib.sha256(
        json.dumps([spec.id, preparation_key(spec), stats] + ([faults] if faults else [])).encode()
    ).hexdigest()[:20]
    cache = config.cache_root() / f"{spec.id}-{spec.input_size}-{key}.npy"
    if cache.is_file():
        return np.load(cache)
    out = np.zeros((len(samples), spec.input_size, spec.input_size, spec.channels), dtype=np.uint8)
    for i, path in enumerate(paths):
        image = spec.load_image(path)
        if fault_seed is not None:
            image = random_fault(image, np.random.default_rng([fault_seed, i]))
        out[i] = np.clip(spec.prepare_image(image) + 0.5, 0, 255).astype(np.uint8)
        if progress is not None:
            progress(i + 1, len(samples))
    partial = cache.with_suffix(f".{os.getpid()}.tmp.npy")  # written whole, then renamed: never half a file
    np.save(partial, out)
    os.replace(partial, cache)
    return out


def class_weights(labels: np.ndarray, num_classes: int, kind: str | None) -> dict[int, float] | None:
    """Inverse-frequency ("balanced", scikit-learn's rule) or its square root ("sqrt"),
    normalised to mean 1 over the classes; None for no weighting."""
    if kind is None:
        return None
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(labels)
    w = np.ones(num_classes)
    w[present] = compute_class_weight("balanced", classes=present, y=labels)
    if kind == "sqrt":
        w = np.sqrt(w)
    w = w / np.mean(w)
    return {i: float(v) for i, v in enumerate(w)}
