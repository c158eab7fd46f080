"""The training lab trains real small CNNs on real images: the overfitting preset overfits
(its train-validation gap at least twice the regularised preset's, on two seeds), one
training runs at a time with the others queued in order, Stop stops, and the page draws two
points per split after two epochs with the logistic-regression line beside them."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from lifelens import training_lab
from lifelens.training_lab import LabQueue, preset_settings, run_now, wait

APP = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "app.py")


@pytest.mark.parametrize("seed", [0, 1])
def test_overfitting_preset_shows_twice_the_gap_of_the_regularised_one(seed):
    overfit = run_now(preset_settings("overfitting", seed=seed))
    regularised = run_now(preset_settings("regularised", seed=seed))
    assert overfit.history[-1]["accuracy"] >= 0.8, overfit.history[-1]  # it memorised its 100 images
    assert overfit.gap >= 2 * max(regularised.gap, 0.01), (overfit.gap, regularised.gap)


def test_a_run_records_every_epoch_and_the_filters_it_learned():
    run = run_now(preset_settings("default", epochs=2, train_images=100))
    assert [h["epoch"] for h in run.history] == [1, 2]
    assert all(0 <= h["accuracy"] <= 1 and 0 <= h["val_accuracy"] <= 1 for h in run.history)
    assert run.filters_first_epoch.shape == run.filters_last_epoch.shape
    assert not np.allclose(run.filters_first_epoch, run.filters_last_epoch)  # the second epoch changed them
    ref = run.reference
    chance = 1 / len(training_lab.lab_data("plant", 100, 48).class_names)
    assert ref["val_accuracy"] > chance  # the simple model is a real reference, not noise


def test_the_lab_model_is_explained_by_the_same_calls_as_the_shipped_models():
    from lifelens.explain import explain

    run = run_now(preset_settings("default", epochs=1, train_images=100))
    x = training_lab.lab_data("plant", 100, 48).x_val[:2]
    result = explain(run.model, x, method="gradcam")
    assert result.maps.shape == (2, 48, 48) and result.layer.startswith("block")


def test_differences_between_runs_are_named():
    a = preset_settings("overfitting")
    b = preset_settings("regularised")
    assert training_lab.difference(None, a) == "first run"
    text = training_lab.difference(a, b)
    assert "dropout 0.0 → 0.5" in text and "augmentation False → True" in text


def test_one_training_at_a_time_the_others_wait_their_place_and_stop_works():
    queue = LabQueue()
    slow = queue.submit(preset_settings("default", epochs=30, train_images=100), "session-a")
    waiting = queue.submit(preset_settings("default", epochs=1, train_images=100), "session-b")
    deadline = time.monotonic() + 60
    while slow.status != "running" and time.monotonic() < deadline:
        slow.touch(), waiting.touch()
        time.sleep(0.05)
    assert slow.status == "running" and waiting.status == "queued"
    assert queue.position(slow) == 0 and queue.position(waiting) == 1
    while len(slow.history) < 1 and time.monotonic() < deadline:
        slow.touch(), waiting.touch()
        time.sleep(0.05)
    slow.stop()
    wait(slow, timeout=30)
    assert slow.status == "stopped" and 1 <= len(slow.history) < 30 and "you" in slow.stop_reason
    wait(waiting, timeout=60)
    assert waiting.status == "done" and len(waiting.history) == 1


def test_a_run_whose_page_is_closed_stops(monkeypatch):
    monkeypatch.setattr(training_lab, "SESSION_TIMEOUT_S", 0.5)
    queue = LabQueue()
    run = queue.submit(preset_settings("default", epochs=40, train_images=100), "gone")
    deadline = time.monotonic() + 60
    while run.active and time.monotonic() < deadline:
        time.sleep(0.1)  # nobody touches it: the session is gone
    assert run.status == "stopped" and "closed" in run.stop_reason


# ----------------------------------------------------------------------------- the page

def lab_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("app_pages/training_lab.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_tables(at: AppTest) -> list[list]:
    """For each Vega-Lite chart on the page, the data of each of its layers (pandas frames)."""
    import pyarrow as pa

    out = []
    for chart in at.get("vega_lite_chart"):
        out.append([pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets])
    return out


def _until(at: AppTest, done, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for run in training_lab.LAB_QUEUE.runs(at.session_state["lab_session"]):
            run.touch()
        if done():
            break
        time.sleep(0.5)
    at.run()


def test_page_trains_a_preset_for_two_epochs_with_curves_and_reference_line():
    at = lab_page()
    at.selectbox(key="lab_preset").set_value("overfitting").run()
    at.slider(key="lab_epochs_overfitting").set_value(2).run()
    at.button(key="lab_train").click().run()
    session = at.session_state["lab_session"]
    run = training_lab.LAB_QUEUE.runs(session)[-1]
    _until(at, lambda: not run.active)
    assert not at.exception and run.status == "done"
    assert any("done: 2 epochs" in m.value for m in at.markdown)
    tables = chart_tables(at)
    assert len(tables) >= 2  # loss and accuracy
    for lines, reference in tables[:2]:
        assert sorted(lines["split"].value_counts().to_dict().items()) == [("train", 2), ("validation", 2)]
        assert len(reference) == 1 and "logistic" in reference["what"][0]
    # the finished run opens in the inside views: filters after epoch 1 and 2, a Grad-CAM
    assert any("Grad-CAM for" in c for image in at.image for c in image.captions)


def test_page_stop_button_and_a_second_session_sees_its_place():
    first, second = lab_page(), lab_page()
    first.selectbox(key="lab_preset").set_value("more_data").run()
    first.button(key="lab_train").click().run()
    mine = training_lab.LAB_QUEUE.runs(first.session_state["lab_session"])[-1]
    _until(first, lambda: mine.status == "running")
    second.button(key="lab_train").click().run()
    assert any("place 1 in the queue" in m.value for m in second.markdown), [m.value for m in second.markdown]
    first.button(key="lab_stop").click().run()
    _until(first, lambda: not mine.active)
    assert mine.status == "stopped" and any("stopped after" in m.value for m in first.markdown)
    theirs = training_lab.LAB_QUEUE.runs(second.session_state["lab_session"])[-1]
    theirs.stop()
    _until(second, lambda: not theirs.active)
