"""Explanations: the CAM family, SHAP, Integrated Gradients, occlusion and RISE under one call,
with measured faithfulness (deletion/insertion), sanity checks and the pointing game.

    from lifelens.explain import explain, METHODS
    result = explain(model, images, method="gradcam")   # result.maps: (N, H, W) in [0, 1]

Every method is a short module registered in :data:`METHODS` (id -> class with ``name``,
``description``, ``signed``, ``uses_layer``, ``defaults``); adding one is one file that
subclasses :class:`~lifelens.explain.base.Method` (or :class:`~lifelens.explain.cam.BaseCAM`
for a CAM variant, overriding only ``channel_weights``) and imports it below.

Also here: ``deletion_auc`` / ``insertion_auc`` (faithfulness), ``randomisation_check`` and
``agreement`` (sanity), ``overlay_image`` (the picture), ``tracing_counts`` (compiled-function traces),
and the mini-MIAS pointing game: ``python -m lifelens.explain.pointing``.
Importing this package does not import TensorFlow; the first explanation does.
"""
from lifelens.explain.base import METHODS, BlackBoxModel, Explanation, Method, explain, register, tracing_counts
from lifelens.explain.cam import BaseCAM
from lifelens.explain import (  # noqa: F401  (each registers its method)
    gradcam, gradcam_plus_plus, hirescam, layercam, eigencam, scorecam,
    shap_gradient, integrated_gradients, occlusion, rise, shap_partition, mc_dropout,
)
from lifelens.explain.ensemble import explain_ensemble
from lifelens.explain.faithfulness import deletion_auc, insertion_auc, map_faithfulness, perturbation_curves, random_maps
from lifelens.explain.graph import spatial_layers
from lifelens.explain.render import overlay_image
from lifelens.explain.sanity import agreement, randomisation_check, rank_correlation

__all__ = [
    "METHODS", "BlackBoxModel", "Explanation", "Method", "BaseCAM", "explain", "explain_ensemble", "register", "tracing_counts",
    "deletion_auc", "insertion_auc", "map_faithfulness", "perturbation_curves", "random_maps", "spatial_layers",
    "randomisation_check", "rank_correlation", "agreement", "overlay_image",
]
