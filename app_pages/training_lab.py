"""Training lab: train a small CNN on real images, live, and watch what each knob does."""
import uuid

import numpy as np
import streamlit as st

from lifelens import charts, imaging, inside, training_lab
from lifelens.tasks import TASKS
from lifelens.training_lab import INPUT_SIZES, LAB_QUEUE, PRESETS, TRAIN_SIZES, LabSettings
from ui import common

st.title(":material/model_training: Training lab")
st.markdown(
    "Train a small CNN from scratch on a subset of real images and watch its training and validation curves grow, "
    "epoch by epoch. Change one knob, train again, and compare up to four runs side by side; the dashed line is a "
    "logistic regression on the same pixels, the simple model a network has to beat. One training runs at a time on "
    "this server; nothing is saved.")

session = st.session_state.setdefault("lab_session", uuid.uuid4().hex)
preset = st.selectbox("Preset", list(PRESETS), format_func=lambda p: PRESETS[p].title, key="lab_preset",
                      help="Each preset sets the knobs to show one lesson; change any knob afterwards.")
st.info(PRESETS[preset].lesson, icon=":material/school:")
start = training_lab.preset_settings(preset)


def knob(widget, label: str, name: str, *args, **kwargs):
    """A knob whose default follows the preset (its key includes the preset)."""
    return widget(label, *args, key=f"lab_{name}_{preset}", **kwargs)


with st.expander("The knobs", expanded=not common.presenter()):
    k = st.columns(4)
    task = knob(k[0].selectbox, "Task", "task", list(TASKS), index=list(TASKS).index(start.task),
                format_func=lambda t: TASKS[t].title, help="Which images to learn from (our training split).")
    train_images = knob(k[1].select_slider, "Training images", "train_images", TRAIN_SIZES, value=start.train_images,
                        help="How many images of the training split, every class in turn. Validation is always the "
                             f"same {training_lab.VALIDATION_IMAGES} (or fewer) images of the validation split.")
    input_size = knob(k[2].select_slider, "Input size (px)", "input_size", INPUT_SIZES, value=start.input_size,
                      help="Images are shrunk to this many pixels a side: smaller trains faster and sees less.")
    epochs = knob(k[3].slider, "Epochs", "epochs", 1, 60, start.epochs, help="Passes over the training images.")
    k = st.columns(4)
    blocks = knob(k[0].slider, "Conv blocks", "blocks", 1, 4, start.blocks,
                  help="Each block: 3x3 convolution, (batch norm), ReLU, 2x2 max-pooling; filters double per block.")
    filters = knob(k[1].select_slider, "Filters in block 1", "filters", [4, 8, 16, 32, 64], value=start.filters,
                   help="Width of the first block; more filters = more parameters.")
    pooling = knob(k[2].radio, "Before the classifier", "pooling", ["global", "flatten"],
                   index=["global", "flatten"].index(start.pooling), horizontal=True,
                   format_func=lambda p: {"global": "global average pooling", "flatten": "flatten"}[p],
                   help="Flatten keeps every position (many more weights, easy to overfit); global pooling averages them.")
    dropout = knob(k[3].slider, "Dropout", "dropout", 0.0, 0.8, float(start.dropout), 0.1,
                   help="Share of features switched off at random in each training step, before the classifier.")
    k = st.columns(4)
    batch_norm = knob(k[0].toggle, "Batch normalisation", "batch_norm", value=start.batch_norm,
                      help="Normalises each block's activations over the batch: steadier, faster training.")
    augmentation = knob(k[1].toggle, "Augmentation", "augmentation", value=start.augmentation,
                        help="Random flips, shifts and zooms of each training image, new every epoch.")
    optimizer = knob(k[2].radio, "Optimiser", "optimizer", ["adam", "sgd"], index=["adam", "sgd"].index(start.optimizer),
                     horizontal=True, format_func=lambda o: {"adam": "Adam", "sgd": "SGD + momentum"}[o],
                     help="How each gradient step is taken.")
    learning_rate = knob(k[3].select_slider, "Learning rate", "learning_rate",
                         sorted({1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 0.1, 2.0, start.learning_rate}),
                         value=start.learning_rate, format_func=lambda v: f"{v:g}",
                         help="The size of each step: too small learns nothing, too large jumps around.")
    batch_size = knob(st.select_slider, "Batch size", "batch_size", [8, 16, 32, 64, 128], value=start.batch_size,
                      help="Images per gradient step.")

settings = LabSettings(task=task, train_images=int(train_images), input_size=int(input_size), blocks=int(blocks),
                       filters=int(filters), batch_norm=bool(batch_norm), dropout=float(dropout), pooling=pooling,
                       augmentation=bool(augmentation), optimizer=optimizer, learning_rate=float(learning_rate),
                       batch_size=int(batch_size), epochs=int(epochs))
b = st.columns([1, 1, 4])
if b[0].button("Train", type="primary", key="lab_train", icon=":material/play_arrow:",
               help="Queue this run; it starts when no other training runs on this server."):
    LAB_QUEUE.submit(settings, session)
if b[1].button("Stop", key="lab_stop", icon=":material/stop:", help="Stop your running or waiting run."):
    for run in LAB_QUEUE.runs(session):
        if run.active:
            run.stop()
runs = LAB_QUEUE.runs(session)


def run_status(run) -> str:
    if run.status == "queued":
        place = LAB_QUEUE.position(run)
        return (f"waiting: place {place} in the queue (one training at a time on this server)" if place > 0
                else "starting…")
    if run.status == "running":
        return f"training: epoch {len(run.history)} of {run.settings.epochs} done"
    if run.status == "stopped":
        return f"stopped after {len(run.history)} epochs ({run.stop_reason})"
    if run.status == "failed":
        return f"failed: {run.error}"
    return f"done: {len(run.history)} epochs in {run.finished - run.started:.0f} s"


def draw_runs(polling: bool = False):
    """The live part of the page: redrawn every second while a run trains; the knobs stay usable.
    When the last run ends the whole page reruns once (the polling stops, the inside views open)."""
    runs = LAB_QUEUE.runs(session)
    if polling and not any(r.active for r in runs):
        st.rerun()
    if not runs:
        st.caption("No runs yet: pick a preset and press Train.")
        return
    for run in runs:
        run.touch()
    latest = runs[-1]
    st.markdown(f"**Run {len(runs)} ({latest.label})**: {run_status(latest)}")
    if latest.active:
        st.progress(len(latest.history) / latest.settings.epochs, text=f"epoch {len(latest.history)} / {latest.settings.epochs}")
    shown = [{"label": f"{i + 1}: {r.label}", "history": r.history} for i, r in enumerate(runs)]
    reference = latest.reference
    c = st.columns(2)
    c[0].altair_chart(charts.lab_curves(shown, reference, "loss"), width="stretch")
    c[1].altair_chart(charts.lab_curves(shown, reference, "accuracy"), width="stretch")
    if reference:
        st.caption(f"Dashed line: a logistic regression on the same {latest.settings.train_images} training images "
                   f"(16 × 16 pixels) scores validation accuracy {reference['val_accuracy']:.2f} and loss "
                   f"{reference['val_loss']:.2f}.")
    rows = [{"run": f"{i + 1}: {r.label}", "status": r.status, "epochs": len(r.history),
             "validation accuracy": r.history[-1]["val_accuracy"] if r.history else None,
             "training accuracy": r.history[-1]["accuracy"] if r.history else None,
             "gap (train - validation)": r.gap} for i, r in enumerate(runs)]
    st.dataframe(rows, hide_index=True, width="stretch", column_config={
        "validation accuracy": st.column_config.NumberColumn(format="%.2f", help="Share of the validation images right, last epoch."),
        "training accuracy": st.column_config.NumberColumn(format="%.2f", help="Share of the training images right, last epoch, dropout and augmentation off."),
        "gap (train - validation)": st.column_config.NumberColumn(format="%.2f", help="The overfitting signature: a network that memorises its training images shows a large gap."),
        "epochs": st.column_config.NumberColumn(help="Epochs finished."),
    })


active = any(r.active for r in runs)
st.fragment(draw_runs, run_every=1.0 if active else None)(polling=active)

finished = [r for r in runs if not r.active and r.model is not None and r.history]
if finished:
    st.subheader("Look inside what you trained")
    with common.guarded("Inside the run"):
        pick = st.selectbox("Run", list(range(len(finished))), index=len(finished) - 1, key="lab_inside_run",
                            format_func=lambda i: f"{runs.index(finished[i]) + 1}: {finished[i].label}")
        run = finished[pick]
        f1, f2 = st.columns(2)
        for col, filters_, when in ((f1, run.filters_first_epoch, "after epoch 1"),
                                    (f2, run.filters_last_epoch, f"after epoch {len(run.history)}")):
            if filters_ is not None:
                col.markdown(f"**First-layer filters {when}**")
                tiles = inside.filter_tiles(filters_, cell=40)
                cells = col.columns(8)
                for i, tile in enumerate(tiles[:16]):
                    cells[i % 8].image(tile, width="stretch")
        data = training_lab.lab_data(run.settings.task, run.settings.train_images, run.settings.input_size)
        index = st.slider("Validation image", 0, len(data.x_val) - 1, 0, key="lab_inside_image",
                          help="An image of the fixed validation subset, which the run never trained on.")
        from lifelens.explain import explain

        result = explain(run.model, data.x_val[index], method="gradcam")
        target = int(result.targets[0])
        display = imaging.as_rgb_uint8(imaging.resize(data.x_val[index].astype(np.uint8), 256))
        g1, g2 = st.columns(2)
        g1.image(display, caption=f"true class: {data.class_names[data.y_val[index]]}", width="stretch")
        g2.image(imaging.overlay(display, imaging.resize(result.maps[0][..., None], 256)[..., 0]),
                 caption=f"Grad-CAM for **{data.class_names[target]}** ({result.probs[0, target]:.0%}), layer "
                         f"`{result.layer}`", width="stretch")
common.disclaimer()
