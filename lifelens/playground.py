"""Convolution playground: what one convolution and one max-pool do, number by number.

Two paths that must agree (a test checks it):

* :func:`convolve2d` / :func:`max_pool2d`: exact numpy, small inputs, every number shown
  (:func:`convolution_steps`, :func:`pooling_steps`);
* :func:`apply_kernel`: the same operation with OpenCV (``cv2.filter2D``) on a real image.

As in CNNs the "convolution" is a cross-correlation (the kernel is not flipped), the
padding is zeros, and the output side is ``floor((n + p_before + p_after - k) / s) + 1``.
"""
from __future__ import annotations

import re
from fractions import Fraction

import cv2
import numpy as np

from lifelens.inside import figures

# The worked example of Andrew Ng's deeplearning.ai course (vertical-edge detector on 6x6).
EXAMPLE_IMAGE = np.array([
    [3, 0, 1, 2, 7, 4],
    [1, 5, 8, 9, 3, 1],
    [2, 7, 2, 5, 1, 3],
    [0, 1, 3, 1, 7, 8],
    [4, 2, 1, 6, 2, 8],
    [2, 4, 5, 2, 3, 9],
], dtype=np.float64)
EXAMPLE_KERNEL = np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], dtype=np.float64)

# name -> (3x3 kernel, what it does). Edge kernels sum to 0: flat regions give 0.
KERNELS: dict[str, tuple[np.ndarray, str]] = {
    "identity": (np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], float), "Copies the image: the output pixel is the input pixel."),
    "vertical edge": (np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], float),
                      "Left column minus right column: large where brightness changes from left to right."),
    "horizontal edge": (np.array([[1, 1, 1], [0, 0, 0], [-1, -1, -1]], float),
                        "Top row minus bottom row: large where brightness changes from top to bottom."),
    "sobel x": (np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float),
                "Vertical edges, with the centre row weighted double (less sensitive to noise)."),
    "sobel y": (np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float),
                "Horizontal edges, with the centre column weighted double."),
    "laplacian": (np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float),
                  "Neighbours minus the centre: responds to spots and thin lines in any direction."),
    "sharpen": (np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float),
                "The pixel plus its difference from its neighbours: edges get crisper."),
    "box blur": (np.full((3, 3), 1 / 9), "The average of the 3 x 3 neighbourhood: smooths detail away."),
    "gaussian blur": (np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], float) / 16,
                      "A weighted average, the centre counting most: a gentle smoothing."),
}


def named_kernel(name: str) -> np.ndarray:
    """The 3x3 kernel called ``name`` (see :data:`KERNELS`), float64."""
    key = name.strip().lower().replace("_", " ")
    if key not in KERNELS:
        raise ValueError(f"Unknown kernel {name!r}; choose one of: {', '.join(KERNELS)}.")
    return KERNELS[key][0].copy()


def parse_kernel(text: str, size: int = 3) -> np.ndarray:
    """A typed-in kernel -> float64 (size, size).

    Accepts ``size * size`` numbers separated by spaces, commas, semicolons or new lines,
    each an integer, a decimal or a fraction such as ``1/9``. Raises ValueError.
    """
    tokens = [t for t in re.split(r"[\s,;\[\]]+", str(text).strip()) if t]
    if len(tokens) != size * size:
        raise ValueError(f"A {size} x {size} kernel needs {size * size} numbers; {len(tokens)} were given.")
    values = []
    for token in tokens:
        try:
            values.append(float(Fraction(token)))
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{token!r} is not a number (use e.g. 2, -0.5 or 1/9).") from None
    return np.array(values, dtype=np.float64).reshape(size, size)


def _check_2d_kernel(kernel) -> np.ndarray:
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or min(kernel.shape) < 1:
        raise ValueError(f"The kernel must be a 2-D array, not shape {kernel.shape}.")
    if not np.all(np.isfinite(kernel)):
        raise ValueError("The kernel contains a value that is not a finite number.")
    return kernel


def _check_image(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim not in (2, 3):
        raise ValueError(f"The image must be (H, W) or (H, W, C), not shape {image.shape}.")
    return image


def padding_amounts(k: int, padding, n: int | None = None, stride: int = 1) -> tuple[int, int]:
    """(before, after) zero padding along one axis of ``n`` pixels for a kernel of side ``k``.

    ``"valid"``: none; ``"same"``: as Keras/TF pad it, so the output has ceil(n / stride)
    pixels: ``max((out - 1) * stride + k - n, 0)`` in total, the smaller half before (at
    stride 2 an even input is padded only after: the numbers equal ``keras.layers.Conv2D``'s);
    ``n`` None means stride 1 (k - 1 in total). An int p: p on each side.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0
        if mode == "same":
            total = k - 1 if n is None else max((-(-n // stride) - 1) * stride + k - n, 0)
            return total // 2, total - total // 2
        raise ValueError(f"padding must be 'valid', 'same' or a number of pixels, not {padding!r}.")
    p = int(padding)
    if p < 0 or p != padding:
        raise ValueError(f"padding must be a non-negative whole number of pixels, not {padding!r}.")
    return p, p


def output_size(n: int, k: int, stride: int = 1, padding="valid") -> int:
    """Output side of a convolution/pooling: floor((n + p_before + p_after - k) / stride) + 1."""
    if stride < 1:
        raise ValueError("stride must be at least 1.")
    before, after = padding_amounts(k, padding, n, stride)
    span = n + before + after - k
    if span < 0:
        raise ValueError(f"The kernel ({k} px) is larger than the padded input ({n + before + after} px).")
    return span // stride + 1


def _pad(image: np.ndarray, kh: int, kw: int, padding, stride: int = 1) -> np.ndarray:
    (top, bottom) = padding_amounts(kh, padding, image.shape[0], stride)
    (left, right) = padding_amounts(kw, padding, image.shape[1], stride)
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="constant")


def convolve2d(image, kernel, stride: int = 1, padding="valid") -> np.ndarray:
    """Exact CNN-style 2-D convolution (cross-correlation, zero padding) in numpy.

    image: (H, W) or (H, W, C) numbers; a (H, W, C) image is filtered channel by channel.
    kernel: (kh, kw). stride: step in pixels (both axes). padding: "valid", "same" or int.
    Returns float64 (H', W'[, C]) with H' = floor((H + p_top + p_bottom - kh) / stride) + 1.
    """
    image, kernel = _check_image(image), _check_2d_kernel(kernel)
    kh, kw = kernel.shape
    out_h = output_size(image.shape[0], kh, stride, padding)
    out_w = output_size(image.shape[1], kw, stride, padding)
    padded = _pad(image, kh, kw, padding, stride)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(0, 1))
    windows = windows[::stride, ::stride][:out_h, :out_w]  # (H', W'[, C], kh, kw)
    return np.einsum("...ij,ij->...", windows, kernel)


def max_pool2d(image, size: int = 2, stride: int = 2) -> np.ndarray:
    """Max pooling with no padding: (H, W[, C]) -> (floor((H - size) / stride) + 1, ...[, C]), float64."""
    image = _check_image(image)
    if size < 1:
        raise ValueError("The pooling window must be at least 1 pixel.")
    out_h = output_size(image.shape[0], size, stride)
    out_w = output_size(image.shape[1], size, stride)
    windows = np.lib.stride_tricks.sliding_window_view(image, (size, size), axis=(0, 1))
    return windows[::stride, ::stride][:out_h, :out_w].max(axis=(-2, -1))


def apply_kernel(image, kernel, stride: int = 1, padding="same") -> np.ndarray:
    """The same operation as :func:`convolve2d`, with OpenCV, for real images.

    image: (H, W) or (H, W, C) with C <= 4, any numeric type. Returns float32 of the
    shape :func:`convolve2d` returns. ``cv2.filter2D`` correlates (no flip), as CNNs do;
    zero padding is added explicitly and the anchor put at the kernel's corner so the
    result is exactly the "valid" part, then strided.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] > 4):
        raise ValueError(f"The image must be (H, W) or (H, W, C) with at most 4 channels, not {image.shape}.")
    kernel = _check_2d_kernel(kernel)
    kh, kw = kernel.shape
    out_h = output_size(image.shape[0], kh, stride, padding)
    out_w = output_size(image.shape[1], kw, stride, padding)
    (top, bottom) = padding_amounts(kh, padding, image.shape[0], stride)
    (left, right) = padding_amounts(kw, padding, image.shape[1], stride)
    src = cv2.copyMakeBorder(image.astype(np.float32), top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
    src = src.reshape(src.shape[0], src.shape[1], *image.shape[2:])
    full = cv2.filter2D(src, cv2.CV_32F, kernel.astype(np.float32), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    full = full.reshape(src.shape)
    return full[: (out_h - 1) * stride + 1 : stride, : (out_w - 1) * stride + 1 : stride]


def response_to_display(response: np.ndarray, kernel) -> np.ndarray:
    """A filter response -> uint8 for the screen.

    Kernels whose weights sum to about 0 (edge detectors) give signed responses: the
    magnitude is shown, stretched so the 99th percentile is white. Others (blur, sharpen,
    identity) keep the image's brightness scale and are clipped to [0, 255].
    """
    response = np.asarray(response, dtype=np.float32)
    if abs(float(np.sum(kernel))) < 1e-6:
        magnitude = np.abs(response)
        top = float(np.percentile(magnitude, 99)) or float(magnitude.max()) or 1.0
        return np.clip(magnitude / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.clip(response + 0.5, 0, 255).astype(np.uint8)


def convolution_steps(image, kernel, stride: int = 1, padding="valid") -> list[dict]:
    """Every output number of :func:`convolve2d` with the arithmetic that made it.

    image: (H, W); kernel: (kh, kw). Returns one dict per output cell, row by row:
    ``{"row", "col", "top", "left"`` (the window's corner in the padded input),
    ``"window"`` (kh x kw list), ``"products"`` (kh x kw list), ``"value"``,
    ``"expression"`` ("3x1 + 0x0 + 1x(-1) + ... = -5")}.
    """
    image, kernel = _check_image(image), _check_2d_kernel(kernel)
    if image.ndim != 2:
        raise ValueError("The worked example takes a single-channel (H, W) image.")
    out = convolve2d(image, kernel, stride, padding)
    padded = _pad(image, *kernel.shape, padding)
    kh, kw = kernel.shape
    steps = []
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            window = padded[r * stride: r * stride + kh, c * stride: c * stride + kw]
            products = window * kernel
            terms = " + ".join(f"{_num(a, True)}x{_num(b, True)}" for a, b in zip(window.ravel(), kernel.ravel()))
            steps.append({
                "row": r, "col": c, "top": r * stride, "left": c * stride,
                "window": window.tolist(), "products": products.tolist(), "value": float(out[r, c]),
                "expression": f"{terms} = {_num(out[r, c])}",
            })
    return steps


def pooling_steps(image, size: int = 2, stride: int = 2) -> list[dict]:
    """Every output number of :func:`max_pool2d`: the window, where its maximum is, the value.

    Returns one dict per output cell: ``{"row", "col", "top", "left", "window",
    "argmax": (row, col) in the input, "value"}``.
    """
    image = _check_image(image)
    if image.ndim != 2:
        raise ValueError("The worked example takes a single-channel (H, W) image.")
    out = max_pool2d(image, size, stride)
    steps = []
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            window = image[r * stride: r * stride + size, c * stride: c * stride + size]
            i, j = np.unravel_index(int(np.argmax(window)), window.shape)
            steps.append({"row": r, "col": c, "top": r * stride, "left": c * stride, "window": window.tolist(),
                          "argmax": (r * stride + int(i), c * stride + int(j)), "value": float(out[r, c])})
    return steps


def _num(value: float, bracket_negative: bool = False) -> str:
    """Numbers as a person writes them: 3, -0.5, 0.111 (``(-1)`` inside a product)."""
    value = float(value)
    text = str(int(value)) if value == int(value) else f"{value:.3g}"
    return f"({text})" if bracket_negative and value < 0 else text


# ----------------------------------------------------------------------------- pictures of numbers

def number_grid(values, *, cell: int = 44, highlight: tuple[int, int, int, int] | None = None,
                signed: bool = False, title: str | None = None,
                padding: tuple[int, int, int, int] = (0, 0, 0, 0)) -> np.ndarray:
    """A matrix drawn as a table of numbers -> uint8 RGB image.

    values: (H, W). highlight: (top, left, height, width) cells outlined in orange (the
    window being multiplied). ``signed``: cells tinted red (positive) / blue (negative).
    padding: (top, bottom, left, right) rows/columns that are zero padding, shaded grey.
    """
    values = np.asarray(values, dtype=np.float64)
    h, w = values.shape
    header = 22 if title else 0
    title_width = cv2.getTextSize(title, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] + 4 if title else 0
    img = np.full((header + h * cell + 1, max(w * cell + 1, title_width), 3), 255, np.uint8)
    limit = float(np.abs(values).max()) or 1.0
    for r in range(h):
        for c in range(w):
            y0, x0 = header + r * cell, c * cell
            if signed:
                v = values[r, c] / limit
                tint = (255, int(255 * (1 - abs(v) * 0.6)), int(255 * (1 - abs(v) * 0.6)))
                img[y0:y0 + cell, x0:x0 + cell] = tint if v > 0 else tint[::-1]
            if r < padding[0] or r >= h - padding[1] or c < padding[2] or c >= w - padding[3]:
                img[y0:y0 + cell, x0:x0 + cell] = 225
            cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (160, 160, 160), 1)
            text = _num(values[r, c])
            scale = 0.45 if len(text) <= 4 else 0.35
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            cv2.putText(img, text, (x0 + (cell - tw) // 2, y0 + (cell + th) // 2), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, (20, 20, 20), 1, cv2.LINE_AA)
    if highlight is not None:
        top, left, hh, ww = highlight
        cv2.rectangle(img, (left * cell, header + top * cell), ((left + ww) * cell, header + (top + hh) * cell),
                      (255, 140, 0), 2)
    if title:
        cv2.putText(img, title, (2, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def worked_example_figure(image=EXAMPLE_IMAGE, kernel=EXAMPLE_KERNEL, stride: int = 1, padding="valid",
                          at: tuple[int, int] = (0, 0)) -> np.ndarray:
    """input * kernel = output, with the window for output cell ``at`` outlined -> uint8 RGB."""
    image, kernel = _check_image(image), _check_2d_kernel(kernel)
    out = convolve2d(image, kernel, stride, padding)
    padded = _pad(image, *kernel.shape, padding)
    r, c = at
    if not (0 <= r < out.shape[0] and 0 <= c < out.shape[1]):
        raise ValueError(f"The output has {out.shape[0]} x {out.shape[1]} cells; ({r}, {c}) is outside it.")
    panels = [
        number_grid(padded, highlight=(r * stride, c * stride, *kernel.shape),
                    title="input (grey: zero padding)" if padded.shape != image.shape else "input",
                    padding=padding_amounts(kernel.shape[0], padding) + padding_amounts(kernel.shape[1], padding)),
        number_grid(kernel, signed=True, title="kernel"),
        number_grid(out, highlight=(r, c, 1, 1), signed=True, title=f"output (stride {stride}, {padding})"),
    ]
    return figures.hstack(panels, gap=24)


def pooling_figure(image=EXAMPLE_IMAGE, size: int = 2, stride: int = 2, at: tuple[int, int] = (0, 0)) -> np.ndarray:
    """input -> max-pooled output, with the window for output cell ``at`` outlined -> uint8 RGB."""
    image = _check_image(image)
    out = max_pool2d(image, size, stride)
    r, c = at
    if not (0 <= r < out.shape[0] and 0 <= c < out.shape[1]):
        raise ValueError(f"The output has {out.shape[0]} x {out.shape[1]} cells; ({r}, {c}) is outside it.")
    return figures.hstack([
        number_grid(image, highlight=(r * stride, c * stride, size, size), title="input"),
        number_grid(out, highlight=(r, c, 1, 1), title=f"max pool {size} x {size}, stride {stride}"),
    ], gap=24)
