"""The dashboard's non-Streamlit parts on real data: galleries, cases, lesion circles, predictions
with both confidences, exports (PNG figure and self-contained HTML report) and the charts."""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from conftest import TASK_IDS, shipped_model
from lifelens import card_tables, cases, charts, data, imaging, report
from lifelens.uncertainty import case_prediction
from lifelens.tasks import DISCLAIMER, get_task


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_gallery_is_our_test_split_with_every_class_early(task_id):
    spec = get_task(task_id)
    shown = cases.gallery(spec)
    test = data.task_splits(spec)["test"]
    assert sorted(s.path for s in shown) == sorted(s.path for s in test)
    first = {s.label for s in shown[: spec.num_classes]}
    assert first == {s.label for s in test}, "the first cases show every class of the test split"


def test_missing_data_folder_is_said_plainly(monkeypatch, tmp_path):
    monkeypatch.setenv("LIFELENS_DATA", str(tmp_path))
    message = cases.data_status(get_task("plant"))
    assert message and str(tmp_path) in message and "upload" in message.lower()


def test_gallery_case_matches_the_training_preparation():
    spec = get_task("skin")
    sample = cases.gallery(spec)[0]
    case = cases.case_from_sample(spec, sample)
    cached = data.load_prepared(spec, [sample])[0]
    assert case.label == sample.label and case.source == "gallery"
    assert np.abs(case.prepared - cached.astype(np.float32)).max() <= 1.0  # uint8 rounding only
    assert case.display.shape == (cases.DISPLAY_SIZE, cases.DISPLAY_SIZE, 3)


def test_mammography_lesion_circle_lands_on_the_recorded_lesion():
    spec = get_task("mammo")
    with_lesion = [s for s in cases.gallery(spec) if s.lesions]
    assert with_lesion, "the mini-MIAS test split has films with a recorded lesion centre"
    sample = with_lesion[0]
    case = cases.case_from_sample(spec, sample)
    assert len(case.marks) == len(sample.lesions)
    film = spec.load_image(spec.data_dir() / "images" / sample.path)[..., 0]
    for (x, y, radius), (col, row, r) in zip(sample.lesions, case.marks):
        assert 0 <= col < cases.DISPLAY_SIZE and 0 <= row < cases.DISPLAY_SIZE
        # The mark sits on breast tissue, which is brighter than the film's background.
        rr, cc = int(round(row)), int(round(col))
        assert case.display[rr, cc, 0] > 40
        # Where the MIAS point is on the raw film (y counted from the bottom), the tissue is the same.
        film_value = int(film[film.shape[0] - int(y), int(x)])
        assert abs(int(case.display[rr, cc, 0]) - film_value) < 60
        assert r == pytest.approx(max(3.0, radius * cases.DISPLAY_SIZE / case_geometry_side(spec, film)), rel=1e-6)
    drawn = case.display_with_marks()
    changed = np.argwhere(np.any(drawn != case.display, axis=-1))
    col, row, r = case.marks[0]
    distance = np.hypot(changed[:, 0] - row, changed[:, 1] - col)
    assert np.median(np.abs(distance - r)) < 3, "the drawn pixels form the circle of the lesion's radius"


def case_geometry_side(spec, film) -> int:
    return imaging.film_geometry(film)["side"]


def test_damaged_upload_raises_a_screen_message():
    spec = get_task("plant")
    raw = (spec.data_dir() / "images" / cases.gallery(spec)[0].path).read_bytes()
    with pytest.raises(imaging.InputError, match="leaf.jpg"):
        cases.case_from_bytes(spec, raw[:200], "leaf.jpg")
    case = cases.case_from_bytes(spec, raw, "leaf.jpg")
    assert case.label is None and case.marks == () and case.digest == cases.digest(raw)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_prediction_has_both_confidences(task_id):
    spec = get_task(task_id)
    if not spec.model_path.is_file():
        pytest.skip(f"models/{task_id}.keras is not there yet (still training)")
    tm = shipped_model(task_id)
    case = cases.case_from_sample(spec, cases.gallery(spec)[0])
    pred = case_prediction.predict_case(tm, case.prepared, "mc_dropout", samples=40, seed=1)
    k = spec.num_classes
    assert pred["softmax"].shape == pred["mean"].shape == (k,) and pred["samples"].shape == (40, k)
    np.testing.assert_allclose(pred["softmax"].sum(), 1.0, atol=1e-5)
    low, high = pred["interval"][:, 0], pred["interval"][:, 1]
    assert np.all(low <= pred["mean"] + 1e-9) and np.all(pred["mean"] <= high + 1e-9)
    assert 0.0 <= pred["mutual_information"] <= pred["predictive_entropy"] + 1e-9 <= np.log(k) + 1e-6
    # Same seed, same posterior samples; the softmax is deterministic.
    again = case_prediction.predict_case(tm, case.prepared, "mc_dropout", samples=40, seed=1)
    np.testing.assert_allclose(again["samples"], pred["samples"])
    if tm.variational_head is not None:
        var = case_prediction.predict_case(tm, case.prepared, "variational", samples=40)
        np.testing.assert_allclose(var["softmax"], pred["softmax"])
        assert not np.allclose(var["samples"], pred["samples"])


def test_warnings_fire_only_past_the_thresholds_measured_on_validation():
    names = ["a", "b", "c"]
    record = {"mc_dropout": {"thresholds": {"predictive_entropy": 0.8, "mutual_information": 0.05,
                                            "confidence_gap": 0.15},
                             "rate_test": {"predictive_entropy": 0.05, "mutual_information": 0.04,
                                           "confidence_gap": 0.1}}}
    calm = np.array([[0.9, 0.05, 0.05], [0.86, 0.07, 0.07]])
    assert case_prediction.prediction_warnings(names, np.array([0.9, 0.05, 0.05]), calm, record, "mc_dropout") == []
    split = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])  # two samples that disagree
    found = case_prediction.prediction_warnings(names, np.array([0.8, 0.15, 0.05]), split, record, "mc_dropout")
    assert any("two confidences disagree" in w and "1 in 10" in w for w in found) and any("mutual information" in w for w in found)
    flat = np.full((2, 3), 1 / 3)
    assert any("High uncertainty" in w and "1 in 20" in w
               for w in case_prediction.prediction_warnings(names, flat[0], flat, record, "mc_dropout"))
    # No thresholds measured for a method (or an uploaded model): no warning, rather than a guessed one.
    assert case_prediction.prediction_warnings(names, flat[0], flat, record, "variational") == []
    assert case_prediction.prediction_warnings(names, flat[0], flat, None, "mc_dropout") == []


def _case_report(with_explanations: int = 2) -> report.CaseReport:
    spec = get_task("plant")
    case = cases.case_from_sample(spec, cases.gallery(spec)[0])
    k = spec.num_classes
    soft = np.full(k, 0.02)
    soft[3] = 1 - 0.02 * (k - 1)
    panels = [report.ExplanationPanel(f"Map {i}", imaging.overlay(case.display, np.random.default_rng(i).random((16, 16))),
                                      spec.class_names[3], "block4_relu2", 0.2 + i / 10, 0.7 - i / 10)
              for i in range(with_explanations)]
    return report.CaseReport(
        task_title=spec.title, case_name="leaf <b>&amp; co</b>.jpg", source="upload", image=case.display,
        class_names=spec.class_names, softmax=soft, bayes_mean=soft * 0.9 + 0.01, bayes_low=soft * 0.5,
        bayes_high=np.minimum(soft * 1.2, 1), entropy=0.61, mutual_information=0.042,
        warnings=["The two confidences **disagree**."], explanations=panels,
        model={"Model file": "models/plant.keras"}, data={"Licence": spec.licence})


def test_png_figure_holds_every_panel_once_and_is_a_real_png():
    few = Image.open(io.BytesIO(report.render_png(_case_report(3))))
    assert few.format == "PNG" and few.mode == "RGB"
    assert few.width >= 4 * 256 and 600 < few.height < 2000
    pixels = np.asarray(few)
    # the input panel is pasted where the layout puts it (not blank)
    assert pixels[120:300, 40:250].std() > 10
    # six maps (and the input) need a second row of panels: nothing is dropped, so the figure grows
    many = _case_report(6)
    tall = Image.open(io.BytesIO(report.render_png(many)))
    assert tall.height >= few.height + 256
    row2 = np.asarray(tall)[few.height - 300: few.height - 300 + 200, 24 + 2 * (256 + 16): 24 + 3 * (256 + 16) - 16]
    assert row2.std() > 10  # the seventh tile (sixth map) is drawn, in the second row
    # the same map twice (main view and comparison grid) is exported once
    many.explanations.append(many.explanations[0])
    assert len(report.unique_panels(many.explanations)) == 6


def test_html_report_is_self_contained_and_escaped():
    page = report.render_html(_case_report(2))
    assert page.startswith("<!DOCTYPE html>")
    sources = re.findall(r"src=[\"']([^\"']+)[\"']", page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http://" not in page and "https://" not in page  # nothing loaded from the network
    assert "<b>&amp; co</b>" not in page and "&lt;b&gt;" in page  # user text is escaped
    assert page.count(DISCLAIMER) == 2
    assert "Softmax" in page or "softmax" in page
    assert "Bayesian mean" in page and "credible interval" in page
    assert "deletion AUC 0.200" in page and "insertion AUC 0.700" in page
    assert "CC BY-SA 3.0" in page and "models/plant.keras" in page


def test_grades_are_drawn_in_grade_order_other_classes_by_probability():
    names = ["No DR", "Mild", "Moderate", "Severe", "Proliferative"]
    p = np.array([0.05, 0.1, 0.6, 0.04, 0.21])

    def drawn(**kwargs):
        return charts.confidence_bars(names, p, p, p, p, **kwargs).to_dict()["layer"][0]["encoding"]["y"]["sort"]

    assert drawn(graded=True) == names
    assert drawn() == ["Moderate", "Proliferative", "Mild", "No DR", "Severe"]


def test_counts_of_networks_are_drawn_in_whole_numbers():
    """Three sampled networks cannot be 1.5: the count axes tick at whole numbers only."""
    names = ["normal", "abnormal"]
    samples = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]])
    for chart in (charts.posterior_histogram(names, samples), charts.value_histogram([0.95, 0.96, 0.97], "t", "x")):
        axis = chart.to_dict()["encoding"]["y"]["axis"]
        assert axis["tickMinStep"] == 1 and axis["format"] == "d"


def test_charts_carry_tooltips_for_every_number():
    names = ["a", "b", "c"]
    p = np.array([0.7, 0.2, 0.1])
    specs = [
        charts.confidence_bars(names, p, p, p * 0.5, np.minimum(p * 1.5, 1)),
        charts.posterior_histogram(names, np.random.default_rng(0).dirichlet([5, 2, 1], 30)),
        charts.confusion_heatmap([[5, 1, 0], [2, 7, 1], [0, 0, 9]], names),
        charts.matrix_heatmap(np.arange(9).reshape(3, 3), "m", highlight=(0, 0, 2, 2)),
        charts.faithfulness_bars([{"method": "Grad-CAM", "deletion_auc": 0.2, "insertion_auc": 0.8}]),
    ]
    for chart in specs:
        spec = chart.to_dict()
        layers = spec.get("layer", [spec])
        assert any("tooltip" in layer.get("encoding", {}) for layer in layers)


@pytest.mark.parametrize("task_id", TASK_IDS)
def test_the_model_comparison_draws_every_model_the_card_scores(task_id):
    """Each compared model gets a colour of its own (a model outside the colour scale draws no bar)."""
    from lifelens.models import read_card

    card = read_card(get_task(task_id))
    rows, names = card_tables.comparison_rows(get_task(task_id), card)
    chart_rows = [{"metric": n, "model": r["model"], "value": r["_values"][n], "meaning": ""}
                  for r in rows for n in names if isinstance(r["_values"].get(n), (int, float))]
    spec = charts.metric_comparison(chart_rows).to_dict()
    drawn = {r["model"] for r in chart_rows}
    shipped = ["Deep ensemble fused with gradient boosting (shipped)", "Deep ensemble, networks alone"] \
        if card["fusion"]["used"] else ["Deep ensemble"]
    assert {*shipped, "One member", "Gradient boosting", "Logistic regression"} <= drawn
    scale = spec["encoding"]["color"]["scale"]
    assert set(scale["domain"]) == drawn and len(set(scale["range"])) == len(drawn)
    assert scale["domain"][:len(shipped)] == shipped


def test_faithfulness_rows_put_chance_first_then_most_faithful():
    summary = {"random": {"deletion_auc": 0.6, "insertion_auc": 0.4},
               "eigencam": {"deletion_auc": 0.5, "insertion_auc": 0.5, "beats_random_share": 0.6},
               "gradcam": {"deletion_auc": 0.3, "insertion_auc": 0.7, "beats_random_share": 0.9},
               "images": 12, "steps": 16}
    rows = card_tables.faithfulness_rows(summary)
    assert [r["method"] for r in rows] == ["random map (chance)", "Grad-CAM", "Eigen-CAM"]
    assert rows[1]["deletion AUC"] == 0.3 and rows[1]["beats random"] == "90 % of images"
    assert rows[0]["beats random"] == "(the reference)"


@pytest.mark.parametrize("task_id", ["skin", "plant"])
def test_an_exported_case_names_the_boosted_model_where_the_prediction_fuses_it(task_id):
    from ui.task_page import _provenance

    tm = shipped_model(task_id)
    model, _ = _provenance(get_task(task_id), tm)
    if tm.card["fusion"]["used"]:
        assert f"models/{tm.card['fusion']['file']}" in model["Ensemble fused with"]
    else:
        assert "Ensemble fused with" not in model
