"""Any model a user has: a tf.keras 2 `.h5`, a SavedModel and ONNX graphs (NHWC and NCHW),
built here from a CNN trained on real plant thumbnails, open in LifeLens and predict
exactly what the original network predicts; each explains with every method its format
allows and refuses the others with one reason; unsafe files are refused unread."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import foreign_models
from lifelens import cli
from lifelens.explain import METHODS, deletion_auc, explain
from lifelens.model_formats import Preprocessing, detect_format, method_options, open_model
from lifelens.models import ModelError

CLASSES = list(foreign_models.CLASSES)
FORMAT_FILES = {"h5": "leaf.h5", "savedmodel": "leaf_savedmodel.zip", "onnx": "leaf.onnx", "onnx_nchw": "leaf_nchw.onnx"}
BLACK_BOX = {"occlusion", "rise", "shap_partition"}
GRADIENT = {"shap", "integrated_gradients"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return foreign_models.build(str(tmp_path_factory.mktemp("foreign")))


@pytest.fixture(scope="module")
def opened(built):
    return {key: open_model(built[key], name, CLASSES, Preprocessing("0-1")) for key, name in FORMAT_FILES.items()}


def test_the_test_network_learned_something(built):
    """The reference is a real classifier, not noise: above chance on held-out plant leaves."""
    x, y = foreign_models.plant_thumbnails(40, "test")
    accuracy = float((built["reference"].predict(x / 255.0, verbose=0).argmax(axis=1) == y).mean())
    assert accuracy >= 0.7, accuracy


@pytest.mark.parametrize("key", list(FORMAT_FILES))
def test_every_format_predicts_what_the_original_network_predicts(built, opened, key):
    reference = built["reference"].predict(built["images"] / 255.0, verbose=0)
    np.testing.assert_allclose(opened[key].predict(built["images"]), reference, atol=1e-5)


def test_formats_are_detected_from_their_bytes(built):
    assert [detect_format(built[k], n) for k, n in FORMAT_FILES.items()] == ["h5", "savedmodel", "onnx", "onnx"]
    assert detect_format(built["h5"], "renamed.bin") == "h5"  # the HDF5 signature, not the name
    with pytest.raises(ModelError, match="not a model file"):
        detect_format(b"just text", "notes.txt")


def test_nchw_and_nhwc_layouts_are_read_from_the_input_shape(opened):
    assert "NHWC" in " ".join(opened["onnx"].notes)
    assert "NCHW" in " ".join(opened["onnx_nchw"].notes)


def test_declared_preprocessing_is_applied_inside_the_model(built):
    """Declaring the wrong value range changes the answer; the right one reproduces it."""
    wrong = open_model(built["onnx"], "leaf.onnx", CLASSES, Preprocessing("0-255"))
    right = open_model(built["onnx"], "leaf.onnx", CLASSES, Preprocessing("0-1"))
    reference = built["reference"].predict(built["images"] / 255.0, verbose=0)
    np.testing.assert_allclose(right.predict(built["images"]), reference, atol=1e-5)
    assert np.abs(wrong.predict(built["images"]) - reference).max() > 1e-3
    bgr = open_model(built["h5"], "leaf.h5", CLASSES, Preprocessing("0-1", "bgr"))
    np.testing.assert_allclose(bgr.predict(built["images"][..., ::-1].copy()), reference, atol=1e-5)


def test_each_format_says_which_methods_it_supports(opened):
    assert set(opened["h5"].supported_methods()) == set(METHODS)
    assert set(opened["savedmodel"].supported_methods()) == GRADIENT | BLACK_BOX
    assert set(opened["onnx"].supported_methods()) == BLACK_BOX
    assert "sealed layer" in opened["savedmodel"].method_support("gradcam")
    assert "predictions only" in opened["onnx"].method_support("integrated_gradients")
    assert opened["h5"].method_support("mc_dropout") is None
    assert "switched off" in opened["savedmodel"].method_support("mc_dropout")
    assert "switched off" in opened["onnx"].method_support("mc_dropout")


@pytest.mark.parametrize("key", ["h5", "savedmodel", "onnx"])
def test_every_supported_method_explains_and_the_others_refuse_with_a_reason(built, opened, key):
    model = opened[key]
    image = built["images"][:1]
    fast = {"rise": {"masks": 64}, "shap_partition": {"max_evals": 64}, "scorecam": {}, "shap": {"nsamples": 8}}
    for method in METHODS:
        options = {**method_options(method, image[0]), **{k: v for k, v in fast.get(method, {}).items()
                                                           if k in METHODS[method].defaults}}
        if model.method_support(method) is None:
            result = explain(model.explainable, image, method=method, **options)
            assert result.maps.shape == (1, foreign_models.SIZE, foreign_models.SIZE)
            assert np.isfinite(result.maps).all() and result.maps.max() > 0, method
        else:
            with pytest.raises(ValueError, match="needs"):
                explain(model.explainable, image, method=method, **options)


def test_black_box_maps_are_scored_like_any_other(built, opened):
    """Deletion AUC works on an ONNX graph, and occlusion's map beats a reversed map on it."""
    model = opened["onnx"].explainable
    image = built["images"][:2]
    result = explain(model, image, method="occlusion")
    faithful = deletion_auc(model, image, result.maps, result.targets, steps=12)
    reversed_map = deletion_auc(model, image, 1.0 - result.maps, result.targets, steps=12)
    assert (faithful <= reversed_map + 1e-6).all(), (faithful, reversed_map)


def test_uncertainty_is_mc_dropout_where_there_is_dropout_and_tta_elsewhere(built, opened):
    from lifelens.uncertainty.tta import TTA_VIEWS, predict_with_uncertainty

    keras_pred = predict_with_uncertainty(opened["h5"], built["images"][0], samples=20)
    onnx_pred = predict_with_uncertainty(opened["onnx"], built["images"][0])
    assert keras_pred["method"] == "mc_dropout" and len(keras_pred["samples"]) == 20
    assert onnx_pred["method"] == "tta" and len(onnx_pred["samples"]) == len(TTA_VIEWS)
    # TTA on an ONNX graph and on the same network as a SavedModel agree: the same views, the same weights
    saved_pred = predict_with_uncertainty(opened["savedmodel"], built["images"][0])
    np.testing.assert_allclose(onnx_pred["samples"], saved_pred["samples"], atol=1e-5)
    assert onnx_pred["std"].max() > 0  # the views really differ


def test_h5_with_a_lambda_layer_is_refused_before_it_is_built(built, monkeypatch):
    import keras

    def forbidden(*args, **kwargs):
        raise AssertionError("a Lambda layer was deserialised")

    monkeypatch.setattr(keras.layers.Lambda, "from_config", classmethod(forbidden))
    with pytest.raises(ModelError, match="Lambda layer"):
        open_model(built["h5_lambda"], "lambda.h5")


def test_h5_naming_a_custom_class_is_refused(built):
    import h5py

    buffer = io.BytesIO(built["h5"])
    with h5py.File(buffer, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        config["config"]["layers"][1]["class_name"] = "MyCustomConv"
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ModelError, match="MyCustomConv"):
        open_model(buffer.getvalue(), "custom.h5")


def test_damaged_files_of_every_format_get_one_clear_message(built):
    for key, name in FORMAT_FILES.items():
        content = built[key]
        with pytest.raises(ModelError) as info:
            open_model(content[: len(content) // 3], name)
        assert name in str(info.value) and "\n" not in str(info.value)
    empty_zip = io.BytesIO()
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "nothing")
    with pytest.raises(ModelError, match="neither a Keras 3 archive"):
        open_model(empty_zip.getvalue(), "other.zip")


@pytest.mark.parametrize("key, name", [("keras_open_size", "open.keras"), ("onnx_open_size", "open.onnx")])
def test_a_model_that_leaves_its_size_open_takes_the_declared_size(built, key, name):
    with pytest.raises(ModelError, match="input size is not fixed"):
        open_model(built[key], name, CLASSES, Preprocessing("0-1"))
    opened = open_model(built[key], name, CLASSES, Preprocessing("0-1", input_size=foreign_models.SIZE))
    assert opened.input_size == foreign_models.SIZE
    reference = built["reference"].predict(built["images"] / 255.0, verbose=0)
    np.testing.assert_allclose(opened.predict(built["images"]), reference, atol=1e-5)
    method = "gradcam" if key.startswith("keras") else "occlusion"
    assert explain(opened.explainable, built["images"][:1], method=method).maps.shape == (1, 48, 48)


def test_wrong_number_of_class_names_is_refused(built):
    with pytest.raises(ModelError, match="2 outputs but 3 class names"):
        open_model(built["onnx"], "leaf.onnx", ["a", "b", "c"])


# ----------------------------------------------------------------------------- the command line

@pytest.fixture(scope="module")
def model_files(built, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model_files")
    for key, name in FORMAT_FILES.items():
        (folder / name).write_bytes(built[key])
    return folder


@pytest.fixture(scope="module")
def leaf_files(built, tmp_path_factory):
    from lifelens import imaging

    folder = tmp_path_factory.mktemp("leaves")
    for i, image in enumerate(built["images"][:3]):
        (folder / f"leaf{i}.png").write_bytes(imaging.encode_png(image.astype(np.uint8)))
    return folder


@pytest.mark.parametrize("key", list(FORMAT_FILES))
def test_cli_predicts_with_any_format(model_files, leaf_files, key, capsys, built):
    code = cli.main(["predict", "--model", str(model_files / FORMAT_FILES[key]), "--classes", ",".join(CLASSES),
                     "--input-range", "0-1", "--samples", "10", str(leaf_files)])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["file"].rsplit("/", 1)[-1] for r in records] == ["leaf0.png", "leaf1.png", "leaf2.png"]
    assert all(r["prediction"] in CLASSES and abs(sum(r["probabilities"]) - 1) < 1e-4 for r in records)
    assert records[0]["uncertainty"]["method"] == ("mc_dropout" if key == "h5" else "tta")


@pytest.mark.parametrize("key", ["h5", "savedmodel", "onnx_nchw"])
def test_cli_explains_with_occlusion_in_any_format(model_files, leaf_files, key, tmp_path):
    out = tmp_path / "maps"
    code = cli.main(["explain", "--model", str(model_files / FORMAT_FILES[key]), "--classes", ",".join(CLASSES),
                     "--input-range", "0-1", "--method", "occlusion", str(leaf_files / "leaf0.png"), "--out", str(out)])
    assert code == 0
    record = json.loads((out / "leaf0.json").read_text())
    assert (out / record["methods"]["occlusion"]["overlay"]).stat().st_size > 0
    assert 0 <= record["methods"]["occlusion"]["deletion_auc"] <= 1


def test_cli_refuses_a_method_the_format_cannot_do_in_one_line(model_files, leaf_files, tmp_path, capsys):
    code = cli.main(["explain", "--model", str(model_files / "leaf.onnx"), "--method", "gradcam",
                     str(leaf_files / "leaf0.png"), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "predictions only" in err[0] and "occlusion" in err[0]


def test_cli_names_a_bad_model_file(tmp_path, leaf_files, capsys):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x01garbage")
    assert cli.main(["predict", "--model", str(bad), str(leaf_files)]) == 2
    err = capsys.readouterr().err
    assert "broken.onnx" in err and "Traceback" not in err


def test_cli_evaluates_any_format_on_a_labelled_folder(model_files, built, tmp_path, capsys):
    """The folder format of the shared data (images/ + labels.csv); labels are the class names."""
    from lifelens import imaging

    x, y = foreign_models.plant_thumbnails(20, "test")
    (tmp_path / "images").mkdir()
    rows = ["path,label"]
    for i, (image, label) in enumerate(zip(x, y)):
        (tmp_path / "images" / f"{i}.png").write_bytes(imaging.encode_png(image.astype(np.uint8)))
        rows.append(f"{i}.png,{CLASSES[label]}")
    (tmp_path / "images" / "bad.png").write_bytes(b"broken")
    rows.append("bad.png,healthy")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    expected = float((built["reference"].predict(x / 255.0, verbose=0).argmax(axis=1) == y).mean())
    for key in ("onnx", "savedmodel"):
        code = cli.main(["evaluate", "--model", str(model_files / FORMAT_FILES[key]), "--classes", ",".join(CLASSES),
                         "--input-range", "0-1", "--data", str(tmp_path)])
        captured = capsys.readouterr()
        result = json.loads(captured.out)
        assert code == 2 and "bad.png" in captured.err  # the bad file named, the rest evaluated
        assert result["n"] == 20 and result["accuracy"] == pytest.approx(expected)
        low, high = result["accuracy_interval_95"]
        assert low <= result["accuracy"] <= high and 0 <= result["macro_auc"] <= 1
        assert sum(map(sum, result["confusion_matrix"])) == 20


def test_an_onnx_graph_taking_8_bit_pixels_gets_them(built):
    """An export with its preprocessing baked in takes uint8 0..255: LifeLens feeds that type."""
    opened = open_model(foreign_models.uint8_variant(built["onnx"]), "pixels.onnx", CLASSES, Preprocessing("0-255"))
    reference = built["reference"].predict(built["images"] / 255.0, verbose=0)
    np.testing.assert_allclose(opened.predict(built["images"]), reference, atol=1e-5)


def test_a_tf_keras_applications_network_opens_from_h5(tmp_path):
    """tf.keras 2 writes BatchNormalization's axis as a list and DepthwiseConv2D with groups,
    which Keras 3 refuses: LifeLens rewrites both in memory. A backbone nested inside another
    model gets one message saying which formats to use instead."""
    import tf_keras as k2

    x = np.random.default_rng(0).uniform(0, 255, (2, 96, 96, 3)).astype(np.float32)
    flat = k2.applications.MobileNetV2(input_shape=(96, 96, 3), include_top=True, weights=None, alpha=0.35, classes=3)
    flat.save(tmp_path / "mobilenet.h5")
    opened = open_model((tmp_path / "mobilenet.h5").read_bytes(), "mobilenet.h5", ["a", "b", "c"])
    np.testing.assert_allclose(opened.predict(x), flat.predict(x, verbose=0), atol=1e-5)
    assert explain(opened.explainable, x[:1], method="gradcam").layer.endswith("out_relu")
    nested = k2.Sequential([k2.layers.Input((96, 96, 3)), flat, k2.layers.Dense(2, activation="softmax")])
    nested.save(tmp_path / "nested.h5")
    try:
        open_model((tmp_path / "nested.h5").read_bytes(), "nested.h5")
    except ModelError as exc:  # one clear message naming what to do instead
        assert "SavedModel" in str(exc) and "ONNX" in str(exc) and "\n" not in str(exc)
