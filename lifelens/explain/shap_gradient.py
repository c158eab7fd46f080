"""SHAP values by expected gradients (shap.GradientExplainer; Erion et al. 2021).

Integrated gradients averaged over baselines drawn from a background set: here
``background_size`` training images of the task, drawn class by class from the TRAIN
split (``lifelens.data``), so attributions say "compared with typical images of this task".
The explainer (and its compiled gradient functions) is cached per model and background
(in the model's handle, on a shared-weights copy, so the cache never keeps a model alive).
``nsamples`` (background image, interpolation point) pairs are drawn per image.
Attributions are in probability units, summed over colour channels.
"""
from __future__ import annotations

import re
import threading
import warnings

import numpy as np

from lifelens.explain.base import BUILD_LOCK, Method, handle_for, positive_part, register

_SHAP_LOCK = threading.Lock()


def task_of(model):
    """The TaskSpec a shipped LifeLens model belongs to (from its name), or None."""
    from lifelens.tasks import TASKS

    match = re.match(r"lifelens_([a-z]+)", getattr(model, "name", ""))
    return TASKS.get(match.group(1)) if match else None


def background_images(spec, size: int = 32, seed: int = 0) -> np.ndarray:
    """float32 (size, S, S, C) training images of ``spec``, classes taken in turn (deterministic)."""
    from lifelens import data

    train = data.task_splits(spec)["train"]
    if not train:
        raise ValueError(f"The {spec.id} training split is empty; SHAP needs background images.")
    rng = np.random.default_rng(seed)
    by_class: dict[int, list] = {}
    for sample in train:
        by_class.setdefault(sample.label, []).append(sample)
    pools = [list(rng.permutation(len(items))) for _, items in sorted(by_class.items())]
    groups = [items for _, items in sorted(by_class.items())]
    chosen = []
    while len(chosen) < min(size, len(train)):
        for pool, items in zip(pools, groups):
            if pool and len(chosen) < size:
                chosen.append(items[pool.pop()])
    return data.load_prepared(spec, chosen).astype(np.float32)


def _import_shap():
    """Import shap on a thread of its own.

    shap keeps the ImportError of each optional extension it lacks (GPU tree, pyspark),
    and a kept traceback pins every frame below it, with their locals. Imported from a
    caller's stack that would pin the caller's model for the life of the process.
    """
    import sys

    if "shap" not in sys.modules:
        thread = threading.Thread(target=__import__, args=("shap",), name="lifelens-import-shap")
        thread.start()
        thread.join()
    import shap

    return shap


def explainer_for(model, background: np.ndarray | None = None, task=None, background_size: int = 32,
                  seed: int = 0):
    """The cached shap.GradientExplainer of ``model`` for a background set.

    background: float32 (B, H, W, C) images, or None to draw ``background_size`` images from
    the TRAIN split of ``task`` (a TaskSpec or id; default: inferred from a shipped model's name).
    """
    from lifelens.tasks import get_task

    if background is None:
        spec = get_task(task) if isinstance(task, str) else task or task_of(model)
        if spec is None:
            raise ValueError(f"SHAP needs background images: pass task= or background= for model {model.name!r}.")
        key = ("task", spec.id, int(background_size), int(seed))
    else:
        background = np.asarray(background, dtype=np.float32)
        key = ("array", background.shape, hash(background.tobytes()))
    handle = handle_for(model)
    found = handle.explainers.get(key)
    if found is not None:
        return found
    shap = _import_shap()
    with BUILD_LOCK:
        if key not in handle.explainers:
            if background is None:
                background = background_images(spec, background_size, seed)
            explainer = shap.GradientExplainer(handle.shared_copy(), background, batch_size=64)
            for output in range(len(explainer.explainer.gradients)):
                # shap builds one tf.function per class from the same code: each is traced once,
                # which TF's frequent-retracing heuristic would misreport as retracing.
                explainer.explainer.gradient(output)._omit_frequent_tracing_warning = True
            handle.explainers[key] = explainer
        return handle.explainers[key]


@register
class ExpectedGradientsSHAP(Method):
    id = "shap"
    name = "SHAP (expected gradients)"
    description = "Pixel attributions averaged over training images as baselines; red for, blue against the class."
    signed = True
    defaults = {"nsamples": 64, "background_size": 32, "task": None, "background": None, "seed": 0}
    fast = {"nsamples": 16}  # the interactive setting; the defaults are the precise one

    def attribute(self, images, targets):
        opts = self.options
        explainer = explainer_for(self.model, opts["background"], opts["task"], opts["background_size"], opts["seed"])
        single = self.handle.single_sigmoid
        # A single sigmoid output p is explained as is; class 0 (1 - p) is its negative.
        ranks = np.zeros((len(images), 1), np.int64) if single else targets[:, None].astype(np.int64)
        with _SHAP_LOCK:  # shap reseeds numpy's global generator: one explanation at a time, state restored
            state = np.random.get_state()
            try:
                with warnings.catch_warnings():
                    # shap passes the batch as a one-element list; Keras warns about the structure.
                    warnings.filterwarnings("ignore", message="The structure of `inputs`")
                    values, _ = explainer.shap_values(images, nsamples=int(opts["nsamples"]), ranked_outputs=ranks,
                                                      output_rank_order="custom", rseed=int(opts["seed"]))
            finally:
                np.random.set_state(state)
        signed = np.asarray(values, dtype=np.float32)[..., 0].sum(axis=-1)  # (N, H, W)
        if single:
            signed = np.where((targets == 0)[:, None, None], -signed, signed)
        return positive_part(signed), signed.astype(np.float32), {}
