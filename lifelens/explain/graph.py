"""Walking and re-running a Keras 3 graph model, including models nested inside models.

Explanations need tensors a plain ``model(x)`` does not return: the activations of an
inner convolution, the input of the output layer (to get logits), or "the rest of the
network from this layer on". A layer is named by its *path*, a tuple of layer names
from the outer model inwards, e.g. ``("block4_relu2",)`` or ``("backbone", "conv5")``
for a transfer-learning model whose backbone is a sub-model.

:func:`run_graph` executes a graph model node by node (as Keras itself does in
``Functional.call``), descending into sub-models, so a hook can capture or replace any
layer's tensors at any depth, and the training flag can be set per layer.
"""
from __future__ import annotations

from typing import Callable, Iterator

LayerPath = tuple  # tuple[str, ...]


def _graph_of(model):
    """The Functional graph behind ``model`` (a Sequential keeps one in ``_functional``)."""
    if hasattr(model, "_nodes_by_depth"):
        return model
    inner = getattr(model, "_functional", None)
    if inner is not None:
        return inner
    raise ValueError(
        f"{getattr(model, 'name', type(model).__name__)} is a subclassed Keras model without a layer graph; "
        "explanations need a Functional or Sequential model."
    )


def is_graph_model(op) -> bool:
    """True for a Functional or built Sequential model (one that has a node graph to walk)."""
    import keras

    return isinstance(op, keras.Model) and (hasattr(op, "_nodes_by_depth") or getattr(op, "_functional", None) is not None)


def _nodes(graph) -> Iterator:
    """The graph's nodes in execution order (deepest first = inputs first)."""
    by_depth = graph._nodes_by_depth
    for depth in sorted(by_depth, reverse=True):
        yield from by_depth[depth]


def walk(model, prefix: LayerPath = ()) -> Iterator[tuple[LayerPath, object, tuple]]:
    """Yield ``(path, layer, output_shape)`` for every layer in execution order.

    Sub-models are entered (their own layers are yielded, with the sub-model's name as
    path prefix), not yielded themselves. Input layers are skipped.
    """
    import keras

    graph = _graph_of(model)
    for node in _nodes(graph):
        op = node.operation
        if op is None or node.is_input or isinstance(op, keras.layers.InputLayer):
            continue
        path = prefix + (op.name,)
        if is_graph_model(op):
            yield from walk(op, path)
        else:
            yield path, op, tuple(node.outputs[0].shape) if node.outputs else ()


def dropout_path(model) -> LayerPath | None:
    """The path of the network's last dropout layer (what MC dropout samples), or None."""
    import keras

    kinds = (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)
    found = [path for path, op, _ in walk(model) if isinstance(op, kinds)]
    return found[-1] if found else None


def path_name(path: LayerPath) -> str:
    return "/".join(path)


# Layers that only pass activations on (or perturb them in training): a CAM of their output
# is the CAM of the layer before, so the default target skips them.
PASS_THROUGH = ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "AlphaDropout",
                "ActivityRegularization", "Identity", "InputLayer")


def default_target_layer(model) -> LayerPath:
    """The last layer with a 4D (N, h, w, C) output before global pooling / flattening that
    computes something (a dropout layer there is skipped for the convolution before it)."""
    last_spatial = None
    for path, layer, shape in walk(model):
        if len(shape) == 4 and type(layer).__name__ not in PASS_THROUGH:
            last_spatial = path
        elif last_spatial is not None and len(shape) == 2:
            break  # pooled: what follows is the classifier head
    if last_spatial is None:
        raise ValueError(f"{model.name} has no layer with a spatial (4D) output to explain.")
    return last_spatial


def resolve_layer(model, layer=None) -> LayerPath:
    """A layer given as None (the default target), a name, a "outer/inner" path or a Layer -> its path."""
    if layer is None:
        return default_target_layer(model)
    entries = list(walk(model))
    if isinstance(layer, (tuple, list)):
        wanted = tuple(layer)
        matches = [p for p, _, _ in entries if p == wanted]
    elif isinstance(layer, str):
        if "/" in layer:
            wanted = tuple(layer.split("/"))
            matches = [p for p, _, _ in entries if p == wanted]
        else:
            matches = [p for p, _, _ in entries if p[-1] == layer]
    else:
        matches = [p for p, op, _ in entries if op is layer]
    if not matches:
        raise ValueError(f"{model.name} has no layer {layer!r}.")
    if len(matches) > 1:
        raise ValueError(f"Layer name {layer!r} is ambiguous in {model.name}; give its path: "
                         + ", ".join(path_name(p) for p in matches))
    return matches[0]


def layer_at(model, path: LayerPath):
    """The layer object at ``path``."""
    for p, op, _ in walk(model):
        if p == tuple(path):
            return op
    raise ValueError(f"{model.name} has no layer {path_name(path)!r}.")


def output_layer(model) -> tuple[LayerPath, object]:
    """(path, layer) of the layer that produces the model's (first) output, inside sub-models too."""
    graph = _graph_of(model)
    path: LayerPath = ()
    tensor = graph.outputs[0]
    while True:
        op, _, index = tensor._keras_history
        path = path + (op.name,)
        if not is_graph_model(op):
            return path, op
        tensor = _graph_of(op).outputs[index]


def run_graph(model, inputs=None, *, seed: tuple | None = None,
              on_call: Callable | None = None, training: Callable | None = None,
              prefix: LayerPath = ()):
    """Execute ``model``'s graph node by node; returns the list of its outputs.

    inputs: tensors for the model's inputs (symbolic ``keras.Input`` or real tensors),
        or None when ``seed`` provides the starting point instead.
    seed: ``(path, tensor)``: use ``tensor`` as the output of the layer at ``path``; layers
        that only feed it are never run ("the rest of the network from this layer on").
    on_call: ``f(path, layer, args, outputs) -> outputs or None``, called after each
        layer runs (None keeps the outputs): capture or replace tensors.
    training: ``f(path, layer) -> bool or None``: the training flag for each layer
        (None keeps what the graph recorded).
    """
    from keras import tree

    graph = _graph_of(model)
    values: dict[int, object] = {}
    if inputs is not None:
        for ref, value in zip(graph.inputs, tree.flatten(inputs)):
            values[id(ref)] = value
    for node in _nodes(graph):
        op = node.operation
        if op is None or node.is_input:
            continue
        path = prefix + (op.name,)
        if seed is not None and seed[0] == path:
            outputs = seed[1]
        elif seed is not None and is_graph_model(op) and seed[0][: len(path)] == path:
            outputs = run_graph(op, None, seed=seed, on_call=on_call, training=training, prefix=path)
        else:
            if any(id(x) not in values for x in node.input_tensors):
                continue  # upstream of the seed, or not needed
            args, kwargs = node.arguments.fill_in(values)
            if is_graph_model(op):
                outputs = run_graph(op, list(tree.flatten(args)), seed=None, on_call=on_call,
                                    training=training, prefix=path)
            else:
                flag = training(path, op) if training is not None else None
                if flag is not None and "training" in getattr(op, "_call_context_args", ()):
                    kwargs = dict(kwargs, training=flag)
                outputs = op(*args, **kwargs)
                if on_call is not None:
                    replaced = on_call(path, op, args, outputs)
                    if replaced is not None:
                        outputs = replaced
        for ref, value in zip(node.outputs, tree.flatten(outputs)):
            values[id(ref)] = value
    missing = [x for x in graph.outputs if id(x) not in values]
    if missing:
        raise ValueError(f"{model.name}: its output cannot be computed from the given starting point.")
    outs = [values[id(x)] for x in graph.outputs]
    return outs if prefix == () or len(outs) > 1 else outs[0]


def tap_model(model, layer_path: LayerPath, extra_input_of: LayerPath | None = None):
    """A Keras model ``image -> [activations at layer_path, input of extra_input_of, output]``.

    It shares every layer (and weight) with ``model``; it is built once and cached by the
    caller. ``extra_input_of`` is the output layer, whose input gives the logits.
    """
    import keras

    if len(model.inputs) != 1:
        raise ValueError(f"{model.name} has {len(model.inputs)} inputs; explanations need a single image input.")
    ref = model.inputs[0]
    x = keras.Input(shape=tuple(ref.shape[1:]), dtype=ref.dtype)
    captured: dict[str, object] = {}

    def on_call(path, op, args, outputs):
        if path == layer_path:
            captured["activations"] = outputs
        if extra_input_of is not None and path == extra_input_of:
            captured["pre_output"] = args[0]
        return None

    outputs = run_graph(model, [x], on_call=on_call)
    if "activations" not in captured:
        raise ValueError(f"Layer {path_name(layer_path)!r} is not on the path from {model.name}'s input to its output.")
    out = outputs[0]
    return keras.Model(x, [captured["activations"], captured.get("pre_output", out), out],
                       name=f"{model.name}_tap_{'_'.join(layer_path)}")


def shared_copy(model):
    """A new Functional model ``image -> output`` built from ``model``'s own layers (shared weights)."""
    import keras

    if len(model.inputs) != 1:
        raise ValueError(f"{model.name} has {len(model.inputs)} inputs; explanations need a single image input.")
    ref = model.inputs[0]
    x = keras.Input(shape=tuple(ref.shape[1:]), dtype=ref.dtype)
    return keras.Model(x, run_graph(model, [x])[0], name=f"{model.name}_shared")


SPATIAL_KINDS = ("Conv2D", "ReLU", "Activation", "MaxPooling2D", "AveragePooling2D", "DepthwiseConv2D", "SeparableConv2D")


def spatial_layers(model) -> tuple[list[str], str]:
    """(layers a CAM method can explain, the default one) of a Keras model.

    Layers with a 4D (N, h, w, C) output that compute something (convolutions, activations,
    pooling), named as :func:`resolve_layer` takes them ("outer/inner" inside sub-models);
    the default is :func:`default_target_layer`.
    """
    names = [path_name(path) for path, layer, shape in walk(model)
             if len(shape) == 4 and type(layer).__name__ in SPATIAL_KINDS]
    default = path_name(default_target_layer(model))
    if default not in names:
        names.append(default)
    return names, default
