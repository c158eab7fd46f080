"""Inside the network: architecture, first-layer filters, the feature hierarchy for the current
image, activation maximisation and top-activating training patches."""
import numpy as np
import streamlit as st

from lifelens import cases, imaging, inside
from lifelens.tasks import TASKS, get_task
from ui import common, task_page

VIEWS = ("Feature hierarchy", "Filters", "Activation maximisation", "Top patches", "Architecture")

st.title(":material/neurology: Inside the network")
st.markdown("What the CNN computes between the pixels and the prediction, layer by layer. Choose a model; the "
            "feature hierarchy uses the image currently open on that task's page (or the first gallery case).")

# Follow the task the user came from: the last task page opened in this session.
if "inside_task" not in st.session_state and st.session_state.get(common.LAST_TASK_KEY) in TASKS:
    st.session_state["inside_task"] = st.session_state[common.LAST_TASK_KEY]
task_id = common.task_picker("Model", key="inside_task")
spec = get_task(task_id)
task_model = common.task_model(task_id)
if task_model is None:
    st.stop()
model = task_model.classifier
view = st.segmented_control("View", VIEWS, default=VIEWS[0], required=True, key="inside_view",
                            help="Each view is computed only when you open it.")


@st.cache_data(show_spinner=False, max_entries=64)
def hierarchy(model_key: str, image_digest: str, _model, _prepared, task: str):
    return inside.feature_hierarchy(_model, _prepared, top=8, task_id=task)


@st.cache_data(show_spinner=False, max_entries=16)
def architecture(model_key: str, _model):
    return inside.architecture_table(_model)


@st.cache_data(show_spinner=False, max_entries=16)
def filters(model_key: str, _model):
    return inside.filter_tiles(inside.first_layer_filters(_model), cell=56)


mkey = task_page.model_key(task_model)

if view == "Feature hierarchy":
    with common.guarded("The feature hierarchy"):
        case = task_page.current_case(spec)
        if case is None:
            st.info(cases.data_status(spec) or "Open an image on the task page first.")
        else:
            st.caption(f"Image: **{cases.shown_name(case, st.session_state.get(common.FILE_NAMES_KEY, False))}** "
                       f"({case.source}). Each row is one block's output: the 8 channels whose response varies most "
                       "across this image, brightest = strongest response in that block.")
            with st.spinner("Running the image through every block…"):
                levels = hierarchy(mkey, case.digest, model, case.prepared, spec.id)
            base = imaging.as_rgb_uint8(case.prepared)
            for level in levels:
                st.markdown(f"**{level.layer}** — {level.caption}")
                cols = st.columns([1.2] + [1] * len(level.maps))
                cols[0].image(base, width="stretch",
                              caption=f"input · unit sees {level.receptive_field}×{level.receptive_field} px")
                for col, m, ch, mean in zip(cols[1:], level.maps, level.channels, level.mean_activation):
                    col.image(imaging.colorize(m, "inferno"), width="stretch", caption=f"ch {ch} · mean {mean:.2f}")
                st.caption(f"{level.output_shape[2]} channels of {level.output_shape[0]} × {level.output_shape[1]}; "
                           f"{level.active_fraction:.0%} of all units are active (above 0) for this image; neighbouring "
                           f"units are {level.jump} input pixels apart.")

elif view == "Filters":
    with common.guarded("The filters"):
        conv = inside.first_conv_layer(model)
        tiles = filters(mkey, model)
        st.markdown(f"The {len(tiles)} kernels of the first convolution `{conv.name}` "
                    f"({conv.kernel_size[0]} × {conv.kernel_size[1]} × {int(model.inputs[0].shape[-1])} weights each), "
                    "each scaled to its own largest weight: grey = 0, brighter = positive weight, darker = negative "
                    "(for colour inputs each colour channel separately). A kernel responds most to a patch that looks like it.")
        columns = 12 if not common.presenter() else 8
        for start in range(0, len(tiles), columns):
            cols = st.columns(columns)
            for i, (col, tile) in enumerate(zip(cols, tiles[start:start + columns])):
                col.image(tile, caption=f"#{start + i}", width="stretch")

elif view == "Activation maximisation":
    with common.guarded("Activation maximisation"):
        st.markdown("Starting from faint noise, the input is changed step by step to make one channel respond as "
                    "strongly as possible (gradient ascent with jitter, blur and decay so it stays picture-like). "
                    "The result shows what the channel is looking for.")
        cache_path = inside.actmax_cache_path(spec)
        ready = inside.cached_layers(model, cache_path)
        layers = inside.block_output_layers(model)
        c1, c2 = st.columns([1, 2])
        default_layer = layers[-1] if layers[-1] in ready else (next(iter(ready)) if ready else layers[-1])
        layer = c1.selectbox("Layer", layers, index=layers.index(default_layer), key="inside_actmax_layer",
                             help="Deeper layers look for larger, more specific patterns.",
                             format_func=lambda n: n + (" (precomputed)" if n in ready else ""))
        n = inside.layer_channels(model, layer)
        default = ready.get(layer, [])[:8] or list(range(min(4, n)))
        channels = c2.multiselect("Channels", list(range(n)), default=default, key=f"inside_actmax_ch_{layer}",
                                  help="Precomputed channels show at once; others are computed now (a few seconds each).")
        if channels:
            missing = [c for c in channels if c not in ready.get(layer, [])]
            bar = st.progress(0.0, text="Optimising the input…") if missing else None
            result = inside.activation_maximisation(
                model, layer, channels, cache_path=cache_path,
                progress=(lambda done, total: bar.progress(done / total, text=f"Gradient ascent step {done}/{total}"))
                if bar else None)
            if bar:
                bar.empty()
            tiles = list(result.display())
            cols = st.columns(min(8, len(tiles)))
            for i, (tile, ch, act, start) in enumerate(zip(tiles, result.channels, result.activation, result.start_activation)):
                cols[i % len(cols)].image(tile, width="stretch",
                                          caption=f"ch {ch}: {act:.2f} (noise: {start:.2f})")
            st.caption("Under each image: the channel's mean activation for the optimised image, and for the noise "
                       "it started from.")

elif view == "Top patches":
    with common.guarded("Top patches"):
        st.markdown("The pieces of TRAINING images that make one channel respond most (Zeiler & Fergus 2014). "
                    "Each patch is exactly what one unit of the layer sees (its receptive field).")
        index = inside.task_patch_index(model, spec, build=False)
        if index is None:
            st.info("The patch index for this model has not been built yet "
                    f"(`python -m lifelens inside --task {spec.id} --precompute`).")
            if st.button("Build it now (searches 300 training images)", key="inside_build_patches"):
                bar = st.progress(0.0, text="Searching training images…")
                index = inside.task_patch_index(model, spec, build=True,
                                                progress=lambda d, t: bar.progress(d / t, text=f"Image {d}/{t}"))
                bar.empty()
        if index is not None:
            layers = list(index.layers)
            c1, c2 = st.columns(2)
            layer = c1.selectbox("Layer", layers, index=len(layers) - 1, key="inside_patch_layer",
                                 help="Deeper layers: larger patches, more specific patterns.")
            lp = index.layer(layer)
            order = np.argsort(-lp.mean_activation)
            channel = c2.selectbox("Channel", order.tolist(), key=f"inside_patch_ch_{layer}",
                                   format_func=lambda c: f"{c} (mean activation {lp.mean_activation[c]:.2f})",
                                   help="Channels sorted by how active they are on training images.")
            patches = inside.top_patches(index, spec, layer, int(channel))
            if patches:
                cols = st.columns(min(9, len(patches)))
                for i, p in enumerate(patches):
                    cols[i % len(cols)].image(imaging.resize(p.patch, 96) if p.patch.shape[0] < 96 else p.patch,
                                              width="stretch", caption=f"{p.activation:.2f}")
                st.caption(f"Activation of the unit under each patch (the channel's mean over all searched images "
                           f"is {lp.mean_activation[int(channel)]:.2f}); patch side {lp.field.size} px.")
            else:
                st.info("The training images of this index can no longer be read from the data folder.")

else:
    with common.guarded("The architecture"):
        rows = architecture(mkey, model)
        st.markdown(f"`{model.name}` · {sum(r['params'] for r in rows):,} parameters. The receptive field is the side "
                    "of the input square one unit of the layer sees; it grows with every convolution and pooling.")
        st.dataframe(
            [{"layer": r["name"], "type": r["type"], "output shape": " × ".join(map(str, r["output_shape"])),
              "parameters": r["params"],
              "receptive field (px)": "whole image" if r["whole_image"] else str(r["receptive_field"]),
              "step between units (px)": "—" if r["whole_image"] else str(r["jump"]), "note": r["note"]} for r in rows],
            hide_index=True, width="stretch", height=35 * (len(rows) + 1) + 3,
            column_config={
                "parameters": st.column_config.NumberColumn(help="Weights learned by this layer."),
                "receptive field (px)": st.column_config.TextColumn(
                    help="Side of the input square one unit of this layer sees."),
                "step between units (px)": st.column_config.TextColumn(
                    help="Distance in input pixels between neighbouring units of this layer."),
                "note": st.column_config.TextColumn(width="large", help="What the layer is for."),
            })
