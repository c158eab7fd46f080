"""The explanation of a deep ensemble: the mean of its members' maps, and their spread.

Every member explains the class the ENSEMBLE predicts (or the one asked for), so the
maps answer one question; ``extra["std"]`` (N, H, W) is the per-pixel standard deviation
over members, a map of explanation uncertainty: where the members disagree about what
mattered.
"""
from __future__ import annotations

import numpy as np

from lifelens.explain.base import Explanation, as_images, as_targets, explain, handle_for, resolve_targets


def explain_ensemble(members: list, images, targets=None, method: str = "gradcam", layer=None,
                     **options) -> Explanation:
    """``explain`` on every member (Keras classifiers of one architecture) and average.

    images: float32 (N, H, W, C) or (H, W, C) in [0, 255]; targets as for :func:`explain`
    (None = the ensemble's predicted class). Returns an :class:`Explanation` with ``maps``
    the members' mean (N, H, W) in [0, 1], ``probs`` the ensemble's mean softmax,
    ``signed`` the mean signed map where the method has one, and ``extra`` = {"std":
    (N, H, W) spread over members, "members": M}.
    """
    if len(members) == 1:
        return explain(members[0], images, targets, method=method, layer=layer, **options)
    handle = handle_for(members[0])
    batch = as_images(images, handle.input_shape)
    chosen = as_targets(targets, len(batch), handle.num_classes)
    if (chosen < 0).any():  # the ensemble's own class: one forward pass of every member first
        chosen = resolve_targets(chosen, np.mean([handle_for(m).probs(batch) for m in members], axis=0))
    each = [explain(m, batch, chosen, method=method, layer=layer, **options) for m in members]
    probs = np.mean([e.probs for e in each], axis=0)  # every method returns its member's probabilities
    maps = np.stack([e.maps for e in each])
    signed = None if each[0].signed is None else np.mean([e.signed for e in each], axis=0).astype(np.float32)
    return Explanation(each[0].method, maps.mean(axis=0).astype(np.float32), chosen, probs.astype(np.float32),
                       signed, each[0].layer, each[0].options,
                       {"std": maps.std(axis=0).astype(np.float32), "members": len(members)})
