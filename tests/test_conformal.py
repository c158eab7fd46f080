"""Conformal prediction sets (APS, RAPS via MAPIE; ordinal APS) on real images and known cases.

The real-data tests calibrate on our validation split and check the promise on the test
split, with the shipped plant model (10 classes) and retina model (grades 0-4, ordinal).
No exact figure of the shipped models is hard-coded: they may be retrained.
"""
import json
import math

import numpy as np
import pytest
from scipy.special import softmax

from lifelens.models import predict_proba
from lifelens.tasks import get_task
from lifelens.uncertainty import conformal

LEVELS = (0.8, 0.9, 0.95)
REAL_CASES = [("plant", "lac"), ("retina", "lac"), ("plant", "aps"), ("plant", "raps"), ("retina", "aps"), ("retina", "raps"), ("retina", "ordinal")]


def coverage_floor(level: float, n_test: int, n_cal: int) -> float:
    """Three standard errors under nominal: the test sample and the calibration sample both vary."""
    return level - 3.0 * math.sqrt(level * (1.0 - level) * (1.0 / n_test + 1.0 / n_cal))


def covered(mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return mask[np.arange(len(labels)), labels]


def is_interval(row: np.ndarray) -> bool:
    idx = np.flatnonzero(row)
    return len(idx) > 0 and idx[-1] - idx[0] + 1 == len(idx)


# ----------------------------------------------------------------------------- real images, shipped models

@pytest.fixture(scope="module")
def real_probs(data_root, load_shipped, real_images):
    """{task_id: {"val": (probs, labels), "test": (probs, labels)}} from the shipped models."""
    out = {}
    for task_id in ("plant", "retina"):
        spec = get_task(task_id)
        if not spec.model_path.is_file():
            pytest.skip(f"models/{task_id}.keras has not been trained yet")
        tm = load_shipped(task_id)
        out[task_id] = {}
        for split in ("val", "test"):
            samples, prepared = real_images(task_id, 10**9, split)  # the whole split (cached on disk)
            out[task_id][split] = (predict_proba(tm.classifier, prepared), np.array([s.label for s in samples]))
    return out


@pytest.fixture(scope="module")
def calibrations(real_probs):
    return {(task, method): conformal.calibrate(*real_probs[task]["val"], method=method, levels=LEVELS)
            for task, method in REAL_CASES}


@pytest.mark.parametrize("task_id,method", REAL_CASES)
def test_coverage_on_the_test_split_meets_each_level(real_probs, calibrations, task_id, method):
    cal = calibrations[(task_id, method)]
    probs, labels = real_probs[task_id]["test"]
    spec = get_task(task_id)
    report = conformal.set_report(cal, probs, labels, spec.class_ids)
    json.dumps(report)  # JSON-able as it is
    assert list(report) == ["0.8", "0.9", "0.95"]
    sizes = []
    for level in LEVELS:
        row = report[conformal.level_key(level)]
        print(f"{task_id} {method} level {level}: coverage {row['coverage']:.3f}, "
              f"mean set size {row['mean_set_size']:.3f}, n {row['n']}")
        assert row["n"] == len(labels)
        assert row["coverage"] >= coverage_floor(level, len(labels), cal.n_calibration)
        mask = conformal.prediction_sets(cal, probs, level)
        assert mask.shape == probs.shape and mask.dtype == bool
        if method == "lac":
            # LAC's coverage is the level, from above, within sampling error: not the model's accuracy
            assert row["coverage"] <= level + 1 / (cal.n_calibration + 1) + 3 * np.sqrt(level * (1 - level) / len(labels))
        else:
            assert mask.sum(axis=1).min() >= 1, "a conformal set is empty"
        assert covered(mask, labels).mean() == pytest.approx(row["coverage"])
        assert row["mean_set_size"] == pytest.approx(mask.sum(axis=1).mean())
        # The per-class figures are the overall one split by class.
        counts = np.bincount(labels, minlength=spec.num_classes)
        per_class = [row["per_class_coverage"][cid] for cid in spec.class_ids]
        weighted = sum(c * n for c, n in zip(per_class, counts) if n) / len(labels)
        assert weighted == pytest.approx(row["coverage"])
        sizes.append(row["mean_set_size"])
    assert sizes == sorted(sizes), f"mean set size shrinks as the level grows: {sizes}"
    # Not the trivial answer: at 80% the sets are smaller than "every class".
    assert sizes[0] < spec.num_classes


@pytest.mark.parametrize("task_id,method", [c for c in REAL_CASES if c[1] != "raps"])
def test_sets_are_nested_across_levels(real_probs, calibrations, task_id, method):
    cal = calibrations[(task_id, method)]
    probs = real_probs[task_id]["test"][0]
    low, mid, high = (conformal.prediction_sets(cal, probs, lv) for lv in LEVELS)
    assert np.all(low <= mid) and np.all(mid <= high)


def test_ordinal_sets_are_intervals_of_adjacent_grades_around_the_argmax(real_probs, calibrations):
    cal = calibrations[("retina", "ordinal")]
    probs, _ = real_probs["retina"]["test"]
    for level in LEVELS:
        mask = conformal.prediction_sets(cal, probs, level)
        assert all(is_interval(row) for row in mask)
        assert np.all(mask[np.arange(len(probs)), probs.argmax(axis=1)])
    # APS sets on the same images need not be intervals; ordinal ones must be, by construction
    # of the greedy path: its first j grades are adjacent for every j.
    order = conformal.ordinal_order(probs)
    for j in range(1, probs.shape[1] + 1):
        first = np.zeros(probs.shape, dtype=bool)
        np.put_along_axis(first, order[:, :j], True, axis=1)
        assert all(is_interval(row) for row in first)


@pytest.mark.parametrize("task_id,method", [c for c in REAL_CASES if c[1] != "ordinal"])
def test_sets_from_stored_thresholds_equal_mapie_sets(real_probs, calibrations, task_id, method):
    """Our rule over the stored thresholds reproduces MAPIE's predict_set, which needs the
    calibration data, on the calibration split and on the unseen test split."""
    cal = calibrations[(task_id, method)]
    val_probs, val_labels = real_probs[task_id]["val"]
    test_probs, _ = real_probs[task_id]["test"]
    table = np.vstack([val_probs, test_probs]).astype(np.float64)
    table /= table.sum(axis=1, keepdims=True)
    n_val = len(val_probs)
    model, score = conformal._fit_mapie(table, val_labels, np.arange(n_val), method, LEVELS, **cal.options)
    for rows, probs in ((np.arange(n_val), val_probs), (np.arange(n_val, len(table)), test_probs)):
        _, mapie_sets = model.predict_set(rows.reshape(-1, 1), conformity_score_params={"include_last_label": True})
        for i, level in enumerate(LEVELS):
            np.testing.assert_array_equal(conformal.prediction_sets(cal, probs, level), mapie_sets[:, :, i])
    np.testing.assert_allclose([cal.thresholds[conformal.level_key(lv)]["threshold"] for lv in LEVELS],
                               np.ravel(score.quantiles_))


@pytest.mark.parametrize("task_id", ["plant", "retina"])
def test_raps_penalty_caps_the_set_size(real_probs, calibrations, task_id):
    """Past rank k_reg each class adds lambda to the score, so no set outgrows k_reg + q / lambda."""
    cal = calibrations[(task_id, "raps")]
    probs, _ = real_probs[task_id]["test"]
    for level in LEVELS:
        row = cal.thresholds[conformal.level_key(level)]
        assert row["lambda"] in (0.001, 0.01, 0.1, 0.2, 0.5)  # MAPIE's grid, from the RAPS paper
        assert 1 <= row["k_reg"] <= probs.shape[1]
        cap = math.ceil(row["k_reg"] + row["threshold"] / row["lambda"] - 1e-9)
        assert conformal.prediction_sets(cal, probs, level).sum(axis=1).max() <= cap


@pytest.mark.parametrize("task_id,method", REAL_CASES)
def test_json_round_trip_gives_identical_sets(real_probs, calibrations, task_id, method):
    cal = calibrations[(task_id, method)]
    back = conformal.ConformalCalibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert back == cal
    probs = real_probs[task_id]["test"][0]
    for level in LEVELS:
        np.testing.assert_array_equal(conformal.prediction_sets(back, probs, level),
                                      conformal.prediction_sets(cal, probs, level))
    one = conformal.prediction_sets(back, probs[0], 0.9)  # a single image's (K,) row works too
    np.testing.assert_array_equal(one, conformal.prediction_sets(cal, probs[:1], 0.9)[0])


def test_describe_set_lists_the_members_most_probable_first(real_probs, calibrations):
    cal = calibrations[("plant", "aps")]
    probs, _ = real_probs["plant"]["test"]
    names = get_task("plant").class_names
    masks = conformal.prediction_sets(cal, probs, 0.95)
    i = int(np.argmax(masks.sum(axis=1)))  # the image with the largest set
    rows = conformal.describe_set(masks[i], names, probs[i])
    assert [r["index"] for r in rows] == sorted(np.flatnonzero(masks[i]), key=lambda k: -probs[i][k])
    assert [r["class"] for r in rows] == [names[r["index"]] for r in rows]
    assert rows[0]["index"] == int(np.argmax(probs[i]))
    assert all(isinstance(r["probability"], float) for r in rows)
    json.dumps(rows)


# ----------------------------------------------------------------------------- known cases

@pytest.mark.parametrize("method", conformal.METHODS)
def test_a_perfect_classifier_gets_singleton_sets_of_the_true_class(method):
    rng = np.random.default_rng(1)
    k, n = 5, 400
    labels = rng.integers(0, k, n)
    probs = np.full((n, k), 0.03 / (k - 1))
    probs[np.arange(n), labels] = 0.97
    cal = conformal.calibrate(probs[:200], labels[:200], method=method)
    for level in LEVELS:
        mask = conformal.prediction_sets(cal, probs[200:], level)
        np.testing.assert_array_equal(mask, np.eye(k, dtype=bool)[labels[200:]])


def test_conformal_quantile_is_the_finite_sample_order_statistic():
    scores = np.random.default_rng(0).permutation(np.arange(1, 101) / 100.0)  # 0.01 .. 1.00
    # ceil(101 * 0.9) = 91: the 91st smallest, not the plain 90th percentile.
    assert conformal.conformal_quantile(scores, 0.9) == pytest.approx(0.91)
    assert conformal.conformal_quantile(scores, 0.8) == pytest.approx(0.81)


def calibrated_model(rng, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """A classifier that is right about its own uncertainty: labels drawn from its softmax."""
    probs = softmax(rng.normal(scale=2.0, size=(n, k)), axis=1)
    labels = (probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return probs, np.minimum(labels, k - 1)


@pytest.mark.parametrize("method", conformal.METHODS)
def test_coverage_holds_on_a_large_exchangeable_sample(method):
    rng = np.random.default_rng(7)
    probs, labels = calibrated_model(rng, 8000, 5)
    cal = conformal.calibrate(probs[:4000], labels[:4000], method=method)
    for level in LEVELS:
        mask = conformal.prediction_sets(cal, probs[4000:], level)
        assert covered(mask, labels[4000:]).mean() >= coverage_floor(level, 4000, cal.n_calibration)
        assert mask.any(axis=1).all() or method == "lac"  # a LAC set may be empty, the others never
        if method == "ordinal":
            assert all(is_interval(row) for row in mask)
    # Top-1 alone covers only the accuracy, far under 95% here: the sets really grow.
    assert (probs[4000:].argmax(axis=1) == labels[4000:]).mean() < 0.8


def test_raps_keeps_a_flat_noisy_tail_out_where_aps_cannot():
    """Half the images: one dominant class (right 85% of the time, else the runner-up).
    The other half: near-uniform softmax over 50 classes with the true class in the top 3.
    APS has to walk the flat tail until the mass reaches its threshold; RAPS's rank penalty
    stops after a few classes at the same coverage (Angelopoulos et al. 2021)."""
    rng = np.random.default_rng(3)
    n, k = 4000, 50
    logits = rng.normal(scale=0.05, size=(n, k))
    peaked = rng.random(n) < 0.5
    top, runner = rng.integers(0, k, n), rng.integers(1, k, n)
    runner = (top + runner) % k
    rows = np.arange(n)
    logits[rows[peaked], top[peaked]] += 5.0
    logits[rows[peaked], runner[peaked]] += 2.5
    labels = np.where(rng.random(n) < 0.85, top, runner)
    flat_rank = np.argsort(-logits, axis=1)[rows, rng.integers(0, 3, n)]
    labels = np.where(peaked, labels, flat_rank)
    probs = softmax(logits, axis=1)
    half = n // 2
    aps = conformal.calibrate(probs[:half], labels[:half], method="aps")
    raps = conformal.calibrate(probs[:half], labels[:half], method="raps")
    for level in LEVELS:
        sizes = {}
        for cal in (aps, raps):
            mask = conformal.prediction_sets(cal, probs[half:], level)
            assert covered(mask, labels[half:]).mean() >= coverage_floor(level, half, cal.n_calibration)
            sizes[cal.method] = mask.sum(axis=1).mean()
        assert sizes["raps"] <= 0.5 * sizes["aps"], sizes


def test_describe_set_on_a_known_row():
    rows = conformal.describe_set([True, False, True, True], ["a", "b", "c", "d"], [0.2, 0.1, 0.6, 0.1])
    assert rows == [{"class": "c", "index": 2, "probability": 0.6}, {"class": "a", "index": 0, "probability": 0.2},
                    {"class": "d", "index": 3, "probability": 0.1}]


def test_ordinal_path_takes_the_more_probable_neighbour():
    order = conformal.ordinal_order(np.array([[0.1, 0.3, 0.4, 0.05, 0.15], [0.0, 0.0, 0.1, 0.2, 0.7]]))
    np.testing.assert_array_equal(order, [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0]])


def test_bad_inputs_are_refused():
    rng = np.random.default_rng(0)
    probs, labels = calibrated_model(rng, 300, 4)
    cal = conformal.calibrate(probs, labels, method="aps")
    with pytest.raises(ValueError, match="4 classes"):
        conformal.prediction_sets(cal, probs[:, :3] / probs[:, :3].sum(axis=1, keepdims=True))
    with pytest.raises(KeyError, match="0.99"):
        conformal.prediction_sets(cal, probs, 0.99)
    with pytest.raises(ValueError, match="sum to 1"):
        conformal.prediction_sets(cal, probs * 2)
    with pytest.raises(ValueError, match="too few"):
        conformal.calibrate(probs[:10], labels[:10], levels=(0.95,))
    with pytest.raises(ValueError, match="method"):
        conformal.calibrate(probs, labels, method="naive")
    with pytest.raises(ValueError, match="class indices"):
        conformal.calibrate(probs, np.full(len(probs), 4))
    with pytest.raises(ValueError, match="method"):
        conformal.ConformalCalibration.from_dict({**cal.to_dict(), "method": "topk"})
