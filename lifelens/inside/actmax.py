"""Activation maximisation: the input image that most excites one channel.

Gradient ascent on the input, starting from faint noise, with the regularisers that
make the result look like a picture rather than adversarial noise (Yosinski et al.
2015, "Understanding neural networks through deep visualization"; Olah et al. 2017,
"Feature visualization", Distill):

* jitter: the image is shifted by a few random pixels before each step, so the result
  cannot rely on one exact pixel alignment;
* blur: a Gaussian blur every few steps removes high-frequency noise; it starts strong
  and fades out (coarse shapes first, fine detail last);
* L2 decay: pixel values are pulled back towards grey a little each step.

For a ReLU layer the pre-ReLU value is pushed up (see :func:`objective_layer`).
Several channels are optimised at once: the batch holds one image per channel and the
loss is the sum, over the batch, of each image's own channel mean activation. Images do
not interact (BatchNorm runs in inference mode), so the batch is as good as separate
runs, and much faster. Results are cached in memory and in ``models/<task>.actmax.npz``,
keyed on the weights of the layers used (:func:`layers.trunk_fingerprint`).
"""
from __future__ import annotations

import json
import logging
import threading
import weakref
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from lifelens import config
from lifelens.inside import figures
from lifelens.inside.layers import _parents, block_output_layers, feature_model, layer_channels, trunk_fingerprint

log = logging.getLogger("lifelens")

Progress = Callable[[int, int], None]
BLUR_RADIUS = 4  # taps each side: enough for sigma up to ~1.6 px


@dataclass(frozen=True)
class ActMaxSettings:
    """The optimisation recipe. ``step`` is in units of the network's -1..1 input scale
    (the gradient is normalised to unit standard deviation first) and shrinks linearly to
    ``step_end`` times itself by the last step; ``jitter`` in pixels as a
    fraction of the image side; the blur's sigma (pixels) goes linearly from ``blur_start``
    to ``blur_end`` over the steps. ``canvas``: side of the optimised image (default: the
    model's input side; the conv layers run on any size, and a smaller canvas that still
    holds a few receptive fields is cheaper to compute and to store)."""

    steps: int = 96
    step: float = 0.06
    step_end: float = 0.3
    jitter: float = 1 / 16
    blur_every: int = 4
    blur_start: float = 1.0
    blur_end: float = 0.0
    decay: float = 0.002
    noise: float = 0.1
    seed: int = 0
    canvas: int | None = None

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


DEFAULT_SETTINGS = ActMaxSettings()
MAX_CANVAS = 192  # px: larger inputs (the 320 px films) are optimised on a 192 px canvas


def settings_for(model) -> ActMaxSettings:
    """The default recipe for a model: :data:`DEFAULT_SETTINGS`, on a canvas of at most
    :data:`MAX_CANVAS` px (keeps the time and the cached file small)."""
    side = int(model.inputs[0].shape[1])
    return DEFAULT_SETTINGS if side <= MAX_CANVAS else replace(DEFAULT_SETTINGS, canvas=MAX_CANVAS)


@dataclass
class ActMaxResult:
    """Images that maximise channels of one layer.

    ``images``: uint8 (n, S, S, C), the optimised network inputs (what the model saw; S is
    the canvas side).
    ``activation``: (n,) each channel's mean activation on its image (as uint8);
    ``start_activation``: (n,) the same on the noise the ascent started from.
    """

    layer: str
    channels: np.ndarray
    images: np.ndarray
    activation: np.ndarray
    start_activation: np.ndarray
    settings: ActMaxSettings = field(default=DEFAULT_SETTINGS)  # the recipe that made them

    def display(self) -> np.ndarray:
        """uint8 RGB (n, S, S, 3), each image contrast-stretched on its own for the screen."""
        return np.stack([figures.stretch(im) for im in self.images])

    def subset(self, channels) -> "ActMaxResult":
        where = {int(c): i for i, c in enumerate(self.channels)}
        idx = [where[int(c)] for c in channels]
        return ActMaxResult(self.layer, self.channels[idx], self.images[idx], self.activation[idx],
                            self.start_activation[idx], self.settings)


# ----------------------------------------------------------------------------- the optimisation

_STEP_FUNCTIONS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # model -> {layer: step}


def _step_function(model, layer: str, side: int):
    """One batched, compiled ascent step for ``layer`` on a ``side`` px canvas (built once per
    model, layer and side; the recipe's numbers are arguments)."""
    import tensorflow as tf

    per_model = _STEP_FUNCTIONS.setdefault(model, {})
    if (layer, side) in per_model:
        return per_model[(layer, side)]
    submodel = feature_model(model, (objective_layer(model, layer),), side)
    channels_in = int(model.inputs[0].shape[-1])
    n_channels = layer_channels(model, layer)
    radius = BLUR_RADIUS
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)

    @tf.function(input_signature=[
        tf.TensorSpec([None, side, side, channels_in], tf.float32),  # z: image in -1..1
        tf.TensorSpec([None, n_channels], tf.float32),  # one-hot: which channel each image serves
        tf.TensorSpec([2], tf.int32),  # jitter shift (rows, cols)
        tf.TensorSpec([], tf.float32),  # step size
        tf.TensorSpec([], tf.float32),  # decay
        tf.TensorSpec([], tf.float32),  # blur sigma in pixels (0: no blur this step)
    ], reduce_retracing=True)
    def step(z, onehot, shift, step_size, decay, sigma):
        with tf.GradientTape() as tape:
            tape.watch(z)
            shifted = tf.roll(z, shift, axis=[1, 2])
            activations = submodel(shifted * 127.5 + 127.5, training=False)
            per_image = tf.reduce_sum(tf.reduce_mean(activations, axis=[1, 2]) * onehot, axis=1)
            loss = tf.reduce_sum(per_image)
        grad = tape.gradient(loss, z)
        grad = grad / (tf.math.reduce_std(grad, axis=[1, 2, 3], keepdims=True) + 1e-8)
        z = (z + step_size * grad) * (1.0 - decay)

        def smooth(x):
            g = tf.exp(-0.5 * tf.square(taps / tf.maximum(sigma, 1e-3)))
            g = g / tf.reduce_sum(g)
            padded = tf.pad(x, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode="REFLECT")
            rows = tf.nn.depthwise_conv2d(padded, tf.tile(tf.reshape(g, [-1, 1, 1, 1]), [1, 1, channels_in, 1]),
                                          [1, 1, 1, 1], "VALID")
            return tf.nn.depthwise_conv2d(rows, tf.tile(tf.reshape(g, [1, -1, 1, 1]), [1, 1, channels_in, 1]),
                                          [1, 1, 1, 1], "VALID")

        z = tf.cond(sigma > 0.05, lambda: smooth(z), lambda: z)
        return tf.clip_by_value(z, -1.0, 1.0), per_image

    per_model[(layer, side)] = step
    return step


def _check_spatial(model, layer: str) -> None:
    """Activation maximisation needs a layer with a map of positions: (batch, h, w, channels)."""
    layer_channels(model, layer)  # unknown layer -> ValueError
    if len(model.get_layer(layer).output.shape) != 4:
        raise ValueError(f"{layer} has no spatial map; choose a convolutional block layer "
                         f"({', '.join(block_output_layers(model))}).")


def objective_layer(model, layer: str) -> str:
    """The layer whose channel mean is pushed up: for a ReLU, its input.

    Above zero the two are the same; below, the ReLU's gradient is 0, so a channel that is
    silent on the starting noise could never be woken up. The reported activations are
    always those of ``layer`` itself.
    """
    target = model.get_layer(layer)
    if type(target).__name__ == "ReLU":
        parents = _parents(target)
        if len(parents) == 1:
            return parents[0]
    return layer


def _start_noise(side: int, channels_in: int, channel: int, settings: ActMaxSettings) -> np.ndarray:
    """Each channel's own starting noise, so results do not depend on how channels are batched."""
    rng = np.random.default_rng([settings.seed, channel])
    return np.clip(rng.normal(0.0, settings.noise, (side, side, channels_in)), -1, 1).astype(np.float32)


def channel_mean_activation(model, layer: str, images: np.ndarray, channels, batch_size: int = 32) -> np.ndarray:
    """Mean activation of ``channels[i]`` of ``layer`` on ``images[i]``.

    images: (n, S, S, C) network inputs in [0, 255] (uint8 or float), S the model's input
    side or another canvas side; channels: (n,) ints. Returns float32 (n,).
    """
    images = np.asarray(images, dtype=np.float32)
    submodel = feature_model(model, (layer,), int(images.shape[1]))
    channels = np.asarray(channels, dtype=int)
    out = []
    for i in range(0, len(images), batch_size):
        act = np.asarray(submodel(images[i:i + batch_size], training=False))
        out.append(act.mean(axis=(1, 2))[np.arange(len(act)), channels[i:i + batch_size]])
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def maximise_channels(model, layer: str, channels, settings: ActMaxSettings | None = None,
                      batch_size: int = 16, progress: Progress | None = None) -> ActMaxResult:
    """Run the ascent for ``channels`` of ``layer`` (no cache), ``batch_size`` channels per batch.

    ``settings``: the recipe, default :func:`settings_for` the model.
    Returns an :class:`ActMaxResult`. ``progress(done, total)`` is called after each step,
    counting steps over all batches.
    """
    import tensorflow as tf

    settings = settings or settings_for(model)
    _check_spatial(model, layer)
    channels = np.asarray(list(channels), dtype=int)
    n_channels = layer_channels(model, layer)
    if channels.size == 0:
        raise ValueError("Choose at least one channel.")
    if channels.min() < 0 or channels.max() >= n_channels:
        raise ValueError(f"Layer {layer} has channels 0..{n_channels - 1}; {channels.tolist()} asked for.")
    if settings.steps < 1:
        raise ValueError("steps must be at least 1.")
    config.compute_device()
    side, channels_in = settings.canvas or int(model.inputs[0].shape[1]), int(model.inputs[0].shape[-1])
    step = _step_function(model, layer, side)
    max_shift = max(1, int(round(side * settings.jitter)))
    shifts = np.random.default_rng(settings.seed).integers(-max_shift, max_shift + 1, (settings.steps, 2))
    batch_size = max(1, int(batch_size))
    batches = [channels[i:i + batch_size] for i in range(0, len(channels), batch_size)]
    total, done = settings.steps * len(batches), 0
    start = np.stack([_start_noise(side, channels_in, int(c), settings) for c in channels])
    finals = []
    for batch_index, batch in enumerate(batches):
        z = tf.constant(start[batch_index * batch_size: batch_index * batch_size + len(batch)])
        onehot = tf.constant(np.eye(n_channels, dtype=np.float32)[batch])
        for t in range(settings.steps):
            blur = settings.blur_every > 0 and (t + 1) % settings.blur_every == 0
            # Coarse to fine: strong blur first (large shapes), none at the end (fine detail).
            sigma = settings.blur_start + (settings.blur_end - settings.blur_start) * t / max(1, settings.steps - 1)
            # big steps to find the pattern, small ones to settle into it
            step_size = settings.step * (1.0 - (1.0 - settings.step_end) * t / max(1, settings.steps - 1))
            z, _ = step(z, onehot, tf.constant(shifts[t], tf.int32), tf.constant(step_size, tf.float32),
                        tf.constant(settings.decay, tf.float32), tf.constant(sigma if blur else 0.0, tf.float32))
            done += 1
            if progress is not None:
                progress(done, total)
        finals.append(z.numpy())
    images = np.clip(np.concatenate(finals) * 127.5 + 127.5 + 0.5, 0, 255).astype(np.uint8)
    start_images = np.clip(start * 127.5 + 127.5 + 0.5, 0, 255).astype(np.uint8)
    return ActMaxResult(
        layer=layer, channels=channels, images=images,
        activation=channel_mean_activation(model, layer, images, channels),
        start_activation=channel_mean_activation(model, layer, start_images, channels),
        settings=settings,
    )


# ----------------------------------------------------------------------------- the cache

_MEMORY: dict[tuple[str, str, str], dict[int, tuple]] = {}  # (fingerprint, layer, settings) -> channel -> arrays
_LOCK = threading.Lock()


def actmax_cache_path(spec) -> Path:
    """``models/<task>.actmax.npz``."""
    return config.MODELS_DIR / f"{spec.id}.actmax.npz"


def _read_file(path: Path, fingerprint: str) -> dict[tuple[str, str], dict[int, tuple]]:
    """{(layer, settings key): {channel: (image, activation, start_activation)}} from a cache file,
    empty if the file is missing, damaged or made for other weights."""
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            if str(npz["fingerprint"]) != fingerprint:
                log.info("%s was made for other weights; it is ignored and will be replaced.", path.name)
                return {}
            out = {}
            for layer in npz["layers"]:
                layer = str(layer)
                images, activation, start = (npz[f"{layer}__{k}"] for k in ("images", "activation", "start_activation"))
                out[(layer, str(npz[f"{layer}__settings"]))] = {
                    int(c): (images[i], float(activation[i]), float(start[i]))
                    for i, c in enumerate(npz[f"{layer}__channels"])}
            return out
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        log.warning("The activation-maximisation cache %s cannot be read (%s); it will be rebuilt.", path.name, exc)
        return {}


def _write_file(path: Path, fingerprint: str, entries: dict[tuple[str, str], dict[int, tuple]]) -> None:
    arrays: dict[str, np.ndarray] = {"fingerprint": np.array(fingerprint)}
    layers = []
    for (layer, settings_key), entry in sorted(entries.items()):
        if layer in layers:
            continue  # one recipe per layer on disk: the most recent one wins (see caller)
        layers.append(layer)
        channels = sorted(entry)
        arrays[f"{layer}__settings"] = np.array(settings_key)
        arrays[f"{layer}__channels"] = np.array(channels, dtype=np.int32)
        arrays[f"{layer}__images"] = np.stack([entry[c][0] for c in channels])
        arrays[f"{layer}__activation"] = np.array([entry[c][1] for c in channels], np.float32)
        arrays[f"{layer}__start_activation"] = np.array([entry[c][2] for c in channels], np.float32)
    arrays["layers"] = np.array(layers)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def activation_maximisation(model, layer: str, channels, *, settings: ActMaxSettings | None = None,
                            cache_path: Path | None = None, batch_size: int = 16,
                            progress: Progress | None = None) -> ActMaxResult:
    """Images that maximise ``channels`` of ``layer``, computed once and cached.

    model: a Keras model with input (S, S, C) in [0, 255] (a task classifier); layer: a
    layer name (see :func:`block_output_layers`); channels: ints; settings: the recipe,
    default :func:`settings_for` the model (what the shipped files hold). Results are looked up
    in memory, then in ``cache_path`` (if given; a file made for other conv weights is
    ignored), and only missing channels are computed (``batch_size`` per batch), then
    written back to ``cache_path`` when it is writable. ``progress(done, total)`` reports
    the ascent steps of the computation (not called when everything is cached).
    """
    settings = settings or settings_for(model)
    channels = [int(c) for c in channels]
    if not channels:
        raise ValueError("Choose at least one channel.")
    _check_spatial(model, layer)
    fingerprint = trunk_fingerprint(model, layer)
    key = settings.key()
    with _LOCK:
        memory = _MEMORY.setdefault((fingerprint, layer, key), {})
        if cache_path is not None and any(c not in memory for c in channels):
            for (file_layer, file_key), entry in _read_file(Path(cache_path), _file_fingerprint(model)).items():
                if file_layer == layer and file_key == key:
                    memory.update({c: v for c, v in entry.items() if c not in memory})
        missing = [c for c in dict.fromkeys(channels) if c not in memory]
    if missing:
        computed = maximise_channels(model, layer, missing, settings, batch_size, progress)
        with _LOCK:
            for i, c in enumerate(computed.channels):
                memory[int(c)] = (computed.images[i], float(computed.activation[i]), float(computed.start_activation[i]))
            if cache_path is not None:
                _save_layer(Path(cache_path), model, layer, key, memory)
    return ActMaxResult(
        layer=layer, channels=np.array(channels, dtype=int),
        images=np.stack([memory[c][0] for c in channels]),
        activation=np.array([memory[c][1] for c in channels], np.float32),
        start_activation=np.array([memory[c][2] for c in channels], np.float32),
        settings=settings,
    )


def _file_fingerprint(model) -> str:
    """A cache file covers several layers: it is keyed on the whole convolutional trunk."""
    return trunk_fingerprint(model, block_output_layers(model)[-1])


def _save_layer(path: Path, model, layer: str, key: str, entry: dict[int, tuple]) -> None:
    fingerprint = _file_fingerprint(model)
    entries = {k: v for k, v in _read_file(path, fingerprint).items() if k[0] != layer}
    entries[(layer, key)] = entry
    try:
        _write_file(path, fingerprint, entries)
    except OSError as exc:  # a read-only install keeps the result in memory only
        log.warning("Could not write %s (%s); the result is kept in memory only.", path, exc)


def cached_layers(model, cache_path: Path) -> dict[str, list[int]]:
    """{layer: channels} already in a cache file for this model's weights (what the app can show instantly)."""
    entries = _read_file(Path(cache_path), _file_fingerprint(model))
    return {layer: sorted(entry) for (layer, _), entry in entries.items()}


def actmax_grid(result: ActMaxResult, cell: int | None = None, columns: int = 8, labels: bool = True,
                titles: list[str] | None = None) -> np.ndarray:
    """An :class:`ActMaxResult` as one uint8 RGB grid, each tile titled with its channel and
    activation (or with ``titles``, one per channel)."""
    tiles = list(result.display())
    if cell:
        tiles = [figures.upscale(t, cell, smooth=True) for t in tiles]
    if titles is None and labels:
        titles = [f"ch {c}: {a:.2f}" for c, a in zip(result.channels, result.activation)]
    if titles is not None:
        tiles = [figures.label(t, title) for t, title in zip(tiles, titles)]
    return figures.grid(tiles, columns, gap=4)


