"""`python -m lifelens predict`: one JSON object per real image, both confidences, bad files reported."""
import json
import math

import numpy as np
import pytest

from conftest import TASK_IDS
from conftest import test_images as real_images  # aliased: pytest would collect a test_* name
from lifelens import cli
from lifelens.tasks import DISCLAIMER, get_task


def _run(capsys, argv):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, [json.loads(line) for line in captured.out.splitlines()], captured.err.splitlines()


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_predict_prints_both_confidences_for_real_images(task_id, capsys, tmp_path):
    spec = get_task(task_id)
    if not spec.model_path.is_file():
        pytest.skip(f"models/{task_id}.keras has not been trained yet")
    samples, _ = real_images(task_id, 2, per_class=True)
    files = [str(spec.data_dir() / "images" / s.path) for s in samples]
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is text, not a picture")
    code, records, err = _run(capsys, ["predict", "--task", task_id, files[0], str(bad), files[1], "--samples", "12"])

    assert code == 2  # one file failed, the others were still predicted
    assert [line for line in err if line.startswith("lifelens: ")] == [line for line in err if str(bad) in line]
    assert len([line for line in err if str(bad) in line]) == 1
    assert [r["file"] for r in records] == files
    k = spec.num_classes
    for r in records:
        assert r["class_names"] == spec.class_names and r["disclaimer"] == DISCLAIMER
        f = r["frequentist"]
        assert len(f["probabilities"]) == len(f["temperature_scaled"]) == k
        assert math.isclose(sum(f["probabilities"]), 1.0, abs_tol=1e-4)
        assert f["temperature"] is None or f["temperature"] > 0
        # Temperature scaling never changes the top class.
        assert np.argmax(f["probabilities"]) == np.argmax(f["temperature_scaled"]) == f["top_class"]
        for method in ("mc_dropout", "variational"):
            b = r["bayesian"][method]
            if b is None:
                assert method == "variational"
                continue
            assert b["samples"] == 12 and len(b["mean"]) == len(b["std"]) == len(b["interval"]) == k
            assert all(lo <= hi for lo, hi in b["interval"])
            assert 0 <= b["mutual_information"] <= b["entropy"] <= math.log(k) + 1e-6
        expected = all(b["agrees_with_frequentist"] for b in r["bayesian"].values() if b is not None)
        assert r["agree"] is expected


def test_frequentist_answer_is_fixed_while_bayesian_samples_change(capsys):
    spec = get_task("plant")
    if not spec.model_path.is_file():
        pytest.skip("models/plant.keras has not been trained yet")
    samples, _ = real_images("plant", 1)
    file = str(spec.data_dir() / "images" / samples[0].path)
    runs = [_run(capsys, ["predict", "--task", "plant", file, "--samples", "20"]) for _ in range(2)]
    (code_a, [a], _), (code_b, [b], _) = runs
    assert code_a == code_b == 0
    assert a["frequentist"] == b["frequentist"]
    assert a["bayesian"]["mc_dropout"]["std"] != b["bayesian"]["mc_dropout"]["std"]
    # A fixed seed reproduces the Bayesian part too.
    seeded = [_run(capsys, ["predict", "--task", "plant", file, "--seed", "7"])[1][0] for _ in range(2)]
    assert seeded[0] == seeded[1]


def test_predict_with_only_bad_files_exits_2(capsys, tmp_path):
    if not get_task("plant").model_path.is_file():
        pytest.skip("models/plant.keras has not been trained yet")
    code, records, err = _run(capsys, ["predict", "--task", "plant", str(tmp_path / "missing.jpg")])
    assert code == 2 and records == []
    assert len([line for line in err if "missing.jpg" in line]) == 1
