"""Build, load (checksum + safe_mode) and run the task CNNs.

The network for every task has the same layer names, so every explanation and
uncertainty method meets the same structure:

    image -> rescale -> block1 (strided stem) -> block2..blockN (residual, stride 2)
          -> features (global pool) -> head_dropout -> probs (softmax)

``block{b}_relu{last}`` is each block's output (after the residual addition). The
patch-trained film network keeps the plain layout (Conv-BN-ReLU stages, MaxPool between).

``features`` is the input of the Bayesian heads (MC dropout acts on ``head_dropout``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lifelens import config
from lifelens.tasks import TaskSpec

DROPOUT_RATE = 0.4


class ModelError(RuntimeError):
    """A model file that cannot be used, with a message fit for the screen."""


def build_model(spec: TaskSpec, blocks=None, dropout: float = DROPOUT_RATE, seed: int = 0,
                input_size: int | None = None, architecture: str | None = None):
    """A fresh Keras 3 CNN for ``spec``: input (S, S, C) float in [0, 255], output softmax (K,).

    ``blocks``: (filters, convolutions) per stage, default the spec's recipe;
    ``input_size`` overrides the spec's (patch training); the weights do not depend on it.
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    blocks = blocks or spec.recipe.stages
    architecture = architecture or spec.recipe.architecture
    size = input_size or spec.input_size
    inputs = keras.Input((size, size, spec.channels), name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    for b, (filters, convs) in enumerate(blocks, start=1):
        if architecture == "residual":
            x = _residual_block(x, b, filters, convs)
            continue
        if b > 1:
            x = layers.MaxPooling2D(2, name=f"block{b - 1}_pool")(x)
        for c in range(1, convs + 1):
            x = _conv_bn(x, f"block{b}", c, filters)
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
    if spec.pooling == "max":
        x = layers.GlobalMaxPooling2D(name="features")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="features")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(spec.num_classes, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"lifelens_{spec.id}")


def _conv_bn(x, prefix: str, c: int, filters: int, strides: int = 1):
    from keras import layers

    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{prefix}_conv{c}")(x)
    return layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn{c}")(x)  # small data: track fast


def _residual_block(x, b: int, filters: int, convs: int):
    """Block 1: one strided 3x3 convolution (the stem). Later blocks: a strided 3x3, then
    3x3s, added to a strided 1x1 projection of the input (He et al. 2016), then ReLU."""
    from keras import layers

    prefix = f"block{b}"
    if b == 1:
        y = _conv_bn(x, prefix, 1, filters, strides=2)
        for c in range(2, convs + 1):
            y = layers.ReLU(name=f"{prefix}_relu{c - 1}")(y)
            y = _conv_bn(y, prefix, c, filters)
        return layers.ReLU(name=f"{prefix}_relu{convs}")(y)
    y = x
    for c in range(1, convs + 1):
        y = _conv_bn(y, prefix, c, filters, strides=2 if c == 1 else 1)
        if c < convs:
            y = layers.ReLU(name=f"{prefix}_relu{c}")(y)
    shortcut = layers.Conv2D(filters, 1, strides=2, use_bias=False, name=f"{prefix}_shortcut")(x)
    shortcut = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_shortcut_bn")(shortcut)
    y = layers.Add(name=f"{prefix}_add")([y, shortcut])
    return layers.ReLU(name=f"{prefix}_relu{convs}")(y)


def member_file(spec: TaskSpec, member: int) -> str:
    """File name of ensemble member ``member``: member 0 is ``<task>.keras`` (the one the
    single-model views and the variational head use), the others ``<task>.m<k>.keras``."""
    return f"{spec.id}.keras" if member == 0 else f"{spec.id}.m{member}.keras"


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

    from lifelens import bayesian_layers  # noqa: F401  (registers the variational layer; a leaf module)

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
    # Every deep-ensemble member's image -> softmax model, member 0 (``classifier``) first.
    members: list = field(default_factory=list)
    # The gradient-boosted colour-texture model fused into the prediction (card ``fusion``), or None.
    companion: object | None = None

    def __post_init__(self):
        if not self.members:
            self.members = [self.classifier]

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1


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
    """The shipped model for a task and the other members of its deep ensemble, each
    checked against the sha256 in the card (``ensemble.members``)."""
    card = read_card(spec)
    full = _load_member(spec, spec.model_path, card.get("sha256") if verify else None)
    classifier, features, head = split_views(full)
    members = [classifier]
    for row in card.get("ensemble", {}).get("members", []):
        if row["member"] == 0:
            continue
        path = spec.model_path.parent / row["file"]
        members.append(split_views(_load_member(spec, path, row.get("sha256") if verify else None))[0])
    companion = None
    fusion = card.get("fusion") or {}
    if fusion.get("used"):
        from lifelens.fusion import load_companion

        companion = load_companion(spec.model_path.parent / fusion["file"], fusion.get("sha256") if verify else None)
    return TaskModel(spec, full, classifier, features, head, card, members, companion)


def _load_member(spec: TaskSpec, path: Path, expected_sha256: str | None):
    """One member, refused if it does not take the images the task prepares: a member trained at
    another size (a ``train --input-size`` trial promoted by mistake) would fail on every image."""
    model = load_model_file(path, expected_sha256)
    if tuple(model.input_shape[1:]) != (spec.input_size, spec.input_size, spec.channels):
        raise ModelError(f"Model file {path.name} takes {model.input_shape[1]} px images but the {spec.id} task "
                         f"prepares {spec.input_size} px ones. Ship members of one size and set the task's input_size to it.")
    return model


def promote_members(spec: TaskSpec, source: Path) -> list[str]:
    """Copy the ensemble members that ``lifelens train --out source`` wrote into models/ and
    merge their card entries into the shipped card. Member 0 brings the training keys
    (architecture, split, history ...); a shipped member 0 that was not retrained keeps its
    file and its row in ``ensemble.members`` (a card written before the ensemble existed gets
    that row from its own top-level record).

    Returns the file names copied.
    """
    import shutil

    source = Path(source)
    staged_path = source / f"{spec.id}.json"
    if not staged_path.is_file():
        raise FileNotFoundError(f"No trained members of {spec.id} in {source} (no {staged_path.name}).")
    staged = json.loads(staged_path.read_text())
    card = read_card(spec)
    rows = staged.get("ensemble", {}).get("members", [])
    copied = []
    for row in rows:
        shutil.copyfile(source / row["file"], spec.model_path.parent / row["file"])
        copied.append(row["file"])
    by_member = {r["member"]: r for r in card.get("ensemble", {}).get("members", [])}
    if 0 in {r["member"] for r in rows}:
        card.update({k: v for k, v in staged.items() if k != "ensemble"})
    elif 0 not in by_member and spec.model_path.is_file():  # a card from before the ensemble existed
        by_member[0] = {"member": 0, "file": spec.model_path.name, "seed": card.get("hyperparameters", {}).get("seed", 0),
                        "sha256": card.get("sha256"), "size_bytes": card.get("size_bytes"),
                        "training_seconds": card.get("training_seconds"),
                        "selected_epoch": card.get("hyperparameters", {}).get("selected_epoch"),
                        "note": "trained before the ensemble, by the earlier recipe"}
    by_member.update({r["member"]: r for r in rows})
    card["ensemble"] = _members_record([by_member[k] for k in sorted(by_member)])
    spec.card_path.write_text(json.dumps(card, indent=1, default=_json_default))
    return copied


def _members_record(members: list[dict]) -> dict:
    """The card's ``ensemble`` rows and their total training time."""
    return {"members": members,
            "training_seconds_total": round(sum(m.get("training_seconds") or 0 for m in members), 1),
            "prediction": "mean of the members' softmax outputs"}


def drop_members(spec: TaskSpec, members: list[int]) -> list[str]:
    """Take ensemble members out of the shipped ensemble: their rows leave the card's
    ``ensemble.members`` and their files (``.keras`` and member card) leave models/. Member 0 is
    the task's model file (MC dropout, the variational head, the Inside views): it is
    retrained, never dropped. Returns the file names removed."""
    if 0 in members:
        raise ValueError("member 0 is the task's model file; retrain it instead of dropping it")
    card = read_card(spec)
    rows = card.get("ensemble", {}).get("members", [])
    unknown = sorted(set(members) - {r["member"] for r in rows})
    if unknown:
        raise ValueError(f"no shipped member(s) {unknown} of {spec.id}")
    removed = []
    for row in rows:
        if row["member"] in members:
            model = spec.model_path.parent / row["file"]
            for path in (model, model.with_suffix(".json")):
                if path.is_file():
                    path.unlink()
                    removed.append(path.name)
    card["ensemble"] = {**card["ensemble"], **_members_record([r for r in rows if r["member"] not in members])}
    spec.card_path.write_text(json.dumps(card, indent=1, default=_json_default))
    return removed


def flip_views(images: np.ndarray, augmentation: str) -> list[np.ndarray]:
    """The test-time views of (N, S, S, C) images: the images and their mirror images where
    the modality has no handedness (a film is canonicalised to face left: not mirrored)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[None]
    if augmentation == "film":
        return [images]
    return [images, images[:, :, ::-1], images[:, ::-1, :]]


def temper(probs: np.ndarray, temperature: float | None) -> np.ndarray:
    """Softmax outputs (..., K) at another temperature: softmax(logits / T), computed from the
    probabilities (log p differs from the logits by a constant per row)."""
    if not temperature or temperature == 1.0:
        return probs
    logits = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=-1, keepdims=True)).astype(np.float32)


def write_member_cards(spec: TaskSpec, card: dict | None = None) -> list[Path]:
    """A model card beside each further ensemble member (``<task>.m<k>.json``), made from the
    task card: the member's provenance row and its own test metrics (untempered, as trained),
    pointing to the task card for everything the ensemble shares. Returns the paths written."""
    card = read_card(spec) if card is None else card
    scored = card.get("member_metrics") or []
    written = []
    for row in (card.get("ensemble") or {}).get("members", []):
        if row["member"] == 0:
            continue  # member 0 is <task>.keras: the task card itself is its card
        path = spec.model_path.parent / Path(row["file"]).with_suffix(".json").name
        member_card = {
            "task": spec.id, "title": f"{spec.title}: ensemble member {row['member']}", **row,
            "metrics": scored[row["member"]] if row["member"] < len(scored) else None,
            "metrics_note": "this member alone on our test split, as trained (no temperature)",
            "ensemble_card": spec.card_path.name, "citation": spec.citation, "licence": spec.licence,
            "intended_use": card.get("intended_use"),
        }
        path.write_text(json.dumps(member_card, indent=1, default=_json_default))
        written.append(path)
    return written


def member_probabilities(task_model: TaskModel, images: np.ndarray, batch_size: int = 64,
                         tta: bool | None = None, tempered: bool = True) -> np.ndarray:
    """(N, S, S, C) prepared inputs -> (M, N, K) softmax of each ensemble member (dropout off).

    ``tta``: average each member over :func:`flip_views` (default: what the card chose on
    validation, ``card["tta"]["used"]``). ``tempered``: each member as shipped, so the members
    are the posterior samples and their mean the shipped prediction, one calibrated answer:
    fused with the boosted model where the card adopted fusion (``card["fusion"]``,
    :mod:`lifelens.fusion`), else at the ensemble's temperature (``card["ensemble"]
    ["temperature"]``, fitted on validation: label smoothing leaves each member under-confident
    and averaging adds to it). ``tempered=False``: each network's own softmax.
    """
    if tta is None:
        tta = bool((task_model.card.get("tta") or {}).get("used"))
    views = flip_views(images, task_model.spec.augmentation) if tta else [np.asarray(images, np.float32)]
    raw = np.stack([_mean_over_views(m, views, batch_size) for m in task_model.members])
    return as_shipped(task_model, raw, images) if tempered else raw


def as_shipped(task_model: TaskModel, raw: np.ndarray, images: np.ndarray | None,
               companion_probs: np.ndarray | None = None) -> np.ndarray:
    """(M, N, K) the networks' own softmax of (N, S, S, C) ``images`` -> (M, N, K) the members
    as shipped: fused with the boosted model when ``task_model.companion`` is set (weights in
    ``card["fusion"]``), else at the ensemble's temperature. ``companion_probs``: the boosted
    model's (N, K) probabilities of ``images`` where already computed (then ``images`` may be None)."""
    if task_model.companion is not None:
        from lifelens.fusion import companion_probabilities, fuse

        if companion_probs is None:
            companion_probs = companion_probabilities(task_model.companion, images)
        fusion = task_model.card["fusion"]
        return fuse(raw, companion_probs, fusion["network_weight"], fusion["companion_weight"])
    return temper(raw, (task_model.card.get("ensemble") or {}).get("temperature"))


def _mean_over_views(model, views: list[np.ndarray], batch_size: int) -> np.ndarray:
    """(N, K) one model's softmax averaged over the views (each (N, S, S, C)). The views of a
    chunk of images go through the model in one call: one call per chunk instead of one per
    view halves the time of a single image's flipped prediction on CPU."""
    views = [v[None] if v.ndim == 3 else v for v in views]
    out = []
    for i in range(0, len(views[0]), batch_size):
        chunk = np.concatenate([v[i:i + batch_size] for v in views])
        probs = predict_proba(model, chunk, batch_size=len(chunk))
        out.append(probs.reshape(len(views), -1, probs.shape[-1]).mean(axis=0))
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def ensemble_proba(task_model: TaskModel, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, S, S, C) -> (N, K): the deep ensemble's prediction, the mean of its members'
    softmax (Lakshminarayanan et al. 2017); a single model's softmax when there is one member."""
    return member_probabilities(task_model, images, batch_size).mean(axis=0)


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
    from lifelens.explain.base import traced_handle

    handle = traced_handle(model)
    if handle is not None:
        # One traced graph per architecture, shared by an ensemble's members: on 2 cores one
        # image's flipped prediction by the five plant members took 0.35 s eagerly, 0.11 s so.
        return handle.probs(images, batch_size)
    from keras import ops

    # convert_to_numpy, not np.asarray: a PyTorch-backend output carries autograd state
    out = [ops.convert_to_numpy(model(images[i:i + batch_size], training=False)) for i in range(0, len(images), batch_size)]
    probs = np.concatenate(out, axis=0) if out else np.zeros((0, model.output_shape[-1]), np.float32)
    return classifier_output(probs)


def classifier_output(output) -> np.ndarray:
    """Probabilities from a model output: a single sigmoid unit becomes two columns."""
    probs = np.asarray(output, dtype=np.float32)
    if probs.ndim == 2 and probs.shape[1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=1)
    return probs
