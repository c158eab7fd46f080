"""Shared fixtures: real images from the data folder and the shipped models (loaded once)."""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from lifelens import config, data  # noqa: E402
from lifelens.tasks import TASKS, get_task  # noqa: E402

TASK_IDS = list(TASKS)



@pytest.fixture(scope="session")
def data_root():
    root = config.data_root()
    if not root.is_dir():
        pytest.fail(f"The data folder {root} is missing: the tests run on real images (set LIFELENS_DATA).")
    return root


_MODELS: dict = {}


def shipped_model(task_id: str):
    """The shipped TaskModel for a task, loaded once per test session."""
    from lifelens.models import load_task_model

    if task_id not in _MODELS:
        _MODELS[task_id] = load_task_model(get_task(task_id))
    return _MODELS[task_id]


@pytest.fixture(scope="session")
def load_shipped():
    return shipped_model


def test_images(task_id: str, n: int, split: str = "test", per_class: bool = False):
    """(samples, prepared float32 (n, S, S, C)) from our own split of the real data.

    ``per_class``: take the first images of each class in turn so every class appears.
    """
    spec = get_task(task_id)
    items = data.task_splits(spec)[split]
    if per_class:
        items = data.every_class_in_turn(items, n)
    else:
        items = items[:n]
    prepared = data.load_prepared(spec, items).astype(np.float32)
    return items, prepared


@pytest.fixture(scope="session")
def real_images():
    return test_images


test_images.__test__ = False  # a helper whose name pytest would otherwise collect
