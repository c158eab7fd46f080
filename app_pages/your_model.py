"""Bring your own model: a Keras 3, tf.keras 2 (.h5), SavedModel or ONNX image classifier,
opened with the explanation, confidence and inside-the-network views its format allows."""
import numpy as np
import streamlit as st

from lifelens import cases, charts, imaging, inside, model_formats
from lifelens.model_formats import CHANNEL_ORDERS, FORMATS, VALUE_RANGES, Preprocessing
from lifelens.tasks import TASKS, get_task
from ui import common, explain_panel, screen_text, task_page

st.title(":material/upload_file: Bring your own model")
st.markdown(
    "Upload an image classifier: **" + "**, **".join(FORMATS.values()) + "**. Its input must be a square image "
    "(greyscale or colour) and its output one score per class. Keras files are read in **safe mode** from memory "
    "(no code from the file runs; a `Lambda` layer is refused); a SavedModel is unpacked into a private temporary "
    "folder that is deleted with the model; nothing is kept after your session.")


@st.cache_resource(show_spinner=False, max_entries=2)
def opened_model(model_digest: str, name: str, value_range: str, channel_order: str, size: int, _content: bytes):
    """The uploaded model opened once per (file, declared preprocessing)."""
    return model_formats.open_model(_content, name, None, Preprocessing(value_range, channel_order, size))


@st.cache_data(show_spinner=False, max_entries=32)
def prediction(model_key: str, image_digest: str, _opened, _prepared):
    from lifelens.uncertainty.tta import predict_with_uncertainty

    return predict_with_uncertainty(_opened, _prepared)


def upload_digest(upload, slot: str) -> str:
    """One hash per upload: remembered per uploader (``slot``) by the file id, so a rerun does not hash again."""
    seen = st.session_state.setdefault("byo_digests", {})  # {slot: (file id, digest)}
    kept = seen.get(slot)
    if kept is None or kept[0] != upload.file_id:
        kept = seen[slot] = (upload.file_id, cases.digest(upload.getvalue()))
    return kept[1]


c1, c2 = st.columns([1, 1])
model_file = c1.file_uploader("Your model", type=["keras", "h5", "hdf5", "zip", "onnx"], key="byo_model",
                              help="`.keras` (Keras 3), `.h5` (tf.keras 2 / Keras 2), a `.zip` of a SavedModel "
                                   "folder, or `.onnx` (e.g. exported from PyTorch).")
names_text = c2.text_area("Class names, in output order", key="byo_names", height=120,
                          placeholder="one per line, or separated by commas",
                          help="Leave empty to call them class 0, class 1, …")
p1, p2, p3 = st.columns([2, 2, 1])
value_range = p1.selectbox("Input values the network was trained on", list(VALUE_RANGES), key="byo_range",
                           format_func=lambda k: f"{k}: {VALUE_RANGES[k]}",
                           help="A model file does not say how its images were scaled. LifeLens's own models take 0–255; "
                                "most tf.keras tutorials divide by 255; torchvision models use ImageNet mean/std.")
channel_order = p2.selectbox("Channel order", list(CHANNEL_ORDERS), key="byo_channels",
                             format_func=lambda k: f"{k.upper()}: {CHANNEL_ORDERS[k]}",
                             help="Networks trained on images read with OpenCV see BGR.")
declared_size = p3.number_input("Input size if the file leaves it open (px)", min_value=8, max_value=1024, value=224, step=1, key="byo_size",
                                help="Used only when the file leaves the image size open (e.g. an ONNX export with "
                                     "dynamic height and width): the size the network was trained at. A file that "
                                     "fixes its size (most do) is fed that size, as the line below the upload says.")
if model_file is None:
    st.info("Upload a model file to begin. Try one of LifeLens's own models from the `models/` folder.")
    common.disclaimer()
    st.stop()

opened = None
with common.guarded("Your model"):
    model_digest = upload_digest(model_file, "model")
    with st.spinner("Opening the model…"):
        opened = opened_model(model_digest, model_file.name, value_range, channel_order, int(declared_size),
                              model_file.getvalue())
    names = model_formats.parse_class_names(names_text) or None
    if names is not None and len(names) != opened.num_classes:
        st.error(f"The model has {opened.num_classes} outputs but {len(names)} class names were given; "
                 "give one name per output, in output order.")
        opened = None
if opened is None:
    st.stop()
class_names = names or [f"class {i}" for i in range(opened.num_classes)]
mkey = f"upload:{model_digest}:{value_range}:{channel_order}:{opened.input_size}"
st.success(f"`{model_file.name}` ({FORMATS[opened.format]}): input {opened.input_size} × {opened.input_size} × "
           f"{opened.channels}, {opened.num_classes} classes"
           + (f", {len(opened.conv_layers)} convolution layers" if opened.conv_layers else "")
           + (f", {opened.parameters:,} parameters" if opened.parameters else "") + ". " + " ".join(opened.notes),
           icon=":material/check_circle:")
with st.expander("What this format allows", expanded=opened.format in ("savedmodel", "onnx")):
    rows = [{"view": explain_panel.method_name(m), "available": opened.method_support(m) is None,
             "why not": opened.method_support(m) or ""} for m in [*explain_panel.method_ids(), "mc_dropout"]]
    rows[-1]["view"] = "MC dropout confidence"
    rows.append({"view": "Inside the network (filters, feature hierarchy)",
                 "available": bool(opened.conv_layers), "why not": "" if opened.conv_layers else
                 "needs the network's convolution layers, which this format does not expose."})
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"available": st.column_config.CheckboxColumn(help="Whether this view works on your model.")})

st.subheader("An image")
source = st.radio("Image from", ["Upload", "A LifeLens gallery case"], horizontal=True, key="byo_source",
                  help="Your own image, or a test-split image of one of the four tasks.")
image = None
with common.guarded("The image"):
    if source == "Upload":
        up = st.file_uploader("Image (JPEG, PNG, TIFF, BMP, PGM or DICOM)", key="byo_image",
                              type=["jpg", "jpeg", "png", "tif", "tiff", "bmp", "pgm", "dcm"])
        if up is not None:
            image = imaging.decode_image(up.getvalue(), channels=3, name=up.name)
            image_digest, image_name = upload_digest(up, "image"), "your image"
    else:
        t1, t2 = st.columns(2)
        task_id = t1.selectbox("Task", list(TASKS), format_func=lambda t: TASKS[t].title, key="byo_task")
        spec = get_task(task_id)
        missing = cases.data_status(spec)
        if missing:
            st.info(missing)
        else:
            shown = task_page.gallery_cases(task_id)
            index = t2.selectbox("Case", list(range(len(shown))), key="byo_case",
                                 format_func=lambda i: cases.sample_label(spec, shown[i]))
            case = task_page.gallery_case(task_id, int(index))
            image, image_digest, image_name = case.image, case.digest, case.name
if image is None:
    common.disclaimer()
    st.stop()

prepared = model_formats.prepare_for_model(image, opened)
display = imaging.as_rgb_uint8(imaging.resize(imaging.to_channels(image, opened.channels), cases.DISPLAY_SIZE))
pred = None
with common.guarded("The prediction"):
    st.subheader("Prediction")
    with st.spinner("Predicting…"):
        pred = prediction(mkey, image_digest, opened, prepared)
    top = int(np.argmax(pred["softmax"]))
    i1, i2 = st.columns([1, 1.6])
    i1.image(display, caption=f"{image_name}, resized to {opened.input_size} × {opened.input_size}", width="stretch")
    with i2:
        st.markdown(f"### Most likely: **{class_names[top]}**")
        low, high = pred["interval"][top]
        m = st.columns(2)
        m[0].metric("Softmax confidence", f"{pred['softmax'][top]:.0%}", help=screen_text.HELP["softmax"], border=True)
        label = "MC-dropout confidence" if pred["method"] == "mc_dropout" else "Test-time-augmentation mean"
        help_text = screen_text.HELP["bayesian"] if pred["method"] == "mc_dropout" else screen_text.HELP["tta"]
        m[1].metric(label, f"{pred['mean'][top]:.0%}", f"95% range {low:.0%}–{high:.0%}",
                    delta_color="off", delta_arrow="off", help=help_text, border=True)
        st.caption(pred["method_note"] + " No uncertainty warnings for a model brought here: their thresholds are "
                   "measured on a validation split, which LifeLens does not have for your model.")
        common.disclaimer()
        st.altair_chart(charts.confidence_bars(class_names, pred["softmax"], pred["mean"], pred["interval"][:, 0],
                                               pred["interval"][:, 1]), width="stretch")


@st.fragment
def explanation_section():
    """Redrawn alone when its controls change: the prediction above is not recomputed."""
    with common.guarded("The explanation"):
        st.subheader("Where did it look?")
        methods = opened.supported_methods()
        # SHAP needs background images; for a model from outside LifeLens the image's own black, blurred and
        # mean-colour versions stand in (the same baselines Integrated Gradients uses).
        options = {m: model_formats.method_options(m, prepared) for m in methods}
        choice = explain_panel.controls("byo", mkey, opened.explainable, class_names, top, methods)
        explain_panel.main_view("byo", mkey, opened.explainable, prepared, display, image_digest, class_names, choice,
                                options)
        if not common.presenter() and st.toggle("Compare several methods (with deletion/insertion AUC)", key="byo_compare"):
            explain_panel.comparison_grid("byo", mkey, opened.explainable, prepared, display, image_digest, class_names,
                                          choice, options, methods)
        if opened.method_support("mc_dropout") is None and opened.conv_layers and not common.presenter() \
                and st.toggle("Grad-CAM uncertainty under MC dropout", key="byo_gradcam_mc"):
            explain_panel.uncertainty_view("byo", mkey, opened.keras_model, prepared, display, image_digest,
                                           class_names, choice)


@st.fragment
def inside_section():
    with common.guarded("Inside the network"):
        st.subheader("Inside the network")
        if not opened.conv_layers:
            st.info(f"A {FORMATS[opened.format]} model does not expose its convolution layers, so its filters and "
                    "feature maps cannot be shown.")
            return
        model = opened.keras_model
        # Toggles, not expanders: an expander's content is computed even while it is closed.
        if st.toggle("First-layer filters", key="byo_filters"):
            tiles = inside.filter_tiles(inside.first_layer_filters(model), cell=48)
            columns = st.columns(12)
            for i, tile in enumerate(tiles[:48]):
                columns[i % 12].image(tile, caption=f"#{i}", width="stretch")
        if st.toggle("Feature hierarchy for this image", key="byo_hierarchy"):
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
        if st.toggle("Architecture", key="byo_architecture"):
            rows = inside.architecture_table(model)
            st.dataframe([{"layer": r["name"], "type": r["type"], "output shape": str(r["output_shape"]),
                           "parameters": r["params"], "receptive field (px)": r["receptive_field"]} for r in rows],
                         hide_index=True, width="stretch")


if pred is not None:
    explanation_section()
    inside_section()
