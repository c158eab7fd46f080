"""The words on screen that explain a number: one hover-help line per quantity, and what each
kind of confidence promises, for the pages (Markdown emphasis allowed)."""
from __future__ import annotations

# One line each: what a number on screen means, as hover help.
HELP = {
    "softmax": "Frequentist confidence: the network's softmax output for one pass with dropout off "
               "(after temperature scaling when the model card has a temperature).",
    "bayesian": "Bayesian confidence: the mean class probability over many stochastic passes "
                "(posterior samples); the bar's whisker is the 95% credible interval.",
    "conformal": "Conformal prediction set: every class the calibration images cannot rule out. On images like "
                 "our validation images it holds the true class at least the chosen share of the time "
                 "(a frequentist guarantee over many images, not a probability for this one).",
    "tta": "Test-time augmentation: the mean class probability over mirrored and slightly zoomed copies of the "
           "image; the whisker spans their answers. Not a posterior: it shows how much the answer hangs on such "
           "nuisances, all a sealed model lets us measure.",
    "credible_interval": "95% of the posterior samples of this class probability fall inside this range.",
    "entropy": "Predictive entropy (nats): total uncertainty of the averaged prediction. "
               "0 = certain; ln(K) = all K classes equally likely.",
    "mutual_information": "Mutual information (nats): the part of the entropy that comes from the model "
                          "disagreeing with itself across posterior samples (epistemic uncertainty: "
                          "more data would reduce it).",
    "aleatoric": "Expected entropy (nats): uncertainty every posterior sample shares (noise in the image itself).",
    "deletion_auc": "Deletion AUC: how fast the class score falls as the most highlighted pixels are removed "
                    "first. Lower = the map found pixels the network really relies on.",
    "insertion_auc": "Insertion AUC: how fast the class score rises as the most highlighted pixels are "
                     "added to a blurred image first. Higher = a more faithful map.",
    "opacity": "How strongly the heatmap covers the image (0 = image only, 1 = heatmap only).",
    "target": "The class the explanation is computed for; by default the predicted class.",
    "layer": "The convolutional layer whose activations the map is computed from: early layers give fine, "
             "edge-like maps, the last layer coarse but class-specific ones.",
    "gradcam_std": "Spread of Grad-CAM across MC-dropout passes: bright where the explanation itself is unsure.",
    "test_split_goals": "How the deep ensemble scored on our own test split (images of the task's own folder never "
                        "used for training or model selection), with its 95% bootstrap interval in brackets, against "
                        "the goal set for this task. A separate evaluation set, partly from other clinics and cameras, "
                        "may score lower. A goal \"on\" another folder (HAM10000, EyePACS) is the goal for that "
                        "second set, scored on that folder's own test share, the nearest images we have to it: an "
                        "optimistic stand-in, since those folders' other images train the models. The "
                        "Model cards page compares it with simpler models.",
    "accuracy": "Share of test images whose top class is the true class.",
    "balanced_accuracy": "Mean of the per-class recalls: accuracy that a majority class cannot inflate.",
    "macro_auc": "Mean over classes of the one-vs-rest ROC AUC (0.5 = chance, 1 = perfect ranking).",
    "ece": "Expected calibration error: mean gap between confidence and accuracy over confidence bins (lower is better).",
    "nll": "Negative log-likelihood of the true class (lower is better; punishes confident mistakes).",
    "melanoma_auc": "ROC AUC of melanoma vs the rest (ISIC 2017 task 3a).",
    "seborrheic_keratosis_auc": "ROC AUC of seborrheic keratosis vs the rest (ISIC 2017 task 3b).",
    "isic2017_score": "Mean of the melanoma and seborrheic keratosis AUCs: the ISIC 2017 ranking score.",
    "quadratic_kappa": "Quadratic weighted kappa: agreement with the true grade, with far-off grades "
                       "penalised more (0 = chance, 1 = perfect).",
    "referable_auc": "ROC AUC of referable retinopathy (grade 2 or worse) vs not.",
    "referable_accuracy": "Accuracy of the referable (grade >= 2) vs not decision.",
    "abnormal_auc": "ROC AUC of abnormal vs normal films.",
    "sensitivity": "Share of abnormal films called abnormal at the chosen threshold.",
    "specificity": "Share of normal films called normal at the chosen threshold.",
    "paired_read": "The paired read: this image's probabilities joined with those of the same patient's other "
                   "image, in a way fitted on validation images, where it did better than reading each image "
                   "alone (model card, paired_read).",
    "temperature": "Temperature T fitted on the validation split: softmax(logits / T). T > 1 softens "
                   "over-confident outputs.",
    "ood_auroc": "How well a score separates in-distribution test images from out-of-distribution ones "
                 "(ROC AUC; 0.5 = cannot tell them apart).",
}



def metric_help(name: str) -> str:
    return HELP.get(name, name.replace("_", " "))


PROMISES = {
    "softmax": "Softmax: one network's score, temperature-scaled so that on images like ours '80 %' is right "
               "about 80 % of the time; it promises nothing for a single image.",
    "conformal": "Conformal set: contains the true class for the chosen share of images like our validation "
                 "images, whatever the network; the promise breaks when the image is unlike them.",
    "posterior": "Posterior: averages plausible networks; its spread (interval, mutual information) is what the "
                 "model does not know; it is only as good as the approximation of the posterior.",
}


def paired_read_caption(spec, record: dict) -> str:
    """The Model cards page's line on the paired read (a card's ``paired_read``, adopted)."""
    how = ("each film's score plus how much more abnormal it looks than the same patient's other film"
           if record.get("kind") == "asymmetry" else "each image's probabilities joined with those of the same "
           "patient's other image")
    shares = []
    for source, m in (record.get("metrics_by_source") or {}).items():
        alone = m.get("one_image_read") or {}
        pairs = ", ".join(f"{k.replace('_', ' ')} {alone[k]:.3f} -> {m[k]:.3f}" for k in spec.key_metrics
                          if isinstance(m.get(k), float) and isinstance(alone.get(k), float))
        shares.append(f"{source} ({m.get('n', '?')} test images): {pairs}")
    goals = "; ".join(f"goal {g['metric'].replace('_', ' ')} ≥ {g['goal']:.2f} "
                      f"{'met' if g.get('met_on_our_test_split') else '**not met**'}" for g in record.get("goals") or [])
    return (f"Read in pairs, beside {record.get('partner', 'the other side')}: {how}, mapped to probabilities on "
            f"validation images. Chosen on validation (score {record.get('val_score_film', float('nan')):.3f} one "
            f"image at a time, {record.get('val_score_paired', float('nan')):.3f} paired). On our test split, one "
            "image at a time -> paired: " + ("; ".join(shares) or "no test images in pairs")
            + (f" ({goals})" if goals else "")
            + ". The other rows read each image alone. `evaluate` reports the paired read as the headline where a "
              "folder holds both images of a patient; the app reads an uploaded image alone.")


def fusion_caption(record: dict) -> str:
    """The line under an ensemble prediction (and on the Model cards page) when the card fuses
    the networks with the gradient-boosted model (a card's ``fusion``, adopted)."""
    crossed = (record.get("validation") or {}).get("cross_fitted_nll") or {}
    return (f"The deep ensemble's answer includes a second, simpler opinion: each network's softmax is multiplied "
            f"with a gradient-boosted model's on colour and texture features (weights {record.get('network_weight')} "
            f"and {record.get('companion_weight')}, fitted on validation images; validation NLL "
            f"{crossed.get('networks', float('nan')):.3f} for the networks alone, {crossed.get('fused', float('nan')):.3f} "
            "fused, scored on images the weights were not fitted on). The maps explain the networks only.")
