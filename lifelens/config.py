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
    """Configure TensorFlow once and return the device the models run on ("GPU:0" or "CPU")."""
    global _DEVICE_LOGGED
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus and not _DEVICE_LOGGED:
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:  # already initialised; harmless
                pass
    device = "GPU:0" if gpus else "CPU"
    if not _DEVICE_LOGGED:
        log.info("LifeLens models run on %s (TensorFlow %s)", device, tf.__version__)
        _DEVICE_LOGGED = True
    return device
