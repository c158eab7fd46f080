"""The shared base of every explanation method: the result type, the registry, and a
per-model handle that holds everything compiled once (tap models, tf.functions).

Conventions (all methods):

* ``images``: float32 (N, H, W, C) network inputs with values in [0, 255], as
  ``TaskSpec.prepare_image`` returns them (a single (H, W, C) image is accepted too).
* ``targets``: the class index explained per image; None (or -1) = the predicted class.
* A single-sigmoid-output binary model is treated as two classes [1 - p, p].
* ``Explanation.maps``: float32 (N, H, W) in [0, 1] at the input resolution, 1 = most
  important for the target class. Signed methods also fill ``Explanation.signed``
  (N, H, W) in the method's own units (positive = evidence for the target class).
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

import numpy as np

from lifelens.explain import graph

METHODS: dict[str, type] = {}


def register(cls):
    """Class decorator: add an explanation method to :data:`METHODS` under ``cls.id``."""
    if not getattr(cls, "id", None):
        raise ValueError("an explanation method needs an id")
    METHODS[cls.id] = cls
    return cls


@dataclass
class Explanation:
    """What :func:`explain` returns.

    method: the method id. maps: float32 (N, H, W) in [0, 1]. targets: int (N,) the
    explained class per image. probs: float32 (N, K) the model's probabilities.
    signed: float32 (N, H, W) or None, signed attributions (SHAP, IG, occlusion).
    layer: the explained layer's path ("outer/inner") for layer methods, else None.
    options: the options used. extra: method-specific arrays (e.g. ``std`` for MC dropout).
    """

    method: str
    maps: np.ndarray
    targets: np.ndarray
    probs: np.ndarray
    signed: np.ndarray | None = None
    layer: str | None = None
    options: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- model handle

_HANDLES: dict[int, "ModelHandle"] = {}
# Building Keras models and tf.functions is not thread-safe; the app serves sessions from
# threads. Held only while something is built, never while a compiled function runs.
BUILD_LOCK = threading.RLock()


class BlackBoxModel:
    """A classifier known only by its predictions (an ONNX graph, a remote service): what the
    black-box methods (``needs = "predictions"``) and the deletion/insertion AUC need.

    predict_proba: float32 (N, H, W, C) in [0, 255] -> (N, K) class probabilities.
    input_shape: (H, W, C). num_classes: K.
    """

    def __init__(self, predict_proba, input_shape: tuple, num_classes: int, name: str = "model"):
        self.predict_proba = predict_proba
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.name = name


class _Handle:
    """What every handle has: the model, held weakly (``model_ref``)."""

    model_ref: weakref.ref

    @property
    def model(self):
        model = self.model_ref()
        if model is None:
            raise RuntimeError("the model behind this explanation handle no longer exists")
        return model


class PredictionHandle(_Handle):
    """The handle of a :class:`BlackBoxModel`: probabilities only; no layers, no gradients."""

    needs_met = ("predictions",)

    def __init__(self, model: BlackBoxModel):
        self.functions: dict = {}  # nothing is compiled for a black box; tracing_counts reads it
        self.model_ref = weakref.ref(model)
        self.name = model.name
        self.input_shape = model.input_shape
        self.num_classes = model.num_classes
        self.single_sigmoid = False

    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        predict = self.model.predict_proba
        return _batched(lambda chunk: np.asarray(predict(chunk), np.float32), np.asarray(images, np.float32),
                        batch_size, self.num_classes)

    def target_probs(self, images: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> np.ndarray:
        probs = self.probs(images, batch_size)
        return probs[np.arange(len(probs)), np.asarray(targets, dtype=np.int64)]


def handle_for(model) -> "ModelHandle | PredictionHandle":
    """The cached handle of ``model`` (keyed by id; dropped when the model dies): a
    :class:`ModelHandle` for a Keras model, a :class:`PredictionHandle` for a :class:`BlackBoxModel`."""
    key = id(model)
    found = _HANDLES.get(key)
    if found is not None and found.model_ref() is model:
        return found
    with BUILD_LOCK:
        found = _HANDLES.get(key)
        if found is None or found.model_ref() is not model:
            found = PredictionHandle(model) if isinstance(model, BlackBoxModel) else ModelHandle(model)
            _HANDLES[key] = found
            weakref.finalize(model, _HANDLES.pop, key, None)
        return found


def traced_handle(model) -> "ModelHandle | None":
    """The handle that runs ``model`` through traced graphs shared by its architecture (an
    ensemble's members trace once), or None where the model must run eagerly: another Keras
    backend (training on a GPU machine), or a model that is not a graph taking one image batch."""
    import keras

    if keras.backend.backend() != "tensorflow" or not graph.is_graph_model(model):
        return None
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        return None
    return handle_for(model)


def _architecture_digest(model) -> str | None:
    import hashlib
    import json

    try:
        config = dict(model.get_config())
        config.pop("name", None)
        shapes = [(tuple(v.shape), str(v.dtype)) for v in model.variables]
        text = json.dumps([type(model).__name__, config, shapes], sort_keys=True, default=repr)
    except Exception:  # noqa: BLE001 - a layer without a config: the model is traced on its own
        return None
    return hashlib.sha256(text.encode()).hexdigest()


class SharedTrace:
    """One traced graph for every model of one architecture: the model's weights are inputs.

    ``fn`` is a tf.function built on the first model. Its Python body is traced once more,
    reading the model's variables through a ``keras.StatelessScope`` fed with the variables
    the caller passes, so :meth:`bind` gives each model a callable that runs the same graph
    on its own weights. The variables go in as variables (by handle, read inside the graph):
    as tensors, casting 53 of them cost each plant member 5-10 ms a call. The trace is made
    up front for ``fn``'s input signature (any batch size); calls of any batch size reuse it.
    Keeps the first model's layers (not the model object) alive while a bound callable is.
    """

    def __init__(self, fn, variables):
        import keras
        import tensorflow as tf

        template = list(variables)
        inner = fn.python_function
        self.signature = fn.input_signature

        @tf.function(autograph=False)
        def run(values, *args):
            with keras.StatelessScope(state_mapping=list(zip(template, values))):
                return inner(*args)

        run._omit_frequent_tracing_warning = True
        run.get_concrete_function([v.value for v in template], *self.signature)
        self.run = run

    def bind(self, variables) -> "BoundTrace":
        return BoundTrace(self, list(variables))


class BoundTrace:
    """A :class:`SharedTrace` called on one model's weights; called like the tf.function."""

    def __init__(self, trace: SharedTrace, variables: list):
        self.trace, self.variables = trace, variables

    def __call__(self, *args):
        import tensorflow as tf

        # Cast as the input signature would (a float64 array must not make a second trace).
        args = [tf.convert_to_tensor(a, dtype=spec.dtype) for a, spec in zip(args, self.trace.signature)]
        return self.trace.run([v.value for v in self.variables], *args)

    def experimental_get_tracing_count(self) -> int:
        return self.trace.run.experimental_get_tracing_count()


# Traces shared by architecture (ModelHandle.function); an entry lives while a model uses it.
_SHARED_TRACES: "weakref.WeakValueDictionary[tuple, SharedTrace]" = weakref.WeakValueDictionary()


def tracing_counts() -> dict[str, int]:
    """How many times each cached tf.function was traced, ``{"<model>:<function>": n}``.

    A repeated call with a new batch size must not add a trace (fixed input signatures).
    """
    counts = {}
    for handle in list(_HANDLES.values()):
        model = handle.model_ref()
        if model is None:
            continue
        for name, fn in handle.functions.items():
            counts[f"{model.name}:{name}"] = int(fn.experimental_get_tracing_count())
    return counts


class ModelHandle(_Handle):
    """Per-model compiled pieces: tap models per layer, probability and gradient functions.

    Holds the model only weakly; every tf.function has a fixed input signature (any batch
    size, the model's image size), so it is traced once per model, or once per architecture
    where models share it (:meth:`function`, :class:`SharedTrace`).
    """


    def __init__(self, model):
        import keras

        if not isinstance(model, keras.Model):
            raise ValueError("explanations need a Keras model")
        if len(model.inputs) != 1:
            raise ValueError(f"{model.name} has {len(model.inputs)} inputs; explanations need one image input.")
        self.model_ref = weakref.ref(model)
        self.name = model.name
        self.input_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
        if len(self.input_shape) != 3:
            raise ValueError(f"{model.name} does not take images (input shape {self.input_shape}).")
        self.output_path, out_layer = graph.output_layer(model)
        units = int(model.outputs[0].shape[-1])
        self.single_sigmoid = units == 1
        self.num_classes = 2 if self.single_sigmoid else units
        activation = getattr(getattr(out_layer, "activation", None), "__name__", None)
        # Gradient methods explain the logit (pre-activation) of a Dense softmax/sigmoid
        # output, which does not saturate the way a probability near 1 does.
        self.dense_logits = isinstance(out_layer, keras.layers.Dense) and activation in ("softmax", "sigmoid")
        self.output_layer = out_layer
        # A model whose layers are sealed (a SavedModel behind one TFSMLayer) has no spatial layer to explain.
        spatial = any(len(shape) == 4 and type(layer).__name__ in graph.SPATIAL_KINDS for _, layer, shape in graph.walk(model))
        self.needs_met = ("predictions", "gradients") + (("layers",) if spatial else ())
        self.taps: dict[tuple, object] = {}
        self.functions: dict[str, object] = {}
        self.explainers: dict[tuple, object] = {}  # shap explainers, built on shared_copy
        self._layer_paths: dict = {}

    def layer_path(self, layer=None) -> tuple:
        """:func:`graph.resolve_layer`, remembered per name (None = the default target layer)."""
        key = tuple(layer) if isinstance(layer, list) else layer
        if not isinstance(key, (str, tuple, type(None))):
            return graph.resolve_layer(self.model, layer)
        found = self._layer_paths.get(key)
        if found is None:
            found = self._layer_paths[key] = graph.resolve_layer(self.model, layer)
        return found

    @property
    def image_spec(self):
        import tensorflow as tf

        return tf.TensorSpec((None,) + self.input_shape, tf.float32)

    def tap(self, layer_path: tuple):
        """The (cached) model ``image -> [activations, output-layer input, output]``."""
        if layer_path not in self.taps:
            with BUILD_LOCK:
                if layer_path not in self.taps:
                    self.taps[layer_path] = graph.tap_model(self.model, layer_path, self.output_path)
        return self.taps[layer_path]

    def shared_copy(self):
        """A model object of its own that shares every layer and weight with the model.

        Objects that must keep a model (a shap explainer) hold this one, so the cache does
        not keep the user's model alive.
        """
        if "copy" not in self.taps:
            with BUILD_LOCK:
                if "copy" not in self.taps:
                    self.taps["copy"] = graph.shared_copy(self.model)
        return self.taps["copy"]

    def function(self, name: str, factory, shared: bool = True):
        """A cached tf.function, built by ``factory()`` on first use.

        With ``shared``, models of one architecture (a deep ensemble's members) share one trace
        (:class:`SharedTrace`): tracing is most of a first explanation's time (about 0.5 s per
        plant member, 0.015 s per call after it). A function whose graph changes the model's
        state (dropout drawing from its seed generator) must not be shared.
        """
        if name in self.functions:
            return self.functions[name]
        with BUILD_LOCK:
            if name in self.functions:
                return self.functions[name]
            key = (self.architecture, name) if shared and self.architecture else None
            trace = _SHARED_TRACES.get(key) if key else None
            if trace is None:
                fn = factory()
                # Built with autograph=False: the traced code has no tensor-dependent Python control
                # flow, and tracing is faster. Each function is traced once; TF's "frequent retracing" heuristic keys on the
                # shared Python code of functions built per model/layer and would warn wrongly.
                fn._omit_frequent_tracing_warning = True
                if key is None:
                    self.functions[name] = fn
                    return fn
                trace = _SHARED_TRACES[key] = SharedTrace(fn, self.model.variables)
            self.functions[name] = bound = trace.bind(self.model.variables)
            return bound

    @property
    def architecture(self) -> str | None:
        """A digest of the model's configuration (its name left out) and variable shapes: equal
        digests compute the same function of their weights. None when Keras cannot say."""
        if not hasattr(self, "_architecture"):
            self._architecture = _architecture_digest(self.model)
        return self._architecture

    # -- tensors (used inside tf.functions) ----------------------------------------------

    def scores_and_probs(self, pre_output, output):
        """(class scores (N, K), probabilities (N, K)) from a tap's last two outputs.

        Scores are logits when the output layer is a Dense softmax/sigmoid, else probabilities.
        """
        import tensorflow as tf

        probs = tf.cast(output, tf.float32)
        if self.dense_logits:
            layer = self.output_layer
            scores = tf.matmul(tf.cast(pre_output, tf.float32), tf.cast(layer.kernel, tf.float32))
            if layer.use_bias:
                scores = scores + tf.cast(layer.bias, tf.float32)
        else:
            scores = probs
        if self.single_sigmoid:
            probs = tf.concat([1.0 - probs, probs], axis=-1)
            scores = tf.concat([-scores, scores], axis=-1) if self.dense_logits else tf.concat([1.0 - scores, scores], axis=-1)
        return scores, probs

    def outputs_tensor(self, images):
        """(N, F) the model's first output as a float32 tensor, in inference mode."""
        import tensorflow as tf

        # The graph is run directly (not ``model(images)``), which for a loaded model whose
        # inputs are a one-element list would warn about the input structure on every trace.
        return tf.cast(graph.run_graph(self.model, [images], training=lambda path, layer: False)[0], tf.float32)

    def probs_tensor(self, images):
        """(N, K) probabilities as a tensor (two columns for a single sigmoid)."""
        import tensorflow as tf

        probs = self.outputs_tensor(images)
        if self.single_sigmoid:
            probs = tf.concat([1.0 - probs, probs], axis=-1)
        return probs

    # -- numpy in, numpy out ---------------------------------------------------------------

    def probs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, H, W, C) -> float32 (N, K) probabilities, in batches through one traced function."""
        return self._batched_through("probs", self.probs_tensor, images, batch_size, self.num_classes)

    def outputs(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """(N, H, W, C) -> float32 (N, F): the model's first output as it is (say the pooled
        features of a ``features`` view), in batches through one traced function."""
        return self._batched_through("outputs", self.outputs_tensor, images, batch_size,
                                     int(self.model.outputs[0].shape[-1]))

    def _batched_through(self, name: str, tensor_fn, images: np.ndarray, batch_size: int, width: int) -> np.ndarray:
        """``tensor_fn`` (images -> (N, width) tensor), traced once as ``name``, over ``images`` in batches."""
        import tensorflow as tf

        fn = self.function(name, lambda: tf.function(tensor_fn, input_signature=[self.image_spec], autograph=False))
        return _batched(lambda chunk: fn(chunk).numpy(), images, batch_size, width)

    def target_probs(self, images: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probability of ``targets[i]`` for image i: (N,) float32."""
        probs = self.probs(images, batch_size)
        return probs[np.arange(len(probs)), np.asarray(targets, dtype=np.int64)]

    def input_gradients(self, images: np.ndarray, targets: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """d p_target / d image for each image: float32 (N, H, W, C)."""
        import tensorflow as tf

        def build():
            @tf.function(input_signature=[self.image_spec, tf.TensorSpec((None,), tf.int32)], autograph=False)
            def gradient(x, t):
                with tf.GradientTape() as tape:
                    tape.watch(x)
                    p = tf.gather(self.probs_tensor(x), t, batch_dims=1)
                return tape.gradient(p, x)
            return gradient

        fn = self.function("input_gradients", build)
        targets = np.asarray(targets, dtype=np.int32)
        out = np.zeros(np.shape(images), dtype=np.float32)
        for i in range(0, len(images), batch_size):
            out[i:i + batch_size] = fn(images[i:i + batch_size], targets[i:i + batch_size]).numpy()
        return out


def _batched(fn, images: np.ndarray, batch_size: int, width: int) -> np.ndarray:
    if len(images) == 0:
        return np.zeros((0, width), np.float32)
    return np.concatenate([fn(images[i:i + batch_size]) for i in range(0, len(images), batch_size)], axis=0)


# ----------------------------------------------------------------------------- inputs

def as_images(images, input_shape: tuple) -> np.ndarray:
    """Validate and return float32 (N, H, W, C); a single (H, W, C) image becomes N = 1."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or tuple(array.shape[1:]) != tuple(input_shape):
        raise ValueError(f"images must be (N, {', '.join(map(str, input_shape))}) prepared inputs, not {array.shape}.")
    if len(array) == 0:
        raise ValueError("no images to explain")
    if not np.isfinite(array).all():
        raise ValueError("images contain NaN or infinite values")
    return np.ascontiguousarray(array)


def as_targets(targets, n: int, num_classes: int) -> np.ndarray:
    """None / int / sequence -> int32 (N,), -1 meaning "the predicted class"."""
    if targets is None:
        return np.full(n, -1, np.int32)
    array = np.asarray(targets)
    if array.ndim == 0:
        array = np.full(n, int(array))
    if array.shape != (n,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"targets must be None, one class index or {n} class indices.")
    if ((array < -1) | (array >= num_classes)).any():
        raise ValueError(f"class indices must be in 0..{num_classes - 1} (or -1 for the predicted class).")
    return array.astype(np.int32)


def resolve_targets(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Replace -1 by the predicted class."""
    return np.where(targets < 0, probs.argmax(axis=1), targets).astype(np.int32)


def positive_part(signed: np.ndarray) -> np.ndarray:
    """Signed (N, H, W) attributions -> [0, 1] maps of the evidence FOR the target (max = 1)."""
    pos = np.maximum(np.asarray(signed, dtype=np.float32), 0.0)
    top = pos.max(axis=(1, 2), keepdims=True)
    return np.where(top > 0, pos / np.where(top > 0, top, 1.0), 0.0).astype(np.float32)


# ----------------------------------------------------------------------------- the base class

class Method:
    """An explanation method. Subclasses set the class attributes and implement :meth:`attribute`.

    ``defaults`` lists every option with its default value: unknown options are refused.
    """

    id: str = ""
    name: str = ""
    description: str = ""
    signed: bool = False  # fills Explanation.signed
    uses_layer: bool = False  # explains an inner layer (``layer=`` applies)
    # What of the model the method reads: "predictions" (black-box), "gradients" or "layers".
    needs: str = "gradients"
    needs_dropout: bool = False  # samples the network's dropout layers (MC dropout)
    defaults: dict = {}
    # Options for an answer within about a second on 2 cores (the dashboard's default); the
    # defaults are the precise setting the cards and the command line use.
    fast: dict = {}

    def __init__(self, model, layer=None, **options):
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(f"{self.name or self.id} has no option {', '.join(unknown)}; "
                             f"its options are: {', '.join(self.defaults) or 'none'}.")
        if layer is not None and not self.uses_layer:
            raise ValueError(f"{self.name} works on the input pixels; it takes no layer.")
        self.handle = handle_for(model)  # holds the model weakly: compiled functions keep this instance
        if self.needs not in self.handle.needs_met:
            offers = " and ".join(self.handle.needs_met)
            raise ValueError(f"{self.name} needs the network's {self.needs}; this model gives only its {offers}.")
        self.options = {**self.defaults, **options}
        self.layer_path = self.handle.layer_path(layer) if self.uses_layer else None

    @property
    def model(self):
        return self.handle.model

    @property
    def layer_name(self) -> str | None:
        return graph.path_name(self.layer_path) if self.layer_path else None

    def __call__(self, images: np.ndarray, targets: np.ndarray) -> Explanation:
        """images: validated float32 (N, H, W, C); targets: int32 (N,), -1 = predicted."""
        probs, targets = self.predictions(images, targets)
        maps, signed, extra = self.attribute(images, targets)
        return Explanation(self.id, maps, targets, probs, signed, self.layer_name, dict(self.options), extra)

    def predictions(self, images: np.ndarray, targets: np.ndarray):
        """-> (probs float32 (N, K), targets int (N,) with -1 replaced by the predicted class):
        one forward pass. A method whose own compiled pass yields both overrides it."""
        probs = self.handle.probs(images)
        return probs, resolve_targets(targets, probs)

    def attribute(self, images: np.ndarray, targets: np.ndarray):
        """targets: resolved class indices (N,) -> (maps float32 (N, H, W) in [0, 1],
        signed (N, H, W) or None, extra dict)."""
        raise NotImplementedError


def method_class(method) -> type:
    """A registered id or a :class:`Method` subclass -> the class."""
    if isinstance(method, type) and issubclass(method, Method):
        return method
    try:
        return METHODS[method]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown explanation method {method!r}; choose one of {', '.join(METHODS)}.") from None


def explain(model, images, targets=None, method="gradcam", layer=None, **options) -> Explanation:
    """Explain ``model``'s prediction for ``images`` with one method.

    model: a Keras classifier (N, H, W, C) -> (N, K) softmax or (N, 1) sigmoid, or a
        :class:`BlackBoxModel` (then only methods with ``needs == "predictions"``).
    images: float32 (N, H, W, C) or (H, W, C), values in [0, 255] (prepared inputs).
    targets: None (the predicted class), one class index, or (N,) indices.
    method: an id from :data:`METHODS` (or a :class:`Method` subclass).
    layer: for CAM methods, a layer name / "outer/inner" path / Layer (default: the
        last spatial layer before global pooling).
    options: method options (see ``METHODS[id].defaults``).
    Returns an :class:`Explanation` whose ``maps`` are (N, H, W) float32 in [0, 1].
    """
    cls = method_class(method)
    instance = cls(model, layer=layer, **options)
    batch = as_images(images, instance.handle.input_shape)
    return instance(batch, as_targets(targets, len(batch), instance.handle.num_classes))
