"""Monte Carlo dropout (Gal & Ghahramani 2016): dropout left on at prediction time.

Each dropout mask is one network drawn from an approximate posterior; the spread of
their softmax outputs is the model's epistemic uncertainty. Only the dropout layers
are switched to training behaviour; BatchNormalization stays in inference mode
(calling the whole model with ``training=True`` would normalise with batch statistics
instead of the learned ones and, inside ``fit``, update them).

Two paths:

* our layout (``features`` -> ``head_dropout`` -> ``probs``): the only dropout sits
  right before the last layer, so the convolutional features are computed once and
  only the head is sampled, T masks in one batched call;
* any other Keras Sequential/Functional model with dropout layers (bring your own
  model): a weight-sharing view in which every dropout layer is always on, run once
  on the images tiled T times.
"""
from __future__ import annotations

import weakref

import keras
import numpy as np

from lifelens.models import classifier_output
from lifelens.uncertainty.features import call_model, features_of

DEFAULT_SAMPLES = 50


def _dropout_types():
    # SpatialDropout1D/2D/3D subclass Dropout.
    return (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout)


def _keras_model(model):
    """A Keras model from a Keras model or a :class:`lifelens.models.TaskModel`."""
    return getattr(model, "full", model)


def has_head_layout(model) -> bool:
    """True if ``model`` has our ``features -> head_dropout -> probs`` head (the fast path)."""
    model = _keras_model(model)
    try:
        features = model.get_layer("features")
        dropout = model.get_layer("head_dropout")
        probs = model.get_layer("probs")
    except (ValueError, AttributeError):
        return False
    # Plain (Bernoulli, elementwise) dropout only: the fast path redraws its masks itself.
    return (isinstance(dropout, keras.layers.Dropout) and getattr(dropout, "noise_shape", None) is None
            and not hasattr(dropout, "_get_noise_shape")
            and dropout.input is features.output and probs.input is dropout.output)


def mc_dropout_head(model, features: np.ndarray, samples: int = DEFAULT_SAMPLES, seed: int | None = None) -> np.ndarray:
    """T sampled heads on precomputed features: (N, F) float -> (T, N, K) probabilities.

    ``model``: a Keras model with our head layout, or a TaskModel. Sample t uses one
    dropout mask for all N images (one sampled network), so per-network statistics
    such as accuracy are meaningful. ``seed`` (int) makes the masks reproducible; None
    draws fresh masks from the layer's own seed generator on every call.
    """
    model = _keras_model(model)
    if not has_head_layout(model):
        raise ValueError("This model has no features -> head_dropout -> probs head; use mc_dropout_predict.")
    if samples < 1:
        raise ValueError(f"MC dropout needs at least one sample (got {samples}).")
    dropout = model.get_layer("head_dropout")
    probs = model.get_layer("probs")
    features = np.asarray(features, dtype=np.float32)
    n, width = features.shape
    tiled = keras.ops.broadcast_to(features[None], (samples, n, width))
    # The layer's own rate; a mask of shape (T, 1, F) is shared across the N images.
    generator = dropout.seed_generator if seed is None else keras.random.SeedGenerator(seed)
    dropped = keras.random.dropout(tiled, dropout.rate, noise_shape=(samples, 1, width), seed=generator)
    return np.asarray(probs(dropped), dtype=np.float32)


class AlwaysOnDropout(keras.layers.Layer):
    """Runs a dropout layer in training mode whatever the model is told (an in-memory view, never saved)."""

    def __init__(self, dropout, seed: int | None = None):
        super().__init__(name=dropout.name + "_mc")
        self.seed = seed
        # A seeded twin of the layer gives reproducible masks without touching the original.
        self.dropout = dropout if seed is None else dropout.__class__.from_config({**dropout.get_config(), "seed": seed})

    def restart(self) -> None:
        """Rewind a seeded twin's generator so the next call draws the same masks again."""
        generator = getattr(self.dropout, "seed_generator", None)
        if self.seed is not None and generator is not None:
            generator.state.assign(keras.ops.convert_to_tensor([self.seed, 0], dtype=generator.state.dtype))

    def call(self, inputs, training=None):
        return self.dropout(inputs, training=True)

    def compute_output_shape(self, input_shape):
        return input_shape


# Views are rebuilt only when a model is seen for the first time (cloning costs ~0.1-0.5 s).
_VIEWS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def stochastic_view(model, seed: int | None = None):
    """A weight-sharing copy of a Sequential/Functional ``model`` whose dropout layers are always on.

    Every other layer is the same object (same weights; BatchNorm keeps running in
    inference mode when the view is called with ``training=False``). Nested models are
    handled. ``seed``: dropout layers get seeds seed, seed+1, ... and are rewound on
    every call of this function, so a seeded view draws the same masks each time.
    Raises ValueError for subclassed models or models without dropout.
    """
    model = _keras_model(model)
    views = _VIEWS.setdefault(model, {})
    if seed not in views:
        types = _dropout_types()
        wrappers = []

        def clone(layer):
            if isinstance(layer, types) and getattr(layer, "rate", 0) > 0:
                wrappers.append(AlwaysOnDropout(layer, None if seed is None else seed + len(wrappers)))
                return wrappers[-1]
            return layer

        try:
            view = keras.models.clone_model(model, clone_function=clone, recursive=True)
        except ValueError as exc:
            raise ValueError("MC dropout needs a Sequential or Functional Keras model "
                             f"(this one cannot be rebuilt: {str(exc)[:160]}).") from None
        if not wrappers:
            raise ValueError("This model has no dropout layer, so MC dropout cannot sample from it.")
        views[seed] = (view, wrappers)
    view, wrappers = views[seed]
    for wrapper in wrappers:
        wrapper.restart()
    return view


def mc_dropout_predict(model, images: np.ndarray, samples: int = DEFAULT_SAMPLES, seed: int | None = None,
                       batch_size: int = 512, head_only: bool = True) -> np.ndarray:
    """T stochastic forward passes with dropout on and BatchNorm in inference mode.

    model: a Keras model (any Sequential/Functional model with dropout layers) or a
    TaskModel. images: (N, S, S, C) or (S, S, C) prepared inputs. Returns (T, N, K)
    probabilities (a single sigmoid output becomes two columns). For our layout the
    features are computed once and T heads are sampled in one call; otherwise the
    images are tiled T times and run through an always-on-dropout view in chunks of
    ``batch_size`` rows (independent masks per image and pass). ``head_only=False``
    forces that general path on our layout too (same posterior, T times the work).
    """
    if samples < 1:
        raise ValueError(f"MC dropout needs at least one sample (got {samples}).")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if head_only and has_head_layout(model):
        return mc_dropout_head(model, features_of(model, images), samples, seed)
    view = stochastic_view(model, seed)
    n = len(images)
    tiled = np.broadcast_to(images[None], (samples,) + images.shape).reshape((samples * n,) + images.shape[1:])
    outputs = []
    for i in range(0, len(tiled), batch_size):
        out = call_model(view, tiled[i:i + batch_size])
        if isinstance(out, (list, tuple)):
            out = out[0]
        outputs.append(classifier_output(out))
    probs = np.concatenate(outputs, axis=0)
    return probs.reshape(samples, n, probs.shape[-1])
