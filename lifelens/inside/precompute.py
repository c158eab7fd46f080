"""The per-model files the app shows instantly: ``<task>.actmax.npz`` and ``<task>.patches.npz``.

    python -m lifelens inside --task plant --precompute

Both files are keyed on the convolutional weights, so re-saving a model with another
head keeps them valid and retraining makes them stale (they are then ignored and rebuilt).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from lifelens.inside import actmax, patches
from lifelens.inside.layers import block_output_layers, layer_channels

LAST_BLOCK_CHANNELS = 16
EARLIER_BLOCK_CHANNELS = 6


def class_votes(model) -> np.ndarray | None:
    """(channels, classes): how much each last-block channel pushes each class up.

    The last block reaches the classifier through global (average or max) pooling, so channel i's
    vote for class k is the ``probs`` weight w[i, k] minus the mean of w[i, :] (softmax
    ignores what is added to every class alike). None if the model has no such layer.
    """
    try:
        weights = np.asarray(model.get_layer("probs").get_weights()[0])  # (channels, classes)
    except (ValueError, IndexError):
        return None
    if weights.ndim != 2 or weights.shape[0] != layer_channels(model, block_output_layers(model)[-1]):
        return None
    return weights - weights.mean(axis=1, keepdims=True)


def showcase_channels(model, layer: str, count: int, index: patches.PatchIndex | None = None) -> list[int]:
    """Which channels of ``layer`` to precompute, ``count`` of them.

    Last block: the channels that vote most strongly for each class, classes taken in
    turn (so every class has its own channels to show, see :func:`class_votes`); with a
    patch index, a channel whose top training images are mostly those of a channel
    already chosen is passed over, so the set shows different things. Other layers: the
    channels most active on training images (from the patch index), else the first ``count``.
    """
    n = layer_channels(model, layer)
    count = min(count, n)
    votes = class_votes(model) if layer == block_output_layers(model)[-1] else None
    if votes is not None:
        ranked = np.argsort(-votes, axis=0, kind="stable")  # (channels, classes), best first per class
        tops = index.layers[layer].image if index is not None and layer in index.layers else None
        chosen: list[int] = []
        for distinct in (True, False):  # second pass fills up if too few distinct channels exist
            for rank in range(n):
                for k in range(votes.shape[1]):
                    channel = int(ranked[rank, k])
                    if channel in chosen or len(chosen) >= count:
                        continue
                    if distinct and tops is not None and any(
                            len(np.intersect1d(tops[channel], tops[c])) > tops.shape[1] // 2 for c in chosen):
                        continue
                    chosen.append(channel)
        return chosen
    if index is not None and layer in index.layers:
        return sorted(np.argsort(-index.layers[layer].mean_activation, kind="stable")[:count].tolist())
    return list(range(count))


def precompute(task_model, n_images: int = 300, settings: actmax.ActMaxSettings | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Build and save both files for a :class:`models.TaskModel`; returns what was written.

    The patch index comes first (its activation statistics choose the earlier-block
    channels), then activation maximisation for the last block (16 channels) and 6
    channels of each block from the second to the last but one.
    """
    import time

    spec, model = task_model.spec, task_model.classifier
    t0 = time.perf_counter()
    index = patches.build_patch_index(model, spec, n_images=n_images)
    index_path = patches.save_patch_index(index, patches.patch_index_path(spec))
    log(f"[{spec.id}] patch index: {len(index.paths)} training images, {len(index.layers)} layers "
        f"-> {index_path.name} ({index_path.stat().st_size / 1e3:.0f} kB, {time.perf_counter() - t0:.0f}s)")
    names = block_output_layers(model)
    plan = [(names[-1], showcase_channels(model, names[-1], LAST_BLOCK_CHANNELS, index))]
    plan += [(name, showcase_channels(model, name, EARLIER_BLOCK_CHANNELS, index)) for name in names[1:-1]]
    cache_path = actmax.actmax_cache_path(spec)
    cache_path.unlink(missing_ok=True)  # a rebuild: old entries (other channels, other recipes) go
    actmax._MEMORY.clear()
    written = {"patches": str(index_path), "actmax": {}}
    for layer, channels in plan:
        t1 = time.perf_counter()
        result = actmax.activation_maximisation(model, layer, channels, settings=settings, cache_path=cache_path)
        gain = float(np.median(result.activation / np.maximum(index.layers[layer].mean_activation[channels], 1e-6)))
        log(f"[{spec.id}] actmax {layer} channels {channels}: median {gain:.1f}x the training-image mean "
            f"({time.perf_counter() - t1:.0f}s)")
        written["actmax"][layer] = channels
    log(f"[{spec.id}] -> {cache_path.name} ({cache_path.stat().st_size / 1e3:.0f} kB); total {time.perf_counter() - t0:.0f}s")
    return written
