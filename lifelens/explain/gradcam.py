"""Grad-CAM (Selvaraju et al. 2017): a channel's weight is its spatially averaged gradient."""
from __future__ import annotations

from lifelens.explain.base import register
from lifelens.explain.cam import BaseCAM


@register
class GradCAM(BaseCAM):
    id = "gradcam"
    name = "Grad-CAM"
    description = "Weights each feature map of the last conv layer by its average gradient for the class."

    def channel_weights(self, activations, grads, images, targets):
        import tensorflow as tf

        return tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
