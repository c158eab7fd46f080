"""Grad-CAM++ (Chattopadhay et al. 2018): positive gradients weighted per position, so several
instances of a class all count (closed form with the exponential-score trick)."""
from __future__ import annotations

from lifelens.explain.base import register
from lifelens.explain.cam import BaseCAM


@register
class GradCAMPlusPlus(BaseCAM):
    id = "gradcam++"
    name = "Grad-CAM++"
    description = "Grad-CAM with per-position weights on positive gradients; better with several objects."

    def channel_weights(self, activations, grads, images, targets):
        import tensorflow as tf

        g2 = grads * grads
        g3 = g2 * grads
        total = tf.reduce_sum(activations, axis=(1, 2), keepdims=True)
        alpha = g2 / (2.0 * g2 + total * g3 + 1e-7)
        alpha = tf.where(grads != 0.0, alpha, tf.zeros_like(alpha))
        return tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
