"""The paired read: each image beside the same patient's other one (two breasts, two eyes)."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import shipped_model

from lifelens import config, data, evaluate
from lifelens.paired_read import PairedRead, other_films, partner_index
from lifelens.tasks import get_task


def _linked_folder(folder, src, keep: set, drop_columns=()) -> list[dict]:
    """A folder of the shared-data format holding the images of ``src`` named in ``keep``, linked
    (not copied), with their ``labels.csv`` rows less ``drop_columns``; returns the rows."""
    (folder / "images").mkdir(parents=True)
    with open(src / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["path"] in keep]
    for path in {r["path"] for r in rows}:
        (folder / "images" / path).symlink_to(src / "images" / path)
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f for f in rows[0] if f not in drop_columns], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _validation_folder(tmp_path, with_patient: bool):
    """Every validation film of mini-MIAS in a folder of its own; without the patient column
    when ``with_patient`` is False."""
    spec = get_task("mammo")
    folder = tmp_path / ("paired" if with_patient else "films")
    _linked_folder(folder, spec.data_dir(), {s.path for s in data.task_splits(spec)["val"]},
                   () if with_patient else ("patient",))
    return folder


def test_evaluate_reads_each_film_beside_the_other_breast_as_the_card_chose_on_validation(tmp_path):
    spec = get_task("mammo")
    tm = shipped_model("mammo")
    record = tm.card["paired_read"]
    # chosen on validation: adopted only because it ranked the validation films better
    assert record["used"] and record["val_score_paired"] > record["val_score_film"]
    assert record["kind"] == "asymmetry" and record["beta"] < 0 < record["alpha"]  # a film reads worse beside a worse partner
    assert record["images_in_pairs"]["val"] == 52 and record["threshold"] is not None
    paired = evaluate.evaluate_folder(tm, spec, _validation_folder(tmp_path, True), with_confidence=False)
    # the same films, the same ensemble: evaluate reproduces the card's validation numbers
    assert paired["n"] == 52 and "52 of 52 images" in paired["reading"]
    assert paired["abnormal_auc"] == pytest.approx(record["val_score_paired"], abs=2e-3)
    assert paired["one_image_read"]["abnormal_auc"] == pytest.approx(record["val_score_film"], abs=2e-3)
    # without the patient column no film has a partner: the film read is the headline
    alone = evaluate.evaluate_folder(tm, spec, _validation_folder(tmp_path, False), with_confidence=False)
    assert "reading" not in alone and "one_image_read" not in alone
    assert alone["abnormal_auc"] == pytest.approx(paired["one_image_read"]["abnormal_auc"], abs=1e-9)


def test_a_film_reads_more_abnormal_the_more_normal_its_partner_looks():
    rule = PairedRead("asymmetry", alpha=1.6, beta=-0.8, bias=(0.0, -0.3))
    groups = ["a", "a", "b", "c", "c"]
    assert other_films(groups) == [[1], [0], [], [4], [3]]
    assert partner_index(groups).tolist() == [1, 0, -1, 4, 3]
    probs = np.array([[0.4, 0.6], [0.9, 0.1], [0.3, 0.7], [0.4, 0.6], [0.2, 0.8]])
    out = rule.probabilities(probs, groups)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    np.testing.assert_array_equal(out[2], probs[2])  # no partner: the film read stands
    # the same film, 0.6 abnormal: beside a normal-looking partner it reads more abnormal
    # than beside a partner that looks more abnormal than itself
    assert out[0, 1] > out[3, 1]
    # and the film with the more abnormal-looking partner reads less abnormal than the partner
    assert out[3, 1] < out[4, 1]
    # a patient with three films (two views of one breast, say) is not read in pairs
    three = rule.probabilities(probs, ["a", "a", "a", "c", "c"])
    np.testing.assert_array_equal(three[:3], probs[:3])
    np.testing.assert_allclose(three[3:], out[3:])
    np.testing.assert_array_equal(rule.read_beside(probs[0], [probs[1], probs[2]]), probs[0])


def test_evaluate_reads_each_fundus_photo_with_the_other_eye_as_the_card_chose_on_validation(tmp_path):
    """Retina: an EyePACS-like folder (path, grade, patient) is read eye beside eye; APTOS has no patient."""
    spec = get_task("retina")
    tm = shipped_model("retina")
    record = tm.card["paired_read"]
    assert record["kind"] == "agreement" and record["used"] and record["beta"] > 0  # the other eye is evidence
    assert record["val_score_paired"] > record["val_score_film"]
    eyepacs = spec.extra_sources[0]
    assert set(record["metrics_by_source"]) == {eyepacs.folder}  # APTOS photos are read alone
    share = record["metrics_by_source"][eyepacs.folder]
    assert share["n"] == tm.card["metrics_by_source"][eyepacs.folder]["n"]
    assert share["one_image_read"]["quadratic_kappa"] == pytest.approx(
        tm.card["metrics_by_source"][eyepacs.folder]["quadratic_kappa"])
    # a folder of the shared-data format: EyePACS validation photos with their patient column
    src = config.data_root() / eyepacs.folder
    val = data.source_splits(spec, eyepacs)["val"]
    patients = sorted({s.group for s in val})[:120]  # about half of them, to keep the test short
    folder = tmp_path / "eyes"
    rows = _linked_folder(folder, src, {s.path for s in val if s.group in patients})
    result = evaluate.evaluate_folder(tm, spec, folder, with_confidence=False)
    paired = int((partner_index([r["patient"] for r in rows]) >= 0).sum())
    assert paired >= 150 and f"{paired} of {len(rows)} images" in result["reading"]
    # joined with the right eye of the right patient, the photos are predicted better than alone
    assert result["nll"] < result["one_image_read"]["nll"]
    assert result["quadratic_kappa"] > result["one_image_read"]["quadratic_kappa"]
