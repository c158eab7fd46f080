"""Home: what LifeLens shows, how to read it, the four tasks."""
import streamlit as st

from lifelens import card_tables, models
from lifelens.tasks import DISCLAIMER, TASKS
from ui import common, screen_text, task_page

st.title(":material/biotech: LifeLens")
st.markdown("#### Look inside image classifiers for plants, skin, breasts and eyes — and see how sure they are.")
st.warning(DISCLAIMER, icon=":material/warning:")

st.markdown(
    """
LifeLens opens four deep ensembles of small convolutional networks (CNNs), each network trained
from scratch on public image collections, and shows three things for every image you give them:

1. **What the network predicts, and how sure it is — two ways.** The *softmax* bar is the
   network's single answer (frequentist confidence). The *Bayesian* bar averages many slightly
   different versions of the network (posterior samples); its whisker is a 95% credible interval.
   When the two disagree, or the versions disagree with each other, LifeLens says so.
2. **Where it looked.** Heatmaps (Grad-CAM and friends, SHAP) colour the pixels that pushed the
   prediction. Each map comes with a *deletion* and an *insertion* score that checks whether the
   highlighted pixels really matter to the network.
3. **How it works inside.** Filters, feature maps from edges to parts, the images that excite a
   neuron most, and a convolution worked out number by number.
"""
)

with st.expander("How to read the numbers", expanded=not common.presenter()):
    st.markdown(
        """
- **Probability** — between 0% and 100%; the classes of one image add up to 100%.
- **Credible interval** — 95% of the posterior samples fall inside it. A wide whisker means the
  versions of the network disagree about this class.
- **Entropy** (nats) — total uncertainty; 0 means one class has all the probability.
- **Mutual information** (nats) — the part of the uncertainty that comes from the network not knowing
  (it would shrink with more training data), as opposed to an image that is ambiguous in itself.
- **Deletion AUC** (lower is better) and **insertion AUC** (higher is better) — how much the class
  score depends on the highlighted pixels.

Hover over any number or chart in LifeLens to see what it means.
"""
    )

st.subheader("The four tasks")
columns = st.columns(4 if not common.presenter() else 2)
for i, (task_id, spec) in enumerate(TASKS.items()):
    with columns[i % len(columns)]:
        with st.container(border=True):
            st.markdown(f"#### {common.task_icon(task_id)} {spec.title}")
            st.caption(spec.short)
            st.markdown(f"**Input:** {spec.modality}  \n**Classes:** {', '.join(spec.class_names)}")
            st.caption(f"Data: {spec.citation} Licence: {spec.licence}.")
            for source in spec.extra_sources:
                st.caption(f"{'Also trained on' if source.trains else 'Tested on, never trained on'}: "
                           f"{source.credit or source.folder}.")
            with common.guarded(f"The {spec.title} results"):
                card = models.read_card(spec)
                results = card_tables.goal_lines(card)
                if results:
                    st.markdown("**Our test split:** " + "; ".join(results) + ".",
                                help=" ".join([screen_text.HELP["test_split_goals"]] + [
                                    screen_text.metric_help(g["metric"]) for g in card["goals"]]))
            if spec.model_path.is_file():
                st.page_link(task_page.page_for(task_id), label="Open", icon=":material/arrow_forward:",
                             help=f"The {spec.title} page: predict, explain and look inside.")
            else:
                st.caption("Model not trained yet.")

st.subheader("More")
c1, c2, c3 = st.columns(3)
c1.page_link("app_pages/inside.py", label="Inside the network", icon=":material/neurology:")
c1.caption("Filters, feature hierarchy, top-activating patches, architecture.")
c2.page_link("app_pages/uncertainty_lab.py", label="Uncertainty lab", icon=":material/casino:")
c2.caption("Is the confidence honest? Reliability, referral, out-of-distribution images.")
c3.page_link("app_pages/your_model.py", label="Bring your own model", icon=":material/upload_file:")
c3.caption("Explain any Keras image classifier you upload (kept in memory only).")
