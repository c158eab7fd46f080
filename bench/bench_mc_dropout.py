"""MC dropout cost: T samples as one batched head call vs a Python loop, and vs a plain forward pass.

Figures (ratios measured in one run, on the shipped plant model or a fresh one):

* ``mc_dropout_loop_speedup``: a Python loop of T=50 single-mask head calls divided by
  one batched call drawing all 50 masks (goal >= 10);
* ``mc_dropout_over_batch_forward``: T=50 MC dropout on ONE image (trunk once + 50
  sampled heads) divided by one plain forward pass of a batch of 50 images (goal <= 1.2);
  i.e. the Bayesian answer costs no more than predicting 50 images;
* ``mc_dropout_whole_network_over_batch_forward``: the same through the general
  (bring-your-own-model) path, which runs the whole network on the image tiled 50 times.
"""
from __future__ import annotations

import numpy as np
from timing import best_of

SAMPLES = 50
REPEATS = 7


def _model():
    from lifelens.models import ModelError, build_model, load_task_model, split_views
    from lifelens.tasks import get_task

    spec = get_task("plant")
    try:
        return load_task_model(spec), "shipped plant model"
    except ModelError:
        from lifelens.models import TaskModel

        full = build_model(spec)
        classifier, features, head = split_views(full)
        return TaskModel(spec, full, classifier, features, head, {}), "untrained plant architecture"


def run() -> dict:
    from lifelens import uncertainty
    from lifelens.models import predict_proba

    tm, which = _model()
    spec = tm.spec
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (SAMPLES, spec.input_size, spec.input_size, spec.channels)).astype(np.float32)
    one = images[:1]
    feats = uncertainty.features_of(tm, one)

    batched = best_of(lambda: uncertainty.mc_dropout_head(tm, feats, SAMPLES), REPEATS)
    looped = best_of(lambda: [uncertainty.mc_dropout_head(tm, feats, 1) for _ in range(SAMPLES)], REPEATS)
    mc_one_image = best_of(lambda: uncertainty.mc_dropout_predict(tm, one, SAMPLES), REPEATS)
    whole_network = best_of(lambda: uncertainty.mc_dropout_predict(tm, one, SAMPLES, head_only=False), 3)
    forward_batch = best_of(lambda: predict_proba(tm.classifier, images, batch_size=SAMPLES), REPEATS)
    return {
        "mc_dropout_model": which,
        "mc_dropout_loop_speedup": round(looped / batched, 2),
        "mc_dropout_over_batch_forward": round(mc_one_image / forward_batch, 3),
        "mc_dropout_whole_network_over_batch_forward": round(whole_network / forward_batch, 3),
        "mc_dropout_batched_head_ms": round(batched * 1e3, 2),
        "mc_dropout_one_image_ms": round(mc_one_image * 1e3, 2),
        "forward_batch_of_50_ms": round(forward_batch * 1e3, 2),
    }
