"""The first convolutional layer's kernels, drawn as little images.

A first-layer kernel is a small picture itself: it is multiplied with every k x k patch
of the image, so the patch that looks most like it gives the largest response.
"""
from __future__ import annotations

import numpy as np

from lifelens.inside import figures
from lifelens.inside.layers import first_conv_layer


def first_layer_filters(model, fold_batchnorm: bool = True) -> np.ndarray:
    """The kernels of the first Conv2D layer, each scaled symmetrically into [-1, 1].

    Returns float32 (n_filters, k, k, C_in); 0 means "ignores this pixel", +1 the pixel
    weighted most positively, -1 most negatively (per filter: ``w / max|w|``).
    ``fold_batchnorm``: multiply by the following BatchNorm's gamma / sqrt(var + eps), so
    a filter whose BatchNorm scale is negative is shown the way it acts (sign flipped).
    """
    conv = first_conv_layer(model)
    kernel = np.asarray(conv.get_weights()[0], dtype=np.float32)  # (k, k, C_in, n)
    if fold_batchnorm:
        kernel = kernel * _batchnorm_scale(model, conv)
    kernel = np.transpose(kernel, (3, 0, 1, 2))
    limit = np.abs(kernel).max(axis=(1, 2, 3), keepdims=True)
    return (kernel / np.where(limit > 0, limit, 1.0)).astype(np.float32)


def _batchnorm_scale(model, conv) -> np.ndarray:
    """gamma / sqrt(var + eps) of the BatchNorm right after ``conv`` (ones if there is none)."""
    from lifelens.explain.graph import walk

    n = int(conv.get_weights()[0].shape[-1])
    for _, layer, _ in walk(model):
        if type(layer).__name__ != "BatchNormalization":
            continue
        try:
            source = layer.input._keras_history[0]  # see layers._parents
        except (AttributeError, ValueError):
            continue
        if source is conv:
            values = {w.path.split("/")[-1]: np.asarray(w.numpy()) for w in layer.weights}
            gamma = values.get("gamma", np.ones(n, np.float32))
            return (gamma / np.sqrt(values["moving_variance"] + layer.epsilon)).astype(np.float32)
    return np.ones(n, np.float32)


def filter_tiles(filters: np.ndarray, cell: int = 32) -> list[np.ndarray]:
    """Filters in [-1, 1] (n, k, k, C) -> list of uint8 RGB tiles (cell, cell, 3).

    Grey = 0; for colour inputs each channel is its own colour (a filter that wants red
    and not green looks red); for greyscale inputs white = positive, black = negative.
    Nearest-neighbour enlargement keeps each weight a visible square.
    """
    filters = np.asarray(filters, dtype=np.float32)
    if filters.ndim != 4:
        raise ValueError(f"filters must be (n, k, k, C), not {filters.shape}.")
    tiles = []
    for f in filters:
        image = np.clip(127.5 + 127.5 * f, 0, 255)
        tiles.append(figures.upscale(image, cell))
    return tiles


def filter_grid(model, cell: int = 32, columns: int = 8, gap: int = 3, labels: bool = True) -> np.ndarray:
    """The first layer's kernels as one uint8 RGB grid image, filter i at position i.

    Each filter is scaled on its own (symmetric around 0), so its structure shows even if
    its weights are small. ``labels``: write the channel number above each tile.
    """
    tiles = filter_tiles(first_layer_filters(model), cell)
    if labels:
        tiles = [figures.label(t, f"#{i}") for i, t in enumerate(tiles)]
    return figures.grid(tiles, columns, gap)
