"""Training smoke runs on a handful of real images from every source: checkpoints, resume,
a two-member deep ensemble, the card."""
import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from lifelens import data
from lifelens.models import (ModelError, TaskModel, build_model, ensemble_proba, load_model_file, load_task_model,
                             member_probabilities, predict_proba, sha256_file, split_views)
from lifelens.tasks import TASKS, get_task


def _train(task, member, epochs, out, run, limit=12, extra=()):
    cmd = [sys.executable, "-m", "lifelens", "train", "--task", task, "--member", str(member), "--epochs", str(epochs),
           "--limit", str(limit), "--out", str(out), "--run-dir", str(run), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


def test_two_member_ensemble_on_every_source_then_resume(tmp_path):
    out, run0 = tmp_path / "out", tmp_path / "run0"
    recipe = get_task("skin").recipe
    assert recipe.fine_tune_epochs > 0  # the shipped skin recipe: from scratch, then fine-tuned with camera faults
    _train("skin", 0, 1, out, run0)
    stages = {stage: run0 / stage for stage in ("from_scratch", "fine_tune")}
    assert all((d / "last.keras").is_file() and (d / "best.keras").is_file() for d in stages.values())
    first = json.loads((stages["from_scratch"] / "state.json").read_text())
    assert len(first["history"]) == 1 and {"loss", "val_loss", "accuracy", "val_score"} <= set(first["history"][0])

    # A second call with more epochs resumes the first stage after epoch 1 instead of starting again;
    # the fine-tuning starts again, because the weights it started from are no longer the first stage's.
    log = _train("skin", 0, 2, out, run0)
    assert "resuming from_scratch after epoch 1" in log and "starting fine_tune again" in log
    assert [r["epoch"] for r in json.loads((stages["from_scratch"] / "state.json").read_text())["history"]] == [1, 2]
    tuned = json.loads((stages["fine_tune"] / "state.json").read_text())
    assert len(tuned["history"]) == recipe.fine_tune_epochs
    assert tuned["started_from"] == sha256_file(stages["from_scratch"] / "skin.keras")
    # Recipe trials, recorded in the member's row: mixup, camera faults, fine-tuning a shipped member.
    shipped = get_task("skin").model_path.with_name("skin.m1.keras")
    _train("skin", 1, 1, out, tmp_path / "run1", extra=("--mixup", "0.4", "--faults", "0.3", "--init-from", str(shipped)))

    card = json.loads((out / "skin.json").read_text())
    assert card["sha256"] == sha256_file(out / "skin.keras")
    # 12 images of each source (ISIC 2017 and HAM10000) in training and validation
    assert card["split"]["train"]["n"] == 24 and card["split"]["train"]["per_source"] == {"own": 12, "skin_ham10000": 12}
    assert card["sources"] == ["skin", "skin_ham10000"]
    assert (card["hyperparameters"]["epochs"], card["hyperparameters"]["fine_tune_epochs"]) == (2, recipe.fine_tune_epochs)
    assert "members" not in card["hyperparameters"]  # the ensemble's rows say how many there are
    rows = card["ensemble"]["members"]
    assert [r["member"] for r in rows] == [0, 1] and rows[1]["file"] == "skin.m1.keras"
    assert all(r["sha256"] == sha256_file(out / r["file"]) for r in rows)
    assert [r["mixup_alpha"] for r in rows] == [0.0, 0.4] and card["hyperparameters"]["mixup_alpha"] == 0.0
    assert [r["acquisition_faults"] for r in rows] == [recipe.acquisition_faults, 0.3]
    assert rows[0]["fine_tuned_from"]["epochs"] == 2 and rows[0]["epochs"] == recipe.fine_tune_epochs
    origin = rows[1]["fine_tuned_from"]
    shipped_row = next(r for r in json.loads(shipped.with_name("skin.json").read_text())["ensemble"]["members"]
                       if r["member"] == 1)
    assert origin["sha256"] == shipped_row["sha256"] == sha256_file(shipped)
    assert rows[1]["training_seconds"] == pytest.approx(shipped_row["training_seconds"] + rows[1]["fine_tuning_seconds"], abs=0.2)

    members = [load_model_file(out / r["file"], r["sha256"]) for r in rows]
    assert all(m.output_shape == (None, 3) and getattr(m, "optimizer", None) is None for m in members)
    # Two seeds give two different networks; the ensemble is their mean.
    spec = get_task("skin")
    x = data.load_prepared(spec, data.task_splits(spec)["test"][:6]).astype(np.float32)
    classifier, features, head = split_views(members[0])
    tm = TaskModel(spec, members[0], classifier, features, head, card, [classifier, split_views(members[1])[0]])
    each = member_probabilities(tm, x)
    assert each.shape == (2, 6, 3) and not np.allclose(each[0], each[1], atol=1e-4)
    np.testing.assert_allclose(ensemble_proba(tm, x), each.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(each[1], predict_proba(tm.members[1], x), atol=1e-6)
    # The fine-tuned member moved from the shipped one it started from, but stayed nearer to it than to member 0.
    start = predict_proba(split_views(load_model_file(shipped))[0], x)
    assert 1e-4 < np.abs(each[1] - start).max() and np.abs(each[1] - start).mean() < np.abs(each[1] - each[0]).mean()


def test_a_fine_tuning_recipe_trains_from_scratch_then_with_camera_faults(tmp_path):
    recipe = get_task("plant").recipe
    assert recipe.fine_tune_epochs > 0 and recipe.acquisition_faults > 0  # the shipped plant recipe
    log = _train("plant", 0, 1, tmp_path / "out", tmp_path / "run", limit=4)
    first, second = (json.loads((tmp_path / "run" / stage / "state.json").read_text())
                     for stage in ("from_scratch", "fine_tune"))
    assert len(first["history"]) == 1 and len(second["history"]) == recipe.fine_tune_epochs
    card = json.loads((tmp_path / "out" / "plant.json").read_text())
    start = tmp_path / "run" / "from_scratch" / "plant.keras"
    row = card["ensemble"]["members"][0]
    assert row["fine_tuned_from"]["sha256"] == sha256_file(start) and row["acquisition_faults"] == recipe.acquisition_faults
    assert row["training_seconds"] == pytest.approx(row["fine_tuned_from"]["training_seconds"] + row["fine_tuning_seconds"], abs=0.2)
    h = card["hyperparameters"]
    assert (h["epochs"], h["fine_tune_epochs"]) == (1, recipe.fine_tune_epochs) and "camera faults" in h["selection"]
    # The first stage saw clean images only; the second starts from its weights.
    assert json.loads((tmp_path / "run" / "from_scratch" / "plant.json").read_text())["ensemble"]["members"][0][
        "acquisition_faults"] == 0.0
    assert log.count("saved") == 2


@pytest.mark.parametrize("task_id", [t for t in TASKS if TASKS[t].extra_sources])
def test_training_splits_keep_the_own_split_and_group_every_source(task_id):
    spec = get_task(task_id)
    own, everything = data.task_splits(spec), data.training_splits(spec)
    for part in ("train", "val", "test"):
        assert [s for s in everything[part] if not s.source] == own[part]  # the headline split is unchanged
    groups = {part: {s.group for s in everything[part] if s.source} for part in everything}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["val"])
    # A source that only tests (a shifted set) is in the test split alone.
    assert {s.source for s in everything["train"]} == {""} | {src.folder for src in spec.extra_sources if src.trains}
    assert {s.source for s in everything["val"]} == {""} | {src.folder for src in spec.extra_sources if src.trains}
    assert {s.source for s in everything["test"]} == {""} | {src.folder for src in spec.extra_sources}
    for s in everything["test"][:: max(1, len(everything["test"]) // 5)]:
        assert spec.image_path(s).is_file()


def test_class_weights_balance_the_skewed_tasks():
    labels = np.array([0] * 10 + [1] * 90)
    w = data.class_weights(labels, 2, "balanced")
    assert w[0] / w[1] == pytest.approx(9.0)
    s = data.class_weights(labels, 2, "sqrt")
    assert abs(s[0] / s[1] - 3.0) < 1e-9
    assert data.class_weights(labels, 2, None) is None


def test_mixup_blends_real_images_and_their_labels_by_one_lambda():
    from lifelens.train import mixer

    spec = get_task("plant")
    # one test image of each of six classes, so a blended label names both of its images
    chosen = data.every_class_in_turn(data.task_splits(spec)["test"], 6)
    x = data.load_prepared(spec, chosen).astype(np.float32)
    labels = np.array([s.label for s in chosen])
    assert len(set(labels)) == 6
    y = np.eye(spec.num_classes, dtype=np.float32)[labels]
    mixed_x, mixed_y = mixer(1.0, seed=3)(x, y, 0, 0)
    np.testing.assert_allclose(mixed_y.sum(axis=1), 1.0, atol=1e-6)
    own = mixed_y[np.arange(6), labels]  # each image's own share: lambda, or 1 where it met itself
    lam = own[own < 1 - 1e-6]
    assert len(lam) >= 4 and np.allclose(lam, lam[0]) and 0.01 < lam[0] < 0.99  # one lambda, really mixed
    for i in range(6):
        partner = [j for j in range(6) if j != i and mixed_y[i, labels[j]] > 1e-6]
        expected = own[i] * x[i] + (1 - own[i]) * x[partner[0]] if partner else x[i]
        np.testing.assert_allclose(mixed_x[i], expected, atol=1e-2)


def test_a_member_fine_tuned_at_another_input_size_keeps_the_weights_it_started_from(tmp_path):
    """``train --input-size`` (a recipe trial: do more pixels pay?) starts from a member trained at
    the task's size; the convolution weights carry over because they do not depend on the size."""
    spec = get_task("retina")
    shipped = spec.model_path.with_name("retina.m1.keras")
    size = spec.input_size - 64
    _train("retina", 1, 1, tmp_path / "out", tmp_path / "run", limit=4,
           extra=("--input-size", str(size), "--init-from", str(shipped), "--train-sources", "own"))
    row = json.loads((tmp_path / "out" / "retina.json").read_text())["ensemble"]["members"][0]
    # --train-sources (another recipe trial): only the own folder's images trained, and the row says so
    assert row["training_images"] == {"retina": 4}
    assert row["input_size"] == size
    tuned = load_model_file(tmp_path / "out" / row["file"], row["sha256"])
    assert tuned.input_shape == (None, size, size, 3) and row["fine_tuned_from"]["sha256"] == sha256_file(shipped)
    start = load_model_file(shipped).get_layer("block1_conv1").get_weights()[0]
    fresh = build_model(spec, seed=1).get_layer("block1_conv1").get_weights()[0]
    moved = tuned.get_layer("block1_conv1").get_weights()[0]
    assert np.abs(moved - start).mean() < 0.1 * np.abs(fresh - start).mean()
    # The shipped ensemble is one size: a task told another size refuses its members by name.
    with pytest.raises(ModelError, match=f"retina.keras takes {spec.input_size} px images"):
        load_task_model(dataclasses.replace(spec, input_size=size))


@pytest.mark.parametrize("task", ["plant", "mammo"])
def test_augmentation_moves_real_images_within_range_and_repeats_its_draws(task):
    """Each batch draws from (seed, epoch, index): the same batch again is the same images, the
    next batch is not; values stay in [0, 255]; a film keeps its side (never mirrored), so its
    breast stays on the left."""
    from lifelens.train import augmenter

    spec = get_task(task)
    x = data.load_prepared(spec, data.task_splits(spec)["test"][:8])
    y = np.zeros((8, spec.num_classes), np.float32)
    augment = augmenter(spec.augmentation, seed=5)
    first, labels = augment(x, y, 2, 7)
    assert first.shape == x.shape and first.dtype == np.float32 and labels is y
    assert 0.0 <= first.min() and first.max() <= 255.0
    np.testing.assert_array_equal(first, augment(x, y, 2, 7)[0])
    assert np.abs(first - augment(x, y, 2, 8)[0]).mean() > 1.0
    assert np.abs(first - x).mean() > 1.0  # really augmented
    if task == "mammo":  # the brighter half of a film stays where it was
        left = lambda a: a[:, :, : a.shape[2] // 2].mean(axis=(1, 2, 3))  # noqa: E731
        right = lambda a: a[:, :, a.shape[2] // 2:].mean(axis=(1, 2, 3))  # noqa: E731
        np.testing.assert_array_equal(left(x) > right(x), left(first) > right(first))


def test_cross_validation_folds_cover_every_film_once_and_keep_a_patient_together():
    spec = get_task("mammo")
    splits = data.task_splits(spec)
    films = sorted(splits["train"] + splits["val"], key=lambda s: s.path)  # never the test split
    parts = data.grouped_folds(films, 5)
    assert sorted(i for part in parts for i in part) == list(range(len(films)))
    owner = {}
    for k, part in enumerate(parts):
        assert {films[i].label for i in part} == {0, 1}  # stratified: every fold holds both classes
        for i in part:
            assert owner.setdefault(films[i].group, k) == k  # a patient's two films in one fold
    assert len(owner) < len(films) and max(map(len, parts)) - min(map(len, parts)) <= 4
    assert data.grouped_folds(films, 5) == parts  # deterministic
    assert data.grouped_folds(films, 5, seed=1) != parts


def test_training_on_a_given_split_records_that_split(tmp_path):
    """``train(splits=...)``: a cross-validation fold trains and selects on the films it is given."""
    from lifelens.train import train

    spec = get_task("mammo")
    own = data.task_splits(spec)
    with_lesion = [s for s in own["train"] if s.lesions]
    normal = [s for s in own["train"] if s.label == 0]
    given = {"train": with_lesion[:4] + normal[:4], "val": with_lesion[4:6] + normal[4:6], "test": own["test"][:3]}
    path = train(spec, tmp_path / "out", epochs=1, member=2, run_dir=tmp_path / "run", splits=given, log=lambda *_: None)
    row = json.loads((tmp_path / "out" / "mammo.json").read_text())["ensemble"]["members"][0]
    assert row["member"] == 2 and row["training_images"] == {"mammo": 8}
    assert [row["split"][part]["n"] for part in ("train", "val", "test")] == [8, 4, 3]
    assert row["split"]["val"]["paths_sha256_16"] == data.describe_split(given)["val"]["paths_sha256_16"]
    assert row["split"]["val"]["paths_sha256_16"] != data.describe_split(own)["val"]["paths_sha256_16"]
    probs = predict_proba(load_model_file(path), data.load_prepared(spec, given["test"]))
    assert probs.shape == (3, 2) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_a_member_keeps_the_epoch_its_recipe_selects_and_batchnorm_as_the_recipe_says(tmp_path):
    """mammo keeps its last epoch with the moving statistics as trained (both chosen by
    cross-validation); the other tasks keep their best epoch by the validation score."""
    from lifelens.train import _final_model

    spec = get_task("mammo")
    assert (spec.recipe.epoch_selection, spec.recipe.recalibrate_batchnorm) == ("last", False)
    assert {get_task(t).recipe.epoch_selection for t in ("plant", "skin", "retina")} == {"best"}
    # Two different networks stand in the run folder as the last and the best epoch.
    for name, seed in (("last.keras", 1), ("best.keras", 2)):
        build_model(spec, seed=seed).save(tmp_path / name)
    own = data.task_splits(spec)
    x_train = data.load_prepared(spec, own["train"][:8])
    x_val, y_val = data.load_prepared(spec, own["val"][:12]), np.array([s.label for s in own["val"][:12]])

    def kept(recipe_change):
        variant = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, **recipe_change))
        return _final_model(variant, tmp_path, 0, spec.recipe.epochs, x_train, x_val, y_val, log=lambda *_: None)

    last = _saved_weights(tmp_path / "last.keras")
    final, note = kept({})
    assert all(np.array_equal(a, b) for a, b in zip(final.get_weights(), last))  # moving statistics untouched too
    assert "does not recalibrate" in note["batchnorm"]
    best = _saved_weights(tmp_path / "best.keras")
    final, note = kept({"epoch_selection": "best", "recalibrate_batchnorm": True})
    kernels = [i for i, w in enumerate(final.weights) if "kernel" in w.path]
    assert kernels and all(np.array_equal(final.get_weights()[i], best[i]) for i in kernels)
    assert not np.array_equal(best[kernels[0]], last[kernels[0]])
    assert len(note["validation_score_before_after_bn_recalibration"]) == 2
    with pytest.raises(ValueError, match="epoch_selection"):
        dataclasses.replace(spec.recipe, epoch_selection="median")


def test_a_member_that_averages_its_last_epochs_keeps_the_mean_of_their_weights(tmp_path):
    """Stochastic weight averaging, trained for real on a few films: the run keeps the weights of
    the last k epochs only, and the saved member is their element-wise mean, moving statistics
    included (the recipe keeps them as trained), not the last epoch."""
    from lifelens.train import averaged_epochs, train

    spec = get_task("mammo")
    variant = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, average_last_epochs=2))
    assert averaged_epochs(variant, 16) == [15, 16] and averaged_epochs(spec, 16) == []
    run = tmp_path / "run"
    path = train(variant, tmp_path / "out", epochs=3, run_dir=run, limit=4, log=lambda *_: None)
    assert sorted(p.name for p in run.glob("weights_epoch*.npz")) == ["weights_epoch002.npz", "weights_epoch003.npz"]
    epochs = [np.load(run / f"weights_epoch00{e}.npz") for e in (2, 3)]
    saved, last = load_model_file(path), _saved_weights(run / "last.keras")
    moving = [i for i, w in enumerate(saved.weights) if "moving_variance" in w.path]
    assert moving
    for i, w in enumerate(saved.get_weights()):
        assert np.allclose(w, (epochs[0][f"arr_{i}"] + epochs[1][f"arr_{i}"]) / 2, atol=1e-6)
    assert not np.allclose(saved.get_weights()[moving[0]], last[moving[0]])
    row = json.loads((tmp_path / "out" / "mammo.json").read_text())["ensemble"]["members"][0]
    assert row["averaged_epochs"] == [2, 3] and row["selected_epoch"] == 3
    with pytest.raises(ValueError, match="epoch_selection"):
        dataclasses.replace(spec.recipe, epoch_selection="best", average_last_epochs=4)


def _saved_weights(path):
    import keras

    return keras.saving.load_model(path, safe_mode=True).get_weights()
