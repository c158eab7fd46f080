"""The dashboard, driven through Streamlit's AppTest on the real models and real images.

Every page renders without an exception; a task page shows a prediction with both
confidences and a heatmap; changing method, class and colormap re-renders the map; a
damaged upload gives one plain error and the page keeps working; uploaded models are
checked and explained.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import TASK_IDS
from conftest import shipped_model as load_shipped_model
from lifelens import cases, data, model_formats
from lifelens.models import ModelError, read_card
from lifelens.tasks import get_task

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 90  # seconds per script run: the first run imports TensorFlow and loads a model on a busy CPU
PAGES = ["home", *TASK_IDS, "inside", "playground", "training_lab", "uncertainty_lab", "model_cards", "your_model"]


def task_app(task_id: str) -> None:
    """A task page inside the app's frame (presenter and privacy switches), as app.py draws it.
    Task pages are made from the registry (no file each), so AppTest runs them as a function."""
    from ui import common, task_page

    common.frame()
    task_page.render(task_id)


def open_page(page: str) -> AppTest:
    if page in TASK_IDS:
        at = AppTest.from_function(task_app, args=(page,), default_timeout=TIMEOUT)
        at.run()
        return at
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    return at


def test_the_app_lists_one_page_per_registered_task():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    no_failure(at)
    registered = {info.get("url_pathname") for info in at._registered_pages.values()}
    assert set(TASK_IDS) <= registered


def test_home_credits_every_source_and_says_whether_it_trained():
    at = open_page("home")
    no_failure(at)
    captions = [c.value for c in at.caption]
    for task_id in TASK_IDS:
        for source in get_task(task_id).extra_sources:
            role = "Also trained on" if source.trains else "Tested on, never trained on"
            assert source.credit and f"{role}: {source.credit}." in captions, source.folder


def test_home_says_how_each_model_did_on_our_test_split_against_its_goal():
    at = open_page("home")
    no_failure(at)
    shown = [m for m in at.markdown if m.value.startswith("**Our test split:**")]
    assert len(shown) == len(TASK_IDS)
    for task_id, line in zip(TASK_IDS, shown):
        card = read_card(get_task(task_id))
        for goal in card["goals"]:
            low, high = card["metrics"]["intervals95"][goal["metric"]]
            verdict = "met" if goal["met_on_our_test_split"] else "NOT met"
            assert (f"{goal['metric'].replace('_', ' ')} {goal['our_test_split']:.3f} [{low:.3f}, {high:.3f}] "
                    f"(goal {goal['goal']:.2f}: {verdict})") in line.value, line.value
        for goal in card.get("source_goals", []):  # the second held-out set's goals, on the nearest folder we have
            low, high = goal["interval95"]
            verdict = "met" if goal["met_on_our_test_share"] else "NOT met"
            assert (f"on {goal['source_name']}{', read in pairs' if goal['read'] == 'paired' else ''}: "
                    f"{goal['metric'].replace('_', ' ')} {goal['our_test_share']:.3f} [{low:.3f}, {high:.3f}] "
                    f"(goal {goal['goal']:.2f} on other sources' images: {verdict})") in line.value, line.value
        assert "test split" in line.help and "other clinics" in line.help


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def needs_model(task_id: str) -> None:
    if not get_task(task_id).model_path.is_file():
        pytest.skip(f"models/{task_id}.keras is not there yet (still training)")


def metric(at: AppTest, label: str) -> str:
    found = [m.value for m in at.metric if m.label == label]
    assert found, f"no metric {label!r}; metrics: {[m.label for m in at.metric]}"
    return found[0]


def overlay_of(at: AppTest):
    """(url, caption) of the main explanation overlay."""
    for img in at.image:
        for url, caption in zip(img.value, img.captions):
            if " for **" in caption:
                return url, caption
    raise AssertionError(f"no explanation overlay; image captions: {[i.captions for i in at.image]}")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_an_exception(page):
    at = open_page(page)
    no_failure(at)
    assert at.title, "every page has a title"
    if page in TASK_IDS and not get_task(page).model_path.is_file():
        assert any("not trained yet" in i.value for i in at.info)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_gallery_case_shows_both_confidences_and_a_heatmap(task_id):
    needs_model(task_id)
    at = open_page(task_id)
    no_failure(at)
    picker = at.selectbox(key=f"{task_id}_case")
    picker.set_value(1).run()  # a second gallery case, from OUR test split
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    softmax, bayes = metric(at, "Softmax confidence"), metric(at, "Bayesian confidence")
    for value in (softmax, bayes):
        assert value.endswith("%") and 0 <= int(value[:-1]) <= 100
    assert float(metric(at, "Entropy (nats)")) >= 0
    assert float(metric(at, "Mutual information (nats)")) >= 0
    url, caption = overlay_of(at)
    assert "Grad-CAM" in caption
    spec = get_task(task_id)
    case = cases.gallery(spec)[1]
    assert any(f"True class: {spec.classes[case.label].name}" in c for img in at.image for c in img.captions)
    assert any("not a diagnostic device" in c.value for c in at.caption)  # the disclaimer beside the prediction
    assert at.get("vega_lite_chart"), "the confidence charts are drawn"
    # An ensemble prediction fused with the boosted model says so beside the numbers, and only then.
    fused = read_card(spec)["fusion"]["used"]
    assert any("a second, simpler opinion" in c.value for c in at.caption) == fused


def test_switching_method_class_and_colormap_redraws_the_map():
    needs_model("plant")
    at = open_page("plant")
    no_failure(at)
    first_url, first_caption = overlay_of(at)
    at.selectbox(key="plant_method").set_value("gradcam++").run()
    no_failure(at)
    url, caption = overlay_of(at)
    assert caption.startswith("Grad-CAM++") and url != first_url
    predicted = at.selectbox(key="plant_target").value
    other = (predicted + 1) % get_task("plant").num_classes
    at.selectbox(key="plant_target").set_value(other).run()
    no_failure(at)
    url2, caption2 = overlay_of(at)
    assert get_task("plant").class_names[other] in caption2 and url2 != url
    at.selectbox(key="plant_colormap").set_value("viridis").run()
    no_failure(at)
    url3, _ = overlay_of(at)
    assert url3 != url2
    at.selectbox(key="plant_method").set_value("integrated_gradients").run()  # a pixel method: no layer
    no_failure(at)
    assert overlay_of(at)[1].startswith("Integrated")
    assert not at.error, [e.value for e in at.error]
    # The fast/precise switch names what changes the map (RISE's masks), not how many images go in one call.
    at.selectbox(key="plant_method").set_value("rise").run()
    no_failure(at)
    precise_help = at.toggle(key="plant_precise").help
    assert "masks = 120" in precise_help and "masks = 400" in precise_help and "batch_size" not in precise_help


def test_comparison_grid_scores_each_map():
    needs_model("plant")
    at = open_page("plant")
    at.toggle(key="plant_compare").set_value(True).run()
    no_failure(at)
    at.multiselect(key="plant_compare_methods").set_value(["gradcam", "eigencam"]).run()
    no_failure(at)
    deletion = [float(m.value) for m in at.metric if m.label == "Deletion ↓"]
    insertion = [float(m.value) for m in at.metric if m.label == "Insertion ↑"]
    assert len(deletion) == len(insertion) == 2
    assert all(0.0 <= v <= 1.0 for v in deletion + insertion)


def test_gradcam_uncertainty_map_under_mc_dropout():
    needs_model("plant")
    at = open_page("plant")
    at.toggle(key="plant_gradcam_mc").set_value(True).run()
    no_failure(at)
    assert any("Standard deviation" in c for img in at.image for c in img.captions)
    assert not at.error, [e.value for e in at.error]


def test_damaged_upload_shows_one_error_and_the_page_keeps_working():
    needs_model("plant")
    at = open_page("plant")
    at.radio(key="plant_source").set_value("Upload").run()
    no_failure(at)
    real = (get_task("plant").data_dir() / "images" / cases.gallery(get_task("plant"))[0].path).read_bytes()
    at.file_uploader(key="plant_upload").upload("leaf.jpg", real[: len(real) // 3], "image/jpeg").run()
    no_failure(at)
    assert len(at.error) == 1, [e.value for e in at.error]
    assert "leaf.jpg" in at.error[0].value
    assert not [m for m in at.metric if m.label == "Softmax confidence"]  # no prediction for a bad image
    # the same page then analyses a real upload
    at.file_uploader(key="plant_upload").clear().upload("leaf.jpg", real, "image/jpeg").run()
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Softmax confidence").endswith("%")
    overlay_of(at)
    # and the gallery still works
    at.radio(key="plant_source").set_value("Gallery").run()
    no_failure(at)
    assert metric(at, "Bayesian confidence").endswith("%")


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_an_image_of_another_kind_gets_the_gate_message(task_id):
    needs_model(task_id)
    other = get_task(next(t for t in TASK_IDS if t != task_id))
    path = other.image_path(data.task_splits(other)["test"][0])
    at = open_page(task_id)
    at.radio(key=f"{task_id}_source").set_value("Upload").run()
    at.file_uploader(key=f"{task_id}_upload").upload(
        f"other{path.suffix.lower()}", path.read_bytes(), "image/png" if path.suffix.lower() == ".png" else "image/jpeg").run()
    no_failure(at)
    assert any("does not look like" in w.value for w in at.warning), [w.value for w in at.warning]


def test_camera_photo_is_predicted():
    needs_model("skin")
    spec = get_task("skin")
    photo = (spec.data_dir() / "images" / cases.gallery(spec)[3].path).read_bytes()
    at = open_page("skin")
    at.radio(key="skin_source").set_value("Camera").run()
    at.camera_input(key="skin_camera").upload("photo.jpg", photo).run()
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Softmax confidence").endswith("%")
    assert any("camera photo" in c for img in at.image for c in img.captions)


def test_not_an_image_upload_is_refused_plainly():
    needs_model("plant")
    at = open_page("plant")
    at.radio(key="plant_source").set_value("Upload").run()
    at.file_uploader(key="plant_upload").upload("notes.png", b"these are not pixels" * 20, "image/png").run()
    no_failure(at)
    assert len(at.error) == 1 and "notes.png" in at.error[0].value


def test_presenter_mode_hides_fine_controls():
    needs_model("plant")
    at = open_page("plant")
    assert at.selectbox(key="plant_layer") is not None
    at.toggle(key="presenter").set_value(True).run()
    no_failure(at)
    keys = {s.key for s in at.selectbox}
    assert "plant_method" in keys and "plant_layer" not in keys and "plant_colormap" not in keys
    assert not [t for t in at.toggle if t.key == "plant_compare"]
    assert metric(at, "Softmax confidence").endswith("%")


def test_export_buttons_are_offered():
    needs_model("plant")
    at = open_page("plant")
    labels = [b.label for b in at.get("download_button")]
    assert "Download PNG figure" in labels and "Download HTML report" in labels


def test_model_card_page_shows_cnn_against_baseline():
    needs_model("plant")
    at = open_page("model_cards")
    no_failure(at)
    card_metrics = {m.label: m for m in at.metric}
    assert "accuracy" in card_metrics and "balanced accuracy" in card_metrics
    assert at.get("vega_lite_chart")
    comparison = at.dataframe[0].value
    shipped = (["Deep ensemble fused with gradient boosting (shipped)", "Deep ensemble, networks alone"]
               if read_card(get_task("plant"))["fusion"]["used"] else ["Deep ensemble"])
    assert list(comparison["model"])[:len(shipped) + 1] == shipped + ["One member"]
    assert not [c for c in comparison.columns if c.startswith("_")], "internal columns leak onto the screen"


def test_model_card_page_shows_a_fused_prediction_beside_its_networks_alone():
    needs_model("skin")
    card = read_card(get_task("skin"))
    assert card["fusion"]["used"], "skin's card fuses the boosted model (chosen on validation)"
    at = open_page("model_cards")
    at.selectbox(key="cards_task").set_value("skin").run()
    no_failure(at)
    rows = dict(zip(at.dataframe[0].value["model"], at.dataframe[0].value["isic2017 score"]))
    assert rows["Deep ensemble fused with gradient boosting (shipped)"].startswith(f"{card['metrics']['isic2017_score']:.3f}")
    assert rows["Deep ensemble, networks alone"].startswith(f"{card['network_ensemble_metrics']['isic2017_score']:.3f}")
    caption = next(c.value for c in at.caption if "a second, simpler opinion" in c.value)
    assert f"weights {card['fusion']['network_weight']} and {card['fusion']['companion_weight']}" in caption


def test_model_card_page_says_where_the_second_set_goal_is_not_met():
    """Retina's goal for images from other clinics is scored on EyePACS's test share, read in
    pairs; the page says plainly whether it is met, with the interval."""
    needs_model("retina")
    card = read_card(get_task("retina"))
    goal = next(g for g in card["source_goals"] if g["source"] == "retina_eyepacs")
    at = open_page("model_cards")
    at.selectbox(key="cards_task").set_value("retina").run()
    no_failure(at)
    caption = next(c.value for c in at.caption if c.value.startswith("Goal on the second held-out set"))
    low, high = goal["interval95"]
    assert f"on EyePACS, read in pairs: referable auc {goal['our_test_share']:.3f} [{low:.3f}, {high:.3f}]" in caption
    assert ("NOT met" if not goal["met_on_our_test_share"] else ": met)") in caption


def test_model_card_page_says_how_a_fine_tuned_network_was_trained_in_both_stages():
    """The plant curves show only the fine-tuning with camera faults: the caption names the
    from-scratch stage before it, and epochs are whole numbers on the axis."""
    import json

    needs_model("plant")
    first = read_card(get_task("plant"))["ensemble"]["members"][0]
    origin = first["fine_tuned_from"]
    at = open_page("model_cards")
    no_failure(at)
    caption = next(c.value for c in at.caption if c.value.startswith("The shown network was trained from scratch"))
    assert (f"from scratch for {origin['epochs']} epochs (epoch {origin['selected_epoch']} kept" in caption
            and f"then fine-tuned for {first['epochs']} epochs with simulated camera faults" in caption), caption
    curves = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart") if '"epoch"' in c.proto.spec]
    assert curves and all(panel["encoding"]["x"]["axis"]["format"] == "d" for panel in curves[0]["hconcat"])


def test_training_summary_of_a_network_trained_once_names_its_epochs_and_the_ensembles_time():
    from lifelens.card_tables import training_summary

    card = read_card(get_task("retina"))
    text = training_summary(card)
    assert text.startswith(f"{len(card['history'])} epochs in ") and "fine-tuned" not in text
    assert f"epoch {card['ensemble']['members'][0]['selected_epoch']} was kept" in text
    assert f"The deep ensemble's {len(card['ensemble']['members'])} members took " in text


def test_model_card_page_says_what_each_source_was_used_for():
    """A source that trained the model is no stand-in for an unseen clinic: the card page says which did."""
    from lifelens.evaluate import EXTRA_SOURCE_USE

    needs_model("retina")
    spec = get_task("retina")
    at = open_page("model_cards")
    at.selectbox(key="cards_task").set_value("retina").run()
    no_failure(at)
    tables = [t.value for t in at.dataframe if "used for" in t.value.columns]
    assert len(tables) == 1
    used = dict(zip(tables[0]["source"], tables[0]["used for"]))
    assert used[spec.data_folder].startswith("training")
    for source in spec.extra_sources:
        assert used[source.folder] == EXTRA_SOURCE_USE[source.trains]
    # each share's numbers carry their bootstrap interval, as the headline's do
    shown = dict(zip(tables[0]["source"], tables[0]["referable auc"]))
    for source, m in read_card(spec)["metrics_by_source"].items():
        low, high = m["intervals95"]["referable_auc"]
        assert shown[source] == f"{m['referable_auc']:.3f} [{low:.3f}, {high:.3f}]"


def test_model_card_page_shows_the_paired_read_beside_the_film_read():
    needs_model("mammo")
    at = open_page("model_cards")
    at.selectbox(key="cards_task").set_value("mammo").run()
    no_failure(at)
    comparison = at.dataframe[0].value
    shipped = (["Deep ensemble fused with gradient boosting (shipped)", "Deep ensemble, networks alone"]
               if read_card(get_task("mammo"))["fusion"]["used"] else ["Deep ensemble"])
    assert list(comparison["model"])[:len(shipped) + 2] == shipped + ["Deep ensemble, read in pairs", "One member"]
    paired = read_card(get_task("mammo"))["paired_read"]
    caption = next(c.value for c in at.caption if c.value.startswith("Read in pairs, beside the other breast"))
    assert f"{paired['val_score_paired']:.3f} paired" in caption
    assert f"abnormal auc {paired['metrics']['one_image_read']['abnormal_auc']:.3f} -> {paired['metrics']['abnormal_auc']:.3f}" in caption


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_uncertainty_lab_draws_shift_and_simulates_referral(task_id):
    at = open_page("uncertainty_lab")
    at.selectbox(key="lab_task").set_value(task_id).run()
    no_failure(at)
    assert not [i for i in at.info if "not in this model card" in i.value], [i.value for i in at.info]
    assert len(at.get("vega_lite_chart")) >= 5  # reliability, referral, OOD, shift lines, shift AUROC
    ood = {k: v for k, v in read_card(get_task(task_id))["ood_auroc"].items() if k != "images"}
    means = {k: np.mean(list(v.values())) for k, v in ood.items()}
    best = max(means, key=means.get)
    caption = next(c.value for c in at.caption if "Best here:" in c.value)
    assert f"mean AUROC {means[best]:.2f} over these sources" in caption and len(ood) == 4, caption
    # the ensemble row says when it is the networks fused with the boosted model
    fused = read_card(get_task(task_id))["fusion"]["used"]
    assert any(c.value.startswith("Deep ensemble row: ") for c in at.caption) == fused
    at.slider(key="lab_referral_share").set_value(0).run()
    everyone = float(metric(at, "Accuracy on the cases kept"))
    at.slider(key="lab_referral_share").set_value(40).run()

    n = len(read_card(get_task(task_id))["referral_data"]["labels"])
    assert int(metric(at, "Referred, per 1,000 cases")) == round(1000 * round(0.4 * n) / n)
    # referring the least sure 40 % leaves cases the model gets right more often than all of them
    assert float(metric(at, "Accuracy on the cases kept")) > everyone


def test_shift_lab_redraws_the_prediction_as_the_image_is_blurred():
    needs_model("skin")
    at = open_page("skin")
    at.toggle(key="skin_shift_lab").set_value(True).run()
    no_failure(at)
    def lab_state():
        picture = [url for img in at.image for url, c in zip(img.value, img.captions) if "Shifted image" in c]
        return picture, [(m.label, m.value, m.delta) for m in at.metric]

    picture, before = lab_state()
    assert len(picture) == 1
    assert "Colour photos only" in at.slider(key="skin_shift_colour").help
    at.slider(key="skin_shift_blur").set_value(6.0).run()
    no_failure(at)
    assert metric(at, "90 % conformal set").endswith(" of 3")
    blurred, after = lab_state()
    assert blurred != picture  # the lab redrew the shifted image and its map
    # the page's own prediction (the first metrics) is untouched; the lab's figures are recomputed
    assert after[:4] == before[:4] and len(after) == len(before)


def test_inside_views_all_render():
    needs_model("plant")
    at = open_page("inside")
    no_failure(at)
    assert any("ch " in c for img in at.image for c in img.captions)  # the feature hierarchy
    for view in ("Filters", "Activation maximisation", "Top patches", "Architecture"):
        at.segmented_control(key="inside_view").set_value(view).run()
        no_failure(at)
        assert not at.error, (view, [e.value for e in at.error])


def test_playground_shows_the_worked_example():
    at = open_page("playground")
    no_failure(at)
    # 3x1 + 0x0 + 1x(-1) + 1x1 + 5x0 + 8x(-1) + 2x1 + 7x0 + 2x(-1) = -5 (the classic first cell)
    assert any(code.value.endswith("= -5") for code in at.code)
    at.slider(key="pg_row").set_value(3)
    at.slider(key="pg_col").set_value(3).run()
    assert any(code.value.endswith("= -16") for code in at.code)


# ----------------------------------------------------------------------------- bring your own model

def byo_page() -> AppTest:
    at = open_page("your_model")
    no_failure(at)
    return at


def test_uploaded_shipped_model_is_explained_from_memory():
    needs_model("plant")
    at = byo_page()
    at.text_area(key="byo_names").set_value("\n".join(get_task("plant").class_names))
    at.file_uploader(key="byo_model").upload("plant.keras", get_task("plant").model_path.read_bytes()).run()
    no_failure(at)
    at.radio(key="byo_source").set_value("A LifeLens gallery case").run()
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Softmax confidence").endswith("%")
    url, caption = overlay_of(at)
    assert "Grad-CAM" in caption


def test_damaged_model_upload_shows_one_error():
    at = byo_page()
    content = get_task("plant").model_path.read_bytes() if get_task("plant").model_path.is_file() else b"PK\x03\x04"
    at.file_uploader(key="byo_model").upload("broken.keras", content[: len(content) // 2]).run()
    no_failure(at)
    assert len(at.error) == 1, [e.value for e in at.error]
    assert "keras" in at.error[0].value.lower()


def _keras_bytes(model) -> bytes:
    """A real .keras archive built in memory (saved through a temporary directory of the test)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.keras"
        model.save(path)
        return path.read_bytes()


def test_models_lifelens_cannot_explain_are_refused_with_a_reason():
    import keras

    at = byo_page()
    dense = keras.Sequential([keras.Input((20,)), keras.layers.Dense(3, activation="softmax")])
    at.file_uploader(key="byo_model").upload("tabular.keras", _keras_bytes(dense)).run()
    no_failure(at)
    assert len(at.error) == 1 and "not an image" in at.error[0].value
    no_conv = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    at.file_uploader(key="byo_model").clear().upload("flat.keras", _keras_bytes(no_conv)).run()
    no_failure(at)
    assert len(at.error) == 1 and "Conv2D" in at.error[0].value
    cnn = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                            keras.layers.Dense(2, activation="softmax")])
    at.text_area(key="byo_names").set_value("a, b, c")
    at.file_uploader(key="byo_model").clear().upload("cnn.keras", _keras_bytes(cnn)).run()
    no_failure(at)
    assert len(at.error) == 1 and "2 outputs but 3 class names" in at.error[0].value


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    import foreign_models

    return foreign_models.build(str(tmp_path_factory.mktemp("foreign")))


@pytest.mark.parametrize("key, name, method", [("onnx_nchw", "leaf.onnx", "Occlusion"),
                                                ("savedmodel", "leaf.zip", "SHAP (expected gradients)"),
                                                ("h5", "leaf.h5", "Grad-CAM")])
def test_a_model_of_any_format_is_predicted_and_explained(foreign, key, name, method):
    at = byo_page()
    at.text_area(key="byo_names").set_value("healthy, diseased")
    at.selectbox(key="byo_range").set_value("0-1")
    at.file_uploader(key="byo_model").upload(name, foreign[key]).run()
    no_failure(at)
    at.radio(key="byo_source").set_value("A LifeLens gallery case").run()
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    allowed = dict(zip(table["view"], table["available"]))
    assert allowed["Grad-CAM"] is (key == "h5") and allowed["Occlusion"] is True
    expected = "MC-dropout confidence" if key == "h5" else "Test-time-augmentation mean"
    assert metric(at, expected).endswith("%")
    methods = at.selectbox(key="byo_method").options
    assert ("Grad-CAM" in methods) is (key == "h5") and "Occlusion" in methods
    at.selectbox(key="byo_method").set_value({v: k for k, v in _method_names().items()}[method]).run()
    no_failure(at)
    url, caption = overlay_of(at)
    assert method in caption


def _method_names() -> dict:
    from lifelens.explain import METHODS

    return {m: cls.name for m, cls in METHODS.items()}


def test_in_memory_loading_matches_the_file_loader(load_shipped):
    from conftest import test_images
    from lifelens.models import predict_proba, split_views

    needs_model("plant")
    spec = get_task("plant")
    model = model_formats.load_keras_bytes(spec.model_path.read_bytes())
    _, x = test_images("plant", 4)
    np.testing.assert_allclose(predict_proba(split_views(model)[0], x),
                               predict_proba(load_shipped("plant").classifier, x), atol=1e-5)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("hello.txt", "not a model")
    with pytest.raises(ModelError, match="config.json"):
        model_formats.load_keras_bytes(buffer.getvalue())
    with pytest.raises(ModelError, match="not a zip"):
        model_formats.load_keras_bytes(b"definitely not a model")


def test_task_page_says_plainly_when_there_is_no_data_folder(monkeypatch, tmp_path):
    needs_model("plant")
    monkeypatch.setenv("LIFELENS_DATA", str(tmp_path))
    at = open_page("plant")
    no_failure(at)
    assert any("No data folder" in i.value and str(tmp_path) in i.value for i in at.info)
    at.radio(key="plant_source").set_value("Upload").run()  # uploading still works without data
    no_failure(at)
    assert at.file_uploader(key="plant_upload") is not None


def test_an_uploaded_film_is_read_alone_even_without_a_data_folder(monkeypatch, tmp_path):
    needs_model("mammo")
    spec = get_task("mammo")
    content = (spec.data_dir() / "images" / cases.gallery(spec)[0].path).read_bytes()
    monkeypatch.setenv("LIFELENS_DATA", str(tmp_path))
    at = open_page("mammo")
    at.radio(key="mammo_source").set_value("Upload").run()
    at.file_uploader(key="mammo_upload").upload("film.png", content, "image/png").run()
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Bayesian confidence").endswith("%")
    assert "Read alone: the paired read joins an image with the other breast" in _screen_text(at)


def _screen_text(at: AppTest) -> str:
    """Every text the page shows: values, labels, captions, help texts."""
    parts = []

    def walk(node):
        for attr in ("value", "label", "help", "body", "captions", "placeholder"):
            try:
                value = getattr(node, attr)
            except Exception:  # noqa: BLE001 - widgets without a value yet
                continue
            if isinstance(value, (str, int, float)):
                parts.append(str(value))
            elif isinstance(value, list):
                parts.extend(str(v) for v in value)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return "\n".join(parts)


def test_a_gallery_film_is_also_read_beside_the_patients_other_film():
    from lifelens.models import ensemble_proba
    from lifelens.paired_read import PairedRead

    needs_model("mammo")
    spec = get_task("mammo")
    gallery = cases.gallery(spec)
    film = cases.case_from_sample(spec, gallery[0])
    partners = cases.partner_indices(gallery, film)
    assert len(partners) == 1 and gallery[partners[0]].group == gallery[0].group
    other = cases.case_from_sample(spec, gallery[partners[0]])
    tm = load_shipped_model("mammo")
    probs = ensemble_proba(tm, np.stack([film.prepared, other.prepared]).astype(np.float32))
    expected = PairedRead.from_card(tm.card["paired_read"]).read_beside(probs[0], [probs[1]])
    at = open_page("mammo")
    no_failure(at)
    assert metric(at, "Abnormal, beside the other breast") == f"{expected[1]:.0%}"
    assert f"Beside {other.name}" in _screen_text(at)


def test_mammography_dicom_upload_is_predicted_without_showing_patient_data():
    from corpus import PHI_STRINGS, dicom_bytes

    needs_model("mammo")
    spec = get_task("mammo")
    film = spec.load_image(spec.data_dir() / "images" / cases.gallery(spec)[0].path)[..., 0]
    at = open_page("mammo")
    at.radio(key="mammo_source").set_value("Upload").run()
    at.file_uploader(key="mammo_upload").upload("film.dcm", dicom_bytes(film), "application/dicom").run()
    no_failure(at)
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Bayesian confidence").endswith("%")
    overlay_of(at)
    text = _screen_text(at)
    # the file name (which often names the patient) stays off the screen unless the user opts in
    assert "film.dcm" not in text and "uploaded image" in text
    assert "DICOM rendered with" in text  # what was done to the values is said under the image
    assert "Read alone: the paired read joins an image with the other breast of the same patient" in text
    assert not [s for s in PHI_STRINGS if s in text], "patient data from the DICOM header reached the screen"
    at.session_state["show_file_names"] = True
    at.run()
    assert "film.dcm" in _screen_text(at)
