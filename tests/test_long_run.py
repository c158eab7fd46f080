"""Long runs: 500 consecutive explanations in one process (the CAM family, Grad-CAM under
MC dropout, integrated gradients and a SHAP call every 25th) with batches of 1 and 2 images.
After a warm-up, resident memory grows by less than 150 MB and no TensorFlow function is
traced again: LifeLens's own functions have fixed input signatures (one trace each) and
shap's per-class gradient functions stay traced once warm.
"""
import gc

import numpy as np
import psutil
import pytest

import conftest
from lifelens.tasks import get_task

TASK = "plant"
CALLS = 500
MAX_GROWTH_MB = 150
CAMS = ("gradcam", "gradcam++", "hirescam", "layercam", "eigencam")
SHAP_OPTIONS = {"task": TASK, "nsamples": 8, "background_size": 8, "seed": 0}


def _schedule(n_images: int):
    """(kind, first image, batch size) for each of the CALLS calls, deterministic."""
    out = []
    for call in range(CALLS):
        start, batch = call % n_images, 1 + call % 2
        if call % 25 == 24:
            out.append(("shap", call % n_images, 1))
        elif call % 10 == 9:
            out.append(("gradcam_mc", start, batch))
        elif call % 50 == 13:
            out.append(("integrated_gradients", start, 1))
        else:
            out.append((CAMS[call % len(CAMS)], start, batch))
    return out


def _shap_traces(model) -> int:
    """Traces of shap's gradient tf.functions (one per explained class) for the cached explainer."""
    from lifelens.explain.shap_gradient import explainer_for

    explainer = explainer_for(model, None, SHAP_OPTIONS["task"], SHAP_OPTIONS["background_size"],
                              SHAP_OPTIONS["seed"])
    functions = [f for f in getattr(explainer.explainer, "gradients", []) if f is not None]
    return sum(int(f.experimental_get_tracing_count()) for f in functions)


def _rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def test_500_explanations_keep_memory_flat_and_never_retrace():
    if not get_task(TASK).model_path.is_file():
        pytest.skip(f"models/{TASK}.keras is not there yet")
    from lifelens.explain import explain, tracing_counts

    model = conftest.shipped_model(TASK).classifier
    _, images = conftest.test_images(TASK, 12, per_class=True)
    padded = np.concatenate([images, images[:1]])  # so a batch of 2 can start at the last image

    def run(kind, start, batch):
        x = padded[start:start + batch]
        if kind == "gradcam_mc":
            result = explain(model, x, method="gradcam_mc", samples=8)
        elif kind == "shap":
            result = explain(model, x, method="shap", **SHAP_OPTIONS)
        elif kind == "integrated_gradients":
            result = explain(model, x, method=kind, steps=16)
        else:
            result = explain(model, x, method=kind)
        assert result.maps.shape == (batch,) + images.shape[1:3] and np.isfinite(result.maps).all()

    schedule = _schedule(len(images))
    # Warm-up: every (kind, image, batch size) the run will use, once.
    for item in sorted(set(schedule)):
        run(*item)
    traces_before, shap_before = tracing_counts(), _shap_traces(model)
    rss_before = _rss_mb()

    for item in schedule:
        run(*item)

    growth = _rss_mb() - rss_before
    traces_after, shap_after = tracing_counts(), _shap_traces(model)
    print(f"\nlong run: {CALLS} explanations, resident memory {rss_before:.0f} MB -> +{growth:.1f} MB; "
          f"LifeLens tf.functions {len(traces_after)}, shap gradient traces {shap_after}")
    assert growth < MAX_GROWTH_MB, f"resident memory grew by {growth:.0f} MB over {CALLS} explanations"
    ours = {k: v for k, v in traces_after.items() if k.startswith(model.name + ":")}
    # the five CAM variants share one compiled pass; with probs, gradients and the MC-dropout map
    assert any(k.endswith(":cam@block4_relu2") for k in ours) and len(ours) >= 4, ours
    # A function missing afterwards belonged to a model (of an earlier test) collected meanwhile.
    retraced = {k: v for k, v in traces_after.items() if traces_before.get(k) != v}
    assert not retraced, f"a tf.function was traced or retraced during the run: {retraced}"
    assert set(ours.values()) == {1}, f"fixed signatures mean one trace per function: {ours}"
    assert shap_after == shap_before, "shap's gradient functions were retraced during the run"
