"""Eigen-CAM (Muhammad & Yeasin 2020): the first principal component of the activations.

Class-agnostic (no gradients, ignores the target). The SVD sign is arbitrary, so it is
fixed to agree with the total activation (where the layer fires most is positive).
"""
from __future__ import annotations

from lifelens.explain.base import register
from lifelens.explain.cam import BaseCAM


@register
class EigenCAM(BaseCAM):
    id = "eigencam"
    name = "Eigen-CAM"
    description = "First principal component of the feature maps; needs no gradients and ignores the class."
    needs_gradients = False

    def channel_weights(self, activations, grads, images, targets):
        import tensorflow as tf

        shape = tf.shape(activations)
        flat = tf.reshape(activations, (shape[0], shape[1] * shape[2], shape[3]))
        centred = flat - tf.reduce_mean(flat, axis=1, keepdims=True)
        _, _, v = tf.linalg.svd(centred)
        first = v[:, :, 0]  # (N, C)
        projection = tf.einsum("npc,nc->np", centred, first)
        energy = tf.reduce_sum(flat, axis=-1)
        sign = tf.sign(tf.reduce_sum((projection - tf.reduce_mean(projection, 1, keepdims=True))
                                     * (energy - tf.reduce_mean(energy, 1, keepdims=True)), axis=1))
        sign = tf.where(sign == 0.0, tf.ones_like(sign), sign)
        return (first * sign[:, None])[:, None, None, :]

    def combine(self, activations, weights):
        import tensorflow as tf

        # The projection of the centred activations; min-max scaling follows (no ReLU, as the paper).
        centred = activations - tf.reduce_mean(activations, axis=(1, 2), keepdims=True)
        return tf.reduce_sum(weights * centred, axis=-1)
