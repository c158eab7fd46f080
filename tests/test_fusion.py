"""Late fusion of the networks with the gradient-boosted model: the formula, the choice made on
validation images, the shipped file, and a missing or damaged one."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import TASK_IDS, shipped_model, test_images
from lifelens import fusion
from lifelens.models import ModelError, member_probabilities, sha256_file, temper
from lifelens.tasks import get_task


def _skin_validation(n: int):
    """(members' own softmax (M, n, K), labels (n,)) on skin's first ``n`` validation images, every class."""
    samples, x = test_images("skin", n, split="val", per_class=True)
    return member_probabilities(shipped_model("skin"), x, tta=False, tempered=False), np.array([s.label for s in samples])


def test_fusion_without_the_boosted_model_is_temperature_scaling():
    raw, _ = _skin_validation(12)
    anything = np.random.default_rng(0).dirichlet(np.ones(raw.shape[-1]), raw.shape[1])
    np.testing.assert_allclose(fusion.fuse(raw, anything, 1 / 0.8, 0.0), temper(raw, 0.8), atol=1e-5)
    fused = fusion.fuse(raw, anything, 1.0, 0.5)
    np.testing.assert_allclose(fused.sum(axis=-1), 1.0, atol=1e-5)
    # a product of experts: where the boosted model leans to a class, every member leans further to it
    lean = anything.argmax(axis=1)
    rows = np.arange(len(lean))
    assert (fused[:, rows, lean] >= raw[:, rows, lean] - 1e-6).all()


def test_a_model_that_knows_nothing_is_not_fused_and_one_that_knows_is():
    raw, labels = _skin_validation(90)
    groups = list(range(len(labels)))
    rng = np.random.default_rng(0)
    guessing = rng.dirichlet(np.ones(raw.shape[-1]), len(labels))  # confident at random, blind to the image
    assert not fusion.choose_fusion(raw, guessing, labels, groups)["used"]
    # a model right four times in five, with honest confidence, adds what the networks lack
    called = np.where(rng.random(len(labels)) < 0.8, labels, (labels + 1) % raw.shape[-1])
    knowing = np.full(raw.shape[1:], 0.1)
    knowing[np.arange(len(labels)), called] = 0.8
    chosen = fusion.choose_fusion(raw, knowing, labels, groups)
    crossed = chosen["validation"]["cross_fitted_nll"]
    assert chosen["used"] and chosen["companion_weight"] > 0.3 and crossed["fused"] < crossed["networks"]


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_the_shipped_prediction_is_the_cards_fusion_or_temperature(task_id):
    spec = get_task(task_id)
    tm = shipped_model(task_id)
    _, x = test_images(task_id, 4, per_class=True)
    raw = member_probabilities(tm, x, tempered=False)
    record = tm.card["fusion"]
    if not record["used"]:
        assert tm.companion is None and not fusion.companion_path(spec).exists()
        np.testing.assert_allclose(member_probabilities(tm, x), temper(raw, tm.card["ensemble"]["temperature"]), atol=1e-6)
        return
    path = spec.model_path.parent / record["file"]
    assert sha256_file(path) == record["sha256"] and path.stat().st_size < 20 * 2**20  # every shipped file under 20 MB
    crossed = record["validation"]["cross_fitted_nll"]
    assert record["companion_weight"] > 0 and crossed["fused"] < crossed["networks"]
    boosted = tm.companion.predict_proba(np.clip(np.rint(x), 0, 255).astype(np.uint8))
    expected = fusion.fuse(raw, boosted, record["network_weight"], record["companion_weight"])
    np.testing.assert_allclose(member_probabilities(tm, x), expected, atol=1e-5)
    # the card keeps the networks alone beside the shipped, fused prediction
    assert tm.card["network_ensemble_metrics"]["n"] == tm.card["metrics"]["n"]
    assert "networks alone" in tm.card["ensemble_vs_boosted"]


def test_a_missing_or_damaged_boosted_model_file_is_refused_by_name(tmp_path):
    path = tmp_path / "skin.boosted.skops"
    with pytest.raises(ModelError, match="skin.boosted.skops is missing"):
        fusion.load_companion(path)
    path.write_bytes(b"\x80\x04 not a pickle at all")
    with pytest.raises(ModelError, match="skin.boosted.skops cannot be read"):
        fusion.load_companion(path)
    with pytest.raises(ModelError, match="does not match the sha256"):
        fusion.load_companion(path, expected_sha256="0" * 64)


def test_a_boosted_model_file_holding_code_is_refused(tmp_path):
    """skops names every type a file holds; anything beyond the fitted trees is refused, so a
    file that would call os.system on load never gets that far."""
    import os

    import skops.io
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "skin.boosted.skops"
    skops.io.dump(FunctionTransformer(os.system), path)
    with pytest.raises(ModelError, match="skin.boosted.skops cannot be read"):
        fusion.load_companion(path)


def test_reading_a_boosted_model_leaves_pytorch_unimported_yet_importable():
    """skops' import walks every scikit-learn package, which would import PyTorch (0.9 s of a
    cold start) through scikit-learn's array-API shim; reading a boosted model must not, and
    PyTorch must import normally afterwards (a GPU machine trains Keras on it)."""
    import subprocess
    import sys
    from pathlib import Path

    script = ("import sys; from lifelens import fusion; from lifelens.tasks import get_task; "
              "fusion.load_companion(fusion.companion_path(get_task('skin'))); "
              "print('torch' in sys.modules, 'skops.io' in sys.modules); "
              "import torch; print(torch.ones(2).sum().item())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "True", "2.0"]
