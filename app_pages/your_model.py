"""Bring your own model: upload a Keras image classifier and open it with the same explanation and
inside-the-network views. The model and the image stay in memory; nothing is written to disk."""
import numpy as np
import streamlit as st

from lifelens import charts, imaging, inside, ui_support
from lifelens.tasks import TASKS, get_task
from ui import common, explain_panel, task_page

st.title(":material/upload_file: Bring your own model")
st.markdown(
    "Upload a Keras 3 image classifier saved with `model.save('name.keras')` — any Functional or Sequential CNN "
    "whose input is a square image (greyscale or colour, pixel values 0–255 as LifeLens feeds them) and whose output "
    "is one score per class. It is loaded in **safe mode** (no custom code runs) and kept **in memory only**.")


@st.cache_resource(show_spinner=False, max_entries=2)
def uploaded_model(model_digest: str, _content: bytes):
    """(the model as saved, its single-output classifier view), built once per upload."""
    saved = ui_support.load_model_bytes(_content)
    return saved, ui_support.classifier_view(saved)


@st.cache_data(show_spinner=False, max_entries=32)
def prediction(model_digest: str, image_digest: str, _model, _prepared):
    return ui_support.predict_any_model(_model, _prepared)


c1, c2 = st.columns([1, 1])
model_file = c1.file_uploader("Your model (.keras)", type=["keras"], key="byo_model",
                              help="A Keras 3 archive. Lambda layers and custom classes are refused (safe mode).")
names_text = c2.text_area("Class names, in output order", key="byo_names", height=120,
                          placeholder="one per line, or separated by commas",
                          help="Leave empty to call them class 0, class 1, …")
if model_file is None:
    st.info("Upload a `.keras` file to begin. Try one of LifeLens's own models from the `models/` folder.")
    common.disclaimer()
    st.stop()

model = shape = None
with common.guarded("Your model"):
    content = model_file.getvalue()
    model_digest = ui_support.digest(content)
    with st.spinner("Loading the model in safe mode…"):
        saved, model = uploaded_model(model_digest, content)
    names = ui_support.parse_class_names(names_text) or None
    shape = ui_support.check_image_classifier(model, names)
    class_names = names or [f"class {i}" for i in range(shape.num_classes)]
if model is None or shape is None:
    st.stop()
mkey = f"upload:{model_digest}"
st.success(f"`{saved.name}`: input {shape.input_size} × {shape.input_size} × {shape.channels}, "
           f"{shape.num_classes} classes, {len(shape.conv_layers)} convolution layers, "
           f"{saved.count_params():,} parameters"
           + (f"; of its {len(saved.outputs)} outputs the first is explained." if saved is not model else "."),
           icon=":material/check_circle:")

st.subheader("An image")
source = st.radio("Image from", ["Upload", "A LifeLens gallery case"], horizontal=True, key="byo_source",
                  help="Your own image, or a test-split image of one of the four tasks.")
image = None
with common.guarded("The image"):
    if source == "Upload":
        up = st.file_uploader("Image (JPEG, PNG, TIFF, BMP, PGM or DICOM)", key="byo_image",
                              type=["jpg", "jpeg", "png", "tif", "tiff", "bmp", "pgm", "dcm"])
        if up is not None:
            raw = up.getvalue()
            image = imaging.decode_image(raw, channels=3, name=up.name)
            image_digest, image_name = ui_support.digest(raw), up.name
    else:
        t1, t2 = st.columns(2)
        task_id = t1.selectbox("Task", list(TASKS), format_func=lambda t: TASKS[t].title, key="byo_task")
        missing = ui_support.data_status(get_task(task_id))
        if missing:
            st.info(missing)
        else:
            cases = task_page.gallery_cases(task_id)
            index = t2.selectbox("Case", list(range(len(cases))), key="byo_case",
                                 format_func=lambda i: ui_support.sample_label(get_task(task_id), cases[i]))
            case = task_page.gallery_case(task_id, int(index))
            image, image_digest, image_name = case.image, case.digest, case.name
if image is None:
    common.disclaimer()
    st.stop()

prepared = ui_support.prepare_for_model(image, shape)
display = imaging.as_rgb_uint8(imaging.resize(imaging.to_channels(image, shape.channels), ui_support.DISPLAY_SIZE))
pred = None
with common.guarded("The prediction"):
    st.subheader("Prediction")
    with st.spinner("Predicting…"):
        pred = prediction(mkey, image_digest, model, prepared)
    top = int(np.argmax(pred["mean"]))
    i1, i2 = st.columns([1, 1.6])
    i1.image(display, caption=f"{image_name}, resized to {shape.input_size} × {shape.input_size}", width="stretch")
    with i2:
        st.markdown(f"### Most likely: **{class_names[top]}**")
        low, high = pred["interval"][top]
        m = st.columns(2)
        m[0].metric("Softmax confidence", f"{pred['softmax'][top]:.0%}", help=ui_support.HELP["softmax"], border=True)
        if pred.get("bayesian_note"):  # no dropout: a posterior of one sample would be a fake 100 % interval
            m[1].caption(f"No Bayesian confidence: {pred['bayesian_note']}")
        else:
            m[1].metric("MC-dropout confidence", f"{pred['mean'][top]:.0%}", f"95% CI {low:.0%}–{high:.0%}",
                        delta_color="off", delta_arrow="off", help=ui_support.HELP["bayesian"], border=True)
        st.caption("No uncertainty warnings for a model brought here: their thresholds are measured on a "
                   "validation split, which LifeLens does not have for your model.")
        common.disclaimer()
        st.altair_chart(charts.confidence_bars(class_names, pred["softmax"], pred["mean"], pred["interval"][:, 0],
                                               pred["interval"][:, 1]), width="stretch")

if pred is not None:
    with common.guarded("The explanation"):
        st.subheader("Where did it look?")
        # SHAP needs background images; for a model from outside LifeLens the image's own black, blurred and
        # mean-colour versions stand in (the same baselines Integrated Gradients uses).
        options = {"shap": {"background": ui_support.image_baselines(prepared)}}
        choice = explain_panel.controls("byo", mkey, model, class_names, top)
        explain_panel.main_view("byo", mkey, model, prepared, display, image_digest, class_names, choice, options)
        if not common.presenter() and st.toggle("Compare several methods (with deletion/insertion AUC)", key="byo_compare"):
            explain_panel.comparison_grid("byo", mkey, model, prepared, display, image_digest, class_names, choice, options)
        if not common.presenter() and st.toggle("Grad-CAM uncertainty under MC dropout", key="byo_gradcam_mc"):
            explain_panel.uncertainty_view("byo", mkey, model, prepared, display, image_digest, class_names, choice)

    with common.guarded("Inside the network"):
        st.subheader("Inside the network")
        with st.expander("First-layer filters", expanded=False):
            tiles = inside.filter_tiles(inside.first_layer_filters(model), cell=48)
            columns = st.columns(12)
            for i, tile in enumerate(tiles[:48]):
                columns[i % 12].image(tile, caption=f"#{i}", width="stretch")
        with st.expander("Feature hierarchy for this image", expanded=False):
            try:
                levels = inside.feature_hierarchy(model, prepared, top=6)
            except ValueError as exc:
                st.info(f"The feature hierarchy needs LifeLens's block naming (`block<b>_relu<c>` layers): {exc}")
                levels = []
            for level in levels:
                st.markdown(f"**{level.layer}** — {level.caption}")
                cols = st.columns(len(level.maps))
                for col, mp, ch, mean in zip(cols, level.maps, level.channels, level.mean_activation):
                    col.image(imaging.colorize(mp, "inferno"), caption=f"ch {ch} · mean {mean:.2f}", width="stretch")
        with st.expander("Architecture", expanded=False):
            rows = inside.architecture_table(model)
            st.dataframe([{"layer": r["name"], "type": r["type"], "output shape": str(r["output_shape"]),
                           "parameters": r["params"], "receptive field (px)": r["receptive_field"]} for r in rows],
                         hide_index=True, width="stretch")
