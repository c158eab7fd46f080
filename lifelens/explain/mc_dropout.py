"""Grad-CAM under model uncertainty: mean and spread over Monte-Carlo dropout samples.

The conv activations are computed once; only the head after the target layer is sampled
``samples`` times in one batch, with the dropout layer (``head_dropout`` in LifeLens
models) called with ``training=True`` and every other layer (BatchNorm included) in
inference mode. The whole model is never run with ``training=True``.
"""
from __future__ import annotations

import numpy as np

from lifelens.explain import graph
from lifelens.explain.base import Explanation, as_images, as_targets
from lifelens.explain.gradcam import GradCAM

DROPOUT_LAYER = "head_dropout"


def gradcam_uncertainty(model, images, targets=None, *, samples: int = 32, layer=None,
                        dropout: str = DROPOUT_LAYER) -> Explanation:
    """Grad-CAM averaged over ``samples`` dropout masks of the head.

    images: float32 (N, H, W, C) in [0, 255]. Returns an Explanation with ``method =
    "gradcam_mc"``, ``maps`` the mean map scaled so its maximum is 1 (N, H, W) in [0, 1],
    and ``extra["std"]`` the per-pixel standard deviation over samples on the same scale.
    """
    import tensorflow as tf

    if samples < 2:
        raise ValueError("samples must be at least 2 to measure a spread")
    cam = GradCAM(model, layer=layer)
    handle, layer_path = cam.handle, cam.layer_path
    dropout_path = graph.resolve_layer(model, dropout)
    order = [p for p, _, _ in graph.walk(model)]
    if order.index(dropout_path) < order.index(layer_path):
        raise ValueError(f"The dropout layer {dropout!r} comes before {cam.layer_name!r}; it cannot vary the map.")
    height, width = handle.input_shape[:2]

    def build():
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

    fn = handle.function(f"gradcam_mc@{cam.layer_name}|{graph.path_name(dropout_path)}", build)
    batch = as_images(images, handle.input_shape)
    mean, std, probs, targets = fn(batch, as_targets(targets, len(batch), handle.num_classes), np.int32(samples))
    return Explanation("gradcam_mc", mean.numpy(), targets.numpy(), probs.numpy(), None, cam.layer_name,
                       {"samples": int(samples), "dropout": graph.path_name(dropout_path)}, {"std": std.numpy()})
