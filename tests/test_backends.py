"""A GPU machine trains with Keras 3 on the PyTorch backend (TensorFlow is the app's): the
project's own training command runs under ``KERAS_BACKEND=torch`` with TensorFlow hidden
(here on the CPU, the same code path a CUDA device takes; such a machine often has PyTorch
alone), and the `.keras` it writes loads under TensorFlow and predicts what PyTorch
predicted on the same real images."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from lifelens.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
TASK = next(iter(TASKS))

PREDICT_UNDER_TORCH = """
import sys, numpy as np, keras
from lifelens import data
from lifelens.models import load_model_file, predict_proba, split_views
from lifelens.tasks import get_task
spec = get_task(sys.argv[1])
x = data.load_prepared(spec, data.task_splits(spec)["test"][:8]).astype(np.float32)
from pathlib import Path; model = split_views(load_model_file(Path(sys.argv[2])))[0]
np.save(sys.argv[3], predict_proba(model, x))
print("tensorflow" in sys.modules, keras.backend.backend())
"""


def _torch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    hidden = [str(ROOT / "tests" / "without_tensorflow.py")]
    return subprocess.run([sys.executable, *hidden, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def test_a_member_trained_on_pytorch_predicts_the_same_under_tensorflow(tmp_path):
    from lifelens import data
    from lifelens.models import load_model_file, predict_proba, split_views
    from lifelens.tasks import get_task

    out, run = tmp_path / "out", tmp_path / "run"
    trained = _torch(["lifelens", "train", "--task", TASK, "--epochs", "1", "--limit", "24", "--member", "0",
                      "--out", str(out), "--run-dir", str(run)], ROOT)
    assert trained.returncode == 0, trained.stderr[-3000:]
    card = json.loads((out / f"{TASK}.json").read_text())
    assert card["keras_backend"] == "torch" and card["training_device"] in ("CPU", "GPU:0")
    model_file = out / f"{TASK}.keras"
    predicted = _torch(["-c", PREDICT_UNDER_TORCH, TASK, str(model_file), str(tmp_path / "torch.npy")], ROOT)
    assert predicted.returncode == 0 and predicted.stdout.strip().endswith("False torch"), predicted.stderr[-3000:]

    import keras

    assert keras.backend.backend() == "tensorflow"
    spec = get_task(TASK)
    x = data.load_prepared(spec, data.task_splits(spec)["test"][:8]).astype(np.float32)
    under_tf = predict_proba(split_views(load_model_file(model_file))[0], x)
    under_torch = np.load(tmp_path / "torch.npy")
    np.testing.assert_allclose(under_tf, under_torch, atol=1e-4)
    assert np.allclose(under_tf.sum(axis=1), 1, atol=1e-4)
