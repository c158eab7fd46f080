"""One task page: choose an image, see the prediction with both confidences, explain it, export it.

Every task page is drawn by :func:`render`; :func:`page_for` makes the page of a registered task.
"""
from __future__ import annotations

import numpy as np
import streamlit as st

from lifelens import cases, charts, report, scoring
from lifelens.uncertainty import case_prediction
from lifelens.tasks import DISCLAIMER, get_task
from ui import common, explain_panel, screen_text

SOURCES = ("Gallery", "Upload", "Camera")
GREYED_CSS = "<style>[class*='_prediction_greyed'] {opacity: 0.45; filter: grayscale(1);}</style>"
POSTERIOR_SAMPLES = 50


# ----------------------------------------------------------------------------- cached data

@st.cache_data(show_spinner=False)
def gallery_cases(task_id: str) -> list:
    return cases.gallery(get_task(task_id))


@st.cache_data(show_spinner=False, max_entries=64)
def gallery_case(task_id: str, index: int) -> cases.Case:
    spec = get_task(task_id)
    return cases.case_from_sample(spec, gallery_cases(task_id)[index])


@st.cache_data(show_spinner=False, max_entries=32)
def _bytes_case(task_id: str, content: bytes, name: str, source: str) -> cases.Case:
    return cases.case_from_bytes(get_task(task_id), content, name, source)


@st.cache_data(show_spinner=False, max_entries=256)
def _prediction(model_key: str, image_digest: str, bayes_method: str, samples: int, _task_model, _prepared) -> dict:
    return case_prediction.predict_case(_task_model, _prepared, bayes_method, samples)


@st.cache_data(show_spinner=False, max_entries=256)
def _shipped_probs(model_key: str, image_digest: str, _task_model, _prepared) -> np.ndarray:
    return case_prediction.shipped_probabilities(_task_model, _prepared)


def shipped_probs(task_model, case, pred: dict | None = None) -> np.ndarray:
    """(K,) the ensemble's prediction of a case: the page's prediction when it is the ensemble's,
    else computed once per image and cached."""
    if pred is not None and pred["method"] == "ensemble":
        return case_prediction.shipped_probabilities(task_model, case.prepared, pred)
    return _shipped_probs(model_key(task_model), case.digest, task_model, case.prepared)


@st.cache_resource(show_spinner=False)
def _input_gate(model_key: str, task_id: str):
    from lifelens.uncertainty.gate import InputGate, gate_path

    return InputGate.load(gate_path(get_task(task_id)))


@st.cache_data(show_spinner=False, max_entries=256)
def _typicality(model_key: str, image_digest: str, task_id: str, _task_model, _prepared) -> float | None:
    from lifelens.uncertainty import features_of

    gate = _input_gate(model_key, task_id)
    if gate is None:
        return None
    x = np.asarray(_prepared, np.float32)[None]
    return float(gate.typicality(features_of(_task_model, x), x)[0])


def input_gate_message(spec, task_model, case) -> bool:
    """Say so above the prediction when the image does not look like the task's images;
    True when it does (or when no gate was fitted)."""
    typicality = _typicality(model_key(task_model), case.digest, spec.id, task_model, case.prepared)
    if typicality is None:
        return True
    gate = _input_gate(model_key(task_model), spec.id)
    if gate.in_domain(typicality):
        return True
    st.warning(f"**This does not look like a {spec.modality.lower()}**: typicality {typicality:.3f}, lower than "
               f"{1 - gate.alpha:.0%} of our validation images. The prediction below means nothing (about "
               f"{gate.alpha:.0%} of images like ours are flagged too).", icon=":material/block:")
    return False


def conformal_section(spec, task_model, case, pred: dict) -> None:
    """The conformal set at a coverage the user picks, beside what it promises."""
    from lifelens.uncertainty import conformal

    calibrations = conformal.from_card(task_model.card)
    if not calibrations:
        st.caption("No conformal calibration in this model's card yet (run `python -m lifelens calibrate`).")
        return
    level = st.segmented_control("Coverage of the prediction set", ["0.8", "0.9", "0.95"], default="0.9",
                                 format_func=lambda v: f"{float(v):.0%}", key=f"{spec.id}_coverage",
                                 help=screen_text.HELP["conformal"]) or "0.9"
    probs = shipped_probs(task_model, case, pred)
    methods = [m for m in ("ordinal", "lac") if m in calibrations]
    for method in methods:
        members = conformal.describe_set(conformal.prediction_sets(calibrations[method], probs, level),
                                         spec.class_names, probs)
        label = "Adjacent grades" if method == "ordinal" else "Conformal set"
        names = ", ".join(f"{m['class']} ({m['probability']:.0%})" for m in members) or (
            "empty: no class is needed to reach this coverage on images like ours (the model is right more often "
            "than that), and this image is among the least sure; a higher coverage shows its plausible classes")
        st.markdown(f"**{label} at {float(level):.0%}:** {names}",
                    help=screen_text.HELP["conformal"] + f" Method: {calibrations[method].method.upper()}, "
                    f"calibrated on {calibrations[method].n_calibration} validation images.")
    report = (task_model.card.get("conformal") or {}).get("test", {}).get("lac", {}).get(level)
    if report:
        st.caption(f"On our test split these sets held the true class for {report['coverage']:.1%} of images "
                   f"(nominal {float(level):.0%}), with {report['mean_set_size']:.2f} classes on average.")


def model_key(task_model) -> str:
    """Changes when the model file changes (e.g. a Bayesian head is attached)."""
    return f"{task_model.spec.id}:{task_model.card.get('sha256', '')[:16]}"


# ----------------------------------------------------------------------------- choosing the image

def _next_case(key: str, count: int) -> None:
    st.session_state[key] = (st.session_state.get(key, 0) + 1) % count


def choose_case(spec) -> cases.Case | None:
    """The image source picker and the chosen case (None when there is none yet)."""
    key = spec.id
    source = st.radio("Image from", SOURCES, horizontal=True, key=f"{key}_source",
                      help="Gallery: real cases from our TEST split (never used for training). "
                           "Upload or Camera: your own image, kept in memory only.")
    if source == "Gallery":
        missing = cases.data_status(spec)
        if missing:
            st.info(missing)
            return None
        shown = gallery_cases(spec.id)
        if not shown:
            st.info("The test split of this task is empty.")
            return None
        pick_key = f"{key}_case"
        cols = st.columns([5, 1])
        index = cols[0].selectbox(
            f"Case from the test split ({len(shown)} images)", list(range(len(shown))), key=pick_key,
            format_func=lambda i: cases.sample_label(spec, shown[i]),
            help="The label shown is the true class recorded in the data set.")
        cols[1].button("Next case", key=f"{key}_next", on_click=_next_case, args=(pick_key, len(shown)),
                       help="Show the next case of the gallery.", width="stretch", icon=":material/arrow_forward:")
        with st.spinner("Reading the image…"):
            return gallery_case(spec.id, int(index))
    if source == "Upload":
        kinds = ", ".join(t.upper() for t in spec.upload_types)
        uploaded = st.file_uploader(f"Upload an image ({kinds})", type=list(spec.upload_types), key=f"{key}_upload",
                                    help=f"Expected: {spec.modality}. The file stays in memory and is never saved.")
        if uploaded is None:
            st.caption("Drop a file above to analyse it.")
            return None
        return _bytes_case(spec.id, uploaded.getvalue(), uploaded.name, "upload")
    shot = st.camera_input("Take a photo", key=f"{key}_camera",
                           help=f"Expected: {spec.modality}. The photo stays in memory and is never saved.")
    if shot is None:
        return None
    return _bytes_case(spec.id, shot.getvalue(), "camera photo", "camera")


def current_case(spec) -> cases.Case | None:
    """The image open on this task's page in this session, else the first gallery case (None without data)."""
    case = st.session_state.get(f"current_case_{spec.id}")
    if case is not None:
        return case
    if cases.data_status(spec) or not gallery_cases(spec.id):
        return None
    return gallery_case(spec.id, 0)


# ----------------------------------------------------------------------------- prediction

def bayes_method_choice(spec, task_model) -> str:
    """Which posterior the page shows (the ensemble when there is one, in presenter mode always)."""
    methods = ((["ensemble"] if task_model.is_ensemble else []) + ["mc_dropout"]
               + (["variational"] if task_model.variational_head is not None else []))
    if common.presenter() or len(methods) == 1:
        return methods[0]
    return st.radio("Bayesian confidence from", methods, index=0, horizontal=True,
                    format_func=case_prediction.BAYES_METHODS.get, key=f"{spec.id}_bayes",
                    help=f"Deep ensemble: {len(task_model.members)} networks trained from different random "
                         "starts; their spread is the uncertainty (the shipped prediction is their mean). "
                         "MC dropout: dropout kept on at prediction time, each pass one sampled network. "
                         "Variational head: a last layer whose weights are probability distributions, "
                         "trained by Bayes by Backprop.")


def case_image(spec, case) -> None:
    """The case's image with what is known about it underneath."""
    caption = (cases.shown_name(case, st.session_state.get(common.FILE_NAMES_KEY, False))
               if case.source != "gallery" else f"True class: {spec.class_names[case.label]}")
    if case.note:
        caption += f" · {case.note}"
    if case.marks:
        caption += " · green circle: the lesion recorded in the data"
    st.image(case.display_with_marks(), caption=caption, width="stretch")


def reading_the_uncertainty(names: list[str], pred: dict) -> None:
    """The posterior histogram beside what each uncertainty number means for this image."""
    c1, c2 = st.columns([1.4, 1])
    c1.altair_chart(charts.posterior_histogram(names, pred["samples"], top=3), width="stretch")
    c2.markdown(
        "**Reading the uncertainty**\n\n"
        f"- **Entropy {pred['predictive_entropy']:.2f} nats** — total uncertainty (0 = sure, "
        f"{np.log(len(names)):.2f} = all {len(names)} classes equally likely).\n"
        f"- **Mutual information {pred['mutual_information']:.3f} nats** — the sampled networks disagreeing "
        "with each other: uncertainty from not knowing (epistemic).\n"
        f"- **Expected entropy {pred['expected_entropy']:.2f} nats** — uncertainty every sampled network "
        "shares: an ambiguous image (aleatoric).\n"
        "- **Histogram** — each posterior sample is one version of the network; a narrow peak means they agree.")


def decision_rule_caption(spec, card: dict, mean: np.ndarray) -> None:
    """How the shown class is called from the probabilities, when the card has a rule."""
    names, point, threshold = spec.class_names, spec.operating_point, card.get("threshold")
    if point is not None and threshold is not None:
        st.caption(f"Called **{names[point.positive]}** when its probability is at least {threshold:.3f}: the "
                   f"operating point chosen on validation images ({card.get('threshold_rule', '')}), "
                   "the same threshold the model card's sensitivity and specificity use.")
    elif spec.ordinal and threshold is not None:
        expected = float(mean @ np.arange(len(names)))
        st.caption(f"Grade called from the expected grade {expected:.2f} (the probability-weighted mean grade), "
                   f"cut at {', '.join(f'{c:.2f}' for c in threshold)}: points chosen on validation images to "
                   "maximise quadratic kappa, the rule the model card's kappa uses. It can differ from the most "
                   "probable grade when the probability is spread over neighbouring grades.")


def paired_read_section(spec, task_model, case, pred: dict) -> None:
    """The image beside the same patient's other one (``TaskSpec.paired_read``), where the gallery holds it."""
    from lifelens.paired_read import PairedRead

    record = task_model.card.get("paired_read") if spec.paired_read is not None else None
    rule = PairedRead.from_card(record)
    if rule is None:
        return
    partner = spec.paired_read.partner
    if case.source != "gallery":  # an upload has no patient; the gallery (which needs the data folder) is not read
        st.caption(f"Read alone: the paired read joins an image with {partner} of the same patient, which an "
                   "upload does not come with.")
        return
    partners = cases.partner_indices(gallery_cases(spec.id), case)
    if len(partners) != 1:
        if partners:
            st.caption(f"Read alone: this patient has {len(partners) + 1} images here, not a pair.")
        return  # no patient recorded with this image (its source has none): nothing to say
    own = shipped_probs(task_model, case, pred)
    other = gallery_case(spec.id, partners[0])
    other_probs = shipped_probs(task_model, other)
    paired = rule.read_beside(own, [other_probs])
    threshold = record.get("threshold")
    called = spec.class_names[int(scoring.predicted_class(spec, paired[None], threshold)[0])]
    help_text = f"{spec.paired_read.why} {screen_text.HELP['paired_read']}"
    if spec.operating_point is not None:
        pos = spec.operating_point.positive
        name = spec.class_names[pos]
        st.metric(f"{name}, beside {partner}", f"{paired[pos]:.0%}", f"{own[pos]:.0%} read alone",
                  delta_color="off", delta_arrow="off", border=True, help=help_text)
        alone = f"{other_probs[pos]:.0%} {name.lower()} read alone"
    else:
        top = int(np.argmax(paired))
        st.metric(f"Beside {partner}", called, f"{spec.class_names[top]} {paired[top]:.0%}",
                  delta_color="off", delta_arrow="off", border=True, help=help_text)
        alone = f"{spec.class_names[int(np.argmax(other_probs))]} read alone"
    st.caption(f"Beside {other.name} ({alone}): called **{called}** by the paired read's own decision rule, "
               "chosen on validation images.")


def prediction_section(spec, task_model, case) -> dict:
    """Image beside both confidences, uncertainty and warnings; returns the prediction."""
    bayes_method = bayes_method_choice(spec, task_model)
    typical = input_gate_message(spec, task_model, case)
    with st.spinner("Predicting…"):
        pred = _prediction(model_key(task_model), case.digest, bayes_method, POSTERIOR_SAMPLES, task_model, case.prepared)
    names = spec.class_names
    # The card's operating threshold where the task has one, so the page, `predict` and the card agree.
    top = int(scoring.predicted_class(spec, pred["mean"][None], task_model.card.get("threshold"))[0])
    # An image the gate rejects keeps its prediction on screen, greyed (see the page style), for teaching.
    greyed = st.container(key=f"{spec.id}_prediction" + ("" if typical else "_greyed"))
    image_col, result_col = greyed.columns([1, 1.6] if not common.presenter() else [1, 1.2])
    with image_col:
        case_image(spec, case)
    with result_col:
        threshold = task_model.card.get("threshold")
        verdict = f"### {'Called' if spec.ordinal and threshold is not None else 'Most likely'}: **{names[top]}**"
        if case.label is not None:
            verdict += (" :green[:material/check_circle: correct]" if case.label == top
                        else f" :red[:material/cancel: wrong — true: {names[case.label]}]")
        st.markdown(verdict)
        decision_rule_caption(spec, task_model.card, pred["mean"])
        low, high = pred["interval"][top]
        t_note = f" Temperature {pred['temperature']:.2f} applied." if pred.get("temperature") else ""
        top_softmax = int(np.argmax(pred["softmax"]))
        row1 = st.columns(2)
        row1[0].metric("Softmax confidence", f"{pred['softmax'][top_softmax]:.0%}",
                       None if top_softmax == top else f"for {names[top_softmax]}", delta_color="off", delta_arrow="off",
                       help=screen_text.HELP["softmax"] + t_note, border=True)
        row1[1].metric("Bayesian confidence", f"{pred['mean'][top]:.0%}", f"95% CI {low:.0%}–{high:.0%}",
                       delta_color="off", delta_arrow="off", border=True,
                       help=screen_text.HELP["bayesian"] + f" Method: {case_prediction.BAYES_METHODS[bayes_method]}.")
        row2 = st.columns(2)
        row2[0].metric("Entropy (nats)", f"{pred['predictive_entropy']:.2f}", help=screen_text.HELP["entropy"], border=True)
        row2[1].metric("Mutual information (nats)", f"{pred['mutual_information']:.3f}",
                       help=screen_text.HELP["mutual_information"], border=True)
        if bayes_method == "ensemble" and task_model.companion is not None:
            st.caption(screen_text.fusion_caption(task_model.card["fusion"]))
        paired_read_section(spec, task_model, case, pred)
        warnings = case_prediction.prediction_warnings(names, pred["softmax"], pred["samples"],
                                                  task_model.card.get("warnings"), bayes_method)
        for w in warnings:
            st.warning(w, icon=":material/warning:")
        conformal_section(spec, task_model, case, pred)
        with st.expander("What each confidence promises"):
            st.markdown("\n".join(f"- {line}" for line in screen_text.PROMISES.values()))
        st.caption(f":material/warning: {DISCLAIMER}")
        st.altair_chart(charts.confidence_bars(names, pred["softmax"], pred["mean"], pred["interval"][:, 0],
                                               pred["interval"][:, 1], top=5 if common.presenter() else 6,
                                               graded=spec.ordinal),
                        width="stretch")
    if not common.presenter():
        reading_the_uncertainty(names, pred)
    pred["warnings"] = warnings
    pred["top"] = top
    pred["in_domain"] = typical
    return pred


# ----------------------------------------------------------------------------- shift lab

SHIFT_SLIDERS = (  # (shift kind, label, min, max, identity, step, help)
    ("blur", "Blur (σ, px)", 0.0, 6.0, 0.0, 0.5, "Gaussian blur, as an out-of-focus camera; σ in pixels at 256 px."),
    ("noise", "Sensor noise (σ)", 0.0, 48.0, 0.0, 4.0, "Gaussian noise added to every pixel, in grey levels."),
    ("jpeg", "JPEG quality", 5, 100, 100, 5, "Re-saved as JPEG at this quality (100 = untouched)."),
    ("brightness", "Brightness ×", 0.5, 2.5, 1.0, 0.1, "Intensities multiplied (over- or under-exposure)."),
    ("contrast", "Contrast ×", 0.2, 1.5, 1.0, 0.1, "Deviations from the mean colour scaled."),
    ("rotation", "Rotation (°)", -90, 90, 0, 5, "The image turned about its centre."),
    ("crop", "Crop (share kept)", 0.4, 1.0, 1.0, 0.05, "A centred crop, scaled back to the full size."),
    ("colour", "White balance", -0.4, 0.4, 0.0, 0.05,
     "Another camera's colour cast: above 0 warmer (red up, blue down by the same factor), below 0 cooler; "
     "0.35 is red ×1.42, blue ×0.70. Colour photos only."),
)
SHIFT_LAB_SIDE = 512  # the lab works on the image at most this big: fast at any upload size


@st.fragment
def shift_lab(spec, task_model, case) -> None:
    """Sliders that shift the current image as a faulty camera would; every change redraws
    the prediction (softmax, ensemble posterior, conformal set) and the Grad-CAM map."""
    from lifelens import explain, imaging
    from lifelens.uncertainty import conformal, shift

    sliders = [row for row in SHIFT_SLIDERS if row[0] in shift.shift_kinds(spec.channels)]
    cols = st.columns(4)
    amounts = {kind: cols[i % 4].slider(label, lo, hi, ident, step, key=f"{spec.id}_shift_{kind}", help=text)
               for i, (kind, label, lo, hi, ident, step, text) in enumerate(sliders)}
    image = case.image
    if max(image.shape[:2]) > SHIFT_LAB_SIDE:
        image = imaging.resize_longest(image, SHIFT_LAB_SIDE)
    for kind, _, _, _, ident, _, _ in sliders:
        if amounts[kind] != ident:
            image = shift.apply_shift(image, kind, amounts[kind])
    framed = spec.framed(image)
    prepared = spec.prepare_framed(framed)
    pred = case_prediction.predict_case(task_model, prepared, "ensemble" if task_model.is_ensemble else "mc_dropout", 30)
    names = spec.class_names
    top = int(scoring.predicted_class(spec, pred["mean"][None], task_model.card.get("threshold"))[0])
    gradcam = explain.explain(task_model.classifier, prepared, targets=top, method="gradcam")
    left, right = st.columns([1, 1.3])
    left.image(explain.overlay_image(gradcam, cases.display_image(spec, framed)[0]),
               caption=f"Shifted image, Grad-CAM for {names[top]}", width="stretch")
    with right:
        m = st.columns(2)
        m[0].metric("Softmax", f"{pred['softmax'].max():.0%}", f"for {names[int(np.argmax(pred['softmax']))]}",
                    delta_color="off", delta_arrow="off", help=screen_text.HELP["softmax"], border=True)
        low, high = pred["interval"][top]
        m[1].metric("Posterior", f"{pred['mean'][top]:.0%}", f"{names[top]}, 95% CI {low:.0%}–{high:.0%}",
                    delta_color="off", delta_arrow="off", help=screen_text.HELP["bayesian"], border=True)
        m = st.columns(2)
        m[0].metric("Mutual information (nats)", f"{pred['mutual_information']:.3f}",
                    help=screen_text.HELP["mutual_information"], border=True)
        calibrations = conformal.from_card(task_model.card)
        if "lac" in calibrations:
            probs = case_prediction.shipped_probabilities(task_model, prepared, pred)
            chosen = conformal.describe_set(conformal.prediction_sets(calibrations["lac"], probs, 0.9), names, probs)
            m[1].metric("90 % conformal set", f"{len(chosen)} of {len(names)}", ", ".join(c["class"] for c in chosen),
                        delta_color="off", delta_arrow="off", help=screen_text.HELP["conformal"], border=True)
        st.caption("The conformal guarantee assumes images like the calibration images: under a strong shift it "
                   "may no longer hold, while a useful uncertainty (mutual information, set size) should rise.")


# ----------------------------------------------------------------------------- export

def _provenance(spec, task_model) -> tuple[dict, dict]:
    card = task_model.card
    metrics = card.get("metrics") or {}
    key = spec.key_metrics[0]
    model = {
        "Model file": f"models/{spec.model_path.name} (sha256 {card.get('sha256', '?')[:16]}…)",
        "Architecture": f"small CNN trained from scratch, {card.get('parameters', '?')} parameters",
        "Input": f"{spec.input_size} x {spec.input_size} x {spec.channels}",
    }
    if metrics.get(key) is not None:
        model["Test-split " + key.replace("_", " ")] = f"{metrics[key]:.3f}"
    if case_prediction.card_temperature(card):
        model["Temperature"] = f"{case_prediction.card_temperature(card):.3f}"
    if task_model.companion is not None:
        fusion = card["fusion"]
        model["Ensemble fused with"] = (f"gradient boosting on colour and texture (models/{fusion['file']}, "
                                        f"weights {fusion['network_weight']} / {fusion['companion_weight']})")
    data = {"Data set": spec.citation, "Licence": spec.licence, "Modality": spec.modality}
    return model, data


def export_section(spec, task_model, case, pred, panels) -> None:
    names = spec.class_names
    model_info, data_info = _provenance(spec, task_model)
    case_report = report.CaseReport(
        task_title=spec.title, case_name=cases.shown_name(case, st.session_state.get(common.FILE_NAMES_KEY, False)),
        source=case.source, image=case.display_with_marks(),
        class_names=names, softmax=pred["softmax"], bayes_mean=pred["mean"], bayes_low=pred["interval"][:, 0],
        bayes_high=pred["interval"][:, 1], entropy=pred["predictive_entropy"],
        mutual_information=pred["mutual_information"], bayes_method=case_prediction.BAYES_METHODS[pred["method"]],
        true_label=names[case.label] if case.label is not None else None, warnings=pred["warnings"],
        explanations=panels, model=model_info, data=data_info,
        called=names[pred["top"]])
    stem = f"lifelens-{spec.id}-{case.digest[:8]}"
    c1, c2, c3 = st.columns([1.2, 1.3, 2])
    c1.download_button("Download PNG figure", data=lambda: report.render_png(case_report), file_name=f"{stem}.png",
                       mime="image/png", key=f"{spec.id}_png", on_click="ignore", icon=":material/image:", width="stretch",
                       help="The image, the explanations shown, both confidences and the provenance in one picture.")
    c2.download_button("Download HTML report", data=lambda: report.render_html(case_report), file_name=f"{stem}.html",
                       mime="text/html", key=f"{spec.id}_html", on_click="ignore", icon=":material/description:", width="stretch",
                       help="One self-contained web page (images inlined) with the prediction, the explanations, "
                            "and model and data provenance.")
    c3.caption("The export holds the explanations currently on screen (including the comparison grid when it is open).")


# ----------------------------------------------------------------------------- the page

def page_for(task_id: str):
    """The ``st.Page`` of a registered task, drawn by :func:`render` (the function is named
    after the task, since Streamlit tells callable pages apart by name)."""
    def page() -> None:
        render(task_id)

    page.__name__ = page.__qualname__ = f"task_{task_id}"
    spec = get_task(task_id)
    return st.Page(page, title=spec.title, icon=spec.icon, url_path=task_id)


def render(task_id: str) -> None:
    spec = get_task(task_id)
    st.title(f"{common.task_icon(spec.id)} {spec.title}")
    st.caption(f"{spec.short} · input: {spec.modality}")
    st.html(GREYED_CSS)
    st.session_state[common.LAST_TASK_KEY] = spec.id
    task_model = common.task_model(task_id)
    case = None
    with common.guarded("The image"):
        case = choose_case(spec)
    if case is None or task_model is None:
        common.disclaimer()
        return
    st.session_state[f"current_case_{spec.id}"] = case  # the Inside page explains the same image
    st.divider()
    pred = None
    with common.guarded("The prediction"):
        st.subheader("Prediction")
        pred = prediction_section(spec, task_model, case)
    if pred is None:
        return
    st.divider()
    explanations_and_export(spec, task_model, case, pred)


@st.fragment
def explanations_and_export(spec, task_model, case, pred) -> None:
    """Everything below the prediction. A fragment: changing a method, class, layer or colormap
    reruns only this part, not the image choice and the prediction above it."""
    panels: list = []
    choice = None
    mkey = model_key(task_model)
    display = case.display_with_marks()
    with common.guarded("The explanation"):
        st.subheader("Where did it look?")
        choice = explain_panel.controls(spec.id, mkey, task_model.classifier, spec.class_names, pred["top"])
        explained, key = task_model.classifier, mkey
        if task_model.is_ensemble and st.toggle(
                f"Explain the whole ensemble ({len(task_model.members)} networks)", value=True, key=f"{spec.id}_ens_map",
                help="On: the mean of every member's map, and a map of where they disagree. "
                     "Off: the first member alone (faster for SHAP, Score-CAM and occlusion)."):
            explained, key = list(task_model.members), mkey + ":ensemble"
        panels.append(explain_panel.main_view(spec.id, key, explained, case.prepared, display, case.digest,
                                              spec.class_names, choice))
    if choice is not None and not common.presenter():
        from lifelens.uncertainty import shift

        colour = "colour" in shift.shift_kinds(spec.channels)
        kinds = "blur, noise, JPEG, exposure, rotation, crop" + (", white balance" if colour else "")
        if st.toggle(f"Shift lab: {kinds}", key=f"{spec.id}_shift_lab",
                     help="Change the image as another camera or a faulty one would, and watch the prediction, "
                          "the uncertainty, the conformal set and the map respond."):
            with common.guarded("The shift lab"):
                shift_lab(spec, task_model, case)
        compare = st.toggle("Compare several methods (with deletion/insertion AUC)", key=f"{spec.id}_compare",
                            help="Compute several explanation methods side by side and score how faithful each map is.")
        if compare:
            with common.guarded("The method comparison"):
                panels.extend(explain_panel.comparison_grid(spec.id, mkey, task_model.classifier, case.prepared, display,
                                                            case.digest, spec.class_names, choice))
        uncertain = st.toggle("Grad-CAM uncertainty under MC dropout", key=f"{spec.id}_gradcam_mc",
                              help="Grad-CAM recomputed for many dropout masks: the mean map and where it varies.")
        if uncertain:
            with common.guarded("The Grad-CAM uncertainty map"):
                panel = explain_panel.uncertainty_view(spec.id, mkey, task_model.classifier, case.prepared, display,
                                                       case.digest, spec.class_names, choice)
                if panel is not None:
                    panels.append(panel)
    st.divider()
    with common.guarded("The export"):
        st.subheader("Export this case")
        export_section(spec, task_model, case, pred, panels)
