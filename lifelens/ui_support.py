"""What the dashboard needs that is not drawing: cases, galleries, digests, help texts,
uploaded models. Nothing here imports Streamlit, so all of it is testable on its own.

A *case* is one image on screen: the decoded image, the network input prepared from it,
a larger display version with the same geometry, and (for mammography films from the
data) the recorded lesion circles in display pixels.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np

from lifelens import data, imaging
from lifelens.models import ModelError
from lifelens.tasks import Sample, TaskSpec

DISPLAY_SIZE = 384  # side in pixels of the image every overlay is drawn on

# One line each: what a number on screen means. Used as hover help and in reports.
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
    "temperature": "Temperature T fitted on the validation split: softmax(logits / T). T > 1 softens "
                   "over-confident outputs.",
    "ood_auroc": "How well a score separates in-distribution test images from out-of-distribution ones "
                 "(ROC AUC; 0.5 = cannot tell them apart).",
}



def metric_help(name: str) -> str:
    return HELP.get(name, name.replace("_", " "))


def digest(content: bytes) -> str:
    """A short hex digest of some bytes: the cache key of an image or an uploaded model."""
    return hashlib.sha256(bytes(content)).hexdigest()[:24]


# ----------------------------------------------------------------------------- data and galleries

def data_status(spec: TaskSpec) -> str | None:
    """None when the task's data folder is usable, else a plain sentence saying what is missing."""
    folder = spec.data_dir()
    if not (folder / "labels.csv").is_file():
        return (f"No data folder for this task at {folder}: the gallery of real cases is empty. "
                "Set LIFELENS_DATA to the folder that holds the task data, or upload an image.")
    return None


def gallery(spec: TaskSpec, limit: int | None = None) -> list[Sample]:
    """The cases offered on a task page: our TEST split, classes interleaved so the first
    few show every class. Raises FileNotFoundError when there is no data folder."""
    ordered = data.every_class_in_turn(data.task_splits(spec)["test"])
    if any(s.lesions for s in ordered):
        # An image with a recorded lesion circle opens the gallery (it teaches the most),
        # then normal and abnormal images alternate.
        ordered.sort(key=lambda s: (0 if s.lesions else 1))
        ordered = data.every_class_in_turn(ordered, reverse=True)
    return ordered[:limit] if limit else ordered


def sample_label(spec: TaskSpec, sample: Sample) -> str:
    """How a gallery case is named in the picker."""
    name = spec.classes[sample.label].name
    extra = " · lesion marked" if sample.lesions else ""
    return f"{name} — {sample.path}{extra}"


# ----------------------------------------------------------------------------- cases

@dataclass
class Case:
    """One image on screen.

    ``image``: uint8 (H, W, C) as decoded for the task; ``prepared``: float32 (S, S, C)
    network input in [0, 255]; ``display``: uint8 RGB (D, D, 3), the network's view at
    a readable size (same crop/flip as ``prepared``); ``marks``: lesion circles
    ((col, row, radius) in display pixels); ``label``: the true class index for gallery
    cases, else None; ``digest``: hash of the source bytes (the cache key).
    """

    task_id: str
    source: str  # "gallery", "upload" or "camera"
    name: str
    image: np.ndarray
    prepared: np.ndarray
    display: np.ndarray
    digest: str
    label: int | None = None
    marks: tuple = field(default_factory=tuple)
    note: str = ""  # how the file was rendered, when it is not plain (e.g. a DICOM window)

    def display_with_marks(self) -> np.ndarray:
        out = self.display
        for col, row, radius in self.marks:
            out = imaging.draw_circle(out, (col, row), radius)
        return out


def shown_name(case: Case, show_file_names: bool = False) -> str:
    """What the screen and the reports call a case: a gallery image's path; an upload's file
    name only when the user opted in (names such as ``DOE_JANE_1961_L_MLO.dcm`` identify
    people), else "uploaded image" with a short hash that tells two uploads apart."""
    if case.source == "gallery" or show_file_names:
        return case.name
    return f"{'camera photo' if case.source == 'camera' else 'uploaded image'} {case.digest[:8]}"


def display_image(spec: TaskSpec, image: np.ndarray, size: int = DISPLAY_SIZE) -> tuple[np.ndarray, dict | None]:
    """uint8 RGB (size, size, 3) of what the network sees, for drawing on.

    Plant, skin and retina inputs are square resizes of the photograph (the retina's
    contrast step is left out so the eye looks like an eye); films are cropped and flipped
    exactly as :func:`imaging.prepare_film` does. Returns (display, film geometry or None).
    """
    image = imaging.to_channels(image, spec.channels)
    if spec.augmentation == "film":
        film, geometry = imaging.prepare_film(image, size)
        return imaging.as_rgb_uint8(film), geometry
    return imaging.as_rgb_uint8(imaging.resize(image, size)), None


def lesion_marks(sample: Sample | None, film_height: int, geometry: dict | None, size: int = DISPLAY_SIZE) -> tuple:
    """MIAS lesion circles of a gallery film as ((col, row, radius), ...) in display pixels."""
    if sample is None or geometry is None or not sample.lesions:
        return ()
    marks = []
    for x, y, radius in sample.lesions:
        col, row = imaging.film_point_to_prepared(x, y, film_height, geometry, size)
        marks.append((col, row, max(3.0, radius * size / geometry["side"])))
    return tuple(marks)


def case_from_bytes(spec: TaskSpec, content: bytes, name: str, source: str = "upload",
                    sample: Sample | None = None) -> Case:
    """Decode and prepare uploaded (or gallery) bytes; raises imaging.InputError."""
    image = spec.load_image_bytes(content, name)
    prepared = spec.prepare_image(image)
    display, geometry = display_image(spec, image)
    return Case(
        task_id=spec.id, source=source, name=name, image=image, prepared=prepared, display=display,
        digest=digest(content), label=None if sample is None else sample.label,
        marks=lesion_marks(sample, image.shape[0], geometry),
        note=imaging.dicom_rendering(content) or imaging.colour_note(content, spec.channels),
    )


def case_from_sample(spec: TaskSpec, sample: Sample) -> Case:
    """A gallery case from the data folder (with its true label and any lesion circle)."""
    path = spec.data_dir() / "images" / sample.path
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise imaging.InputError(f"The gallery image {sample.path} cannot be read ({exc.strerror}).") from None
    return case_from_bytes(spec, content, sample.path, "gallery", sample)


# ----------------------------------------------------------------------------- predictions in words

def _one_in(rate: float | None) -> str:
    if not rate:
        return "rarely on images like ours"
    return f"shown for about 1 in {max(1, round(1 / rate))} of our test images"


def prediction_warnings(class_names: list[str], softmax: np.ndarray, draws: np.ndarray,
                        calibrated: dict | None, method: str) -> list[str]:
    """Plain sentences for the warnings that fire on one image.

    softmax: (K,) the single-pass (temperature-scaled) softmax; draws: (S, K) posterior
    samples of ``method``; calibrated: the card's ``warnings`` record (thresholds set on our
    validation split, so each fires on about 1 in 20 images like ours). Without thresholds
    for the method no warning is given (an uncalibrated threshold fires on everything or nothing).
    """
    from lifelens.uncertainty import warnings

    fired = warnings.firing(calibrated, method, softmax, draws)
    if not fired:
        return []
    record = calibrated[method]
    rate, limit = record.get("rate_test", {}), record["thresholds"]
    mean = np.asarray(draws, float).mean(axis=0)
    top_f, top_b = int(np.argmax(softmax)), int(np.argmax(mean))
    out = []
    if fired["confidence_gap"]:
        what = (f"the single pass says **{class_names[top_f]}**, the posterior average **{class_names[top_b]}**"
                if top_f != top_b else f"they differ by {abs(softmax[top_f] - mean[top_f]):.0%} for "
                                       f"**{class_names[top_f]}**")
        out.append(f"The two confidences disagree more than for 95 % of our validation images: {what} "
                   f"({_one_in(rate.get('confidence_gap'))}).")
    if fired["predictive_entropy"]:
        out.append(f"High uncertainty: entropy above {limit['predictive_entropy']:.2f} nats, the top 5 % of our "
                   f"validation images; several classes remain plausible ({_one_in(rate.get('predictive_entropy'))}).")
    if fired["mutual_information"]:
        out.append(f"The sampled networks disagree (mutual information above {limit['mutual_information']:.3f} nats, "
                   f"the top 5 % of our validation images): this image may be unlike the training data "
                   f"({_one_in(rate.get('mutual_information'))}).")
    return out


PROMISES = {
    "softmax": "Softmax: one network's score, temperature-scaled so that on images like ours '80 %' is right "
               "about 80 % of the time; it promises nothing for a single image.",
    "conformal": "Conformal set: contains the true class for the chosen share of images like our validation "
                 "images, whatever the network; the promise breaks when the image is unlike them.",
    "posterior": "Posterior: averages plausible networks; its spread (interval, mutual information) is what the "
                 "model does not know; it is only as good as the approximation of the posterior.",
}


COMPARED = (("ensemble", "Deep ensemble"), ("member", "One member"), ("boosted", "Gradient boosting"),
            ("logistic", "Logistic regression"), ("majority_class", "Majority class"), ("chance", "Chance"))


def _compared(card: dict) -> dict:
    """{who: metrics} for every model the card scores, the references included."""
    baselines = card.get("baselines") or {}
    refs = card.get("reference_levels") or {}
    found = {"ensemble": card.get("metrics"), "member": card.get("single_member_metrics"),
             "boosted": (baselines.get("boosted") or {}).get("metrics"),
             "logistic": (baselines.get("logistic") or card.get("baseline") or {}).get("metrics"),
             "majority_class": refs.get("majority_class"), "chance": refs.get("chance")}
    return {k: v for k, v in found.items() if v}


def headline_names(spec, card: dict) -> list[str]:
    """The metrics to show, balanced accuracy first when the test classes are skewed
    (plain accuracy then rewards answering the common class)."""
    metrics = card.get("metrics") or {}
    names = list(dict.fromkeys(list(spec.key_metrics) + ["balanced_accuracy", "accuracy", "macro_auc"]))
    support = [v.get("support", 0) for v in (metrics.get("per_class") or {}).values()]
    if support and max(support) > 1.5 * sum(support) / len(support):
        names.remove("balanced_accuracy")
        names.insert(0, "balanced_accuracy")
    return [n for n in names if isinstance(metrics.get(n), (int, float))]


def comparison_rows(spec, card: dict) -> tuple[list[dict], list[str]]:
    """One row per model: "value [low, high]" per metric, no empty cells ("—" where a model has
    no such number); each row keeps its raw numbers under "_values"."""
    names = headline_names(spec, card)
    rows = []
    for who, label in COMPARED:
        scored = _compared(card).get(who)
        if not scored:
            continue
        row = {"model": label, "_values": {n: scored.get(n) for n in names}}
        for n in names:
            value, interval = scored.get(n), (scored.get("intervals95") or {}).get(n)
            row[n.replace("_", " ")] = ("—" if value is None else f"{value:.3f}"
                                        + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""))
        rows.append(row)
    return rows, names


def clear_gain(card: dict, name: str) -> tuple[float | None, bool]:
    """(the best simpler model's or reference's value, whether the ensemble's 95 % interval lies above it)."""
    compared = _compared(card)
    others = [m.get(name) for who, m in compared.items() if who not in ("ensemble", "member")]
    others = [v for v in others if isinstance(v, (int, float))]
    if not others or "ensemble" not in compared:
        return None, False
    best = max(others)
    low = ((compared["ensemble"].get("intervals95") or {}).get(name) or [None])[0]
    return best, low is not None and low > best


def format_value(value, digits: int = 3) -> str:
    """Numbers for tables: None -> '—', floats rounded."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# ----------------------------------------------------------------------------- one prediction, both confidences

BAYES_METHODS = {"ensemble": "Deep ensemble (independently trained networks)", "mc_dropout": "MC dropout",
                 "variational": "Variational head (Bayes by Backprop)"}


def card_temperature(card: dict) -> float | None:
    """The fitted temperature from a model card (a number, or a dict with ``value``), else None."""
    value = card.get("temperature")
    if isinstance(value, dict):
        value = value.get("value")
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def predict_case(task_model, prepared: np.ndarray, bayes_method: str = "mc_dropout", samples: int = 50,
                 seed: int = 0) -> dict:
    """Frequentist and Bayesian confidence for one prepared image (S, S, C) of a shipped TaskModel.

    Runs the convolutional trunk once and samples only the head (the uncertainty module's
    ``head_predictions``). Returns {"softmax": (K,) temperature-scaled when the card has a
    temperature, "raw_softmax": (K,), "temperature": float or None, "method": bayes_method,
    "samples": (T, K), plus :func:`uncertainty.bayesian_summary` keys "mean", "std",
    "interval" (K, 2), "predictive_entropy", "expected_entropy", "mutual_information",
    "top_class", "agrees_with_frequentist"}.
    """
    from lifelens import uncertainty
    from lifelens.models import member_probabilities

    temperature = card_temperature(task_model.card)
    x = np.asarray(prepared, np.float32)[None]
    features = uncertainty.features_of(task_model, x)
    members = member_probabilities(task_model, x) if bayes_method == "ensemble" else None
    heads = uncertainty.head_predictions(task_model, features, temperature, samples, seed, members)
    if bayes_method == "ensemble":
        if heads["ensemble"] is None:
            raise ValueError("This model has a single member, not a deep ensemble; use MC dropout.")
        draws = heads["ensemble"][:, 0, :]
    elif bayes_method == "variational":
        if heads["variational"] is None:
            raise ValueError("This model has no variational head attached; use MC dropout.")
        draws = heads["variational"][:, 0, :]
    elif bayes_method == "mc_dropout":
        draws = heads["mc_dropout"][:, 0, :]
    else:
        raise ValueError(f"Unknown Bayesian method {bayes_method!r}; choose one of {', '.join(BAYES_METHODS)}.")
    softmax = heads["temperature"][0]
    summary = uncertainty.bayesian_summary(draws, softmax)
    return {"softmax": softmax, "raw_softmax": heads["softmax"][0], "temperature": temperature,
            "method": bayes_method, **summary}


def shipped_probabilities(task_model, prepared: np.ndarray, pred: dict | None = None) -> np.ndarray:
    """(K,) the shipped prediction for one prepared image: the deep ensemble's mean. A
    :func:`predict_case` result of the ensemble already holds it (its posterior mean), so the
    members are not run again."""
    from lifelens.models import ensemble_proba

    if pred is not None and pred.get("method") == "ensemble":
        return np.asarray(pred["mean"])
    return ensemble_proba(task_model, np.asarray(prepared, np.float32)[None])[0]


def faithfulness_rows(summary: dict) -> list[dict]:
    """Rows of a card's ``faithfulness`` summary for a table: the random map first, then the
    methods from most to least faithful by deletion AUC."""
    from lifelens.explain.base import METHODS

    methods = sorted((m for m in summary if m in METHODS), key=lambda m: summary[m]["deletion_auc"])
    rows = []
    for m in ["random", *methods]:
        entry = summary.get(m) or {}
        rows.append({"method": "random map (chance)" if m == "random" else METHODS[m].name,
                     "deletion AUC": entry.get("deletion_auc"), "insertion AUC": entry.get("insertion_auc"),
                     "beats random": entry.get("beats_random_share")})
    return rows
