"""LayerCAM (Jiang et al. 2021): positive gradients as per-position weights; also works on
early, high-resolution layers."""
from __future__ import annotations

from lifelens.explain.base import register
from lifelens.explain.cam import BaseCAM


@register
class LayerCAM(BaseCAM):
    id = "layercam"
    name = "LayerCAM"
    description = "Per-position positive-gradient weights; gives finer maps, also on earlier layers."

    def channel_weights(self, activations, grads, images, targets):
        import tensorflow as tf

        return tf.nn.relu(grads)
