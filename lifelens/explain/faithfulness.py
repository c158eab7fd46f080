"""Deletion and insertion AUC (Petsiuk et al. 2018, RISE): is a map faithful to the model?

Deletion: pixels are replaced, most important first (by the map), by a BLURRED copy of the
image (Gaussian, sigma = side/16; ``baseline="mean"`` uses the image's mean colour
instead, ``"black"`` zeros); the target probability is recorded after each of ``steps``
equal steps. A faithful map makes it fall fast: LOWER deletion AUC is better.
Insertion starts from the baseline and puts pixels back, most important first: HIGHER
insertion AUC is better. Ties in a map are broken by a fixed random order, so flat
regions do not favour raster order. All steps of one image go through the model in
batches of ``batch_size``.
"""
from __future__ import annotations

import numpy as np

from lifelens.explain.base import as_images, as_targets, handle_for, resolve_targets
from lifelens.explain.integrated_gradients import baseline_images

DEFAULT_BASELINE = "blur"


def random_maps(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Uniform random float32 (n, height, width) maps in [0, 1]: the chance level for a map."""
    return np.random.default_rng(seed).random((n, height, width), dtype=np.float32)


def perturbation_curves(model, images, maps, targets=None, *, mode: str = "deletion", steps: int = 32,
                        baseline: str = DEFAULT_BASELINE, batch_size: int = 64, seed: int = 0):
    """Target probability as pixels are deleted (or inserted) in the map's order.

    images: float32 (N, H, W, C) in [0, 255]; maps: (N, H, W) (any real values; only the
    order matters); targets: None (predicted class) or (N,) indices.
    Returns (fractions float32 (steps + 1,) from 0 to 1, probabilities float32 (N, steps + 1)).
    """
    if mode not in ("deletion", "insertion"):
        raise ValueError("mode must be 'deletion' or 'insertion'")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    handle = handle_for(model)
    images = as_images(images, handle.input_shape)
    n, height, width, _ = images.shape
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim == 2:
        maps = maps[None]
    if maps.shape != (n, height, width):
        raise ValueError(f"maps must be ({n}, {height}, {width}) to match the images, not {maps.shape}.")
    targets = as_targets(targets, n, handle.num_classes)
    if (targets < 0).any():
        targets = resolve_targets(targets, handle.probs(images, batch_size))
    fills = baseline_images(images, baseline)
    fractions = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    counts = np.round(fractions * height * width).astype(np.int64)
    tie_break = np.random.default_rng(seed).random(height * width)
    curves = np.zeros((n, steps + 1), np.float32)
    for i in range(n):
        order = np.lexsort((tie_break, -np.nan_to_num(maps[i]).ravel()))  # most important first
        rank = np.empty(height * width, np.int64)
        rank[order] = np.arange(height * width)
        changed = (rank[None, :] < counts[:, None]).reshape(steps + 1, height, width, 1)
        if mode == "deletion":
            variants = np.where(changed, fills[i][None], images[i][None])
        else:
            variants = np.where(changed, images[i][None], fills[i][None])
        curves[i] = handle.target_probs(variants.astype(np.float32), np.full(steps + 1, targets[i]), batch_size)
    return fractions, curves


def deletion_auc(model, images, maps, targets=None, **options) -> np.ndarray:
    """(N,) area under the deletion curve, in [0, 1]; lower = more faithful. Options as
    :func:`perturbation_curves` (steps, baseline, batch_size, seed)."""
    fractions, curves = perturbation_curves(model, images, maps, targets, mode="deletion", **options)
    return np.trapezoid(curves, fractions, axis=1).astype(np.float32)


def insertion_auc(model, images, maps, targets=None, **options) -> np.ndarray:
    """(N,) area under the insertion curve, in [0, 1]; higher = more faithful."""
    fractions, curves = perturbation_curves(model, images, maps, targets, mode="insertion", **options)
    return np.trapezoid(curves, fractions, axis=1).astype(np.float32)


def faithfulness_summary(model, images, methods, targets=None, steps: int = 16, progress=None) -> dict:
    """Mean deletion and insertion AUC of each method's maps on ``images``, beside a random map.

    images: float32 (N, H, W, C) prepared inputs in [0, 255]; methods: method ids.
    Returns {method: {"deletion_auc", "insertion_auc", "beats_random_share"}, "random": {...},
    "images": N, "steps": steps}: the model-level answer to "how faithful is each map?".
    ``beats_random_share`` is the share of images whose deletion AUC is below the random map's.
    """
    from lifelens.explain.base import explain

    # The first method resolves the targets (the predicted classes, sigmoid models included);
    # every method then explains those same classes, and the first one's maps are reused.
    first = explain(model, images, targets, method=methods[0])
    targets = np.asarray(first.targets)
    noise = random_maps(len(images), *images.shape[1:3], seed=3)
    random_deletion = deletion_auc(model, images, noise, targets, steps=steps)
    out = {"random": {"deletion_auc": float(random_deletion.mean()),
                      "insertion_auc": float(insertion_auc(model, images, noise, targets, steps=steps).mean())}}
    for method in methods:
        maps = first.maps if method == methods[0] else explain(model, images, targets, method=method).maps
        deletion = deletion_auc(model, images, maps, targets, steps=steps)
        out[method] = {"deletion_auc": float(deletion.mean()),
                       "insertion_auc": float(insertion_auc(model, images, maps, targets, steps=steps).mean()),
                       "beats_random_share": float(np.mean(deletion < random_deletion))}
        if progress is not None:
            progress(method, out[method])
    out.update(images=int(len(images)), steps=steps, baseline=DEFAULT_BASELINE, split="our test split")
    return out



def map_faithfulness(model, image: np.ndarray, heatmap: np.ndarray, target: int, steps: int = 24) -> dict:
    """Deletion and insertion AUC of one (H, W) map for one (H, W, C) image and class.

    Returns {"deletion_auc": lower is better, "insertion_auc": higher is better}, in [0, 1];
    ``steps`` perturbation steps per curve (2 x (steps + 1) forward passes, batched).
    """
    x = np.asarray(image, np.float32)[None]
    m = np.asarray(heatmap, np.float32)[None]
    return {"deletion_auc": float(deletion_auc(model, x, m, int(target), steps=steps)[0]),
            "insertion_auc": float(insertion_auc(model, x, m, int(target), steps=steps)[0])}
