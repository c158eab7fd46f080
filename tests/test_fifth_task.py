"""A fifth task is one spec: registered here, trained on a handful of real images, and then
`train`, `evaluate`, `predict`, `explain` and the app's task page work for it with no other
file edited. (HAM10000's original diagnosis column, three classes, from skin_ham10000/.)"""
from __future__ import annotations

import csv

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lifelens import config, data, tasks
from lifelens.tasks import ClassSpec, ExtraSource, TaskSpec, TrainingRecipe

FOLDER = "skin_ham10000"


def _fifth_spec() -> TaskSpec:
    return TaskSpec(
        id="ham_dx",
        title="HAM10000 diagnosis (test task)",
        short="HAM10000 dermoscopy by original diagnosis",
        classes=(ClassSpec("mel", "Melanoma", "malignant"), ClassSpec("nv", "Nevus", "a mole"),
                 ClassSpec("bkl", "Benign keratosis", "benign keratosis-like lesions")),
        input_size=64,
        channels=3,
        data_folder=FOLDER,
        label_reader=tasks._by_label_column("dx", "lesion_id"),
        prepare=tasks._prepare_colour_constant,
        augmentation="dermoscopy",
        key_metrics=("balanced_accuracy", "macro_auc"),
        citation="Tschandl P. et al. (2018) The HAM10000 dataset. Sci. Data 5:180161.",
        licence="CC BY-NC 4.0",
        modality="RGB dermoscopy image of one skin lesion",
        recipe=TrainingRecipe(epochs=1, stages=((8, 1), (16, 1), (16, 1)), batch_size=8, members=2),
        hierarchy_examples=("edges", "texture", "blobs", "the lesion"),
    )


@pytest.fixture(scope="module")
def fifth(tmp_path_factory):
    """The task registered for this module, with its models in a temporary folder."""
    models = tmp_path_factory.mktemp("models")
    spec = _fifth_spec()
    saved = config.MODELS_DIR
    config.MODELS_DIR = models
    tasks.TASKS[spec.id] = spec
    try:
        from lifelens import train

        for member in (0, 1):
            train.train(spec, models, epochs=1, member=member, limit=10, run_dir=models / f"run{member}",
                        log=lambda *_: None)
        yield spec
    finally:
        tasks.TASKS.pop(spec.id, None)
        config.MODELS_DIR = saved


def _small_folder(tmp_path, spec, n=12):
    """A labelled folder in the shared-data format: test-split images linked, plus their rows."""
    src = spec.data_dir()
    folder = tmp_path / "held_out"
    (folder / "images").mkdir(parents=True)
    keep = {s.path for s in data.task_splits(spec)["test"][:n]}
    with open(src / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["path"] in keep]
    for r in rows:
        (folder / "images" / r["path"]).symlink_to(src / "images" / r["path"])
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_the_fifth_task_trains_evaluates_predicts_and_explains(fifth, tmp_path):
    from lifelens import evaluate, explain
    from lifelens.commands.predict import records
    from lifelens.models import load_task_model

    tm = load_task_model(fifth)
    assert len(tm.members) == 2 and tm.classifier.output_shape == (None, 3)
    result = evaluate.evaluate_folder(tm, fifth, _small_folder(tmp_path, fifth), with_confidence=False)
    assert result["n"] == 12 and result["task"] == "ham_dx" and 0 <= result["balanced_accuracy"] <= 1
    x = data.load_prepared(fifth, data.task_splits(fifth)["test"][:3]).astype(np.float32)
    out = list(records(tm, ["a", "b", "c"], list(x), None, 5, 0))
    assert [r["task"] for r in out] == ["ham_dx"] * 3 and out[0]["prediction"] in fifth.class_names
    assert out[0]["bayesian"]["ensemble"]["samples"] == 2
    maps = explain.explain(tm.classifier, x, method="gradcam").maps
    assert maps.shape == (3, 64, 64) and np.isfinite(maps).all()


def test_the_fifth_task_has_a_page(fifth):
    def page():
        from ui import task_page

        task_page.render("ham_dx")

    at = AppTest.from_function(page, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("HAM10000 diagnosis" in t.value for t in at.title)
    assert any(m.label == "Softmax confidence" for m in at.metric)


def test_no_task_id_is_spelled_outside_the_task_definitions():
    """Everything task-specific lives on the spec: no module names a task by its id."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    pattern = re.compile(r"""["'](plant|skin|mammo|retina)["']""")
    offenders = []
    for folder in ("lifelens", "ui", "app_pages"):
        for path in (root / folder).rglob("*.py"):
            if path.name == "tasks.py" and path.parent.name == "lifelens":
                continue
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                if pattern.search(line):
                    offenders.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    assert not offenders, offenders
