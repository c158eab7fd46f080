"""Score-CAM (Wang et al. 2020): a channel's weight is the target probability when the image
is seen only through that channel's (upsampled, [0, 1]-scaled) activation map.

No gradients. The C masked copies of an image go through the model ``batch_size`` at a
time inside one compiled graph, never one by one. Weights are the softmax probability of
the target class, as in the authors' code.
"""
from __future__ import annotations

from lifelens.explain.base import register
from lifelens.explain.cam import BaseCAM


@register
class ScoreCAM(BaseCAM):
    id = "scorecam"
    name = "Score-CAM"
    description = "Weights each feature map by the class score of the image masked with it; gradient-free."
    needs_gradients = False
    defaults = {"batch_size": 32, "channels": None}
    fast = {"channels": 32}  # the 32 most active channels (of 128-256): most of the map, a fraction of the passes

    def weights(self, activations, grads, images, targets):
        """The masked images run through the model in one graph of Score-CAM's own per
        (model, layer, batch size): the only CAM variant that needs more than the shared pass."""
        import tensorflow as tf

        handle, batch = self.handle, int(self.options["batch_size"])
        spec = [tf.TensorSpec((None, *activations.shape[1:]), tf.float32), handle.image_spec,
                tf.TensorSpec((None,), tf.int32)]
        fn = handle.function(f"scorecam@{'/'.join(self.layer_path)}[batch_size={batch},channels={self.options['channels']}]",
                             lambda: tf.function(lambda a, i, t: self.channel_weights(a, None, i, t),
                                                 input_signature=spec, autograph=False))
        return fn(activations, images, targets)

    def channel_weights(self, activations, grads, images, targets):
        import tensorflow as tf

        handle, tap = self.handle, self.handle.tap(self.layer_path)
        batch = max(1, int(self.options["batch_size"]))
        height, width = handle.input_shape[:2]
        total = int(activations.shape[-1])
        channels = min(int(self.options["channels"] or total), total)
        # Only the most active channels are scored (all by default); the others weigh 0.
        chosen = tf.math.top_k(tf.reduce_mean(activations, axis=(1, 2)), k=channels).indices  # (N, channels)
        chunks = -(-channels // batch)
        masks = tf.image.resize(tf.gather(activations, chosen, axis=3, batch_dims=1), (height, width), method="bilinear")
        lo = tf.reduce_min(masks, axis=(1, 2), keepdims=True)
        span = tf.reduce_max(masks, axis=(1, 2), keepdims=True) - lo
        masks = tf.where(span > 0, (masks - lo) / tf.maximum(span, 1e-12), tf.zeros_like(masks))

        def weights_for_image(args):
            image, mask, target = args  # (H, W, ch), (H, W, C), ()
            per_channel = tf.pad(tf.transpose(mask, (2, 0, 1)), [[0, chunks * batch - channels], [0, 0], [0, 0]])
            per_channel = tf.reshape(per_channel, (chunks, batch, height, width))

            def target_prob(chunk):  # (batch, H, W) masks -> (batch,) target probabilities
                _, pre_output, output = tap(image[None] * chunk[..., None], training=False)
                _, probs = handle.scores_and_probs(pre_output, output)
                return probs[:, target]

            probs = tf.map_fn(target_prob, per_channel, fn_output_signature=tf.float32, parallel_iterations=1)
            return tf.reshape(probs, (-1,))[:channels]

        weights = tf.map_fn(weights_for_image, (images, masks, targets), fn_output_signature=tf.float32,
                            parallel_iterations=1)
        weights = tf.reduce_sum(tf.one_hot(chosen, total) * weights[..., None], axis=1)  # back to (N, total)
        return weights[:, None, None, :]
