"""Explanation speed, as ratios measured in one run on the plant model (a fresh untrained
model of the same architecture if the shipped one is missing).

gradcam_over_forward_backward: Grad-CAM on a batch / one plain forward pass plus a
    backward pass to the input (gradient of the top class's probability) of the same
    model on the same batch, both compiled with fixed signatures and warmed up (goal <= 1.3).
scorecam_batched_speedup: Score-CAM with masks one at a time (batch_size=1) / batched (the
    default batch_size, 32),
    both through the same compiled graph (on a few CPU cores the passes are compute-bound,
    so this is modest; it grows with cores or a GPU).
scorecam_speedup_over_python_loop: the textbook loop (one eager ``model(masked image)``
    call per channel from Python) / batched Score-CAM, on the same image.
shap_cached_speedup: a fresh GradientExplainer (background read from the disk cache,
    gradient graph traced) / the cached explainer, same image, nsamples=32.
"""
from __future__ import annotations

import time

import numpy as np

REPEATS = 7
BATCH = 8


def _median_time(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _plant_model_and_images():
    from lifelens import data, models
    from lifelens.tasks import get_task

    spec = get_task("plant")
    if spec.model_path.is_file():
        model, source = models.load_task_model(spec).classifier, "shipped"
    else:
        model, source = models.build_model(spec), "untrained"
    images = data.load_prepared(spec, data.task_splits(spec)["test"][:BATCH]).astype(np.float32)
    return model, images, source


def _scorecam_python_loop(model, image):
    """Score-CAM channel weights the naive way: one eager model call per channel mask."""
    import tensorflow as tf

    from lifelens.explain.base import handle_for

    handle = handle_for(model)
    activations = handle.tap(handle.layer_path(None))(image[None], training=False)[0]
    target = int(np.argmax(model(image[None], training=False)[0]))
    masks = tf.image.resize(activations, image.shape[:2])[0].numpy()
    weights = []
    for k in range(masks.shape[-1]):
        mask = masks[..., k]
        span = mask.max() - mask.min()
        mask = (mask - mask.min()) / span if span > 0 else np.zeros_like(mask)
        weights.append(float(model(image[None] * mask[None, ..., None], training=False)[0, target]))
    return np.asarray(weights)


def _plant_spec():
    from lifelens.tasks import get_task

    return get_task("plant")


def run() -> dict:
    import warnings

    with warnings.catch_warnings():
        # The baselines call the loaded model directly; its inputs are saved as a one-element
        # list, and Keras warns on every new shape when given a bare tensor.
        warnings.filterwarnings("ignore", message="The structure of `inputs`")
        return _run()


def _run() -> dict:
    import tensorflow as tf

    from lifelens.explain import explain
    from lifelens.explain import shap_gradient
    from lifelens.explain.base import handle_for

    model, images, source = _plant_model_and_images()

    @tf.function(input_signature=[tf.TensorSpec((None,) + images.shape[1:], tf.float32)], autograph=False)
    def forward_backward(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            probs = model(x, training=False)
            top = tf.reduce_max(probs, axis=-1)
        return tape.gradient(top, x)

    forward_backward(images)
    explain(model, images, method="gradcam")
    plain = _median_time(lambda: forward_backward(images).numpy())
    gradcam = _median_time(lambda: explain(model, images, method="gradcam"))

    one = images[:1]
    # A user switching CAM method on a shown case: the shared pass is compiled, the variant is not new.
    from lifelens.explain.base import tracing_counts

    explain(model, one, method="gradcam")
    traces = sum(tracing_counts().values())
    switches = []
    for method in ("gradcam++", "hirescam", "layercam", "eigencam"):
        t0 = time.perf_counter()
        explain(model, one, method=method)
        switches.append(time.perf_counter() - t0)
    new_traces = sum(tracing_counts().values()) - traces
    explain(model, one, method="scorecam", batch_size=1)
    explain(model, one, method="scorecam")
    unbatched = _median_time(lambda: explain(model, one, method="scorecam", batch_size=1), 3)
    batched = _median_time(lambda: explain(model, one, method="scorecam"), 3)
    python_loop = _median_time(lambda: _scorecam_python_loop(model, one[0]), 1)

    shap_gradient.background_images(_plant_spec())  # warm the disk cache: time the explainer, not JPEG decoding
    handle_for(model).explainers.clear()
    t0 = time.perf_counter()
    explain(model, one, method="shap", nsamples=32, task="plant")
    fresh = time.perf_counter() - t0
    cached = _median_time(lambda: explain(model, one, method="shap", nsamples=32, task="plant"), 3)

    return {
        "explain_model": f"plant ({source})",
        "explain_batch": int(len(images)),
        "gradcam_seconds_per_batch": round(gradcam, 4),
        "forward_backward_seconds_per_batch": round(plain, 4),
        "gradcam_over_forward_backward": round(gradcam / plain, 3),
        "scorecam_batched_speedup": round(unbatched / batched, 2),
        "scorecam_speedup_over_python_loop": round(python_loop / batched, 2),
        "shap_cached_speedup": round(fresh / cached, 2),
        "cam_method_switch_s": round(max(switches), 4),
        "cam_method_switch_goal_s": 0.3,
        "cam_method_switch_new_traces": int(new_traces),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
