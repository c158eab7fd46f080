"""Every shipped model loads (checksum verified), predicts real images well above chance,
and the evaluate command keeps its JSON contract."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import TASK_IDS, shipped_model, test_images
from lifelens import data
from lifelens.evaluate import classification_metrics
from lifelens.models import ensemble_proba, member_probabilities, predict_proba, sha256_file
from lifelens.tasks import get_task


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_shipped_model_loads_and_predicts_real_images(task_id):
    spec = get_task(task_id)
    tm = shipped_model(task_id)
    assert tm.card["sha256"] == sha256_file(spec.model_path)
    assert spec.model_path.stat().st_size < 20 * 2**20
    samples, x = test_images(task_id, 40, per_class=True)
    probs = predict_proba(tm.classifier, x)
    assert probs.shape == (len(x), spec.num_classes)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    labels = np.array([s.label for s in samples])
    balanced = classification_metrics(spec, labels, probs)["balanced_accuracy"]
    # Better than chance, one-sided at the 5% level (z = 1.645) under the null of a guessing model:
    # multi-class by balanced accuracy (binomial error of a guess on this many images); binary by
    # ROC AUC (Hanley & McNeil's error of AUC = 0.5), since a binary model is used by its ranking.
    z = 1.645
    if spec.num_classes == 2:
        positives, negatives = int((labels == 1).sum()), int((labels == 0).sum())
        score = classification_metrics(spec, labels, probs)["macro_auc"]
        floor = 0.5 + z * np.sqrt((positives + negatives + 1) / (12.0 * positives * negatives))
    else:
        chance = 1.0 / spec.num_classes
        score = balanced
        floor = chance + z * np.sqrt(chance * (1.0 - chance) / len(labels))
    assert score > floor, f"{task_id}: {score:.3f} is not above chance at the 5% level (needs > {floor:.3f})"
    # Deterministic: the same input gives the same answer.
    np.testing.assert_array_equal(probs, predict_proba(tm.classifier, x))


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_model_card_holds_measured_metrics_and_provenance(task_id):
    card = shipped_model(task_id).card
    for key in ("architecture", "parameters", "split", "hyperparameters", "history", "training_seconds",
                "metrics", "baseline", "sha256", "citation", "licence"):
        assert key in card, key
    # the headline is the task's own folder's test split; other sources' test shares are scored apart
    test = card["split"]["test"]
    assert card["metrics"]["n"] == test.get("per_source", {}).get("own", test["n"])
    assert card["metrics_by_source"][get_task(task_id).data_folder]["n"] == card["metrics"]["n"]
    assert len(card["history"]) >= 1 and "val_loss" in card["history"][0]
    assert "members" not in card["hyperparameters"]  # one count of members: the ensemble's rows
    from lifelens.tasks import intended_use

    assert card["intended_use"] == intended_use(get_task(task_id)) and "not a diagnostic device" in card["intended_use"]
    # the card says plainly how our test split compares with each held-out goal
    spec = get_task(task_id)
    assert [(g["metric"], g["goal"]) for g in card["goals"]] == list(spec.goals)
    for g in card["goals"]:
        assert g["our_test_split"] == card["metrics"][g["metric"]]
        assert g["met_on_our_test_split"] == (g["our_test_split"] >= g["goal"])
    # and how the test share of each source standing in for the second held-out set compares with its goal
    paired = card.get("paired_read") or {}
    assert [(g["source"], g["source_name"], g["metric"], g["goal"]) for g in card.get("source_goals", [])] == [
        (source.folder, source.name or source.folder, name, goal) for source in spec.extra_sources
        for name, goal in source.goals]
    for g in card.get("source_goals", []):
        read = paired["metrics_by_source"] if g["read"] == "paired" else card["metrics_by_source"]
        assert g["read"] == ("paired" if paired.get("used") and g["source"] in paired["metrics_by_source"] else "one image")
        assert g["our_test_share"] == read[g["source"]][g["metric"]]
        low, high = g["interval95"]
        assert low <= g["our_test_share"] <= high
        assert g["met_on_our_test_share"] == (g["our_test_share"] >= g["goal"])


def _held_out_like_folder(tmp_path, task_id, n):
    """A folder in the shared-data format, never seen by the code before: a few test-split
    images linked (not copied) from the data folder, plus one broken file."""
    spec = get_task(task_id)
    src = spec.data_dir()
    folder = tmp_path / task_id
    (folder / "images").mkdir(parents=True)
    items = data.task_splits(spec)["test"][:n]
    with open(src / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
        fields = list(rows[0])
    keep = {s.path for s in items}
    rows = [r for r in rows if r["path"] in keep]
    for r in rows:
        target = folder / "images" / r["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.symlink_to(src / "images" / r["path"])
    (folder / "images" / "broken.png").write_bytes(b"not an image at all")
    broken = dict(rows[0], path="broken.png")
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows + [broken])
    return folder


TASK_KEYS = {
    "skin": {"melanoma_auc", "seborrheic_keratosis_auc", "isic2017_score"},
    "retina": {"quadratic_kappa", "referable_auc"},
    "mammo": {"abnormal_auc", "sensitivity", "specificity"},
    "plant": set(),
}


@pytest.mark.parametrize("task_id", ["skin", "mammo"])
def test_evaluate_cli_on_an_unseen_folder(task_id, tmp_path):
    folder = _held_out_like_folder(tmp_path, task_id, 30)
    proc = subprocess.run([sys.executable, "-m", "lifelens", "evaluate", "--task", task_id, "--data", str(folder),
                           "--out", str(tmp_path / "m.json")], capture_output=True, text=True, timeout=600)
    # The broken file is reported on one line, the rest is evaluated, the exit status says so.
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "broken.png" in proc.stderr and "Traceback" not in proc.stderr
    result = json.loads(proc.stdout)
    assert result == json.loads((tmp_path / "m.json").read_text())
    required = {"task", "n", "accuracy", "balanced_accuracy", "macro_auc", "per_class", "confusion_matrix", "ece", "nll"}
    assert required | TASK_KEYS[task_id] <= set(result)
    assert result["n"] == len({r for r in (folder / "images").rglob("*") if r.is_symlink()})
    # the deep ensemble answers, and the conformal sets' coverage at each level is reported
    assert result["ensemble_members"] == len(shipped_model(task_id).members) >= 3
    # the output says whether the boosted model was fused in (skin: yes, mammography: no), as the card chose
    fusion = shipped_model(task_id).card["fusion"]
    assert (result["fused_with_boosted_model"] or {}).get("file") == (fusion["file"] if fusion["used"] else None)
    assert set(result["conformal"]) == {"0.8", "0.9", "0.95"}
    sizes = [result["conformal"][k]["mean_set_size"] for k in ("0.8", "0.9", "0.95")]
    assert sizes == sorted(sizes) and all(0 <= result["conformal"][k]["coverage"] <= 1 for k in result["conformal"])
    cm = np.array(result["confusion_matrix"])
    assert cm.sum() == result["n"] and cm.shape == (get_task(task_id).num_classes,) * 2
    assert all({"recall", "precision", "auc"} <= set(v) for v in result["per_class"].values())


def test_metrics_match_hand_computed_values():
    spec = get_task("retina")
    labels = np.array([0, 0, 2, 4, 1])
    probs = np.eye(5)[[0, 1, 2, 4, 1]] * 0.9 + 0.02
    m = classification_metrics(spec, labels, probs)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["referable_auc"] == pytest.approx(1.0)
    assert m["confusion_matrix"][0] == [1, 1, 0, 0, 0]
    assert m["nll"] == pytest.approx(-(4 * np.log(0.92) + np.log(0.02)) / 5)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_every_shipped_member_loads_and_the_ensemble_is_their_mean(task_id):
    spec = get_task(task_id)
    tm = shipped_model(task_id)
    rows = tm.card["ensemble"]["members"]
    assert len(tm.members) == len(rows) == get_task(task_id).recipe.members >= 3
    # member k is seed k; members left out by the membership rule leave gaps, member 0 is always there
    numbers = [r["member"] for r in rows]
    assert numbers[0] == 0 and numbers == sorted(set(numbers)) and all(r["seed"] == r["member"] for r in rows)
    for row in rows:
        path = spec.model_path.parent / row["file"]
        assert sha256_file(path) == row["sha256"] and path.stat().st_size < 20 * 2**20
        assert row["training_seconds"] > 0
        if row["member"] > 0:  # every further member has its own card beside it
            member_card = json.loads(path.with_suffix(".json").read_text())
            assert member_card["sha256"] == row["sha256"] and member_card["ensemble_card"] == spec.card_path.name
    _, x = test_images(task_id, 6, per_class=True)
    each = member_probabilities(tm, x, tta=False)
    assert each.shape == (len(rows), 6, spec.num_classes)
    # independently seeded members are different networks: different weights, different raw softmax
    # (the shipped, sharpened ones can agree to 1e-3 on easy leaves)
    assert not np.allclose(tm.members[0].get_weights()[0], tm.members[1].get_weights()[0])
    raw = member_probabilities(tm, x, tta=False, tempered=False)
    assert not np.allclose(raw[0], raw[1], atol=1e-3)
    np.testing.assert_allclose(ensemble_proba(tm, x), member_probabilities(tm, x).mean(axis=0), atol=1e-6)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_card_compares_ensemble_member_and_both_baselines_with_intervals(task_id):
    card = shipped_model(task_id).card
    key = get_task(task_id).key_metrics[0]
    assert card["metrics"]["ensemble_members"] >= 3
    for scored in (card["metrics"], card["single_member_metrics"], card["baselines"]["logistic"]["metrics"],
                   card["baselines"]["boosted"]["metrics"]):
        low, high = scored["intervals95"][key]
        assert low <= scored[key] <= high
    assert "HistGradientBoosting" in card["baselines"]["boosted"]["method"]
    assert get_task(task_id).data_folder in card["metrics_by_source"]
    for source in get_task(task_id).extra_sources:
        assert card["metrics_by_source"][source.folder]["n"] > 0
    # The card says in words where the ensemble (its networks alone, where the prediction fuses
    # the boosted model in) does not beat the gradient-boosted baseline.
    verdict = card["ensemble_vs_boosted"]
    networks = card["network_ensemble_metrics"] if card["fusion"]["used"] else card["metrics"]
    for name in get_task(task_id).key_metrics:
        mine, theirs = networks.get(name), card["baselines"]["boosted"]["metrics"].get(name)
        if isinstance(mine, float) and isinstance(theirs, float) and mine < theirs:
            assert "NOT" in verdict and f"{name.replace('_', ' ')} {mine:.3f} vs {theirs:.3f}" in verdict


def test_baseline_features_describe_real_images():
    from lifelens.baseline import boosted_features, colour_texture_features, fit_boosted

    spec = get_task("plant")
    items = data.task_splits(spec)["train"]
    by_class = {}
    for s in items:
        by_class.setdefault(s.label, []).append(s)
    chosen = [s for group in by_class.values() for s in group[:6]]
    x = data.load_prepared(spec, chosen)
    labels = np.array([s.label for s in chosen])
    feats = colour_texture_features(x)
    assert feats.shape == (len(x), 176) and np.isfinite(feats).all()
    # the histogram blocks are distributions (each sums to 1) and the images differ
    np.testing.assert_allclose(feats[:, :16].sum(axis=1), 1.0, atol=1e-5)
    assert feats.std(axis=0).max() > 0.01
    fitted = fit_boosted(x, labels)
    assert fitted.features is boosted_features and boosted_features(x[:2]).shape == (2, 176 + 34)
    assert (fitted.predict_proba(x).argmax(axis=1) == labels).mean() > 0.5  # it learns from these features
    films = data.load_prepared(get_task("mammo"), data.task_splits(get_task("mammo"))["test"][:3])
    assert colour_texture_features(films).shape == (3, 16 + 5 + 2 + 16 + 64)
    assert boosted_features(films).shape == (3, 103 + 28)


def test_local_binary_patterns_are_texture_not_brightness_or_orientation():
    """Uniform LBP histograms (radius 1: 10 bins, radius 2: 18) sum to 1, barely move when a
    leaf is turned a quarter or brightened (no pixel clipped), and tell two diseases apart."""
    from lifelens.baseline import local_pattern_features

    samples, x = test_images("plant", 2, per_class=True)
    assert samples[0].label != samples[1].label
    leaf = x[0].astype(np.uint8)
    feats = local_pattern_features(leaf[None])[0]
    assert feats.shape == (10 + 18 + 6,)
    np.testing.assert_allclose([feats[:10].sum(), feats[10:28].sum()], 1.0, atol=1e-6)
    patterns = slice(0, 28)
    turned = local_pattern_features(np.rot90(leaf)[None])[0]
    assert np.abs(turned[patterns] - feats[patterns]).max() < 1e-3  # a pixel or two at the border
    dim = leaf // 2  # room to brighten every pixel without clipping
    brighter = local_pattern_features((dim + 40)[None])[0]
    assert np.abs(brighter[patterns] - local_pattern_features(dim[None])[0][patterns]).max() < 1e-3
    assert np.abs(brighter[28:] - local_pattern_features(dim[None])[0][28:]).max() > 0.05  # the colour moments see it
    other = local_pattern_features(x[1:2].astype(np.uint8))[0]
    assert np.abs(other[patterns] - feats[patterns]).sum() > 0.05


def test_retina_grade_is_called_by_cut_points_chosen_on_validation():
    """The card's decision rule for ordered grades: cut points on the expected grade, fitted
    on the validation split, that raise quadratic kappa there over the argmax; the card's
    kappa, the page and `predict` all call grades by them."""
    from lifelens.scoring import decode_grades, fit_grade_cut_points, predicted_class
    from sklearn.metrics import cohen_kappa_score

    spec = get_task("retina")
    tm = shipped_model("retina")
    cuts = tm.card["threshold"]
    assert len(cuts) == spec.num_classes - 1 and cuts == sorted(cuts) and "kappa" in tm.card["threshold_rule"]
    samples, x = test_images("retina", 120, split="val", per_class=True)
    labels = np.array([s.label for s in samples])
    probs = ensemble_proba(tm, x)
    called = predicted_class(spec, probs, cuts)
    np.testing.assert_array_equal(called, np.digitize(probs @ np.arange(5), cuts))
    np.testing.assert_array_equal(decode_grades(probs, None), probs.argmax(axis=1))
    kappa = lambda pred: cohen_kappa_score(labels, pred, weights="quadratic")  # noqa: E731
    # The search moves every cut away from the plain midpoints and does better than them on
    # the images it was fitted to (validation images here, as in the card).
    fitted = fit_grade_cut_points(labels, probs)
    assert fitted == sorted(fitted) and kappa(decode_grades(probs, fitted)) > kappa(decode_grades(probs, [0.5, 1.5, 2.5, 3.5]))
    # The card's kappa is the one of this rule: recomputed from the card's own confusion matrix.
    m = classification_metrics(spec, labels, probs, cuts)
    assert m["quadratic_kappa"] == pytest.approx(kappa(called))
    assert np.array(m["confusion_matrix"]).sum() == len(labels)


def test_readme_tables_are_the_model_cards_numbers(tmp_path):
    """Every README table that ``summary`` makes holds exactly what the cards say now, and
    ``summary --readme`` rewrites a stale one in place (and nothing else)."""
    from pathlib import Path

    readme = Path(__file__).resolve().parent.parent / "README.md"
    stale = readme.read_text(encoding="utf-8").replace("| retina | retina | 467 |", "| retina | retina | 466 |", 1)
    assert stale != readme.read_text(encoding="utf-8")
    copy = tmp_path / "README.md"
    copy.write_text(stale, encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "lifelens", "summary", "--readme", str(copy)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split(": ")[1].split()[0]) >= 7  # tables found and rewritten
    # Rewritten from the cards, the copy is the shipped README again: it was up to date.
    assert copy.read_text(encoding="utf-8") == readme.read_text(encoding="utf-8")
    # Rewriting from some cards would drop the other tasks' rows: refused, the file untouched.
    out = subprocess.run([sys.executable, "-m", "lifelens", "summary", "--tasks", "plant", "--readme", str(copy)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--tasks" in out.stderr
    assert copy.read_text(encoding="utf-8") == readme.read_text(encoding="utf-8")


def test_promoting_a_later_member_keeps_the_shipped_members_rows(tmp_path, monkeypatch):
    """``ship`` of one more member (member 0 not retrained) adds its row and file and leaves
    every shipped row, member 0's included, and the training keys as they were."""
    import shutil

    from lifelens import config
    from lifelens.models import member_file, promote_members

    spec = get_task("retina")
    shipped = json.loads(spec.card_path.read_text())
    rows = shipped["ensemble"]["members"]
    folder, staged = tmp_path / "models", tmp_path / "staged"
    folder.mkdir()
    staged.mkdir()
    for row in rows:
        shutil.copyfile(spec.model_path.parent / row["file"], folder / row["file"])
    shutil.copyfile(spec.card_path, folder / spec.card_path.name)
    k = len(rows)
    new_row = {**rows[-1], "member": k, "seed": k, "file": member_file(spec, k), "training_seconds": 1.0}
    shutil.copyfile(spec.model_path.parent / rows[-1]["file"], staged / new_row["file"])
    (staged / spec.card_path.name).write_text(json.dumps(
        {"task": spec.id, "history": ["a member card's own history"], "ensemble": {"members": [new_row]}}))

    monkeypatch.setattr(config, "MODELS_DIR", folder)
    assert promote_members(spec, staged) == [new_row["file"]]
    card = json.loads((folder / spec.card_path.name).read_text())
    assert card["ensemble"]["members"] == rows + [new_row]
    assert card["history"] == shipped["history"]
    assert card["ensemble"]["training_seconds_total"] == round(sum(r["training_seconds"] for r in rows) + 1.0, 1)
    assert sha256_file(folder / new_row["file"]) == rows[-1]["sha256"]


def test_dropping_members_removes_their_rows_and_files_but_never_member_0(tmp_path, monkeypatch):
    import shutil

    from lifelens import config
    from lifelens.models import drop_members

    spec = get_task("retina")
    rows = json.loads(spec.card_path.read_text())["ensemble"]["members"]
    folder = tmp_path / "models"
    folder.mkdir()
    for row in rows:
        for path in (spec.model_path.parent / row["file"], (spec.model_path.parent / row["file"]).with_suffix(".json")):
            shutil.copyfile(path, folder / path.name)
    monkeypatch.setattr(config, "MODELS_DIR", folder)
    last = rows[-1]
    with pytest.raises(ValueError, match="member 0"):
        drop_members(spec, [0])
    with pytest.raises(ValueError, match="no shipped member"):
        drop_members(spec, [99])
    assert drop_members(spec, [last["member"]]) == [last["file"], last["file"].replace(".keras", ".json")]
    card = json.loads((folder / spec.card_path.name).read_text())
    assert card["ensemble"]["members"] == rows[:-1]
    assert card["ensemble"]["training_seconds_total"] == round(sum(r["training_seconds"] for r in rows[:-1]), 1)
    assert not (folder / last["file"]).exists() and (folder / rows[0]["file"]).exists()


@pytest.mark.parametrize("task_id", ["plant", "mammo"])
def test_flipped_prediction_is_each_members_mean_over_its_views(task_id):
    """Test-time flips go through each member in one call per chunk of images; the answer is
    still the mean over the mirrored views (a film is never mirrored), chunk by chunk."""
    from lifelens.models import flip_views

    tm = shipped_model(task_id)
    _, x = test_images(task_id, 5)
    views = flip_views(x, tm.spec.augmentation)
    assert len(views) == (1 if tm.spec.augmentation == "film" else 3)
    expected = np.stack([np.mean([predict_proba(m, v) for v in views], axis=0) for m in tm.members])
    found = member_probabilities(tm, x, batch_size=2, tta=True, tempered=False)
    np.testing.assert_allclose(found, expected, atol=1e-5)
    # the mirrored views matter: the flipped prediction is not the plain one
    if len(views) > 1:
        assert np.abs(found - member_probabilities(tm, x, tta=False, tempered=False)).max() > 1e-4


def test_members_predict_and_pool_features_through_one_trace_as_keras_does():
    """The shipped prediction and the gate's features run through a traced graph that the
    members of one architecture share; each member still gives what its own Keras call gives."""
    from lifelens.explain.base import handle_for
    from lifelens.uncertainty.features import call_model, features_of

    tm = shipped_model("mammo")  # one trace for the three members, film-sized inputs
    _, x = test_images("mammo", 2)
    for member in tm.members:
        np.testing.assert_allclose(predict_proba(member, x), np.asarray(member(x, training=False)), atol=1e-5)
    assert len({id(handle_for(m).functions["probs"].trace) for m in tm.members}) == 1
    eager = np.asarray(call_model(tm.features, x))
    np.testing.assert_allclose(features_of(tm, x), eager, rtol=1e-4, atol=1e-5)
    assert not np.allclose(predict_proba(tm.members[1], x), predict_proba(tm.members[2], x), atol=1e-4)
