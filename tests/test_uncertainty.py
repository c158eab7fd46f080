"""Frequentist vs Bayesian confidence on the shipped models and real images.

Metric formulas are checked on inputs with known answers; everything that touches a
network uses the shipped models and our own splits of the real data.
"""
import json
import math
import shutil

import keras
import numpy as np
import pytest

from conftest import TASK_IDS, shipped_model
from conftest import test_images as real_images  # aliased: pytest would collect a test_* name
from lifelens import config, uncertainty
from lifelens.models import load_task_model, member_probabilities, predict_proba, read_card, sha256_file
from lifelens.tasks import get_task
from lifelens.uncertainty import bayes_head, features, frequentist, metrics


def require_model(task_id: str):
    if not get_task(task_id).model_path.is_file():
        pytest.skip(f"models/{task_id}.keras has not been trained yet")
    return shipped_model(task_id)


# ----------------------------------------------------------------------------- metrics with known answers

def test_ece_is_zero_when_confidence_matches_accuracy_and_large_when_overconfident():
    # 10 images at confidence 0.8 of which exactly 8 are right; 4 at 0.5 of which 2 are right.
    probs = np.array([[0.8, 0.2]] * 10 + [[0.5, 0.5]] * 4)
    labels = np.array([0] * 8 + [1] * 2 + [0, 0, 1, 1])
    assert metrics.expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-12)
    table = metrics.reliability(probs, labels)
    assert sum(table["count"]) == 14 and len(table["count"]) == metrics.DEFAULT_BINS
    # Certain and right half the time: the gap is 0.5.
    sure = np.array([[1.0, 0.0]] * 6)
    assert metrics.expected_calibration_error(sure, np.array([0, 1] * 3)) == pytest.approx(0.5)


def test_nll_and_brier_formulas():
    probs = np.array([[0.5, 0.5], [0.25, 0.75], [0.7, 0.3]])
    labels = np.array([0, 1, 0])
    assert metrics.negative_log_likelihood(probs, labels) == pytest.approx(
        -(math.log(0.5) + math.log(0.75) + math.log(0.7)) / 3)
    assert metrics.brier_score(probs, labels) == pytest.approx((0.5 + 2 * 0.0625 + 2 * 0.09) / 3)
    perfect = np.eye(3)
    assert metrics.brier_score(perfect, np.arange(3)) == 0.0
    assert metrics.negative_log_likelihood(perfect, np.arange(3)) == pytest.approx(0.0, abs=1e-9)


def test_wilson_interval_known_values():
    low, high = frequentist.wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4902, abs=1e-4), pytest.approx(0.9433, abs=1e-4))
    assert frequentist.wilson_interval(0, 20)[0] == 0.0 and frequentist.wilson_interval(20, 20)[1] == 1.0


def test_uncertainty_decomposition_separates_disagreement_from_noise():
    agreeing = np.tile([[0.5, 0.5]], (10, 1))  # every network unsure the same way: aleatoric only
    parts = metrics.uncertainty_decomposition(agreeing)
    assert parts["mutual_information"] == pytest.approx(0.0, abs=1e-9)
    assert parts["expected_entropy"] == pytest.approx(math.log(2))
    disagreeing = np.array([[1.0, 0.0], [0.0, 1.0]] * 5)  # each network sure, they disagree: epistemic only
    parts = metrics.uncertainty_decomposition(disagreeing)
    assert parts["mutual_information"] == pytest.approx(math.log(2))
    assert parts["expected_entropy"] == pytest.approx(0.0, abs=1e-9)


def test_bayesian_summary_shapes_and_agreement():
    rng = np.random.default_rng(0)
    samples = rng.dirichlet([8, 2, 1], size=200)
    s = metrics.bayesian_summary(samples, frequentist=np.array([0.1, 0.8, 0.1]))
    assert s["mean"].shape == s["std"].shape == (3,) and s["interval"].shape == (3, 2)
    assert s["samples"].shape == (200, 3)
    assert np.all(s["interval"][:, 0] <= s["mean"]) and np.all(s["mean"] <= s["interval"][:, 1])
    assert s["top_class"] == 0 and s["agrees_with_frequentist"] is False
    assert 0 <= s["mutual_information"] <= s["predictive_entropy"] <= math.log(3)


def test_fit_temperature_recovers_a_known_overconfidence():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, size=(4000, 4))
    labels = np.array([rng.choice(4, p=p) for p in frequentist.softmax(true_logits)])
    assert frequentist.fit_temperature(3.0 * true_logits, labels) == pytest.approx(3.0, rel=0.1)


# ----------------------------------------------------------------------------- on the shipped models

@pytest.mark.parametrize("task_id", TASK_IDS)
def test_temperature_fitting_lowers_validation_nll(task_id):
    tm = require_model(task_id)
    val_features, val_labels = uncertainty.split_features(tm, "val")
    logits = frequentist.head_logits(tm.full.get_layer("probs"), val_features)
    # The logits from the head weights are the ones the network turns into its softmax.
    _, x = real_images(task_id, 4, split="val")
    np.testing.assert_allclose(frequentist.softmax(logits[:4]), predict_proba(tm.classifier, x), atol=1e-5)
    t = frequentist.fit_temperature(logits, val_labels)
    nll = lambda temp: metrics.negative_log_likelihood(frequentist.softmax(logits, temp), val_labels)  # noqa: E731
    assert nll(t) < nll(1.0)
    assert nll(t) <= min(nll(t * 1.25), nll(t / 1.25))
    card_t = tm.card.get("temperature")
    if card_t is not None:  # written by `calibrate` for this very model
        assert card_t == pytest.approx(t, rel=1e-3)


def _bn_state(model):
    return {layer.name: [np.array(w) for w in layer.get_weights()]
            for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)}


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_mc_dropout_samples_vary_frequentist_is_fixed_and_batchnorm_is_untouched(task_id):
    tm = require_model(task_id)
    _, x = real_images(task_id, 6, per_class=True)
    bn_view = keras.Model(tm.full.input, tm.full.get_layer("block2_bn1").output)
    bn_before, state_before = np.array(bn_view(x, training=False)), _bn_state(tm.full)
    freq = predict_proba(tm.classifier, x)

    fast = uncertainty.mc_dropout_predict(tm, x, samples=30)
    # The bring-your-own-model path: the whole network with its dropout layers switched on, 30 times
    # the work of the head path per sample (12 samples, not 30: the film case took 29 s, now 12 s, on 2 cores).
    general = uncertainty.mc_dropout_predict(tm.classifier, x, samples=12, seed=5, head_only=False)
    assert fast.shape == (30, len(x), tm.spec.num_classes) and general.shape == (12, len(x), tm.spec.num_classes)
    np.testing.assert_allclose(fast.sum(axis=2), 1.0, atol=1e-4)
    assert not np.allclose(fast[0], fast[1]) and not np.allclose(general[0], general[1])
    # Both paths sample the same posterior: their means agree with each other and the softmax, roughly.
    assert np.abs(fast.mean(0) - general.mean(0)).max() < 0.25
    np.testing.assert_array_equal(
        general, uncertainty.mc_dropout_predict(tm.classifier, x, samples=12, seed=5, head_only=False))
    np.testing.assert_array_equal(uncertainty.mc_dropout_predict(tm, x, 10, seed=3),
                                  uncertainty.mc_dropout_predict(tm, x, 10, seed=3))

    np.testing.assert_array_equal(freq, predict_proba(tm.classifier, x))
    state_after = _bn_state(tm.full)
    assert state_before.keys() == state_after.keys() and state_before
    for name in state_before:
        for a, b in zip(state_before[name], state_after[name]):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(bn_before, np.array(bn_view(x, training=False)))

    # The check above can fail: running the whole model in training mode (what MC dropout
    # must NOT do) moves the BatchNorm statistics. Done on a copy, never the shared model.
    copy = keras.models.clone_model(tm.classifier)
    copy.set_weights(tm.classifier.get_weights())
    copy(x, training=True)
    moved = _bn_state(copy)
    assert any(not np.array_equal(a, b) for name in moved for a, b in zip(moved[name], state_before[name]))


def test_mc_dropout_refuses_a_model_without_dropout():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="no dropout"):
        uncertainty.mc_dropout_predict(model, np.zeros((1, 8, 8, 3), np.float32))


def test_variational_layer_round_trips_through_keras_file(tmp_path):
    tm = require_model("plant")
    feats, labels = uncertainty.split_features(tm, "val")
    feats = feats[:64]
    inputs = keras.Input((feats.shape[1],))
    layer = uncertainty.VariationalDense(10, activation="softmax", prior_std=0.7, posterior_std_init=0.05,
                                         kl_weight=1 / 500, seed=3, name="variational_head")
    model = keras.Model(inputs, layer(inputs))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(feats, labels[:64], epochs=2, verbose=0)
    # In training the KL term reaches the loss through add_loss, weighted 1/N.
    model(feats, training=True)
    assert len(model.losses) == 1
    assert float(model.losses[0]) == pytest.approx(float(layer.kl_divergence()) / 500, rel=1e-5)

    path = tmp_path / "head.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    twin = loaded.get_layer("variational_head")
    assert isinstance(twin, uncertainty.VariationalDense)
    assert twin.get_config() == layer.get_config()
    for a, b in zip(layer.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.array(loaded(feats)), np.array(model(feats)), atol=1e-6)
    np.testing.assert_allclose(uncertainty.variational_samples(twin, feats, 20, seed=1),
                               uncertainty.variational_samples(layer, feats, 20, seed=1), atol=1e-6)
    draws = uncertainty.variational_samples(twin, feats, 20)
    assert draws.shape == (20, 64, 10) and not np.allclose(draws[0], draws[1])
    assert not np.allclose(draws, uncertainty.variational_samples(twin, feats, 20))


def test_attaching_the_head_keeps_the_cnn_bit_identical(tmp_path, monkeypatch):
    """On a copy of the shipped plant model: attach twice (re-run), CNN weights never change."""
    tm = require_model("plant")
    fused = [tm.card["fusion"]["file"]] if tm.card["fusion"]["used"] else []
    for name in ("plant.json", *(row["file"] for row in tm.card["ensemble"]["members"]), *fused):
        shutil.copy(config.MODELS_DIR / name, tmp_path / name)
    monkeypatch.setattr(config, "MODELS_DIR", tmp_path)
    spec = get_task("plant")
    train_features, train_labels = uncertainty.split_features(tm, "train")
    cnn = {layer.name: layer.get_weights() for layer in tm.full.layers if layer.name != "variational_head"}
    for epochs in (1, 2):
        head, details = bayes_head.train_variational_head(spec, train_features[:200], train_labels[:200], epochs=epochs)
        written = bayes_head.attach_variational_head(spec, head)
        assert written["sha256"] == sha256_file(tmp_path / "plant.keras") == read_card(spec)["sha256"]
        reloaded = load_task_model(spec)  # checks the card's sha256, safe_mode
        assert reloaded.variational_head is not None and len(reloaded.full.outputs) == 2
        assert [layer.name for layer in reloaded.full.layers].count("variational_head") == 1
        for name, weights in cnn.items():
            for a, b in zip(weights, reloaded.full.get_layer(name).get_weights()):
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
        for a, b in zip(head.get_weights(), reloaded.variational_head.get_weights()):
            np.testing.assert_array_equal(a, b)
        assert details["train_images"] == 200 and details["epochs"] == epochs
    assert json.loads((tmp_path / "plant.json").read_text())["task"] == "plant"


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_shipped_variational_head_matches_its_card(task_id):
    tm = require_model(task_id)
    if "variational_head" not in tm.card:
        pytest.fail(f"models/{task_id}.json has no variational_head: run `python -m lifelens calibrate --task {task_id}`")
    # Calibrated for THIS CNN (a retrained model needs `calibrate` again).
    assert tm.card["variational_head"]["trunk_sha256_16"] == features.trunk_digest(tm)
    assert tm.variational_head is not None
    _, x = real_images(task_id, 5, per_class=True)
    draws = uncertainty.variational_samples(tm.variational_head, uncertainty.features_of(tm, x), 30)
    assert draws.shape == (30, len(x), tm.spec.num_classes)
    assert not np.allclose(draws[0], draws[1])
    for key in ("temperature", "confidence", "ood_auroc"):
        assert key in tm.card, key


def test_confidence_report_on_real_test_images():
    tm = require_model("plant")
    samples, x = real_images("plant", 60, per_class=True)
    labels = np.array([s.label for s in samples])
    report = uncertainty.confidence_report(tm, x, labels, temperature=1.3, samples=20)
    methods = ["softmax", "temperature", "mc_dropout"] + (["variational"] if tm.variational_head is not None else [])
    freq = predict_proba(tm.classifier, x)
    for method in methods:
        r = report[method]
        assert 0 <= r["ece"] <= 1 and r["nll"] > 0 and 0 <= r["brier"] <= 2
        assert sum(r["reliability"]["count"]) == len(labels)
        assert r["accuracy"]["low"] <= r["accuracy"]["value"] <= r["accuracy"]["high"]
    assert report["softmax"]["nll"] == pytest.approx(metrics.negative_log_likelihood(freq, labels), abs=1e-4)
    assert report["temperature"]["value"] == 1.3
    assert report["temperature"]["accuracy"]["value"] == report["softmax"]["accuracy"]["value"]
    assert report["temperature"]["nll"] != report["softmax"]["nll"]
    for method, accs in report["posterior_accuracy_histogram"].items():
        if method == "ensemble":  # one accuracy per member, each that member's own (members may agree)
            own = [float(np.mean(np.argmax(predict_proba(m, x), axis=1) == labels)) for m in tm.members]
            assert accs == pytest.approx(own), (accs, own)
        else:  # one accuracy per sampled network: 20 draws of the posterior, which differ
            assert len(accs) == 20 and len(set(accs)) > 1, method
    assert "ensemble" in report and report["ensemble"]["nll"] > 0  # the deep ensemble is scored beside the others
    curve = report["referral_curve"]
    assert curve["fractions"][0] == 0.0 and curve["fractions"][-1] == 0.5
    assert curve["max_softmax"][0] == pytest.approx(report["softmax"]["accuracy"]["value"])
    assert curve["retained"][-1] == 30
    # Referring the least confident half leaves the confident half, which is more often right.
    assert curve["max_softmax"][-1] >= curve["max_softmax"][0]
    json.dumps(report)


def test_ood_sources_are_prepared_like_this_task_and_scored():
    tm = require_model("plant")
    spec = tm.spec
    ood = uncertainty.ood_images(spec, per_source=4)
    assert set(ood) == {"skin", "mammo", "retina", "gaussian_noise", "uniform_noise"}
    for images in ood.values():
        assert images.shape == (4, spec.input_size, spec.input_size, spec.channels)
        assert 0 <= images.min() and images.max() <= 255
    x = real_images("plant", 20)[1]
    in_features = uncertainty.features_of(tm, x)
    auc = uncertainty.ood_auroc(tm, in_features, ood, samples=20, ensemble=member_probabilities(tm, x))
    for score in ("mutual_information", "max_softmax", "ensemble_mutual_information"):
        assert set(auc[score]) == set(ood)
        assert all(0.0 <= v <= 1.0 for v in auc[score].values())
    assert auc["images"] == {"in_distribution": 20, **{k: 4 for k in ood}}
    # The members disagree on pixels no leaf has (0.999 on the card's 193 test images and 40 noise images).
    assert auc["ensemble_mutual_information"]["uniform_noise"] > 0.9
    assert "ensemble_mutual_information" not in uncertainty.ood_auroc(tm, in_features, ood, samples=20)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_every_shipped_ensemble_scores_its_own_disagreement_on_foreign_images(task_id):
    """The card's out-of-distribution table has the deep ensemble, the shipped Bayesian method, beside MC dropout."""
    card = read_card(get_task(task_id))
    assert len(card["ensemble"]["members"]) > 1
    assert set(card["ood_auroc"]["ensemble_mutual_information"]) == set(card["ood_auroc"]["mutual_information"])
