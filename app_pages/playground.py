"""Convolution playground: one convolution and one max-pool worked out number by number,
then the same kernel on a real image."""
import numpy as np
import streamlit as st

from lifelens import cases, charts, playground
from lifelens.tasks import TASKS, get_task
from ui import common, task_page

st.title(":material/calculate: Convolution playground")
st.markdown(
    "A convolutional layer slides a small grid of weights (the **kernel**) over the image. At each position it "
    "multiplies the kernel with the pixels under it and adds the products up: that sum is one number of the "
    "output (a **feature map**). Below, the classic 6 × 6 example is worked out in full.")

with common.guarded("The worked example"):
    st.subheader("1 · One convolution, every number")
    c1, c2, c3 = st.columns([1.4, 1, 1])
    kernel_names = list(playground.KERNELS) + ["custom"]
    kernel_name = c1.selectbox("Kernel", kernel_names, index=kernel_names.index("vertical edge"), key="pg_kernel",
                               help="A named 3 × 3 kernel, or type your own.")
    stride = c2.radio("Stride", [1, 2], horizontal=True, key="pg_stride",
                      help="How many pixels the kernel moves between two outputs.")
    padding = c3.radio("Padding", ["valid", "same"], horizontal=True, key="pg_padding",
                       help="valid: no padding, the output shrinks. same: a border of zeros keeps the size (at stride 1).")
    if kernel_name == "custom":
        text = st.text_input("Your kernel: 9 numbers (fractions such as 1/9 allowed)", "0 -1 0  -1 5 -1  0 -1 0",
                             key="pg_custom", help="Row by row, separated by spaces, commas or semicolons.")
        try:
            kernel = playground.parse_kernel(text)
        except ValueError as exc:
            st.error(str(exc))
            kernel = playground.named_kernel("identity")
        meaning = "your kernel"
    else:
        kernel = playground.named_kernel(kernel_name)
        meaning = playground.KERNELS[kernel_name][1]
        st.caption(f"**{kernel_name}** — {meaning}")

    image = playground.EXAMPLE_IMAGE
    output = playground.convolve2d(image, kernel, stride, padding)
    steps = playground.convolution_steps(image, kernel, stride, padding)
    before, after = playground.padding_amounts(kernel.shape[0], padding, image.shape[0], stride)
    padded = np.pad(image, ((before, after), (before, after))) if before or after else image

    p1, p2 = st.columns(2)
    row = p1.slider("Output row", 0, output.shape[0] - 1, 0, key="pg_row",
                    help="Pick the output cell to work out; its window is outlined in orange in the input.")
    col = p2.slider("Output column", 0, output.shape[1] - 1, 0, key="pg_col",
                    help="Pick the output cell to work out.")
    step = next(s for s in steps if s["row"] == row and s["col"] == col)
    g1, g2, g3 = st.columns([1.4, 0.8, 1.1])
    g1.altair_chart(charts.matrix_heatmap(padded, "input" + (" (zero-padded)" if before or after else ""), "pixel value",
                                          scheme="greys", highlight=(step["top"], step["left"], *kernel.shape),
                                          meaning="brightness of one pixel (0 = black)"), width="content")
    g2.altair_chart(charts.matrix_heatmap(kernel, "kernel", "weight", meaning="multiplies the pixel under it"), width="content")
    g3.altair_chart(charts.matrix_heatmap(output, f"output ({output.shape[0]} × {output.shape[1]})", "response",
                                          highlight=(row, col, 1, 1),
                                          meaning="sum of kernel × window: large where the pattern matches"), width="content")
    st.markdown(f"**Output [{row}, {col}]** = sum of kernel × window:")
    st.code(step["expression"], language=None)
    st.caption(f"Output side = floor((n + padding − k) / stride) + 1 = floor(({image.shape[0]} + {before + after} − "
               f"{kernel.shape[0]}) / {stride}) + 1 = {output.shape[0]}.")
    with st.expander("All output numbers worked out"):
        st.dataframe([{"row": s["row"], "column": s["col"], "value": s["value"], "sum of products": s["expression"]}
                      for s in steps], hide_index=True, width="stretch",
                     column_config={"value": st.column_config.NumberColumn(help="The output number at this cell.")})

with common.guarded("The pooling example"):
    st.subheader("2 · Max pooling")
    st.markdown("A 2 × 2 max-pool keeps the largest number of each 2 × 2 block: the map gets half as wide, and a "
                "pattern found anywhere in the block still counts.")
    source = np.maximum(output, 0) if output.shape[0] >= 2 else image
    pooled = playground.max_pool2d(source, 2, 2)
    pool_steps = playground.pooling_steps(source, 2, 2)
    q1, q2 = st.columns([1, 0.7])
    chosen = q2.selectbox("Pooled cell", list(range(len(pool_steps))), key="pg_pool_cell",
                          index=int(np.argmax([p["value"] for p in pool_steps])),
                          format_func=lambda i: f"[{pool_steps[i]['row']}, {pool_steps[i]['col']}]",
                          help="Which output cell of the pooling to explain.")
    ps = pool_steps[chosen]
    q1.altair_chart(charts.matrix_heatmap(source, "ReLU(output) — negatives set to 0", "response", scheme="oranges",
                                          highlight=(ps["top"], ps["left"], 2, 2),
                                          meaning="the convolution output after ReLU"), width="content")
    q2.altair_chart(charts.matrix_heatmap(pooled, "after 2 × 2 max-pool", "max", scheme="oranges",
                                          highlight=(ps["row"], ps["col"], 1, 1), meaning="largest value of its 2 × 2 block"), width="content")
    window = ", ".join(f"{v:g}" for v in np.ravel(ps["window"]))
    q2.markdown(f"max({window}) = **{ps['value']:g}**")

with common.guarded("The kernel on a real image"):
    st.subheader("3 · The same kernel on a real image")
    task_id = st.selectbox("Image from", list(TASKS), format_func=lambda t: TASKS[t].title,
                           key="pg_task", help="The first gallery image of this task's test split.")
    spec = get_task(task_id)
    missing = cases.data_status(spec)
    if missing:
        st.info(missing)
    else:
        case = task_page.gallery_case(task_id, 0)
        grey = case.display.mean(axis=-1)
        response = playground.apply_kernel(grey, kernel, stride, "same")
        r1, r2 = st.columns(2)
        r1.image(case.display, caption="input", width="stretch")
        r2.image(playground.response_to_display(response, kernel), width="stretch",
                 caption=f"after the {kernel_name} kernel (brightness = size of the response)")
        st.caption("Edge kernels sum to 0: flat areas give 0 (black) and only changes light up. "
                   "The network's first layer learns dozens of such kernels by itself — see *Inside the network*.")
