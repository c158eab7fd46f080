"""Inside the network: what a CNN computes, layer by layer (the teaching views).

* :mod:`.filters`: the first layer's kernels as little images;
* :mod:`.actmax`: the input that most excites a channel (activation maximisation), cached;
* :mod:`.hierarchy`: every block's feature maps for one image, with receptive fields and captions;
* :mod:`.patches`: the training-image patches that excite a channel most (Zeiler & Fergus);
* :mod:`.layers`: receptive fields, the layer table, sub-models, cache fingerprints;
* :mod:`.figures`: composing uint8 figures with numpy/OpenCV.

The convolution playground (exact numpy convolution and pooling) is :mod:`lifelens.playground`.
All functions take a Keras task classifier (input (S, S, C) in [0, 255]) and numpy arrays.

Typical use (``tm`` a :class:`lifelens.models.TaskModel`, ``x`` a prepared image)::

    model = tm.classifier
    grid = inside.filter_grid(model)                                   # uint8 RGB
    levels = inside.feature_hierarchy(model, x, top=8, task_id=tm.spec.id)
    layer = inside.block_output_layers(model)[-1]
    ready = inside.cached_layers(model, inside.actmax_cache_path(tm.spec))   # {layer: channels}
    result = inside.activation_maximisation(model, layer, ready[layer],
                                            cache_path=inside.actmax_cache_path(tm.spec),
                                            progress=lambda done, total: ...)
    index = inside.task_patch_index(model, tm.spec)                    # None if not precomputed
    patches = inside.top_patches(index, tm.spec, layer, channel=int(result.channels[0]))
    rows = inside.architecture_table(tm.full)
"""
from lifelens.inside.actmax import (
    ActMaxResult, ActMaxSettings, DEFAULT_SETTINGS, activation_maximisation, actmax_cache_path, actmax_grid,
    cached_layers, channel_mean_activation, maximise_channels, settings_for,
)
from lifelens.inside.filters import filter_grid, filter_tiles, first_layer_filters
from lifelens.inside.hierarchy import FeatureLevel, caption_for, feature_hierarchy, hierarchy_figure
from lifelens.inside.layers import (
    ReceptiveField, architecture_table, block_output_layers, feature_model, first_conv_layer, layer_channels,
    receptive_fields, trunk_fingerprint,
)
from lifelens.inside.patches import (
    LayerPatches, PatchIndex, TopPatch, build_patch_index, load_patch_index, patch_index_path, patches_grid,
    prepared_uint8, save_patch_index, task_patch_index, top_patches,
)
from lifelens.inside.precompute import class_votes, precompute, showcase_channels

__all__ = [
    "ActMaxResult", "ActMaxSettings", "DEFAULT_SETTINGS", "activation_maximisation", "actmax_cache_path",
    "actmax_grid", "cached_layers", "channel_mean_activation", "maximise_channels", "settings_for",
    "filter_grid", "filter_tiles", "first_layer_filters",
    "FeatureLevel", "caption_for", "feature_hierarchy", "hierarchy_figure",
    "ReceptiveField", "architecture_table", "block_output_layers", "feature_model", "first_conv_layer",
    "layer_channels", "receptive_fields", "trunk_fingerprint",
    "LayerPatches", "PatchIndex", "TopPatch", "build_patch_index", "load_patch_index", "patch_index_path",
    "patches_grid", "prepared_uint8", "save_patch_index", "task_patch_index", "top_patches",
    "class_votes", "precompute", "showcase_channels",
]
