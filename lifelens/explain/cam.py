"""The class-activation-map base: a CAM variant overrides only how channel weights are found.

``map = ReLU(sum_k w_k * A_k)`` where ``A`` (N, h, w, C) are the target layer's
activations; ``channel_weights(A, dA, images, targets)`` returns ``w`` as (N, 1, 1, C)
(one weight per channel) or (N, h, w, C) (a weight per position, as HiResCAM/LayerCAM
use). ``dA`` is the gradient of the target class's logit (None if ``needs_gradients`` is
False); ``images``/``targets`` are there for methods that re-run the model (Score-CAM). The map is
upsampled bilinearly to the input size and min-max normalised per image.

One compiled forward and backward pass per (model, layer), with a fixed input signature,
yields the activations and gradients every variant needs; the variant's weights, the
combination, upsampling and normalisation are a few eager array operations on top, so
switching between CAM methods on the same image traces nothing new.
"""
from __future__ import annotations

import numpy as np

from lifelens.explain.base import Method


class BaseCAM(Method):
    uses_layer = True
    needs = "layers"
    needs_gradients = True  # EigenCAM looks at activations only

    def channel_weights(self, activations, grads, images, targets):
        """(N, h, w, C) activations, d score / d activations -> weights (N, 1, 1, C) or (N, h, w, C)."""
        raise NotImplementedError

    def combine(self, activations, weights):
        """-> (N, h, w) raw map: ReLU of the weighted channel sum."""
        import tensorflow as tf

        return tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))

    # ------------------------------------------------------------------ the shared pass

    def _activations_and_gradients(self):
        """The one compiled forward + backward pass of a (model, layer), shared by every CAM
        variant (as pytorch-grad-cam computes them once): images (N, H, W, C), targets (N,)
        -> activations (N, h, w, C), d score / d activations, probs (N, K), targets (N,)."""
        import tensorflow as tf

        handle, layer_path = self.handle, self.layer_path

        def build():
            tap = handle.tap(layer_path)

            @tf.function(input_signature=[handle.image_spec, tf.TensorSpec((None,), tf.int32)], autograph=False)
            def run(images, targets):
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(images)  # records the forward pass even if every layer is frozen
                    activations, pre_output, output = tap(images, training=False)
                    scores, probs = handle.scores_and_probs(pre_output, output)
                    targets = tf.where(targets < 0, tf.argmax(probs, axis=-1, output_type=tf.int32), targets)
                    score = tf.gather(scores, targets, batch_dims=1)
                activations = tf.cast(activations, tf.float32)
                return activations, tape.gradient(score, activations), probs, targets

            return run

        return handle.function(f"cam@{'/'.join(layer_path)}", build)

    def weights(self, activations, grads, images, targets):
        """``channel_weights`` on the shared pass's tensors: a few array operations, run eagerly
        (nothing to trace when the user switches method). Score-CAM overrides this to run its
        masked images through the model in a graph of its own."""
        return self.channel_weights(activations, grads, images, targets)

    def predictions(self, images: np.ndarray, targets: np.ndarray):
        # The shared pass yields the probabilities and the predicted class along with the
        # activations and gradients: one run of the network per call, kept for attribute().
        activations, grads, probs, targets = self._activations_and_gradients()(images, targets)
        self._pass = (images, activations, grads)
        return probs.numpy(), targets.numpy()

    def attribute(self, images: np.ndarray, targets: np.ndarray):
        import tensorflow as tf

        seen, activations, grads = getattr(self, "_pass", None) or (None, None, None)
        if seen is not images:  # called on its own, not after predictions()
            activations, grads, _, _ = self._activations_and_gradients()(images, np.asarray(targets, np.int32))
        targets = tf.convert_to_tensor(np.asarray(targets, np.int32))
        weights = self.weights(activations, grads, tf.convert_to_tensor(images), targets)
        height, width = self.handle.input_shape[:2]
        maps = upsample_and_normalise(self.combine(activations, weights), height, width)
        return maps.numpy(), None, {}


def upsample_and_normalise(raw, height: int, width: int):
    """(N, h, w) tensor -> (N, height, width) bilinear upsampling, per-map min-max to [0, 1]."""
    import tensorflow as tf

    up = tf.image.resize(raw[..., None], (height, width), method="bilinear")[..., 0]
    lo = tf.reduce_min(up, axis=(1, 2), keepdims=True)
    span = tf.reduce_max(up, axis=(1, 2), keepdims=True) - lo
    return tf.where(span > 1e-12, (up - lo) / tf.maximum(span, 1e-12), tf.zeros_like(up))
