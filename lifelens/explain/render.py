"""One picture per explanation: the map blended over the image it explains."""
from __future__ import annotations

import numpy as np


def overlay_image(explanation, image: np.ndarray, index: int = 0, *, colormap: str = "jet",
                  alpha: float = 0.45, contour_top: float | None = 0.2) -> np.ndarray:
    """uint8 RGB (H, W, 3): map ``index`` of ``explanation`` over ``image`` ((H, W, C) in [0, 255]).

    Signed methods (SHAP, IG, occlusion) are drawn with the diverging red/blue scale of
    ``imaging.overlay`` and without the top-k% contour, which on pixel-level attributions
    would outline noise; the others use ``colormap`` and the contour.
    """
    from lifelens import imaging

    if explanation.signed is not None:
        return imaging.overlay(image, explanation.signed[index], alpha=alpha, signed=True)
    return imaging.overlay(image, explanation.maps[index], colormap=colormap, alpha=alpha,
                           contour_top=contour_top or None)
