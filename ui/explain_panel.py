"""The explanation section, shared by the task pages and the bring-your-own-model page.

It draws: the controls (method, target class, layer, colormap, opacity), the chosen map
over the image, a side-by-side grid of several methods with their deletion/insertion
AUC, and the Grad-CAM uncertainty map under MC dropout. Every explanation is cached per
(model, image bytes, method, class, layer).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from lifelens import card_tables, charts, imaging
from lifelens.report import ExplanationPanel
from ui import common, screen_text

# One of each family (a CAM, SHAP, a path gradient, perturbation), not four near-identical CAMs.
DEFAULT_COMPARISON = ("gradcam", "shap", "integrated_gradients", "occlusion")
GRID_COLUMNS = 4
MC_SAMPLES = 32  # dropout masks of the Grad-CAM uncertainty view


def _explain_module():
    from lifelens import explain

    return explain


def method_ids() -> list[str]:
    """Every registered explanation method, in registry order."""
    return list(_explain_module().METHODS)


def method_name(method_id: str) -> str:
    cls = _explain_module().METHODS.get(method_id)
    return getattr(cls, "name", None) or method_id


def uses_layer(method_id: str) -> bool:
    return bool(getattr(_explain_module().METHODS.get(method_id), "uses_layer", False))


@dataclass
class Choice:
    method: str
    target: int
    layer: str | None
    colormap: str
    alpha: float
    precise: bool = False  # the method's default options instead of its fast ones


# ----------------------------------------------------------------------------- cached computations

@st.cache_data(show_spinner=False, max_entries=512)
def explanation(model_key: str, image_digest: str, method: str, target: int, layer: str | None,
                _model, _prepared: np.ndarray, _options: dict | None = None, precise: bool = False) -> dict:
    """One map for one image: {"map": (H, W) in [0, 1], "signed": (H, W) or None, "layer", "target", "extra"}.

    ``_options`` (not part of the cache key) must be determined by the other arguments,
    e.g. the SHAP background built from the image itself for an uploaded model. Unless
    ``precise``, the method's fast options (``Method.fast``) apply.
    """
    module = _explain_module()
    _options = {**({} if precise else module.METHODS[method].fast), **(_options or {})}
    # A list of models is a deep ensemble: the mean of its members' maps, with their spread in extra["std"].
    run = module.explain_ensemble if isinstance(_model, list) else module.explain
    result = run(_model, np.asarray(_prepared, np.float32), targets=int(target), method=method,
                 layer=layer if uses_layer(method) else None, **(_options or {}))
    extra = {k: (np.asarray(v)[0] if np.ndim(v) >= 1 and np.shape(v)[0] == 1 else v) for k, v in result.extra.items()}
    return {"map": result.maps[0], "signed": None if result.signed is None else result.signed[0],
            "layer": result.layer, "target": int(result.targets[0]), "extra": extra}


@st.cache_data(show_spinner=False, max_entries=512)
def faithfulness(model_key: str, image_digest: str, method: str, target: int, layer: str | None,
                 _model, _prepared: np.ndarray, _heatmap: np.ndarray) -> dict:
    """Deletion and insertion AUC of one map: {"deletion_auc", "insertion_auc"} in [0, 1]."""
    return _explain_module().map_faithfulness(_model, _prepared, _heatmap, target)


@st.cache_data(show_spinner=False, max_entries=128)
def spatial_layers(model_key: str, _model) -> tuple[list[str], str]:
    """(names of the layers a CAM method can explain, the default one)."""
    return _explain_module().spatial_layers(_model)


# ----------------------------------------------------------------------------- drawing

def colour_map(result: dict, display: np.ndarray, colormap: str, alpha: float, signed: bool = False) -> np.ndarray:
    """The map over the display image (uint8 RGB)."""
    if signed and result.get("signed") is not None:
        return imaging.overlay(display, result["signed"], alpha=alpha, signed=True)
    return imaging.overlay(display, result["map"], colormap=colormap, alpha=alpha)


def controls(key: str, model_key: str, model, class_names: list[str], predicted: int,
             methods: list[str] | None = None) -> Choice:
    """The explanation controls; in presenter mode only the method and the class.

    ``methods``: the methods the model allows (default: every registered one)."""
    methods = methods or method_ids()
    default = methods.index("gradcam") if "gradcam" in methods else 0
    presenting = common.presenter()
    cols = st.columns([1.3, 1.3, 1.3] if presenting else [1.2, 1.5, 1.3, 0.9, 1])
    method = cols[0].selectbox(
        "Explanation method", methods, index=default, format_func=method_name, key=f"{key}_method",
        help="How the heatmap is computed. CAM methods weigh the feature maps of one layer; gradient and "
             "SHAP methods attribute the score to input pixels. See the description below the map.")
    target = cols[1].selectbox(
        "Explain the class", list(range(len(class_names))), index=int(predicted),
        format_func=lambda i: class_names[i] + (" (predicted)" if i == predicted else ""),
        key=f"{key}_target", help=screen_text.HELP["target"])
    layers, default_layer = spatial_layers(model_key, model) if any(map(uses_layer, methods)) else ([], None)
    layer = default_layer
    if presenting:
        colormap, alpha = "jet", 0.45
    else:
        if uses_layer(method):
            layer = cols[2].selectbox("Layer", layers, index=layers.index(default_layer) if default_layer in layers else 0,
                                      key=f"{key}_layer", help=screen_text.HELP["layer"])
        else:
            cols[2].selectbox("Layer", ["(input pixels)"], key=f"{key}_layer_none", disabled=True,
                              help="This method attributes the score to the input pixels; it has no layer to choose.")
            layer = None
        colormap = cols[3].selectbox("Colormap", list(imaging.COLORMAPS), key=f"{key}_colormap",
                                     help="Colours of the heatmap: low importance at the start of the scale, high at the end.")
        alpha = cols[4].slider("Opacity", 0.0, 1.0, 0.45, 0.05, key=f"{key}_alpha", help=screen_text.HELP["opacity"])
    fast = _explain_module().METHODS[method].fast
    shown = [k for k in fast if k != "batch_size"]  # how many images go in one call: speed, not the map
    precise = bool(fast) and not presenting and st.toggle(
        "Precise (slower)", key=f"{key}_precise",
        help="Fast by default: " + ", ".join(f"{k} = {fast[k]}" for k in shown) + ". Precise uses the method's "
             "full setting (" + ", ".join(f"{k} = {_explain_module().METHODS[method].defaults[k]}" for k in shown)
             + "), as the model cards and the command line do; it takes a few times longer.")
    return Choice(method, int(target), layer if uses_layer(method) else None, colormap, float(alpha), precise)


def main_view(key: str, model_key: str, model, prepared: np.ndarray, display: np.ndarray, image_digest: str,
              class_names: list[str], choice: Choice, options: dict | None = None) -> ExplanationPanel:
    """The chosen map over the image, beside the bare heatmap; returns it for the report.

    ``options``: {method id: extra options} (must follow from the model and image, e.g. a SHAP
    background made from the image for an uploaded model).
    """
    with st.spinner(f"Computing {method_name(choice.method)}…"):
        result = explanation(model_key, image_digest, choice.method, choice.target, choice.layer, model, prepared,
                             (options or {}).get(choice.method), choice.precise)
    cls = _explain_module().METHODS.get(choice.method)
    signed = bool(getattr(cls, "signed", False)) and result.get("signed") is not None
    overlay = colour_map(result, display, choice.colormap, choice.alpha)
    spread = result["extra"].get("std")
    cols = st.columns(3 if spread is not None else 2)
    caption = f"{method_name(choice.method)} for **{class_names[result['target']]}**" + (
        f" · layer `{result['layer']}`" if result.get("layer") else "") + (
        f" · mean of {result['extra']['members']} ensemble members" if spread is not None else "")
    cols[0].image(overlay, caption=caption, width="stretch")
    if spread is not None:
        top = float(np.max(spread)) or 1.0
        cols[2].image(imaging.colorize(imaging.resize((spread / top)[..., None], display.shape[0])[..., 0], "magma"),
                      caption=f"Explanation uncertainty: where the members' maps disagree (standard deviation, "
                              f"brightest = {top:.2f} on the map's 0–1 scale)", width="stretch")
    if signed:
        cols[1].image(imaging.diverging(imaging.resize(result["signed"][..., None], display.shape[0])[..., 0]),
                      caption="Signed attribution: red = evidence for the class, blue = against", width="stretch")
    else:
        cols[1].image(imaging.colorize(imaging.resize(result["map"][..., None], display.shape[0])[..., 0], choice.colormap),
                      caption="The heatmap alone (0 = ignored, 1 = most important)", width="stretch")
    description = getattr(cls, "description", "")
    if description:
        st.caption(f"**{method_name(choice.method)}** — {description}")
    return ExplanationPanel(method_name(choice.method), overlay, class_names[result["target"]], result.get("layer") or "")


def comparison_grid(key: str, model_key: str, model, prepared: np.ndarray, display: np.ndarray, image_digest: str,
                    class_names: list[str], choice: Choice, options: dict | None = None,
                    methods: list[str] | None = None) -> list[ExplanationPanel]:
    """Several methods on the same image and class, each with deletion/insertion AUC."""
    methods = methods or method_ids()
    default = [m for m in DEFAULT_COMPARISON if m in methods][:4] or methods[:4]
    chosen = st.multiselect("Methods to compare", methods, default=default, format_func=method_name,
                            key=f"{key}_compare_methods",
                            help="Each method is computed for the same image and class; CAM methods use the layer chosen above.")
    if not chosen:
        st.info("Pick at least one method to compare.")
        return []
    # The chance level on THIS image: a map is informative only where it beats a random one.
    side = np.asarray(prepared).shape[0]
    random_map = _explain_module().random_maps(1, side, side, seed=0)[0]
    chance = faithfulness(model_key, image_digest, "random", choice.target, None, model, prepared, random_map)
    st.caption(f"A random map scores deletion {chance['deletion_auc']:.2f} and insertion {chance['insertion_auc']:.2f} "
               "on this image: the figure beside each score compares it with that chance level.")
    panels, rows = [], []
    columns = st.columns(min(GRID_COLUMNS, len(chosen)))
    for i, method in enumerate(chosen):  # each map is drawn as soon as it is ready
        with columns[i % len(columns)]:
            panel, row = _grid_cell(model_key, model, prepared, display, image_digest, class_names, choice, method,
                                    options, chance)
        panels.append(panel)
        rows.append(row)
    good = [r for r in rows if "error" not in r]
    if good:
        good.append({"method": "Random map (chance)", **chance})
        st.altair_chart(charts.faithfulness_bars(good), width="stretch")
    return [p for p in panels if p is not None]


def _grid_cell(model_key, model, prepared, display, image_digest, class_names, choice, method, options, chance):
    """One method's map and its faithfulness against the random map, drawn in the current column."""
    layer = choice.layer if uses_layer(method) else None
    if uses_layer(method) and layer is None:
        layer = spatial_layers(model_key, model)[1]
    try:
        with st.spinner(f"{method_name(method)}…"):
            result = explanation(model_key, image_digest, method, choice.target, layer, model, prepared,
                                 (options or {}).get(method), choice.precise)
            scores = faithfulness(model_key, image_digest, method, choice.target, layer, model, prepared, result["map"])
    except Exception as exc:  # noqa: BLE001 - one failing method must not hide the others
        common.log.exception("comparison of %s failed", method)
        st.error(f"{method_name(method)} could not be computed ({type(exc).__name__}).")
        return None, {"method": method_name(method), "error": type(exc).__name__}
    panel = ExplanationPanel(method_name(method), colour_map(result, display, choice.colormap, choice.alpha),
                             class_names[choice.target], result.get("layer") or "",
                             scores["deletion_auc"], scores["insertion_auc"])
    st.image(panel.overlay, width="stretch", caption=panel.method)
    c1, c2 = st.columns(2)
    c1.metric("Deletion ↓", card_tables.format_value(panel.deletion_auc, 2),
              f"{panel.deletion_auc - chance['deletion_auc']:+.2f} vs random", delta_color="inverse",
              help=screen_text.HELP["deletion_auc"] + f" Random map: {chance['deletion_auc']:.2f}.")
    c2.metric("Insertion ↑", card_tables.format_value(panel.insertion_auc, 2),
              f"{panel.insertion_auc - chance['insertion_auc']:+.2f} vs random",
              help=screen_text.HELP["insertion_auc"] + f" Random map: {chance['insertion_auc']:.2f}.")
    return panel, {"method": method_name(method), **scores}


def uncertainty_view(key: str, model_key: str, model, prepared: np.ndarray, display: np.ndarray, image_digest: str,
                     class_names: list[str], choice: Choice) -> ExplanationPanel | None:
    """Grad-CAM mean and standard deviation over MC-dropout passes."""
    from lifelens.model_formats import dropout_layer

    dropout = dropout_layer(model)
    if dropout is None:
        st.info("This model has no dropout layer, so Grad-CAM cannot be sampled under MC dropout.")
        return None
    layer = choice.layer or spatial_layers(model_key, model)[1]
    with st.spinner("Running Grad-CAM under MC dropout…"):
        result = explanation(model_key, image_digest, "gradcam_mc", choice.target, layer, model, prepared,
                             _options={"samples": MC_SAMPLES}, precise=True)
    std = result["extra"]["std"]
    cols = st.columns(2)
    mean_overlay = colour_map(result, display, choice.colormap, choice.alpha)
    cols[0].image(mean_overlay, width="stretch",
                  caption=f"Mean Grad-CAM over {MC_SAMPLES} dropout masks · {class_names[result['target']]} · "
                          f"layer `{result['layer']}`")
    top = float(std.max()) or 1.0
    cols[1].image(imaging.overlay(display, std / top, colormap="magma", alpha=0.6), width="stretch",
                  caption=f"Standard deviation across masks (brightest = {top:.3f} on the mean map's 0-1 scale)")
    st.caption(screen_text.HELP["gradcam_std"] + f" Mean spread over the image: {float(std.mean()):.3f}.")
    return ExplanationPanel("Grad-CAM, MC-dropout mean", mean_overlay, class_names[result["target"]], result["layer"],
                            note=f"mean over {MC_SAMPLES} dropout masks; mean std {float(std.mean()):.3f}")
