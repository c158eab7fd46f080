"""Grad-CAM under model uncertainty: mean and spread over Monte-Carlo dropout samples.

The conv activations are computed once; only the head after the target layer is sampled
``samples`` times in one batch, with the dropout layer (the network's last one:
``head_dropout`` in LifeLens models) called with ``training=True`` and every other layer (BatchNorm included) in
inference mode. The whole model is never run with ``training=True``.
"""
from __future__ import annotations

import numpy as np

from lifelens.explain import graph
from lifelens.explain.base import Method, register
from lifelens.explain.gradcam import GradCAM

@register
class GradCAMUncertainty(Method):
    """``maps``: the mean Grad-CAM over ``samples`` dropout masks, scaled so its maximum is 1
    (N, H, W) in [0, 1]; ``extra["std"]``: the per-pixel standard deviation over the masks on
    the same scale."""

    id = "gradcam_mc"
    name = "Grad-CAM under MC dropout"
    description = ("Grad-CAM averaged over dropout masks of the head; its spread over the masks is a map of "
                   "how much the explanation itself is uncertain.")
    uses_layer = True
    needs = "layers"
    needs_dropout = True
    defaults = {"samples": 32, "dropout": None}  # None: the network's last dropout layer
    fast = {"samples": 16}

    def __init__(self, model, layer=None, **options):
        super().__init__(model, layer=layer, **options)
        if int(self.options["samples"]) < 2:
            raise ValueError("samples must be at least 2 to measure a spread")
        wanted = self.options["dropout"]
        try:
            self.dropout_path = graph.resolve_layer(self.model, wanted) if wanted else graph.dropout_path(self.model)
        except (KeyError, ValueError):
            self.dropout_path = None
        if self.dropout_path is None:
            raise ValueError(f"{self.name} needs a dropout layer{f' {wanted!r}' if wanted else ''}; this model has none.")
        order = [p for p, _, _ in graph.walk(self.model)]
        if order.index(self.dropout_path) < order.index(self.layer_path):
            raise ValueError(f"The dropout layer {graph.path_name(self.dropout_path)!r} comes before {self.layer_name!r}; "
                             "it cannot vary the map.")

    def _compiled(self):
        import tensorflow as tf

        handle, layer_path, dropout_path = self.handle, self.layer_path, self.dropout_path
        height, width = handle.input_shape[:2]

        def build():
            cam = GradCAM(self.model, layer=layer_path)  # its weights and combination, traced in
            tap = handle.tap(layer_path)

            @tf.function(input_signature=[handle.image_spec, tf.TensorSpec((None,), tf.int32),
                                          tf.TensorSpec((), tf.int32)], autograph=False)
            def run(images, targets, samples):
                activations, pre_output, output = tap(images, training=False)
                _, probs = handle.scores_and_probs(pre_output, output)
                targets = tf.where(targets < 0, tf.argmax(probs, axis=-1, output_type=tf.int32), targets)
                n = tf.shape(images)[0]
                tiled = tf.tile(tf.cast(activations, tf.float32), [samples, 1, 1, 1])  # sample-major (T*N, h, w, C)
                captured = {}

                def capture(path, op, args, outputs):
                    if path == handle.output_path:
                        captured["pre_output"] = args[0]

                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(tiled)
                    head_out = graph.run_graph(handle.model, seed=(layer_path, tiled), on_call=capture,
                                               training=lambda path, op: path == dropout_path)[0]
                    scores, _ = handle.scores_and_probs(captured["pre_output"], head_out)
                    score = tf.gather(scores, tf.tile(targets, [samples]), batch_dims=1)
                grads = tape.gradient(score, tiled)
                raw = cam.combine(tiled, cam.channel_weights(tiled, grads, None, None))
                up = tf.image.resize(raw[..., None], (height, width), method="bilinear")[..., 0]
                up = tf.reshape(up, (samples, n, height, width))
                mean, std = tf.reduce_mean(up, axis=0), tf.math.reduce_std(up, axis=0)
                top = tf.reduce_max(mean, axis=(1, 2), keepdims=True)
                scale = tf.where(top > 0, 1.0 / tf.maximum(top, 1e-12), tf.zeros_like(top))
                return mean * scale, std * scale, probs, targets

            return run

        # Not shared between members: its dropout draws advance each model's own seed state,
        # which a trace fed through a stateless scope would not write back (the same masks every call).
        return handle.function(f"gradcam_mc@{self.layer_name}|{graph.path_name(dropout_path)}", build, shared=False)

    def _run(self, images, targets):
        mean, std, probs, targets = self._compiled()(images, np.asarray(targets, np.int32),
                                                     np.int32(self.options["samples"]))
        self._pass = (images, mean.numpy(), std.numpy())
        return probs.numpy(), targets.numpy()

    def predictions(self, images: np.ndarray, targets: np.ndarray):
        # One compiled pass gives the probabilities, the class and both maps.
        return self._run(images, targets)

    def attribute(self, images: np.ndarray, targets: np.ndarray):
        seen, mean, std = getattr(self, "_pass", None) or (None, None, None)
        if seen is not images:
            self._run(images, targets)
            _, mean, std = self._pass
        return mean, None, {"std": std}
