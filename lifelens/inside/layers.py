"""The network's structure: which layers end each block, receptive fields, the layer table.

Receptive fields are computed analytically from the layer configs (Araujo et al. 2019,
"Computing receptive fields of convolutional neural networks", Distill): walking from
the input, a layer with kernel k, dilation d, stride s and padding p_before maps

    size'  = size + (d (k - 1)) * jump
    jump'  = jump * s
    start' = start + ((d (k - 1)) / 2 - p_before) * jump

where ``size`` is the side of the input square one unit sees, ``jump`` the distance in
input pixels between neighbouring units and ``start`` the centre of unit 0 (input pixel
centres are 0, 1, 2, ...). Layers are assumed square (all LifeLens layers are).
"""
from __future__ import annotations

import hashlib
import math
import re
import weakref
from dataclasses import dataclass

import numpy as np

BLOCK_LAYER = re.compile(r"^block(\d+)_relu(\d+)$")
# Layers that mix every position: after them a unit "sees" the whole image.
GLOBAL_TYPES = ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Dense")
BAYESIAN_HEAD = "variational_head"
DROPOUT_HEAD = "head_dropout"


@dataclass(frozen=True)
class ReceptiveField:
    """What one unit of a layer sees. ``size``/``jump`` in input pixels; ``start`` = centre of unit 0.

    ``whole_image``: the layer pools over all positions (size is then the input side).
    """

    size: int
    jump: int
    start: float
    whole_image: bool = False

    def box(self, row: int, col: int, image_size: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1), end-exclusive, of the input pixels unit (row, col) sees, clipped to the image."""
        if self.whole_image:
            return 0, image_size, 0, image_size
        half = (self.size - 1) / 2.0
        cy, cx = self.start + row * self.jump, self.start + col * self.jump
        y0, x0 = int(math.ceil(cy - half)), int(math.ceil(cx - half))
        return (max(0, y0), min(image_size, y0 + self.size), max(0, x0), min(image_size, x0 + self.size))

    def centre(self, row: int, col: int) -> tuple[float, float]:
        """(y, x) in input pixels of the centre of unit (row, col)."""
        return self.start + row * self.jump, self.start + col * self.jump


def _parents(layer) -> list[str]:
    """Names of the layers feeding ``layer`` (empty for an input layer)."""
    try:
        inputs = layer.input
    except (AttributeError, ValueError):  # input layers, or layers called more than once
        return []
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    # _keras_history = (operation, node_index, tensor_index): Keras's record of who made a tensor.
    return [t._keras_history[0].name for t in inputs if getattr(t, "_keras_history", None)]


def _window(layer) -> tuple[int, int, int, str] | None:
    """(kernel, stride, dilation, padding) of a layer that slides a window, else None."""
    config = layer.get_config()
    if "kernel_size" in config:
        k, s, d = config["kernel_size"], config.get("strides", 1), config.get("dilation_rate", 1)
    elif "pool_size" in config:
        k, s, d = config["pool_size"], config.get("strides") or config["pool_size"], 1
    else:
        return None
    first = lambda v: int(v[0] if isinstance(v, (list, tuple)) else v)  # noqa: E731 - square layers
    return first(k), first(s), first(d), str(config.get("padding", "valid")).lower()


def receptive_fields(model) -> dict[str, ReceptiveField]:
    """Every layer's receptive field, by layer name, for a Keras functional model.

    Layers that neither slide a window nor pool globally (BatchNorm, ReLU, Rescaling,
    Dropout) keep their input's field. Where several inputs meet, the largest is kept.
    """
    fields: dict[str, ReceptiveField] = {}
    image_side = int(model.inputs[0].shape[1])
    for layer in model.layers:
        parents = [fields[p] for p in _parents(layer) if p in fields]
        if not parents:
            fields[layer.name] = ReceptiveField(1, 1, 0.0)
            continue
        rf = max(parents, key=lambda f: (f.whole_image, f.size))
        kind = type(layer).__name__
        if rf.whole_image or kind in GLOBAL_TYPES:
            fields[layer.name] = ReceptiveField(image_side, rf.jump, (image_side - 1) / 2.0, True)
            continue
        window = _window(layer)
        if window is None:
            fields[layer.name] = rf
            continue
        k, s, d, padding = window
        span = d * (k - 1)
        before = 0
        if padding == "same":
            n = int(layer.input.shape[1])
            out = -(-n // s)
            before = max((out - 1) * s + span + 1 - n, 0) // 2
        fields[layer.name] = ReceptiveField(rf.size + span * rf.jump, rf.jump * s,
                                            rf.start + (span / 2.0 - before) * rf.jump)
    return fields


def block_output_layers(model) -> list[str]:
    """The last layer of each conv block, ``block{b}_relu{last}``, in depth order."""
    last: dict[int, tuple[int, str]] = {}
    for layer in model.layers:
        m = BLOCK_LAYER.match(layer.name)
        if m:
            b, c = int(m.group(1)), int(m.group(2))
            if b not in last or c > last[b][0]:
                last[b] = (c, layer.name)
    if not last:
        raise ValueError(f"Model {model.name} has no block*_relu* layers; it is not a LifeLens task CNN.")
    return [last[b][1] for b in sorted(last)]


def first_conv_layer(model):
    """The first Conv2D layer (the one whose kernels look at pixels), nested models included."""
    from lifelens.explain.graph import walk

    for _, layer, _ in walk(model):
        if type(layer).__name__ == "Conv2D":
            return layer
    raise ValueError(f"Model {model.name} has no Conv2D layer.")


def layer_channels(model, layer: str) -> int:
    """Number of channels of a layer's output."""
    return int(_get_layer(model, layer).output.shape[-1])


def _get_layer(model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(f"The model has no layer called {name!r}.") from None


# ----------------------------------------------------------------------------- the layer table

def architecture_table(model) -> list[dict]:
    """One row per layer, input to output.

    Each row: ``name``, ``type``, ``output_shape`` (tuple without the batch axis),
    ``params`` (int), ``receptive_field`` (side in input pixels; the input side for
    layers that see the whole image), ``jump`` (input pixels between neighbouring units; None for whole-image layers),
    ``whole_image`` (bool), ``note`` (what the layer is for, "" if nothing special; the
    dropout layer used by MC dropout and the Bayesian head are marked).
    """
    fields = receptive_fields(model)
    rows = []
    for layer in model.layers:
        rf = fields[layer.name]
        output = layer.output
        shape = tuple(int(v) for v in output.shape[1:]) if not isinstance(output, (list, tuple)) else tuple(
            tuple(int(v) for v in o.shape[1:]) for o in output)
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": shape,
            "params": int(layer.count_params()),
            "receptive_field": int(rf.size),
            "jump": None if rf.whole_image else int(rf.jump),
            "whole_image": bool(rf.whole_image),
            "note": _note(layer),
        })
    return rows


def _note(layer) -> str:
    name, kind = layer.name, type(layer).__name__
    if name == BAYESIAN_HEAD:
        return "Bayesian head: weights are distributions; sampling them gives the Bayesian confidence"
    if name == DROPOUT_HEAD:
        return "Dropout: off for a normal prediction, kept on for MC-dropout confidence"
    if name == "rescale":
        return "pixel values 0..255 -> -1..1"
    if name == "features":
        return "averages each channel over the image: one number per channel"
    if name == "probs":
        return "softmax: one probability per class"
    if kind == "Conv2D":
        return "learned filters slide over the image"
    if kind == "MaxPooling2D":
        return "keeps the strongest response in each window; halves the resolution"
    if kind == "Add":
        return "adds the block's input back (shortcut): the block learns a correction, which keeps deep nets trainable"
    if kind == "BatchNormalization":
        return "rescales each channel to a steady range"
    if kind == "ReLU":
        return "keeps positive responses, zeroes the rest"
    return ""


# ----------------------------------------------------------------------------- sub-models and fingerprints

_SUBMODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def feature_model(model, layers: tuple[str, ...] | list[str], input_size: int | None = None):
    """A Keras model image -> [outputs of ``layers``], built once per (model, layers, size).

    The sub-model shares the weights; it stops at the deepest requested layer, so the
    layers after it cost nothing. ``input_size``: run the convolutional layers on square
    inputs of another side (they do not depend on it); default the model's own.
    """
    import keras

    layers = tuple(layers)
    side = int(model.inputs[0].shape[1])
    size = side if input_size is None else int(input_size)
    per_model = _SUBMODELS.setdefault(model, {})
    if (layers, size) not in per_model:
        if size == side:
            outputs = [_get_layer(model, name).output for name in layers]
            inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs  # a bare tensor in, not a list
        else:
            inputs, outputs = _rebuild_on_input(model, layers, size)
        per_model[(layers, size)] = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0],
                                                name=f"{model.name}_inside_{len(per_model)}")
    return per_model[(layers, size)]


def _rebuild_on_input(model, layers: tuple[str, ...], size: int):
    """Call the model's own layers, input to ``layers``, on a new (size, size, C) input."""
    import keras

    if len(model.inputs) != 1:
        raise ValueError("Only single-input models can be run on another input size.")
    for name in layers:
        _get_layer(model, name)
    first = model.inputs[0]
    new_input = keras.Input((size, size, int(first.shape[-1])), name="image")
    tensors = {first._keras_history[0].name: new_input}
    for layer in model.layers:
        if layer.name in tensors:
            continue
        parents = _parents(layer)
        if not parents or any(p not in tensors for p in parents):
            continue
        if type(layer).__name__ in GLOBAL_TYPES:
            continue  # past the spatial layers: nothing requested lies beyond
        tensors[layer.name] = layer(tensors[parents[0]] if len(parents) == 1 else [tensors[p] for p in parents])
        if all(name in tensors for name in layers):
            break
    missing = [name for name in layers if name not in tensors]
    if missing:
        raise ValueError(f"Layers {missing} cannot be run on a {size} px input.")
    return new_input, [tensors[name] for name in layers]


def trunk_fingerprint(model, upto: str | None = None) -> str:
    """sha256 of the names and weights of every layer from the input up to ``upto``
    (default: the deepest block output).

    Caches keyed on it survive re-saving the model with a different head (a Bayesian head
    added later) but not retraining the convolutional layers.
    """
    upto = upto or block_output_layers(model)[-1]
    h = hashlib.sha256()
    for layer in model.layers:
        h.update(layer.name.encode())
        for w in layer.weights:
            h.update(np.ascontiguousarray(np.asarray(w.numpy() if hasattr(w, "numpy") else w)).tobytes())
        if layer.name == upto:
            return h.hexdigest()
    raise ValueError(f"The model has no layer called {upto!r}.")
