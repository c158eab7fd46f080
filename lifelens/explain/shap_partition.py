"""SHAP values by the Partition explainer (shap.PartitionExplainer, Owen values over a
hierarchy of image regions), a black-box method: only the model's probabilities are used.

The image is split in halves, recursively (shap's axis-aligned partition tree); hidden
regions are filled by shap's image masker with a blurred copy of the image
(``fill="blur"``: a box blur of ``blur`` pixels, default side / 8) or by inpainting
(``"inpaint_telea"``, ``"inpaint_ns"``: much slower). ``max_evals`` model evaluations per
image decide how finely the regions are split, first where the output changes most (300 on
a 128 px image: about 30 regions of 16 to 32 px a side), sent to the model ``batch_size``
at a time. Attributions are in probability units of the explained
class, summed over colour channels; they add up to p(image) - p(fully blurred image).
shap breaks ties with numpy's global generator: it is seeded with ``seed`` (and restored),
so a result is deterministic.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np

from lifelens.explain.base import Method, positive_part, register
from lifelens.explain.shap_gradient import _SHAP_LOCK, _import_shap

_MASKERS: dict[tuple, object] = {}  # (input shape, mask value) -> shap.maskers.Image (holds no model)
_MASKERS_LOCK = threading.Lock()
FILLS = ("blur", "inpaint_telea", "inpaint_ns")


def image_masker(shape: tuple, mask_value: str):
    """The cached ``shap.maskers.Image(mask_value, shape)`` (its partition tree takes a while)."""
    key = (tuple(int(d) for d in shape), mask_value)
    with _MASKERS_LOCK:
        if key not in _MASKERS:
            _MASKERS[key] = _import_shap().maskers.Image(mask_value, key[0])
        return _MASKERS[key]


@register
class PartitionSHAP(Method):
    needs = "predictions"
    id = "shap_partition"
    name = "SHAP (Partition)"
    description = ("Owen values of image regions, hidden by blurring, from the model's predictions alone; "
                   "red for, blue against the class.")
    signed = True
    defaults = {"max_evals": 300, "batch_size": 64, "fill": "blur", "blur": None, "seed": 0}
    # The interactive setting: 120 evaluations, in batches of up to 120 (fewer model calls per member).
    fast = {"max_evals": 120, "batch_size": 120}

    def attribute(self, images, targets):
        opts = self.options
        n, height, width, channels = images.shape
        max_evals, batch_size = int(opts["max_evals"]), int(opts["batch_size"])
        if max_evals < 3 or batch_size < 1:
            raise ValueError("max_evals must be at least 3 and batch_size at least 1.")
        if opts["fill"] not in FILLS:
            raise ValueError(f"Unknown fill {opts['fill']!r}; choose {', '.join(FILLS)}.")
        if opts["fill"] == "blur":
            kernel = int(opts["blur"] or max(1, min(height, width) // 8))
            if not 1 <= kernel <= max(height, width):
                raise ValueError(f"blur must be 1..{max(height, width)} pixels.")
            self.options["blur"] = kernel  # record what was used
            mask_value = f"blur({kernel},{kernel})"
        else:
            mask_value = opts["fill"]
        shap = _import_shap()
        masker = image_masker((height, width, channels), mask_value)
        handle, shape = self.handle, (height, width, channels)

        def predict(x):
            batch = np.asarray(x, dtype=np.float32).reshape((-1,) + shape)
            return handle.probs(batch, max(1, min(len(batch), batch_size)))

        explainer = shap.PartitionExplainer(predict, masker)
        signed = np.zeros((n, height, width), np.float32)
        with _SHAP_LOCK:  # shap draws from numpy's global generator: one explanation at a time, state restored
            state = np.random.get_state()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    for i in range(n):
                        np.random.seed(int(opts["seed"]))
                        result = explainer(images[i:i + 1], max_evals=max_evals, batch_size=batch_size,
                                           outputs=np.array([int(targets[i])]), silent=True)
                        values = np.asarray(result.values, dtype=np.float64).reshape(height, width, channels, -1)
                        signed[i] = values[..., 0].sum(axis=-1)
            finally:
                np.random.set_state(state)
        return positive_part(signed), signed, {}
