"""Integrated Gradients (Sundararajan et al. 2017): the gradient of the target probability
averaged along the straight path from a baseline image to the input, times (input - baseline).

Baselines: ``"black"`` (all zeros) or ``"blurred"`` (the input under a Gaussian blur of
``blur_sigma`` x side, which keeps colour and removes detail). ``steps`` midpoint-rule
points; all of one image's path points go through the model in batches. Attributions
sum (approximately) to p(input) - p(baseline), in probability units.
"""
from __future__ import annotations

import numpy as np

from lifelens.explain.base import Method, positive_part, register


def baseline_images(images: np.ndarray, kind: str, blur_sigma: float = 1 / 16) -> np.ndarray:
    """(N, H, W, C) inputs -> same-shape baselines: "black" zeros, "blurred" Gaussian blur, "mean" colour."""
    import cv2

    images = np.asarray(images, dtype=np.float32)
    if kind == "black":
        return np.zeros_like(images)
    if kind == "mean":
        return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).astype(np.float32)
    if kind in ("blur", "blurred"):
        sigma = max(1.0, images.shape[1] * float(blur_sigma))
        out = np.stack([cv2.GaussianBlur(img, (0, 0), sigma) for img in images])
        return out.reshape(images.shape).astype(np.float32)
    raise ValueError(f"Unknown baseline {kind!r}; choose black, blurred or mean.")


@register
class IntegratedGradients(Method):
    id = "integrated_gradients"
    name = "Integrated Gradients"
    description = "Gradients summed along a path from a black or blurred image; red for, blue against the class."
    signed = True
    defaults = {"baseline": "black", "steps": 32, "blur_sigma": 1 / 16, "batch_size": 64}
    fast = {"steps": 16}  # the interactive setting; the defaults are the precise one

    def attribute(self, images, targets):
        steps = int(self.options["steps"])
        if steps < 1:
            raise ValueError("steps must be at least 1")
        baselines = baseline_images(images, self.options["baseline"], self.options["blur_sigma"])
        alphas = ((np.arange(steps) + 0.5) / steps).astype(np.float32)[:, None, None, None]
        signed = np.zeros(images.shape[:3], np.float32)
        for i, (image, base) in enumerate(zip(images, baselines)):
            path = base[None] + alphas * (image - base)[None]
            grads = self.handle.input_gradients(path, np.full(steps, targets[i]), int(self.options["batch_size"]))
            signed[i] = ((image - base) * grads.mean(axis=0)).sum(axis=-1)
        return positive_part(signed), signed, {}
