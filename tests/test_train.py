"""A training smoke run on a handful of real images: checkpoints, resume, card."""
import json
import subprocess
import sys

import numpy as np

from lifelens.models import load_model_file, sha256_file
from lifelens.train import class_weights


def test_one_short_epoch_on_real_images_then_resume(tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    cmd = [sys.executable, "-m", "lifelens", "train", "--task", "skin", "--epochs", "1", "--limit", "24",
           "--out", str(out), "--run-dir", str(run)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert (run / "last.keras").is_file() and (run / "best.keras").is_file()
    state = json.loads((run / "state.json").read_text())
    assert len(state["history"]) == 1 and {"loss", "val_loss", "accuracy"} <= set(state["history"][0])

    # A second call with more epochs resumes after epoch 1 instead of starting again.
    second = subprocess.run(cmd[:7] + ["2"] + cmd[8:], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resuming after epoch 1" in second.stdout + second.stderr
    state = json.loads((run / "state.json").read_text())
    assert [r["epoch"] for r in state["history"]] == [1, 2]

    card = json.loads((out / "skin.json").read_text())
    assert card["sha256"] == sha256_file(out / "skin.keras")
    assert card["split"]["train"]["n"] == 24 and card["hyperparameters"]["epochs"] == 2
    model = load_model_file(out / "skin.keras", card["sha256"])
    assert model.output_shape == (None, 3)
    assert getattr(model, "optimizer", None) is None  # shipped uncompiled: no optimizer state in the file


def test_class_weights_balance_the_skewed_tasks():
    labels = np.array([0] * 10 + [1] * 90)
    w = class_weights(labels, 2, "balanced")
    assert w[0] / w[1] == 9.0
    s = class_weights(labels, 2, "sqrt")
    assert abs(s[0] / s[1] - 3.0) < 1e-9
    assert class_weights(labels, 2, None) is None
