"""Model cards: how well each model does against a simple baseline, how it was trained, on what data,
what it is for and what it must not be used for."""
import streamlit as st

from lifelens import card_tables, charts, models
from lifelens.tasks import DISCLAIMER, get_task, intended_use
from ui import common, screen_text

st.title(":material/badge: Model cards")
st.caption("Everything here is read from models/<task>.json, written when the model was trained and evaluated.")

task_id = common.task_picker("Model", key="cards_task")
spec = get_task(task_id)

card = None
with common.guarded("The model card"):
    card = models.read_card(spec)
if card is None:
    st.stop()
if not card:
    st.info(f"There is no model card for {spec.title} yet ({spec.card_path.name} is missing): "
            "the model has not been trained.")
    st.stop()

st.header(f"{common.task_icon(spec.id)} {spec.title}")
st.warning(DISCLAIMER, icon=":material/warning:")

with common.guarded("The metrics"):
    st.subheader("How well does it do? (our test split)")
    metrics = card.get("metrics")
    if not metrics:
        st.info("Not evaluated yet: the card has no `metrics` (run `python -m lifelens evaluate --card`).")
    else:
        rows, names = card_tables.comparison_rows(spec, card)
        st.caption(f"{metrics.get('n', '?')} test images never used for training or model selection. Each value "
                   "with its 95 % bootstrap interval; a model that learned nothing scores the majority-class and "
                   "chance levels. A gain is drawn in green only when the ensemble's interval lies above every "
                   "baseline and reference.")
        cols = st.columns(min(4, max(1, len(names))))
        for i, name in enumerate(names):
            value = metrics[name]
            low, high = (metrics.get("intervals95") or {}).get(name, (None, None))
            best_other, clear = card_tables.clear_gain(card, name)
            delta = None if best_other is None else f"{value - best_other:+.3f} vs best simpler model"
            cols[i % len(cols)].metric(
                name.replace("_", " "), f"{value:.3f}", delta, delta_color="normal" if clear else "off",
                delta_arrow="auto" if clear else "off",
                help=screen_text.metric_help(name) + (f" 95 % interval {low:.3f}–{high:.3f}." if low is not None else "")
                + ("" if clear else " The difference is inside the interval: no clear gain."))
        values = [r.pop("_values") for r in rows]  # the chart's numbers; the table shows the formatted ones
        chart_rows = [{"metric": n.replace("_", " "), "model": r["model"], "value": v[n],
                       "meaning": screen_text.metric_help(n)}
                      for r, v in zip(rows, values) for n in names if isinstance(v.get(n), (int, float))]
        st.dataframe(rows, hide_index=True, width="stretch", column_config={
            "model": st.column_config.TextColumn(help="Deep ensemble: the shipped prediction (where it is fused "
                                                 "with gradient boosting, the row below gives its networks alone). "
                                                 "Read in pairs: the "
                                                 "same ensemble, each image read beside the same patient's other "
                                                 "one (the paired read, where a card has one). One member: a "
                                                 "single network of it. The rest are simpler models or no-skill "
                                                 "references."),
            **{name.replace("_", " "): st.column_config.TextColumn(help=screen_text.metric_help(name)
                                                                   + " Value [95 % bootstrap interval].")
               for name in names}})
        for goal in card.get("goals") or []:
            mark = "met" if goal.get("met_on_our_test_split") else "**not met**"
            st.caption(f"Goal on the held-out judging set: {goal['metric'].replace('_', ' ')} ≥ {goal['goal']:.2f}; "
                       f"our test split: {card_tables.format_value(goal.get('our_test_split'))} ({mark}).")
        for line in card_tables.source_goal_lines(card):
            st.caption(f"Goal on the second held-out set (other clinics, cameras or challenge year), scored {line}.",
                       help=screen_text.HELP["test_split_goals"])
        st.caption(f"Calibration of the ensemble: ECE {card_tables.format_value(metrics.get('ece'))}, NLL "
                   f"{card_tables.format_value(metrics.get('nll'))}; a single member: NLL "
                   f"{card_tables.format_value((card.get('single_member_metrics') or {}).get('nll'))}. "
                   + (card.get("ensemble_vs_member") or {}).get("verdict", "").replace("ensemble NLL", "Ensemble NLL")
                   + ".")
        paired = card.get("paired_read") or {}
        if paired.get("used"):
            st.caption(screen_text.paired_read_caption(spec, paired))
        if card_tables.is_fused(card):
            st.caption(screen_text.fusion_caption(card["fusion"]))
        if card.get("ensemble_vs_boosted"):
            st.caption(card["ensemble_vs_boosted"])
        if chart_rows:
            st.altair_chart(charts.metric_comparison(chart_rows), width="stretch")
        by_source = card.get("metrics_by_source") or {}
        if len(by_source) > 1:
            st.markdown("**Each source's test share** (the first is the headline)")
            use = (card.get("dataset") or {}).get("extra_source_use") or {}
            st.dataframe([{"source": src, "images": m.get("n"),
                           **{n.replace("_", " "): card_tables.metric_cell(m, n) for n in names},
                           "used for": "training, validation and the headline test split" if i == 0
                           else use.get(src, "not recorded")}
                          for i, (src, m) in enumerate(by_source.items())], hide_index=True, width="stretch",
                         column_config={**{n.replace("_", " "): st.column_config.TextColumn(
                                            help=screen_text.metric_help(n) + " Value [95 % bootstrap interval].")
                                           for n in names},
                                        "images": st.column_config.NumberColumn(help="Test images of this source."),
                                        "used for": st.column_config.TextColumn(
                             help="Whether a source trained the model or only tests it: a source that trains is no "
                                  "longer a fair stand-in for an unseen clinic.")})
        per_class = metrics.get("per_class") or {}
        if per_class:
            st.markdown("**Per class**")
            st.dataframe(
                [{"class": v.get("name", k), "test images": v.get("support"), "recall": v.get("recall"),
                  "precision": v.get("precision"), "AUC (one vs rest)": v.get("auc")} for k, v in per_class.items()],
                hide_index=True, width="stretch",
                column_config={
                    "recall": st.column_config.NumberColumn(format="%.3f", help="Share of this class found."),
                    "precision": st.column_config.NumberColumn(format="%.3f", help="Share of the calls of this class that were right."),
                    "AUC (one vs rest)": st.column_config.NumberColumn(format="%.3f", help=screen_text.metric_help("macro_auc")),
                })
        if metrics.get("confusion_matrix"):
            st.altair_chart(charts.confusion_heatmap(metrics["confusion_matrix"], spec.class_names), width="content")

with common.guarded("The faithfulness of the explanations"):
    faith = card.get("faithfulness")
    if faith:
        st.subheader("How faithful are its explanations?")
        st.caption(f"Mean over {faith.get('images', '?')} test images (every class in turn): pixels are blurred away "
                   "(deletion) or restored (insertion) in the order a map ranks them. A faithful map makes the "
                   "class probability fall fast (low deletion AUC) and come back fast (high insertion AUC); "
                   "the random map is chance. Measured by `python -m lifelens faithfulness`.")
        st.dataframe(card_tables.faithfulness_rows(faith), hide_index=True, width="content", column_config={
            "deletion AUC": st.column_config.NumberColumn(format="%.3f", help="Lower is better: the evidence goes first."),
            "insertion AUC": st.column_config.NumberColumn(format="%.3f", help="Higher is better: the evidence comes back first."),
            "beats random": st.column_config.TextColumn(help="Share of test images whose deletion AUC is below the random map's (higher is better; the random map is what the others are measured against)."),
        })

with common.guarded("The training curves"):
    st.subheader("How was it trained?")
    history = card.get("history") or []
    if history:
        st.altair_chart(charts.training_curves(history), width="content")
        hp = card.get("hyperparameters") or {}
        st.caption(card_tables.training_summary(card))
        if hp:
            with st.expander("Hyperparameters"):
                st.json(hp)
    else:
        st.info("The card has no training history.")

with common.guarded("The data"):
    st.subheader("Data and licence")
    st.markdown(f"**Source:** {card.get('citation', spec.citation)}  \n**Licence:** {card.get('licence', spec.licence)}  \n"
                f"**Input:** {spec.modality}, prepared to {spec.input_size} x {spec.input_size} x {spec.channels}.")
    split = card.get("split") or {}
    if split:
        rows = [{"split": part, "images": split[part].get("n"),
                 **{name: count for name, count in zip(spec.class_names, split[part].get("per_class", []))}}
                for part in ("train", "val", "test") if part in split]
        st.dataframe(rows, hide_index=True, width="stretch")
        st.caption(f"Split: {split.get('method', '')} (seed {split.get('seed', '?')}).")

with common.guarded("Intended use"):
    st.subheader("Intended use and limits")
    intended = card.get("intended_use") or intended_use(spec)
    st.markdown(f"**Intended use:** {intended}")
    limitations = card.get("limitations") or [
        f"Trained from scratch on {split.get('train', {}).get('n', 'a few hundred to a few thousand')} images of one public "
        "data set: it has not seen other devices, clinics, populations or growing conditions.",
        "Small network and small input size: fine detail that specialists rely on is lost.",
        "Metrics come from our own test split of the same data set, not from an independent external test.",
        "Confidence can be wrong: read the Uncertainty lab before trusting any percentage.",
    ]
    if isinstance(limitations, str):
        limitations = [limitations]
    st.markdown("\n".join(f"- {item}" for item in limitations))

with st.expander("Model file and architecture"):
    st.markdown(f"`models/{spec.model_path.name}` · sha256 `{card.get('sha256', '?')}` · "
                f"{card.get('parameters', '?')} parameters · {card.get('size_bytes', 0) / 1e6:.1f} MB")
    if card.get("architecture"):
        st.dataframe(card["architecture"], hide_index=True, width="stretch")
