"""Measure a task model (and a simple baseline) on a labelled folder.

    python -m lifelens evaluate --task skin --data /path/to/skin [--out metrics.json]

The folder has ``images/`` and ``labels.csv`` in the ``../shared/data`` format. The
metrics are the same for the CNN and the baseline so that the model cards can show
them side by side.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from lifelens import data
from lifelens.tasks import TaskSpec
from lifelens.uncertainty.frequentist import wilson_interval
from lifelens.uncertainty.metrics import expected_calibration_error, negative_log_likelihood

REFERABLE_GRADE = 2  # APTOS: moderate or worse is referable diabetic retinopathy


def _safe_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC, or None when only one class is present."""
    if len(np.unique(y_true)) < 2:
        return None
    return float(skm.roc_auc_score(y_true, score))


def choose_threshold(labels: np.ndarray, score: np.ndarray) -> float:
    """The operating point maximising Youden's J (sensitivity + specificity - 1)."""
    fpr, tpr, thresholds = skm.roc_curve(labels, score)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def classification_metrics(spec: TaskSpec, labels: np.ndarray, probs: np.ndarray,
                           threshold: float | None = None) -> dict:
    """All metrics of the evaluate contract. labels (N,) class indices, probs (N, K) rows summing to 1."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    k = spec.num_classes
    pred = probs.argmax(axis=1)
    per_class = {}
    for i, c in enumerate(spec.classes):
        per_class[c.id] = {
            "name": c.name,
            "support": int((labels == i).sum()),
            "recall": float(skm.recall_score(labels == i, pred == i, zero_division=0)),
            "precision": float(skm.precision_score(labels == i, pred == i, zero_division=0)),
            "auc": _safe_auc(labels == i, probs[:, i]),
        }
    aucs = [v["auc"] for v in per_class.values() if v["auc"] is not None]
    out = {
        "task": spec.id,
        "n": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else None,
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, pred)) if len(labels) else None,
        "macro_auc": float(np.mean(aucs)) if len(aucs) == k else None,
        "per_class": per_class,
        "confusion_matrix": skm.confusion_matrix(labels, pred, labels=list(range(k))).tolist(),
        "ece": expected_calibration_error(probs, labels),
        "nll": negative_log_likelihood(probs, labels),
    }
    out["accuracy_ci95"] = list(wilson_interval(int((pred == labels).sum()), len(labels)))
    if spec.id == "skin":
        mel, sk = per_class["melanoma"]["auc"], per_class["seborrheic_keratosis"]["auc"]
        out["melanoma_auc"] = mel
        out["seborrheic_keratosis_auc"] = sk
        out["isic2017_score"] = (mel + sk) / 2 if mel is not None and sk is not None else None
    if spec.id == "retina":
        out["quadratic_kappa"] = float(skm.cohen_kappa_score(labels, pred, weights="quadratic"))
        referable = labels >= REFERABLE_GRADE
        out["referable_auc"] = _safe_auc(referable, probs[:, REFERABLE_GRADE:].sum(axis=1))
        out["referable_accuracy"] = float(((pred >= REFERABLE_GRADE) == referable).mean())
    if spec.id == "mammo":
        score = probs[:, 1]
        out["abnormal_auc"] = _safe_auc(labels == 1, score)
        t = 0.5 if threshold is None else float(threshold)
        called = score >= t
        pos, neg = labels == 1, labels == 0
        out["threshold"] = t
        out["sensitivity"] = float(called[pos].mean()) if pos.any() else None
        out["specificity"] = float((~called[neg]).mean()) if neg.any() else None
    return out


# ----------------------------------------------------------------------------- baseline

def baseline_features(images: np.ndarray) -> np.ndarray:
    """Hand-made features of prepared uint8 images (N, S, S, C): 12x12 thumbnails plus
    per-channel 16-bin intensity histograms. (N, F) float32."""
    import cv2

    feats = []
    for img in images:
        thumb = cv2.resize(img, (12, 12), interpolation=cv2.INTER_AREA).reshape(-1).astype(np.float32) / 255.0
        hists = [np.histogram(img[..., c], bins=16, range=(0, 256))[0] / img[..., c].size for c in range(img.shape[-1])]
        feats.append(np.concatenate([thumb, np.concatenate(hists).astype(np.float32)]))
    return np.stack(feats)


def fit_baseline(x_train: np.ndarray, y_train: np.ndarray):
    """Standardised features -> balanced logistic regression (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))
    model.fit(baseline_features(x_train), y_train)
    return model


# ----------------------------------------------------------------------------- the CNN

def predict_folder(task_model, spec: TaskSpec, data_dir: Path, on_error=None) -> tuple[list, np.ndarray, np.ndarray]:
    """Read a labelled folder and predict it. Returns (samples kept, labels (N,), probs (N, K)).

    ``on_error(path, message)`` is called for each image that cannot be read; it is skipped.
    """
    from lifelens.imaging import InputError
    from lifelens.models import predict_proba

    folder = Path(data_dir)
    samples = spec.samples(folder)
    kept, batch = [], []
    for s in samples:
        try:
            batch.append(spec.prepare_image(spec.load_image(folder / "images" / s.path)))
            kept.append(s)
        except (InputError, OSError) as exc:
            if on_error is None:
                raise
            on_error(folder / "images" / s.path, str(exc) if isinstance(exc, InputError) else f"cannot read the file ({exc})")
    x = np.stack(batch) if batch else np.zeros((0, spec.input_size, spec.input_size, spec.channels), np.float32)
    probs = predict_proba(task_model.classifier, x)
    return kept, np.array([s.label for s in kept], dtype=int), probs


def evaluate_folder(task_model, spec: TaskSpec, data_dir: Path, on_error=None, with_confidence: bool = True) -> dict:
    """The evaluate contract on a folder never seen before (uses the card's threshold for mammography)."""
    t0 = time.time()
    kept, labels, probs = predict_folder(task_model, spec, data_dir, on_error)
    result = classification_metrics(spec, labels, probs, task_model.card.get("threshold"))
    result["data"] = str(Path(data_dir))
    if with_confidence and len(labels):
        result["confidence"] = _confidence(task_model, spec, kept, labels, data_dir)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def _confidence(task_model, spec, samples, labels, data_dir):
    """The Bayesian-vs-frequentist calibration report, where the uncertainty module provides it."""
    try:
        from lifelens.uncertainty import confidence_report
    except ImportError:
        return None
    folder = Path(data_dir)
    x = np.stack([spec.prepare_image(spec.load_image(folder / "images" / s.path)) for s in samples])
    return confidence_report(task_model, x, labels, task_model.card.get("temperature", 1.0))


def write_card_metrics(spec: TaskSpec, log=print) -> dict:
    """Evaluate the shipped model and the baseline on OUR test split; choose the mammography
    threshold on the validation split; write ``metrics``, ``baseline``, ``threshold`` to the card."""
    from lifelens.models import load_task_model, predict_proba, update_card

    task_model = load_task_model(spec)
    splits = data.task_splits(spec)
    xs = {k: data.load_prepared(spec, v) for k, v in splits.items()}
    ys = {k: np.array([s.label for s in v]) for k, v in splits.items()}
    entries = {}
    if spec.id == "mammo":
        val_probs = predict_proba(task_model.classifier, xs["val"].astype(np.float32))
        entries["threshold"] = choose_threshold(ys["val"], val_probs[:, 1])
        entries["threshold_rule"] = "maximum Youden J on the validation split"
    probs = predict_proba(task_model.classifier, xs["test"].astype(np.float32))
    entries["metrics"] = classification_metrics(spec, ys["test"], probs, entries.get("threshold"))
    entries["metrics"]["split"] = "our test split (never used for training or model selection)"
    baseline = fit_baseline(xs["train"], ys["train"])
    base_probs = baseline.predict_proba(baseline_features(xs["test"]))
    base_threshold = None
    if spec.id == "mammo":
        base_threshold = choose_threshold(ys["val"], baseline.predict_proba(baseline_features(xs["val"]))[:, 1])
    entries["baseline"] = {
        "method": "logistic regression (C=0.1, balanced) on 12x12 thumbnails + 16-bin histograms per channel",
        "metrics": classification_metrics(spec, ys["test"], base_probs, base_threshold),
    }
    from lifelens.tasks import DISCLAIMER

    entries["intended_use"] = ("Teaching and demonstration of how CNNs classify " + spec.modality.lower()
                               + " images, and of their uncertainty and explanations. " + DISCLAIMER)
    entries["limitations"] = list(spec.limitations)
    entries["dataset"] = {"folder": spec.data_folder, "citation": spec.citation, "licence": spec.licence,
                          "modality": spec.modality}
    entries["goals"] = goal_status(spec, entries["metrics"])
    update_card(spec, **entries)
    key = spec.key_metrics[0]
    log(f"[{spec.id}] test {key}: CNN {entries['metrics'].get(key)} vs baseline {entries['baseline']['metrics'].get(key)}")
    return entries


def goal_status(spec: TaskSpec, metrics: dict) -> list[dict]:
    """Each held-out goal of the task beside what our test split measured, and whether it is met
    there: the card says plainly where the model falls short."""
    return [{"metric": name, "goal": goal, "our_test_split": metrics.get(name),
             "met_on_our_test_split": metrics.get(name) is not None and metrics[name] >= goal}
            for name, goal in spec.goals]


def metrics_table_markdown() -> str:
    """The README's metrics table, read from the model cards (our test split; CNN vs baseline)."""
    from lifelens.models import read_card
    from lifelens.tasks import TASKS

    lines = ["| task | metric | CNN (our test split) | baseline | n test |", "|---|---|---|---|---|"]
    for spec in TASKS.values():
        card = read_card(spec)
        m, b = card.get("metrics", {}), card.get("baseline", {}).get("metrics", {})
        for key in dict.fromkeys(spec.key_metrics + ("accuracy",)):
            if key in m:
                fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
                lines.append(f"| {spec.id} | {key} | {fmt(m.get(key))} | {fmt(b.get(key))} | {m.get('n', '')} |")
    return "\n".join(lines)
