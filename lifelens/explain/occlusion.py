"""Occlusion (Zeiler & Fergus 2014): slide a patch over the image and record how much the
target probability drops when that patch is hidden.

``window`` and ``stride`` in input pixels (default: side/8 and half of it); the patch is
filled with the image's mean colour (``fill="mean"``), black or a blurred copy. All the
occluded copies of one image go through the model in batches of ``batch_size``.
The signed map is the average drop over the windows covering each pixel (positive =
hiding it lowers the probability).
"""
from __future__ import annotations

import numpy as np

from lifelens.explain.base import Method, positive_part, register
from lifelens.explain.integrated_gradients import baseline_images


def _starts(side: int, window: int, stride: int) -> list[int]:
    starts = list(range(0, max(1, side - window + 1), stride))
    if starts[-1] + window < side:
        starts.append(side - window)  # the last window touches the border
    return starts


@register
class Occlusion(Method):
    needs = "predictions"
    id = "occlusion"
    name = "Occlusion"
    description = "Hides one patch at a time and measures how much the class probability drops."
    signed = True
    defaults = {"window": None, "stride": None, "fill": "mean", "batch_size": 64, "overlap": True}
    fast = {"overlap": False}  # windows side by side: a quarter of the passes, a blockier map

    def attribute(self, images, targets):
        n, height, width, _ = images.shape
        window = int(self.options["window"] or max(2, height // 8))
        stride = int(self.options["stride"] or (max(1, window // 2) if self.options["overlap"] else window))
        if not (1 <= window <= min(height, width)) or stride < 1:
            raise ValueError(f"window must be 1..{min(height, width)} pixels and stride at least 1.")
        self.options.update(window=window, stride=stride)  # record what was used
        fills = baseline_images(images, "black" if self.options["fill"] == "black" else self.options["fill"])
        boxes = [(r, c) for r in _starts(height, window, stride) for c in _starts(width, window, stride)]
        base = self.handle.target_probs(images, targets)
        signed = np.zeros((n, height, width), np.float32)
        counts = np.zeros((height, width), np.float32)
        for r, c in boxes:
            counts[r:r + window, c:c + window] += 1
        for i in range(n):
            copies = np.repeat(images[i:i + 1], len(boxes), axis=0)
            for k, (r, c) in enumerate(boxes):
                copies[k, r:r + window, c:c + window] = fills[i, r:r + window, c:c + window]
            drops = base[i] - self.handle.target_probs(copies, np.full(len(boxes), targets[i]),
                                                       int(self.options["batch_size"]))
            for k, (r, c) in enumerate(boxes):
                signed[i, r:r + window, c:c + window] += drops[k]
        signed /= counts
        return positive_part(signed), signed, {}
