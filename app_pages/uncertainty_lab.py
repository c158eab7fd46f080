"""Uncertainty lab: is each kind of confidence honest? Reliability, referral, posterior accuracy and
out-of-distribution detection, read from the model cards."""
import streamlit as st

from lifelens import card_tables, charts, models
from lifelens.uncertainty import case_prediction
from lifelens.tasks import TASKS, get_task
from ui import common, screen_text

METHOD_NAMES = {
    "softmax": "Softmax",
    "temperature": "Softmax + temperature",
    "ensemble": "Deep ensemble",
    "mc_dropout": "MC dropout",
    "variational": "Variational head",
}
SCORE_NAMES = {
    "max_softmax": "1 − max softmax",
    "mutual_information": "MC-dropout mutual information",
    "variational_mutual_information": "Variational mutual information",
    "max_softmax_mutual_information": "1 − max softmax",
    "mc_dropout_mutual_information": "MC-dropout mutual information",
    "ensemble_mutual_information": "Ensemble mutual information",
}
REFERRAL_SCORES = {"max_softmax": "1 − max probability", "entropy": "entropy", "mutual_information":
                   "ensemble mutual information", "set_size": "conformal set size (90 %)"}
OOD_NAMES = {**{t.id: t.title for t in TASKS.values()}, "gaussian_noise": "Gaussian noise",
             "uniform_noise": "Uniform noise"}


def missing(what: str, key: str) -> None:
    st.info(f"{what} is not in this model card yet (card key `{key}`, written by the uncertainty evaluation).")


st.title(":material/casino: Uncertainty lab")
st.markdown("A confidence of 80% is only honest if such predictions are right about 80% of the time. Here each "
            "kind of confidence is checked on our test split: softmax, softmax with a fitted temperature, "
            "MC dropout and the variational (Bayes by Backprop) head.")

task_id = common.task_picker("Model", key="lab_task")
spec = get_task(task_id)
card = None
with common.guarded("The model card"):
    card = models.read_card(spec)
if not card:
    if card is not None:
        st.info(f"There is no model card for {spec.title} yet: the model has not been trained.")
    st.stop()

confidence = card.get("confidence") or {}
methods = [m for m in METHOD_NAMES if isinstance(confidence.get(m), dict)]

with common.guarded("The summary"):
    st.subheader("Scores on the test split")
    temperature = case_prediction.card_temperature(card)
    if temperature:
        st.metric("Fitted temperature T", f"{temperature:.3f}", help=screen_text.HELP["temperature"])
    else:
        missing("The fitted temperature", "temperature")
    if methods:
        rows = []
        for m in methods:
            entry = confidence[m]
            acc = entry.get("accuracy") or {}
            rows.append({"confidence": METHOD_NAMES[m], "accuracy": acc.get("value"),
                         "95% interval": f"{acc.get('low', 0):.3f}–{acc.get('high', 0):.3f}" if acc else "—",
                         "ECE": entry.get("ece"), "NLL": entry.get("nll"), "Brier": entry.get("brier")})
        st.dataframe(rows, hide_index=True, width="stretch", column_config={
            "accuracy": st.column_config.NumberColumn(format="%.3f", help=screen_text.HELP["accuracy"]),
            "95% interval": st.column_config.TextColumn(help="Wilson 95% interval of the accuracy."),
            "ECE": st.column_config.NumberColumn(format="%.3f", help=screen_text.HELP["ece"]),
            "NLL": st.column_config.NumberColumn(format="%.3f", help=screen_text.HELP["nll"]),
            "Brier": st.column_config.NumberColumn(format="%.3f", help="Mean squared distance between the predicted "
                                                   "probabilities and the true one-hot answer (0 = perfect, lower is better)."),
        })
        st.caption(f"{confidence.get('images', '?')} test images; Bayesian methods use "
                   f"{confidence.get('samples', '?')} posterior samples and are scored on their mean prediction.")
        if card_tables.is_fused(card):
            st.caption("Deep ensemble row: " + screen_text.fusion_caption(card["fusion"]))
    else:
        missing("The confidence report", "confidence")

left, right = st.columns(2)
with left:
    with common.guarded("The reliability diagram"):
        rows = []
        for m in methods:
            rel = confidence[m].get("reliability") or {}
            for conf, acc, count in zip(rel.get("confidence", []), rel.get("accuracy", []), rel.get("count", [])):
                if count:
                    rows.append({"method": METHOD_NAMES[m], "confidence": conf, "accuracy": acc, "count": count})
        if rows:
            st.altair_chart(charts.reliability_diagram(rows), width="content")
            st.caption("Points below the diagonal: over-confident (said more than it delivered). Point size = images in the bin.")
        else:
            missing("The reliability diagram", "confidence.<method>.reliability")
with right:
    with common.guarded("The referral curve"):
        curve = confidence.get("referral_curve") or {}
        fractions = curve.get("fractions") or []
        rows = [{"method": SCORE_NAMES.get(k, k.replace("_", " ")), "referred": f, "accuracy": a}
                for k, values in curve.items() if k not in ("fractions", "retained") and isinstance(values, list)
                for f, a in zip(fractions, values)]
        if rows:
            st.altair_chart(charts.referral_curve(rows), width="content")
            st.caption("The most uncertain images are handed to a human first; a useful uncertainty makes accuracy on "
                       "the rest climb fast.")
        else:
            missing("The referral curve", "confidence.referral_curve")

with common.guarded("The posterior accuracy histogram"):
    st.subheader("Accuracy of each sampled network")
    hist = confidence.get("posterior_accuracy_histogram") or {}
    if hist:
        reference = ((confidence.get("softmax") or {}).get("accuracy") or {}).get("value")
        cols = st.columns(len(hist))
        for col, (m, values) in zip(cols, hist.items()):
            if values:
                col.altair_chart(charts.value_histogram(values, METHOD_NAMES.get(m, m), "test accuracy (one network)",
                                                        reference=reference, reference_label="deterministic softmax accuracy",
                                                        y_title="sampled networks"), width="stretch")
        st.caption("Each posterior sample is one plausible network; the spread shows how much the accuracy itself is "
                   "uncertain. The blue line is the accuracy of the ordinary (deterministic) network.")
    else:
        missing("The posterior accuracy histogram", "confidence.posterior_accuracy_histogram")

with common.guarded("The out-of-distribution figures"):
    st.subheader("Does it notice images it was never meant to see?")
    ood = card.get("ood_auroc") or {}
    rows = [{"score": SCORE_NAMES.get(score, score), "ood_set": OOD_NAMES.get(source, source), "auroc": auc}
            for score, by_source in ood.items() if score != "images" and isinstance(by_source, dict)
            for source, auc in by_source.items() if auc is not None]
    if rows:
        st.altair_chart(charts.auroc_bars(rows, "Telling foreign images from this task's test images"), width="stretch")
        counts = ood.get("images") or {}
        score, mean = card_tables.best_ood_score(ood)
        st.caption(f"AUROC of each uncertainty score at separating {counts.get('in_distribution', '?')} test images "
                   "from images of the other tasks and from noise, all prepared as this task's input. 0.5 = cannot "
                   "tell them apart; below 0.5 = the foreign images look MORE certain than real ones. Best here: "
                   f"{SCORE_NAMES.get(score, score)}, mean AUROC {mean:.2f} over these sources"
                   + (" (near chance: here only the input gate turns foreign images away)." if mean < 0.6 else "."))
    else:
        missing("Out-of-distribution detection", "ood_auroc")


with common.guarded("The shift figures"):
    st.subheader("Under shift: which promise breaks, which uncertainty rises?")
    shift = card.get("shift") or {}
    if shift:
        clean = shift["clean"]
        rows = []
        for kind, levels in shift["acquisition"].items():
            for measure, key in (("accuracy", "accuracy"), ("coverage of the 90 % set", "coverage"),
                                 ("mean set size", "mean_set_size")):
                rows.append({"shift": kind, "severity": 0, "measure": measure, "value": clean[key]})
                rows += [{"shift": kind, "severity": r["severity"], "measure": measure, "value": r[key]} for r in levels]
        st.altair_chart(charts.shift_lines(rows), width="content")
        st.caption(f"{clean['n']} test images, each shifted as a faulty camera would (blur, sensor noise, JPEG, "
                   "over-exposure, low contrast, rotation, crop"
                   + (", a warmer white balance" if "colour" in shift["acquisition"] else "") + ") at three severities. Coverage holds on data like "
                   "ours (severity 0) and may fall under shift: the guarantee assumes new images resemble the "
                   "calibration images. A useful uncertainty rises as accuracy falls.")
        auroc_rows = [{"shift": f"{kind} {r['severity']}", "score": REFERRAL_SCORES.get(k, k), "auroc": v}
                      for kind, levels in shift["acquisition"].items() for r in levels for k, v in r["auroc"].items()]
        auroc_rows += [{"shift": OOD_NAMES.get(name, name), "score": REFERRAL_SCORES.get(k, k), "auroc": v}
                       for name, r in shift.get("real", {}).items() for k, v in r["auroc"].items()]
        st.altair_chart(charts.shift_auroc_heatmap(auroc_rows), width="content")
        st.caption("How well each uncertainty score tells shifted images from clean test images (ROC AUC): "
                   "1 = always higher on the shifted image, 0.5 = it does not notice, below 0.5 = the shifted "
                   "images look MORE certain.")
    else:
        missing("The shift report", "shift")

with common.guarded("The referral simulator"):
    st.subheader("Referral simulator: send the most uncertain cases to a clinician")
    referral = card.get("referral_data") or {}
    if referral:
        import numpy as np

        from lifelens.uncertainty.report import referral_at

        c1, c2 = st.columns(2)
        share = c1.slider("Share of cases referred", 0, 50, 10, step=5, format="%d%%", key="lab_referral_share",
                          help="The most uncertain cases by the chosen score go to a human; the model answers the rest.")
        score = c2.selectbox("Ranked by", list(referral["scores"]), format_func=REFERRAL_SCORES.get,
                             key="lab_referral_score", help="The uncertainty score that decides who is referred.")
        labels, probs = np.array(referral["labels"]), np.array(referral["probs"])
        kept = referral_at(spec, labels, probs, np.array(referral["scores"][score]), share / 100, card.get("threshold"))
        everyone = referral_at(spec, labels, probs, np.zeros(len(labels)), 0.0, card.get("threshold"))
        key = spec.key_metrics[0]
        m = st.columns(3)
        m[0].metric("Referred, per 1,000 cases", f"{kept['referred_per_1000']}", border=True,
                    help="How many of every 1,000 cases a clinician would read instead of the model.")
        m[1].metric("Accuracy on the cases kept", f"{kept['accuracy']:.3f}",
                    f"{kept['accuracy'] - everyone['accuracy']:+.3f} vs no referral", border=True,
                    help="Share of the kept cases the ensemble gets right (our test split).")
        value = kept.get(key)
        m[2].metric(f"{key.replace('_', ' ')} on the cases kept", "n/a" if value is None else f"{value:.3f}",
                    None if value is None or everyone.get(key) is None else f"{value - everyone[key]:+.3f} vs no referral",
                    border=True, help=screen_text.metric_help(key))
        st.caption(f"From the stored per-image scores of {len(labels)} test images (Leibig et al. 2017).")
    else:
        missing("The per-image test scores", "referral_data")
