"""The paired read of mammography: each film beside the same patient's other film."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from conftest import shipped_model

from lifelens import data, evaluate
from lifelens.paired_read import PairedRead, other_films
from lifelens.tasks import get_task


def _validation_folder(tmp_path, with_patient: bool):
    """Every validation film of mini-MIAS, linked (not copied) into a folder of the shared-data
    format; without the patient column when ``with_patient`` is False."""
    spec = get_task("mammo")
    src = spec.data_dir()
    keep = {s.path for s in data.task_splits(spec)["val"]}
    folder = tmp_path / ("paired" if with_patient else "films")
    (folder / "images").mkdir(parents=True)
    with open(src / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["path"] in keep]
    fields = [f for f in rows[0] if with_patient or f != "patient"]
    for path in {r["path"] for r in rows}:
        (folder / "images" / path).symlink_to(src / "images" / path)
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_evaluate_reads_each_film_beside_the_other_breast_as_the_card_chose_on_validation(tmp_path):
    spec = get_task("mammo")
    tm = shipped_model("mammo")
    record = tm.card["paired_read"]
    # chosen on validation: adopted only because it ranked the validation films better
    assert record["used"] and record["val_score_paired"] > record["val_score_film"]
    assert record["films_in_pairs"]["val"] == 52 and record["threshold"] is not None
    paired = evaluate.evaluate_folder(tm, spec, _validation_folder(tmp_path, True), with_confidence=False)
    # the same films, the same ensemble: evaluate reproduces the card's validation numbers
    assert paired["n"] == 52 and "52 of 52 films" in paired["reading"]
    assert paired["abnormal_auc"] == pytest.approx(record["val_score_paired"], abs=2e-3)
    assert paired["film_read"]["abnormal_auc"] == pytest.approx(record["val_score_film"], abs=2e-3)
    # without the patient column no film has a partner: the film read is the headline
    alone = evaluate.evaluate_folder(tm, spec, _validation_folder(tmp_path, False), with_confidence=False)
    assert "reading" not in alone and "film_read" not in alone
    assert alone["abnormal_auc"] == pytest.approx(paired["film_read"]["abnormal_auc"], abs=1e-9)


def test_a_film_reads_more_abnormal_the_more_normal_its_partner_looks():
    rule = PairedRead(scale=0.8, bias=-0.3)
    groups = ["a", "a", "b", "c", "c"]
    assert other_films(groups) == [[1], [0], [], [4], [3]]
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
