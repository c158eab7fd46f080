"""What excites a channel in real data: the top image patches (Zeiler & Fergus 2013).

For a channel of a block's output layer, each training image gets one score, the
channel's largest activation anywhere in it, and one place, where that maximum is. The
images with the highest scores, cropped to the receptive field around that place, show
what the channel responds to in real images.

The index is precomputed once per model (:func:`build_patch_index`) and stored small
(``models/<task>.patches.npz``): image references and positions, never pixels. The app
re-crops from the data folder (:func:`top_patches`).
"""
from __future__ import annotations

import logging
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from lifelens import config, data
from lifelens.inside import figures
from lifelens.inside.layers import ReceptiveField, block_output_layers, feature_model, receptive_fields, trunk_fingerprint
from lifelens.tasks import TaskSpec

log = logging.getLogger("lifelens")
PAD_VALUE = 128  # outside the image the network sees zero padding, i.e. mid-grey after rescaling


@dataclass
class LayerPatches:
    """Top-k positions per channel of one layer.

    ``image``: int32 (C, k) indices into :attr:`PatchIndex.paths`, best first; ``row``/``col``:
    int16 (C, k) position of the maximum in the layer's map; ``activation``: float32 (C, k)
    its value; ``mean_activation``: float32 (C,) the channel's mean over all searched images
    and positions (a typical level to compare with); ``field``: the layer's receptive field.
    """

    layer: str
    field: ReceptiveField
    image: np.ndarray
    row: np.ndarray
    col: np.ndarray
    activation: np.ndarray
    mean_activation: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.image.shape[0])


@dataclass
class PatchIndex:
    """The per-model top-patch index: ``paths`` (N,) are paths under the task's ``images/``."""

    task: str
    fingerprint: str
    image_size: int
    paths: np.ndarray
    layers: dict[str, LayerPatches]

    def layer(self, name: str) -> LayerPatches:
        if name not in self.layers:
            raise ValueError(f"The patch index has no layer {name!r}; it has {', '.join(self.layers)}.")
        return self.layers[name]


@dataclass
class TopPatch:
    """One top patch: the image ``path``, the unit's (``row``, ``col``) in the layer map,
    its ``activation``, the ``box`` (y0, y1, x0, x1) it sees in the prepared image (clipped),
    and ``patch``: uint8 (rf, rf, C) crop centred on the unit, grey outside the image."""

    path: str
    row: int
    col: int
    activation: float
    box: tuple[int, int, int, int]
    patch: np.ndarray


def patch_index_path(spec: TaskSpec) -> Path:
    """``models/<task>.patches.npz``."""
    return config.MODELS_DIR / f"{spec.id}.patches.npz"


def training_sample(spec: TaskSpec, n_images: int, data_dir: Path | None = None) -> list:
    """Up to ``n_images`` TRAIN samples, classes taken in turn (deterministic)."""
    by_class: dict[int, list] = {}
    for s in data.task_splits(spec, data_dir)["train"]:
        by_class.setdefault(s.label, []).append(s)
    chosen, i = [], 0
    total = sum(len(v) for v in by_class.values())
    while len(chosen) < min(n_images, total):
        for label in sorted(by_class):
            if i < len(by_class[label]) and len(chosen) < n_images:
                chosen.append(by_class[label][i])
        i += 1
    return sorted(chosen, key=lambda s: s.path)


def build_patch_index(model, spec: TaskSpec, n_images: int = 300, k: int = 9, batch_size: int = 16,
                      data_dir: Path | None = None, progress: Callable[[int, int], None] | None = None) -> PatchIndex:
    """Search ``n_images`` training images for each block output's top-``k`` images per channel.

    model: the task classifier. ``progress(done, total)`` counts images (loading, then
    searching). Each image counts once per channel (its maximum), so the k patches come
    from k different images.
    """
    samples = training_sample(spec, n_images, data_dir)
    if not samples:
        raise ValueError(f"No training images found for task {spec.id}.")
    total = 2 * len(samples)
    images = data.load_prepared(spec, samples, data_dir,
                                progress=(lambda d, t: progress(d, total)) if progress else None)
    names = block_output_layers(model)
    submodel = feature_model(model, tuple(names))
    maxima = {name: [] for name in names}
    positions = {name: [] for name in names}
    means = {name: [] for name in names}
    widths = {}
    for start in range(0, len(images), batch_size):
        outputs = submodel(images[start:start + batch_size].astype(np.float32), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for name, output in zip(names, outputs):
            act = np.asarray(output)  # (B, h, w, C)
            b, h, w, c = act.shape
            widths[name] = w
            flat = act.reshape(b, h * w, c)
            positions[name].append(np.argmax(flat, axis=1).astype(np.int32))
            maxima[name].append(flat.max(axis=1))
            means[name].append(flat.mean(axis=1))
        if progress is not None:
            progress(len(samples) + min(len(samples), start + batch_size), total)
    fields = receptive_fields(model)
    layers = {}
    for name in names:
        mx = np.concatenate(maxima[name])  # (N, C)
        pos = np.concatenate(positions[name])
        kk = min(k, len(mx))
        # stable sort on the negated scores: ties go to the earlier image
        order = np.argsort(-mx, axis=0, kind="stable")[:kk].T  # (C, kk)
        chans = np.arange(mx.shape[1])[:, None]
        flat_pos = pos[order, chans]
        layers[name] = LayerPatches(
            layer=name, field=fields[name], image=order.astype(np.int32),
            row=(flat_pos // widths[name]).astype(np.int16), col=(flat_pos % widths[name]).astype(np.int16),
            activation=mx[order, chans].astype(np.float32),
            mean_activation=np.concatenate(means[name]).mean(axis=0).astype(np.float32),
        )
    return PatchIndex(task=spec.id, fingerprint=trunk_fingerprint(model), image_size=int(images.shape[1]),
                      paths=np.array([s.path for s in samples]), layers=layers)


# ----------------------------------------------------------------------------- storage

def save_patch_index(index: PatchIndex, path: Path) -> Path:
    """Write the index as a small compressed npz (no pickles)."""
    arrays = {"task": np.array(index.task), "fingerprint": np.array(index.fingerprint),
              "image_size": np.array(index.image_size), "paths": index.paths.astype(str),
              "layers": np.array(list(index.layers))}
    for name, lp in index.layers.items():
        arrays[f"{name}__field"] = np.array([lp.field.size, lp.field.jump, lp.field.start, float(lp.field.whole_image)])
        for key in ("image", "row", "col", "activation", "mean_activation"):
            arrays[f"{name}__{key}"] = getattr(lp, key)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)
    return path


def load_patch_index(path: Path, fingerprint: str | None = None) -> PatchIndex | None:
    """The index stored at ``path``; None if it is missing, damaged, or (given ``fingerprint``,
    see :func:`layers.trunk_fingerprint`) made for other weights."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if fingerprint is not None and str(npz["fingerprint"]) != fingerprint:
                log.info("%s was made for other weights; it is ignored.", path.name)
                return None
            layers = {}
            for name in (str(v) for v in npz["layers"]):
                size, jump, start, whole = npz[f"{name}__field"]
                layers[name] = LayerPatches(
                    layer=name, field=ReceptiveField(int(size), int(jump), float(start), bool(whole)),
                    **{key: npz[f"{name}__{key}"] for key in ("image", "row", "col", "activation", "mean_activation")})
            return PatchIndex(task=str(npz["task"]), fingerprint=str(npz["fingerprint"]),
                              image_size=int(npz["image_size"]), paths=npz["paths"], layers=layers)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        log.warning("The patch index %s cannot be read (%s).", path.name, exc)
        return None


_MEMORY: dict[str, PatchIndex] = {}
_LOCK = threading.Lock()


def task_patch_index(model, spec: TaskSpec, build: bool = False, save: bool = True,
                     progress: Callable[[int, int], None] | None = None, **build_options) -> PatchIndex | None:
    """The patch index for this model's weights: from memory, else ``models/<task>.patches.npz``,
    else (``build=True``) built now and saved (when ``save`` and the folder is writable).
    Returns None when there is no valid index and ``build`` is False."""
    fingerprint = trunk_fingerprint(model)
    with _LOCK:
        if fingerprint in _MEMORY:
            return _MEMORY[fingerprint]
    index = load_patch_index(patch_index_path(spec), fingerprint)
    if index is None and build:
        index = build_patch_index(model, spec, progress=progress, **build_options)
        if save:
            try:
                save_patch_index(index, patch_index_path(spec))
            except OSError as exc:
                log.warning("Could not write %s (%s); the index is kept in memory only.", patch_index_path(spec), exc)
    if index is not None:
        with _LOCK:
            _MEMORY[fingerprint] = index
    return index


# ----------------------------------------------------------------------------- queries

def crop_unit(image: np.ndarray, field: ReceptiveField, row: int, col: int, margin: int = 0) -> tuple[tuple, np.ndarray]:
    """The receptive field of unit (row, col) (plus ``margin`` px) cut from a prepared uint8 image.

    Returns (box clipped to the image, patch of side rf + 2 margin with the unit at its
    centre, grey where the field hangs over the image edge).
    """
    side = image.shape[0]
    y0, y1, x0, x1 = field.box(row, col, side)
    if field.whole_image:
        return (y0, y1, x0, x1), image.copy()
    cy, cx = field.centre(row, col)
    size = field.size + 2 * margin
    top, left = int(np.ceil(cy - (size - 1) / 2.0)), int(np.ceil(cx - (size - 1) / 2.0))
    patch = np.full((size, size, image.shape[-1]), PAD_VALUE, np.uint8)
    sy0, sy1, sx0, sx1 = max(0, top), min(side, top + size), max(0, left), min(side, left + size)
    patch[sy0 - top: sy1 - top, sx0 - left: sx1 - left] = image[sy0:sy1, sx0:sx1]
    return (y0, y1, x0, x1), patch


def top_patches(index: PatchIndex, spec: TaskSpec, layer: str, channel: int, k: int | None = None,
                margin: int = 0, data_dir: Path | None = None) -> list[TopPatch]:
    """The top-``k`` (default: all stored) patches of ``channel`` of ``layer``, best first,
    re-cropped from the task's data folder (prepared exactly as for the network).

    Raises ValueError for an unknown layer or channel; an image that can no longer be
    read is skipped (with a log line), so fewer than k patches may come back.
    """
    from lifelens.imaging import InputError

    lp = index.layer(layer)
    if not 0 <= int(channel) < lp.channels:
        raise ValueError(f"Layer {layer} has channels 0..{lp.channels - 1}; channel {channel} asked for.")
    folder = spec.data_dir(data_dir) / "images"
    out = []
    for j in range(lp.image.shape[1] if k is None else min(k, lp.image.shape[1])):
        path = str(index.paths[lp.image[channel, j]])
        try:
            prepared = prepared_uint8(spec, folder / path)
        except (OSError, InputError) as exc:
            log.warning("Top patch image %s cannot be read (%s); skipped.", path, exc)
            continue
        row, col = int(lp.row[channel, j]), int(lp.col[channel, j])
        box, patch = crop_unit(prepared, lp.field, row, col, margin)
        out.append(TopPatch(path, row, col, float(lp.activation[channel, j]), box, patch))
    return out


def prepared_uint8(spec: TaskSpec, path: Path) -> np.ndarray:
    """A data file prepared as :func:`data.load_prepared` does it (uint8 (S, S, C))."""
    return np.clip(spec.prepare_image(spec.load_image(path)) + 0.5, 0, 255).astype(np.uint8)


def patches_grid(patches: list[TopPatch], cell: int = 72, columns: int = 9, labels: bool = True) -> np.ndarray:
    """Top patches as one uint8 RGB grid, each enlarged to ``cell`` px (nearest neighbour)."""
    tiles = [figures.upscale(p.patch, cell) for p in patches]
    if labels:
        tiles = [figures.label(t, f"{p.activation:.2f}") for t, p in zip(tiles, patches)]
    return figures.grid(tiles, columns, gap=4)
