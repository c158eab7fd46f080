"""Altair figures shared by the dashboard pages and the reports.

Each function takes plain numbers (numpy arrays, lists, card dicts) and returns an
``alt.Chart``; every mark carries a tooltip that says what its number means.
Probabilities are in [0, 1]; entropies in nats.
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from lifelens.card_tables import FUSED_LABEL

FREQUENTIST = "Softmax (one pass)"
BAYESIAN = "Bayesian (posterior mean)"
METHOD_COLOURS = alt.Scale(domain=[FREQUENTIST, BAYESIAN], range=["#4c78a8", "#f58518"])
SPLIT_COLOURS = alt.Scale(domain=["train", "validation"], range=["#4c78a8", "#e45756"])


# Streamlit fits charts to a fixed total height unless the spec says otherwise, which
# squashes the plot when a legend or title takes room; the height set here is the plot's.
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")
NATURAL_SIZE = alt.AutoSizeParams(type="pad", contains="padding")


def _order(values: np.ndarray, top: int | None) -> np.ndarray:
    order = np.argsort(-np.asarray(values, dtype=float))
    return order[:top] if top else order


def confidence_bars(class_names: list[str], softmax: np.ndarray, bayes_mean: np.ndarray,
                    bayes_low: np.ndarray, bayes_high: np.ndarray, top: int | None = 6,
                    bar_height: int = 14, graded: bool = False) -> alt.Chart:
    """Frequentist and Bayesian class probabilities side by side, with the 95% credible interval.

    softmax, bayes_mean, bayes_low, bayes_high: (K,) in [0, 1]. Classes are sorted by
    the Bayesian mean, or kept in their own order when they are ``graded`` (grade 0 to 4 reads
    as a scale); ``top`` keeps the most probable ones.
    """
    order = _order(bayes_mean, top)
    if graded:
        order = np.sort(order)
    rows = []
    for i in order:
        rows.append({"class": class_names[i], "confidence": FREQUENTIST, "probability": float(softmax[i]),
                     "low": None, "high": None,
                     "meaning": "softmax output of one deterministic pass"})
        rows.append({"class": class_names[i], "confidence": BAYESIAN, "probability": float(bayes_mean[i]),
                     "low": float(bayes_low[i]), "high": float(bayes_high[i]),
                     "meaning": "mean over posterior samples; whisker = 95% credible interval"})
    df = pd.DataFrame(rows)
    sort = [class_names[i] for i in order]
    y = alt.Y("class:N", sort=sort, title=None, axis=alt.Axis(labelLimit=180))
    tooltip = [alt.Tooltip("class:N"), alt.Tooltip("confidence:N", title="kind"),
               alt.Tooltip("probability:Q", format=".1%"), alt.Tooltip("low:Q", format=".1%", title="95% CI low"),
               alt.Tooltip("high:Q", format=".1%", title="95% CI high"), alt.Tooltip("meaning:N")]
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"), title="probability"),
        y=y, yOffset=alt.YOffset("confidence:N", sort=[FREQUENTIST, BAYESIAN]),
        color=alt.Color("confidence:N", scale=METHOD_COLOURS, legend=alt.Legend(orient="bottom", title=None)),
        tooltip=tooltip,
    )
    whiskers = alt.Chart(df[df["confidence"] == BAYESIAN]).mark_rule(color="#333", strokeWidth=2).encode(
        x="low:Q", x2="high:Q", y=y, yOffset=alt.YOffset("confidence:N", sort=[FREQUENTIST, BAYESIAN]),
        tooltip=tooltip,
    )
    # With an offset channel the height must be a step (pixels per bar), not a total.
    return (bars + whiskers).properties(height=alt.Step(bar_height), title="Class probabilities", autosize=FIT_WIDTH)


def _histogram_rows(values, edges: np.ndarray, **labels) -> list[dict]:
    """Counts of ``values`` in the bins ``edges`` as rows {start, end, count, share, **labels}.

    Binning is done here (numpy) rather than in Vega-Lite, so tooltips show exact ranges.
    """
    values = np.asarray(values, dtype=float)
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    total = max(1, len(values))
    return [{"start": float(lo), "end": float(hi), "count": int(c), "share": c / total, **labels}
            for lo, hi, c in zip(edges[:-1], edges[1:], counts)]


def posterior_histogram(class_names: list[str], samples: np.ndarray, top: int = 3, bins: int = 20) -> alt.Chart:
    """Histogram of posterior samples of the probability of the ``top`` most likely classes.

    samples: (T, K) class probabilities, one row per posterior sample.
    """
    samples = np.asarray(samples, dtype=float)
    order = _order(samples.mean(axis=0), top)
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = [r for i in order for r in _histogram_rows(samples[:, i], edges, **{"class": class_names[i]})]
    df = pd.DataFrame(rows)
    df = df[df["count"] > 0]
    return alt.Chart(df).mark_bar(opacity=0.65).encode(
        x=alt.X("start:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%"),
                title="class probability in one posterior sample"),
        x2="end:Q",
        y=alt.Y("count:Q", stack=None, title="posterior samples", axis=alt.Axis(tickMinStep=1, format="d")), y2=alt.datum(0),
        color=alt.Color("class:N", sort=[class_names[i] for i in order], legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[alt.Tooltip("class:N"), alt.Tooltip("start:Q", format=".0%", title="probability from"),
                 alt.Tooltip("end:Q", format=".0%", title="probability to"),
                 alt.Tooltip("count:Q", title="posterior samples in this range"),
                 alt.Tooltip("share:Q", format=".0%", title="share of all samples")],
    ).properties(height=180, title=f"Posterior samples ({len(samples)} sampled networks)", autosize=FIT_WIDTH)


def faithfulness_bars(rows: list[dict]) -> alt.Chart:
    """Deletion and insertion AUC per method. rows: [{"method", "deletion_auc", "insertion_auc"}]."""
    long = []
    for r in rows:
        for key, label, better in (("deletion_auc", "deletion AUC", "lower is better"),
                                   ("insertion_auc", "insertion AUC", "higher is better")):
            if r.get(key) is not None:
                long.append({"method": r["method"], "score": label, "value": float(r[key]), "better": better})
    df = pd.DataFrame(long or [{"method": "", "score": "", "value": 0.0, "better": ""}])
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("value:Q", scale=alt.Scale(domain=[0, 1]), title="area under the curve"),
        y=alt.Y("method:N", title=None),
        yOffset="score:N",
        color=alt.Color("score:N", scale=alt.Scale(domain=["deletion AUC", "insertion AUC"], range=["#e45756", "#54a24b"]),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["method:N", "score:N", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("better:N", title="reading")],
    ).properties(height=alt.Step(14), title="Faithfulness of each map", autosize=FIT_WIDTH)


def confusion_heatmap(matrix, class_names: list[str], normalise: bool = True) -> alt.Chart:
    """Confusion matrix (rows = true class, columns = predicted), coloured by row share."""
    m = np.asarray(matrix, dtype=float)
    totals = m.sum(axis=1, keepdims=True)
    share = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    rows = [{"true": class_names[i], "predicted": class_names[j], "count": int(m[i, j]), "share": float(share[i, j])}
            for i in range(m.shape[0]) for j in range(m.shape[1])]
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(
        x=alt.X("predicted:N", sort=class_names, title="predicted class",
                  axis=alt.Axis(labelAngle=-40, labelLimit=140, labelOverlap=False)),
        y=alt.Y("true:N", sort=class_names, title="true class", axis=alt.Axis(labelLimit=160, labelOverlap=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("share:Q" if normalise else "count:Q", scale=alt.Scale(scheme="blues", domain=[0, 1] if normalise else None),
                        title="share of true class" if normalise else "images"),
        tooltip=[alt.Tooltip("true:N", title="true class"), alt.Tooltip("predicted:N", title="predicted class"),
                 alt.Tooltip("count:Q", title="test images"),
                 alt.Tooltip("share:Q", format=".1%", title="share of this true class")],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("count:Q"),
        color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black")),
    )
    side = max(220, 34 * len(class_names))
    return (cells + text).properties(width=side, height=side, title="Confusion matrix (test split)", autosize=NATURAL_SIZE)


def training_curves(history: list[dict]) -> alt.Chart:
    """Loss and accuracy per epoch, training vs validation. history: [{epoch, loss, accuracy, val_loss, val_accuracy}]."""
    rows = []
    for h in history:
        for metric in ("loss", "accuracy"):
            if metric in h:
                rows.append({"epoch": int(h["epoch"]), "metric": metric, "split": "train", "value": float(h[metric])})
            if f"val_{metric}" in h:
                rows.append({"epoch": int(h["epoch"]), "metric": metric, "split": "validation", "value": float(h[f"val_{metric}"])})
    df = pd.DataFrame(rows)

    def panel(metric: str, title: str):
        return alt.Chart(df[df["metric"] == metric]).mark_line(point=True).encode(
            x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1, format="d")),  # no epoch 1.5
            y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
            color=alt.Color("split:N", scale=SPLIT_COLOURS, legend=alt.Legend(orient="bottom", title=None)),
            tooltip=["epoch:Q", "split:N", alt.Tooltip("value:Q", format=".3f", title=title)],
        ).properties(height=220, width=300, title=title)

    return alt.hconcat(panel("loss", "loss (cross-entropy)"), panel("accuracy", "accuracy")).properties(autosize=NATURAL_SIZE)


# The ensemble in the app's blue (its paired read a lighter blue), the simpler models in muted
# colours, the references in greys: one colour per compared model (card_tables.COMPARED), on every task.
MODEL_COLOURS = {"Deep ensemble": "#4c78a8", FUSED_LABEL: "#4c78a8",
                 "Deep ensemble, networks alone": "#2f4b7c", "Deep ensemble, read in pairs": "#9ecae9",
                 "One member": "#72b7b2", "Gradient boosting": "#e45756", "Logistic regression": "#f58518",
                 "Majority class": "#bab0ac", "Chance": "#d8d3cf"}


def metric_comparison(rows: list[dict]) -> alt.Chart:
    """Every compared model per metric, in the order the rows name them (the deep ensemble first).

    rows: [{"metric", "model", "value", "meaning"}] with values in [0, 1].
    """
    df = pd.DataFrame(rows)
    models = list(dict.fromkeys(df["model"]))
    spare = [c for c in ("#54a24b", "#b279a2", "#ff9da6") if c not in MODEL_COLOURS.values()]
    colours = [MODEL_COLOURS.get(m) or spare[i % len(spare)] for i, m in enumerate(models)]
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("value:Q", scale=alt.Scale(domain=[0, 1]), title=None),
        y=alt.Y("metric:N", title=None, sort=list(dict.fromkeys(df["metric"]))),
        yOffset=alt.YOffset("model:N", sort=models),
        color=alt.Color("model:N", sort=models, scale=alt.Scale(domain=models, range=colours),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["metric:N", "model:N", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("meaning:N")],
    ).properties(height=alt.Step(10), title="Test-split metrics: the deep ensemble against simpler models",
                 autosize=FIT_WIDTH)


def reliability_diagram(rows: list[dict]) -> alt.Chart:
    """Accuracy against confidence per bin, one line per confidence method, with the diagonal.

    rows: [{"method", "confidence" (bin mean), "accuracy" (bin accuracy), "count"}].
    """
    df = pd.DataFrame(rows)
    diagonal = alt.Chart(pd.DataFrame({"x": [0, 1], "y": [0, 1]})).mark_line(color="#999", strokeDash=[4, 4]).encode(
        x="x:Q", y="y:Q")
    base = alt.Chart(df).encode(
        x=alt.X("confidence:Q", scale=alt.Scale(domain=[0, 1]), title="confidence (bin mean)"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy in the bin"),
        color=alt.Color("method:N", legend=alt.Legend(orient="bottom", direction="vertical", title=None)),
        tooltip=["method:N", alt.Tooltip("confidence:Q", format=".2f", title="mean confidence"),
                 alt.Tooltip("accuracy:Q", format=".2f", title="accuracy"), alt.Tooltip("count:Q", title="images in bin")],
    )
    lines = base.mark_line(strokeWidth=1.5) + base.mark_circle(opacity=0.9).encode(
        size=alt.Size("count:Q", legend=None, scale=alt.Scale(range=[15, 250])))
    return (diagonal + lines).properties(height=300, width=320, autosize=NATURAL_SIZE,
                                         title="Reliability: on the diagonal, confidence = accuracy")


def referral_curve(rows: list[dict]) -> alt.Chart:
    """Accuracy on the images kept when the most uncertain share is referred to a human.

    rows: [{"method", "referred" (fraction in [0, 1]), "accuracy"}].
    """
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=20)).encode(
        x=alt.X("referred:Q", axis=alt.Axis(format="%"), title="share of most uncertain images referred"),
        y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False), title="accuracy on the rest"),
        color=alt.Color("method:N", legend=alt.Legend(orient="bottom", direction="vertical", title=None)),
        tooltip=["method:N", alt.Tooltip("referred:Q", format=".0%", title="referred"),
                 alt.Tooltip("accuracy:Q", format=".3f", title="accuracy on kept images")],
    ).properties(height=300, width=320, title="Referral: does uncertainty find the mistakes?", autosize=NATURAL_SIZE)


def value_histogram(values, title: str, x_title: str, bins: int = 20, reference: float | None = None,
                    reference_label: str = "", y_title: str = "posterior samples") -> alt.Chart:
    """Histogram of a list of numbers (e.g. test accuracy of each posterior sample), with an optional marker."""
    values = np.asarray(values, dtype=float)
    lo, hi = float(values.min()), float(values.max())
    if reference is not None:
        lo, hi = min(lo, reference), max(hi, reference)
    if hi <= lo:
        lo, hi = lo - 0.01, hi + 0.01
    pad = (hi - lo) * 0.05
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    df = pd.DataFrame(_histogram_rows(values, edges))
    chart = alt.Chart(df).mark_bar(color="#f58518", opacity=0.85).encode(
        x=alt.X("start:Q", title=x_title, scale=alt.Scale(zero=False)), x2="end:Q",
        y=alt.Y("count:Q", title=y_title, axis=alt.Axis(tickMinStep=1, format="d")), y2=alt.datum(0),  # counts: whole numbers
        tooltip=[alt.Tooltip("start:Q", format=".3f", title="from"), alt.Tooltip("end:Q", format=".3f", title="to"),
                 alt.Tooltip("count:Q", title=y_title)],
    )
    if reference is not None:
        rule = alt.Chart(pd.DataFrame({"value": [reference], "label": [reference_label]})).mark_rule(
            color="#4c78a8", strokeWidth=3).encode(x="value:Q", tooltip=[alt.Tooltip("label:N", title="marker"),
                                                                        alt.Tooltip("value:Q", format=".3f")])
        chart = chart + rule
    return chart.properties(height=220, title=title, autosize=FIT_WIDTH)


def auroc_bars(rows: list[dict], title: str = "OOD detection AUROC") -> alt.Chart:
    """One bar per (score, OOD set). rows: [{"score", "ood_set", "auroc"}] with AUROC in [0, 1]."""
    df = pd.DataFrame(rows)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("auroc:Q", scale=alt.Scale(domain=[0, 1]), title="AUROC (0.5 = chance)"),
        # The score names ("MC-dropout mutual information") and the set names must not be cut off.
        y=alt.Y("score:N", title=None, axis=alt.Axis(labelLimit=240)),
        yOffset="ood_set:N",
        color=alt.Color("ood_set:N", legend=alt.Legend(orient="bottom", title=None, columns=3, labelLimit=280)),
        tooltip=["score:N", alt.Tooltip("ood_set:N", title="out-of-distribution images"),
                 alt.Tooltip("auroc:Q", format=".3f", title="AUROC")],
    ).properties(height=alt.Step(16), title=title, autosize=FIT_WIDTH)


def matrix_heatmap(matrix, title: str, value_title: str = "value", fmt: str = ".3~f", show_text: bool = True,
                   scheme: str = "redblue", highlight: tuple[int, int, int, int] | None = None,
                   meaning: str = "", cell: int = 40) -> alt.Chart:
    """A small numeric grid (a 6x6 image, a 3x3 kernel, a feature map) with every number in its cell.

    matrix: (H, W). ``scheme="redblue"`` centres the colours on 0 (red positive, blue negative);
    other schemes run from the minimum to the maximum. ``highlight``: (top, left, height,
    width) cells outlined in orange (the window being multiplied). ``meaning`` is added to
    every tooltip.
    """
    m = np.asarray(matrix, dtype=float)
    rows = [{"row": i, "col": j, "value": float(m[i, j]), "meaning": meaning}
            for i in range(m.shape[0]) for j in range(m.shape[1])]
    df = pd.DataFrame(rows)
    limit = float(np.abs(m).max()) or 1.0
    if scheme == "redblue":
        scale = alt.Scale(scheme="redblue", domain=[-limit, limit], reverse=True)
        strength = np.abs(df["value"]) / limit
    else:
        lo, hi = float(m.min()), float(m.max()) if m.max() > m.min() else float(m.min()) + 1
        scale = alt.Scale(scheme=scheme, domain=[lo, hi])
        strength = (df["value"] - lo) / (hi - lo)
    df["ink"] = np.where(strength > 0.6, "white", "black")  # readable numbers on dark cells
    base = alt.Chart(df).encode(
        x=alt.X("col:O", title="column", axis=alt.Axis(orient="top")), y=alt.Y("row:O", title="row"))
    tooltip = [alt.Tooltip("row:O"), alt.Tooltip("col:O", title="column"), alt.Tooltip("value:Q", format=fmt, title=value_title)]
    if meaning:
        tooltip.append(alt.Tooltip("meaning:N"))
    chart = base.mark_rect(stroke="white", strokeWidth=1).encode(
        color=alt.Color("value:Q", scale=scale, legend=None), tooltip=tooltip)
    if show_text:
        chart = chart + base.mark_text(fontSize=13 if max(m.shape) <= 8 else 9).encode(
            text=alt.Text("value:Q", format=fmt), color=alt.Color("ink:N", scale=alt.Scale(domain=["black", "white"], range=["black", "white"]), legend=None),
            tooltip=tooltip)
    if highlight is not None:
        top, left, h, w = highlight
        box = pd.DataFrame([{"row": r, "col": c} for r in range(top, top + h) for c in range(left, left + w)
                            if 0 <= r < m.shape[0] and 0 <= c < m.shape[1]])
        if len(box):
            chart = chart + alt.Chart(box).mark_rect(fill=None, stroke="#ff8c00", strokeWidth=3).encode(
                x="col:O", y="row:O")
    return chart.properties(width=cell * m.shape[1], height=cell * m.shape[0], title=title, autosize=NATURAL_SIZE)


def shift_lines(rows: list[dict]) -> alt.Chart:
    """Accuracy and conformal coverage against shift severity, one line per kind of shift.

    rows: {"shift", "severity" (0 = clean .. 3), "measure" ("accuracy" | "coverage" | "mean set size"), "value"}.
    """
    data = pd.DataFrame(rows)
    base = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("severity:O", title="severity (0 = clean)"),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("shift:N", title="shift"),
        tooltip=[alt.Tooltip("shift:N"), alt.Tooltip("severity:O"), alt.Tooltip("measure:N"),
                 alt.Tooltip("value:Q", format=".3f", title="value (accuracy/coverage: share of images)")],
    ).properties(width=220, height=200)
    return base.facet(column=alt.Column("measure:N", title=None)).resolve_scale(y="independent")


def shift_auroc_heatmap(rows: list[dict]) -> alt.Chart:
    """AUROC of each uncertainty score at noticing each shift. rows: {"shift", "score", "auroc"}."""
    data = pd.DataFrame(rows)
    base = alt.Chart(data).encode(x=alt.X("score:N", title="uncertainty score"), y=alt.Y("shift:N", title=None))
    cells = base.mark_rect().encode(
        color=alt.Color("auroc:Q", scale=alt.Scale(domain=[0, 1], scheme="redblue"), title="AUROC"),
        tooltip=[alt.Tooltip("shift:N"), alt.Tooltip("score:N"),
                 alt.Tooltip("auroc:Q", format=".2f", title="AUROC (0.5 = does not notice the shift)")])
    text = base.mark_text(fontSize=11).encode(text=alt.Text("auroc:Q", format=".2f"))
    return (cells + text).properties(height=alt.Step(18), width=alt.Step(90))


def lab_curves(runs: list[dict], reference: dict | None, metric: str) -> alt.Chart:
    """Training and validation ``metric`` ("loss" or "accuracy") per epoch for several runs,
    with a simple model's validation value as a dashed line.

    runs: [{"label": what the run changed, "history": [{epoch, loss, accuracy, val_loss,
    val_accuracy}]}]; reference: {"val_loss", "val_accuracy"} of a logistic regression on the
    same pixels, or None.
    """
    rows = [{"run": r["label"], "epoch": int(h["epoch"]), "split": split, "value": h[key]}
            for r in runs for h in r["history"]
            for split, key in (("train", metric), ("validation", f"val_{metric}")) if h.get(key) is not None]
    title = "accuracy (dropout and augmentation off)" if metric == "accuracy" else "loss (cross-entropy)"
    df = pd.DataFrame(rows, columns=["run", "epoch", "split", "value"])
    lines = alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("epoch:Q", title="epoch", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
        color=alt.Color("run:N", legend=alt.Legend(orient="bottom", direction="vertical", title="run: what changed")),
        strokeDash=alt.StrokeDash("split:N", scale=alt.Scale(domain=["train", "validation"], range=[[1, 0], [5, 3]]),
                                  legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["run:N", "epoch:Q", "split:N", alt.Tooltip("value:Q", format=".3f", title=metric)],
    )
    layers = [lines]
    if reference is not None and reference.get(f"val_{metric}") is not None:
        value = float(reference[f"val_{metric}"])
        layers.append(alt.Chart(pd.DataFrame({"value": [value], "what": ["logistic regression on the same pixels"]}))
                      .mark_rule(color="#555", strokeDash=[2, 2], strokeWidth=2)
                      .encode(y="value:Q", tooltip=[alt.Tooltip("what:N", title="reference"),
                                                    alt.Tooltip("value:Q", format=".3f", title=f"validation {metric}")]))
    return alt.layer(*layers).properties(height=260, title=title, autosize=FIT_WIDTH)
