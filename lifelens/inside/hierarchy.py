"""The feature hierarchy: what each conv block makes of one image.

After each block the network holds one map per channel. Early maps are sharp and
follow edges and colours; deeper maps are coarser, each unit sees a larger part of the
image (its receptive field) and responds to larger, more specific patterns.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from lifelens.imaging import as_rgb_uint8, colorize
from lifelens.inside import figures
from lifelens.inside.layers import block_output_layers, feature_model, receptive_fields

# The story told at each depth, from first block to last.
STAGES = (
    ("edges and colours", "simple things: an edge at one angle, a thin line, a change of colour"),
    ("textures", "small repeated patterns: grain, speckle, stripes"),
    ("patterns", "motifs made of several edges and textures: spots, rings, blobs, corners"),
    ("parts", "larger, more specific structures, the kind of evidence the classifier weighs"),
)

@dataclass
class FeatureLevel:
    """One block's output for one image.

    ``maps``: float32 (top, S, S), the ``channels`` shown (most active first) upsampled to
    the image, divided by the 99.5th percentile of the values among them and clipped to 1
    (so 1 = among the strongest responses in this layer, 0 = silent). ``mean_activation``: (top,) each shown channel's mean over the map.
    ``output_shape``: (h, w, channels) of the layer; ``receptive_field``/``jump`` in input
    pixels; ``active_fraction``: share of all units of the layer above zero.
    """

    layer: str
    block: int
    output_shape: tuple[int, int, int]
    receptive_field: int
    jump: int
    channels: np.ndarray
    mean_activation: np.ndarray
    maps: np.ndarray
    active_fraction: float
    caption: str


def stage_of(depth: int, n_levels: int) -> int:
    """Index into :data:`STAGES` for block ``depth`` (0-based) of ``n_levels``."""
    if n_levels <= 1:
        return len(STAGES) - 1
    return int(round(depth * (len(STAGES) - 1) / (n_levels - 1)))


def caption_for(depth: int, n_levels: int, receptive_field: int, image_side: int, output_shape,
                task_id: str | None = None) -> str:
    """A short plain-language caption for block ``depth`` (0-based) of ``n_levels``."""
    stage = stage_of(depth, n_levels)
    name, what = STAGES[stage]
    h, w, c = output_shape
    share = min(100, round(100 * receptive_field / image_side))
    text = (f"Block {depth + 1} - {name}. {c} maps of {h} x {w}; each unit sees a {receptive_field} x "
            f"{receptive_field} px patch ({share}% of the image side). Channels here respond to {what}")
    from lifelens.tasks import TASKS

    examples = TASKS[task_id].hierarchy_examples if task_id in TASKS else ()
    if examples:
        text += f", in these images things like {examples[stage]}"
    return text + "."


def feature_hierarchy(model, image: np.ndarray, top: int = 8, task_id: str | None = None,
                      smooth: bool = False) -> list[FeatureLevel]:
    """The output of every conv block for one image, most active channels first.

    model: a task classifier (input (S, S, C) in [0, 255]); image: (S, S, C) prepared
    input (float or uint8). ``top``: channels kept per block. ``smooth``: bilinear instead
    of nearest-neighbour upsampling (nearest shows each unit as a square, which is the
    honest picture of the resolution). Returns one :class:`FeatureLevel` per block.
    """
    image = np.asarray(image, dtype=np.float32)
    side = int(model.inputs[0].shape[1])
    if image.shape != tuple(int(v) for v in model.inputs[0].shape[1:]):
        raise ValueError(f"The image must be a prepared network input of shape {tuple(model.inputs[0].shape[1:])}, "
                         f"not {image.shape}.")
    names = block_output_layers(model)
    outputs = feature_model(model, tuple(names))(image[None], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    fields = receptive_fields(model)
    interp = cv2.INTER_LINEAR if smooth else cv2.INTER_NEAREST
    levels = []
    for depth, (name, output) in enumerate(zip(names, outputs)):
        act = np.asarray(output)[0]  # (h, w, c)
        means = act.mean(axis=(0, 1))
        # Channels whose response VARIES across the image: the most active ones on average
        # are often silhouettes (the whole leaf, the breast) that say nothing about detail.
        order = np.argsort(-act.std(axis=(0, 1)), kind="stable")[:top]
        chosen = act[..., order]
        # a few extreme units (often at the image's rim) would leave every other map dark
        peak = float(np.percentile(chosen, 99.5)) or float(chosen.max()) or 1.0
        maps = np.stack([cv2.resize(chosen[..., i] / peak, (side, side), interpolation=interp)
                         for i in range(chosen.shape[-1])]).astype(np.float32)
        rf = fields[name]
        shape = tuple(int(v) for v in act.shape)
        levels.append(FeatureLevel(
            layer=name, block=depth + 1, output_shape=shape, receptive_field=int(rf.size), jump=int(rf.jump),
            channels=order, mean_activation=means[order].astype(np.float32), maps=np.clip(maps, 0, 1),
            active_fraction=float((act > 0).mean()),
            caption=caption_for(depth, len(names), int(rf.size), side, shape, task_id),
        ))
    return levels


def hierarchy_figure(image: np.ndarray, levels: list[FeatureLevel], cell: int = 112,
                     colormap: str = "inferno") -> np.ndarray:
    """The image and each block's top maps, one row per block with its caption -> uint8 RGB.

    The image's receptive-field square for the centre unit is outlined on the image in
    each row, so the growth of what a unit sees is visible.
    """
    base = as_rgb_uint8(image)
    side = base.shape[0]
    rows = []
    for level in levels:
        marked = base.copy()
        half = level.receptive_field / 2.0
        c = side / 2.0
        y0, y1 = int(max(0, c - half)), int(min(side - 1, c + half))
        cv2.rectangle(marked, (y0, y0), (y1, y1), (0, 255, 255), max(1, side // 100))
        tiles = [figures.label(figures.upscale(marked, cell, smooth=True), f"RF {level.receptive_field}px")]
        tiles += [figures.label(figures.upscale(colorize(m, colormap), cell), f"ch {ch}")
                  for m, ch in zip(level.maps, level.channels)]
        strip = figures.hstack(tiles, gap=4)
        rows.append(figures.vstack([figures.text_block(level.caption, strip.shape[1], scale=0.42), strip], gap=0))
    return figures.vstack(rows, gap=10)
