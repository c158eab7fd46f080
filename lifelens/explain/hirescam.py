"""HiResCAM (Draelos & Carin 2020): gradient times activation position by position, which
provably shows the locations the score used (no spatial averaging of the gradient)."""
from __future__ import annotations

from lifelens.explain.base import register
from lifelens.explain.cam import BaseCAM


@register
class HiResCAM(BaseCAM):
    id = "hirescam"
    name = "HiResCAM"
    description = "Element-wise gradient x activation summed over channels; faithful to what the score used."

    def channel_weights(self, activations, grads, images, targets):
        return grads
