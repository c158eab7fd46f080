"""Build, load (checksum + safe_mode) and run the task CNNs.

The network for every task has the same shape, so every explanation and uncertainty
method meets the same layer names:

    image -> rescale -> block1..block4 (Conv-BN-ReLU, MaxPool between blocks)
          -> features (global average pool) -> head_dropout -> probs (softmax)

``features`` is the input of the Bayesian heads (MC dropout acts on ``head_dropout``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lifelens import config
from lifelens.tasks import TaskSpec

# (filters, convolutions) per block; the widths are kept small so each model trains
# in well under an hour on two CPU cores and stays a few MB on disk.
BLOCKS = ((32, 1), (64, 1), (128, 2), (192, 2))
FILM_BLOCKS = ((24, 1), (48, 1), (96, 2), (128, 2), (192, 2))
DROPOUT_RATE = 0.4


class ModelError(RuntimeError):
    """A model file that cannot be used, with a message fit for the screen."""


def blocks_for(spec: TaskSpec):
    return FILM_BLOCKS if spec.id == "mammo" else BLOCKS


def build_model(spec: TaskSpec, blocks=None, dropout: float = DROPOUT_RATE, seed: int = 0,
                input_size: int | None = None):
    """A fresh Keras 3 CNN for ``spec``: input (S, S, C) float in [0, 255], output softmax (K,).

    ``input_size`` overrides the spec's (patch training); the weights do not depend on it.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    blocks = blocks or blocks_for(spec)
    size = input_size or spec.input_size
    inputs = keras.Input((size, size, spec.channels), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    for b, (filters, convs) in enumerate(blocks, start=1):
        if b > 1:
            x = layers.MaxPooling2D(2, name=f"block{b - 1}_pool")(x)
        for c in range(1, convs + 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}")(x)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn{c}")(x)  # small data: track fast
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
    if spec.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="features")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="features")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(spec.num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"lifelens_{spec.id}")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_card(spec: TaskSpec) -> dict:
    """The model card beside the weights (``{}`` if none)."""
    if not spec.card_path.is_file():
        return {}
    try:
        return json.loads(spec.card_path.read_text())
    except json.JSONDecodeError:
        raise ModelError(f"The model card {spec.card_path.name} is damaged (not valid JSON). Restore it from git.") from None


def load_model_file(path: Path, expected_sha256: str | None = None):
    """Load a ``.keras`` file with ``safe_mode=True`` (no Python code or pickles executed).

    Raises ModelError naming the file and what to do when it is missing, truncated,
    not a Keras archive, or its sha256 differs from ``expected_sha256``.
    """
    import zipfile

    import keras

    from lifelens import uncertainty  # noqa: F401  (registers the custom Bayesian layers)

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Model file {path} is missing. Run `python -m lifelens train` or restore it from git.")
    if expected_sha256:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise ModelError(
                f"Model file {path.name} does not match its model card (sha256 {actual[:12]}… instead of "
                f"{expected_sha256[:12]}…). It was changed or damaged: restore it from git or retrain it."
            )
    if not zipfile.is_zipfile(path):
        raise ModelError(f"Model file {path.name} is not a Keras archive (truncated or damaged). Restore it from git or retrain it.")
    config.compute_device()
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise ModelError(f"Model file {path.name} could not be loaded ({type(exc).__name__}: {str(exc)[:200]}). "
                         "Restore it from git or retrain it.") from None


@dataclass
class TaskModel:
    """A shipped model and the views of it that the rest of LifeLens uses.

    ``full``: the Keras model as saved (outputs ``probs`` and, once the Bayesian head is
    attached, the variational head's output too). ``classifier``: image -> softmax (N, K),
    the model every explanation and inside-the-network view works on. ``features``:
    image -> pooled features (N, F), the input of ``head_dropout``/``probs`` and of the
    variational head. ``variational_head``: the custom layer, or None if not attached.
    """

    spec: TaskSpec
    full: object
    classifier: object
    features: object
    variational_head: object | None
    card: dict


def split_views(full):
    """(classifier, features, variational_head or None) views of a saved task model."""
    import keras

    probs = full.get_layer("probs").output
    # One input tensor (not the list) so calls with a bare array match the model's structure.
    inputs = full.inputs[0]
    classifier = full if len(full.outputs) == 1 else keras.Model(inputs, probs, name=full.name + "_classifier")
    features = keras.Model(inputs, full.get_layer("features").output, name=full.name + "_features")
    try:
        head = full.get_layer("variational_head")
    except ValueError:
        head = None
    return classifier, features, head


def load_task_model(spec: TaskSpec, verify: bool = True) -> TaskModel:
    """The shipped model for a task, checked against the sha256 in its card."""
    card = read_card(spec)
    expected = card.get("sha256") if verify else None
    full = load_model_file(spec.model_path, expected)
    classifier, features, head = split_views(full)
    return TaskModel(spec, full, classifier, features, head, card)


def update_card(spec: TaskSpec, **entries) -> dict:
    """Read-modify-write the model card beside the weights (each writer owns its own keys)."""
    card = read_card(spec)
    card.update(entries)
    spec.card_path.write_text(json.dumps(card, indent=1, default=_json_default))
    return card


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def predict_proba(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, S, S, C) prepared inputs -> (N, K) class probabilities (deterministic; dropout off)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    out = [np.asarray(model(images[i:i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
    probs = np.concatenate(out, axis=0) if out else np.zeros((0, model.output_shape[-1]), np.float32)
    return classifier_output(probs)


def classifier_output(output) -> np.ndarray:
    """Probabilities from a model output: a single sigmoid unit becomes two columns."""
    probs = np.asarray(output, dtype=np.float32)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=1)
    return probs
