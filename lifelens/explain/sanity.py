"""Sanity checks: does a map depend on what the model learned (Adebayo et al. 2018), and do
methods agree with each other?

Cascading model randomisation: on a CLONE of the model (the shared one is never touched),
the layers with weights are re-initialised one by one from the top (output) down; after
each step the map is recomputed (same images, same target classes as the trained model)
and compared with the original by Spearman rank correlation. A method whose maps barely
change while the network is destroyed is explaining the image, not the model: it is
flagged when the mean correlation over the cascade stays >= ``threshold``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lifelens.explain import graph
from lifelens.explain.base import as_images, as_targets, explain, handle_for, method_class, resolve_targets

FLAG_THRESHOLD = 0.5


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of the same shape (0.0 if either is constant)."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if a.shape != b.shape:
        raise ValueError("maps must have the same shape")
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def agreement(maps: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Rank correlation between methods: ``{name: (H, W) or (N, H, W) map}`` -> (names, (M, M)).

    For several images the correlation is averaged over images.
    """
    names = list(maps)
    stacks = [np.asarray(maps[k], dtype=np.float32).reshape((-1,) + np.shape(maps[k])[-2:]) for k in names]
    if len({s.shape for s in stacks}) > 1:
        raise ValueError("all maps must have the same shape")
    matrix = np.eye(len(names), dtype=np.float32)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            value = np.mean([rank_correlation(x, y) for x, y in zip(stacks[i], stacks[j])])
            matrix[i, j] = matrix[j, i] = value
    return names, matrix


@dataclass
class RandomisationCheck:
    """layers: the layers randomised, in cascade order (top first). correlation: (steps,)
    mean Spearman correlation with the original map after each step; per_image: (steps, N).
    flagged: True if the maps did not change enough (mean correlation >= threshold)."""

    method: str
    layers: list[str]
    correlation: np.ndarray
    per_image: np.ndarray
    threshold: float
    flagged: bool


def clone_with_weights(model):
    """An independent copy of ``model`` (nested sub-models included) with the same weights."""
    import keras

    clone = keras.models.clone_model(model, recursive=True)
    clone.set_weights(model.get_weights())
    shared = {id(v) for v in model.weights} & {id(v) for v in clone.weights}
    if shared:
        raise RuntimeError("cloning shared weights with the original model; refusing to randomise")
    return clone


def weighted_layers(model) -> list[tuple]:
    """Paths of layers with a kernel (convolutions, dense), in execution order."""
    return [path for path, op, _ in graph.walk(model) if getattr(op, "kernel", None) is not None]


def _reinitialise(layer, seed: int) -> None:
    import keras

    kernel_init = keras.initializers.GlorotUniform(seed=seed)
    layer.kernel.assign(kernel_init(tuple(layer.kernel.shape), dtype=layer.kernel.dtype))
    bias = getattr(layer, "bias", None)
    if bias is not None:
        bias.assign(np.zeros(tuple(bias.shape), dtype=bias.dtype))


def randomisation_check(model, images, method="gradcam", targets=None, *, layers=None, depth: int | None = None,
                        threshold: float = FLAG_THRESHOLD, seed: int = 0, layer=None,
                        **options) -> RandomisationCheck:
    """Cascading randomisation from the top: how much does ``method``'s map change?

    images: float32 (N, H, W, C). method: an id or a Method subclass. layers: paths/names of
    the layers to randomise in order (default: every layer with a kernel, output first);
    depth: stop after that many. Kernels are re-drawn (Glorot uniform), biases zeroed;
    BatchNorm statistics are kept. Returns a :class:`RandomisationCheck`.
    """
    cls = method_class(method)
    handle = handle_for(model)
    batch = as_images(images, handle.input_shape)
    wanted = as_targets(targets, len(batch), handle.num_classes)
    original = explain(model, batch, wanted, method=cls, layer=layer, **options)
    classes = resolve_targets(wanted, original.probs)
    clone = clone_with_weights(model)
    if layers is None:
        cascade = list(reversed(weighted_layers(clone)))
    else:
        cascade = [graph.resolve_layer(clone, name) for name in layers]
    if depth is not None:
        cascade = cascade[:depth]
    if not cascade:
        raise ValueError("no layers to randomise")
    clone_layer = original.layer.split("/") if original.layer else None
    per_image = np.zeros((len(cascade), len(batch)), np.float32)
    for step, path in enumerate(cascade):
        _reinitialise(graph.layer_at(clone, path), seed + step)
        changed = explain(clone, batch, classes, method=cls, layer=clone_layer, **options)
        per_image[step] = [rank_correlation(a, b) for a, b in zip(original.maps, changed.maps)]
    correlation = per_image.mean(axis=1)
    return RandomisationCheck(cls.id, [graph.path_name(p) for p in cascade], correlation, per_image,
                              float(threshold), bool(correlation.mean() >= threshold))
