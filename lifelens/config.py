"""Project-wide settings: where the data lives, where caches go, how TF is set up.

The data location is one setting, the environment variable ``LIFELENS_DATA``,
defaulting to ``../shared/data`` relative to the project root.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_ROOT / "models"
ASSETS_DIR = PROJECT_ROOT / "assets"

log = logging.getLogger("lifelens")


def data_root() -> Path:
    """The folder holding one sub-folder per task (``images/`` + ``labels.csv``)."""
    value = os.environ.get("LIFELENS_DATA")
    if value:
        return Path(value).expanduser().resolve()
    return (PROJECT_ROOT / ".." / "shared" / "data").resolve()


def cache_root() -> Path:
    """Derived, re-computable files (decoded image arrays); never committed."""
    value = os.environ.get("LIFELENS_CACHE")
    root = Path(value) if value else PROJECT_ROOT / ".cache"
    root.mkdir(parents=True, exist_ok=True)
    return root


_DEVICE_LOGGED = False


def compute_device() -> str:
    """Configure the Keras backend once and return the device the models run on ("GPU:0" or "CPU").

    TensorFlow is the app's backend; training may also run with ``KERAS_BACKEND=torch`` on a
    GPU machine (CUDA through PyTorch), and its ``.keras`` files load and predict the same
    under TensorFlow (tests/test_backends.py).
    """
    global _DEVICE_LOGGED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if keras.backend.backend() == "torch":
        import torch

        device = "GPU:0" if torch.cuda.is_available() else "CPU"
        name, version = "PyTorch", torch.__version__
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus and not _DEVICE_LOGGED:
            for gpu in gpus:
                try:
                    tf.config.experimental.set_memory_growth(gpu, True)
                except RuntimeError:  # already initialised; harmless
                    pass
        device = "GPU:0" if gpus else "CPU"
        name, version = "TensorFlow", tf.__version__
    if not _DEVICE_LOGGED:
        log.info("LifeLens models run on %s (%s %s)", device, name, version)
        _DEVICE_LOGGED = True
    return device

