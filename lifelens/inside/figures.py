"""Composing figures from uint8 tiles with numpy/OpenCV (no plotting library).

Every function takes and returns uint8 RGB arrays (H, W, 3); text is drawn with
OpenCV's Hershey font, which has ASCII glyphs only.
"""
from __future__ import annotations

import cv2
import numpy as np

from lifelens.imaging import as_rgb_uint8

BACKGROUND = 255
FONT = cv2.FONT_HERSHEY_SIMPLEX


def stretch(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """(H, W[, C]) any range -> uint8 RGB, percentiles ``low``..``high`` of all values mapped to 0..255."""
    values = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(values, [low, high])
    if hi <= lo:
        return as_rgb_uint8(np.full(values.shape, 128.0))
    return as_rgb_uint8((values - lo) / (hi - lo) * 255.0)


def upscale(image: np.ndarray, size: int, smooth: bool = False) -> np.ndarray:
    """Square uint8 RGB tile of side ``size``; nearest-neighbour keeps pixels visible as blocks
    (``smooth``: bilinear). Shrinking always averages (area interpolation)."""
    image = as_rgb_uint8(image)
    interp = cv2.INTER_LINEAR if smooth else cv2.INTER_NEAREST
    if size < max(image.shape[:2]):
        interp = cv2.INTER_AREA
    return cv2.resize(image, (size, size), interpolation=interp).reshape(size, size, 3)


def fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize keeping the aspect ratio to fit inside (height, width), padded with white."""
    image = as_rgb_uint8(image)
    scale = min(height / image.shape[0], width / image.shape[1])
    h, w = max(1, int(round(image.shape[0] * scale))), max(1, int(round(image.shape[1] * scale)))
    interp = cv2.INTER_NEAREST if scale >= 2 else cv2.INTER_AREA
    out = np.full((height, width, 3), BACKGROUND, np.uint8)
    out[:h, :w] = cv2.resize(image, (w, h), interpolation=interp).reshape(h, w, 3)
    return out


def label(tile: np.ndarray, text: str, scale: float = 0.4) -> np.ndarray:
    """A tile with a strip of text above it."""
    tile = as_rgb_uint8(tile)
    strip = np.full((16, tile.shape[1], 3), BACKGROUND, np.uint8)
    cv2.putText(strip, _ascii(text), (2, 12), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, tile], axis=0)


def grid(tiles: list[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Equal-sized tiles row by row, ``columns`` per row, white gaps."""
    if not tiles:
        raise ValueError("Nothing to draw: the grid has no tiles.")
    tiles = [as_rgb_uint8(t) for t in tiles]
    h, w = tiles[0].shape[:2]
    columns = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // columns)
    out = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), BACKGROUND, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = t
    return out


def text_block(text: str, width: int, scale: float = 0.45, colour=(0, 0, 0)) -> np.ndarray:
    """Text wrapped to ``width`` pixels on white."""
    words, lines, line = _ascii(text).split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if cv2.getTextSize(trial, FONT, scale, 1)[0][0] > width - 8 and line:
            lines.append(line)
            line = word
        else:
            line = trial
    if line:
        lines.append(line)
    step = int(22 * scale / 0.45)
    out = np.full((step * len(lines) + 8, width, 3), BACKGROUND, np.uint8)
    for i, text_line in enumerate(lines):
        cv2.putText(out, text_line, (4, step * (i + 1)), FONT, scale, colour, 1, cv2.LINE_AA)
    return out


def hstack(images: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """Side by side, top-aligned, white gaps."""
    return _stack(images, gap, axis=1)


def vstack(images: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """One above the other, left-aligned, white gaps."""
    return _stack(images, gap, axis=0)


def _stack(images: list[np.ndarray], gap: int, axis: int) -> np.ndarray:
    """Concatenate along ``axis`` (1: columns, 0: rows), padding the other side at its end."""
    images = [as_rgb_uint8(im) for im in images]
    other = 1 - axis
    span = max(im.shape[other] for im in images)
    parts = []
    for i, im in enumerate(images):
        if i:
            parts.append(np.full((span, gap, 3) if axis == 1 else (gap, span, 3), BACKGROUND, np.uint8))
        pad = list(im.shape)
        pad[other] = span - im.shape[other]
        parts.append(np.concatenate([im, np.full(pad, BACKGROUND, np.uint8)], axis=other))
    return np.concatenate(parts, axis=axis)


def _ascii(text: str) -> str:
    """Hershey fonts draw ASCII only: map the few typographic characters we use."""
    table = {"×": "x", "–": "-", "—": "-", "→": "->", "’": "'", "“": '"', "”": '"', "…": "...", "µ": "u"}
    return "".join(table.get(ch, ch if ord(ch) < 128 else "?") for ch in str(text))
