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
from lifelens.scoring import DECISION_RULES, fit_decision_rule, headline_metrics, macro_auc, predicted_class, safe_auc
from lifelens.tasks import TaskSpec, intended_use
from lifelens.uncertainty.frequentist import wilson_interval
from lifelens.uncertainty.metrics import expected_calibration_error, negative_log_likelihood

# What an extra source is used for (ExtraSource.trains), as the card says it.
EXTRA_SOURCE_USE = {True: "training and validation; its own test share is scored apart (metrics_by_source)",
                    False: "a shifted test set only: nothing trains or is tuned on it (metrics_by_source)"}


def dataset_entry(spec: TaskSpec) -> dict:
    """The card's account of the data: folders, what each extra source was used for, licence, preparation."""
    return {"folder": spec.data_folder, "extra_sources": [s.folder for s in spec.extra_sources],
            "extra_source_use": {s.folder: EXTRA_SOURCE_USE[s.trains] for s in spec.extra_sources},
            "extra_source_credit": {s.folder: s.credit for s in spec.extra_sources},
            "citation": spec.citation, "licence": spec.licence, "modality": spec.modality,
            # Every input, in training, here and in the app, goes through this one preparation.
            "preparation": " ".join(" ".join((f.__doc__ or "").split("\n\n")[0].split())
                                    for f in (spec.frame, spec.prepare) if f is not None)}


def classification_metrics(spec: TaskSpec, labels: np.ndarray, probs: np.ndarray,
                           threshold: float | None = None) -> dict:
    """All metrics of the evaluate contract. labels (N,) class indices, probs (N, K) rows summing to 1."""
    labels = np.asarray(labels, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    k = spec.num_classes
    pred = predicted_class(spec, probs, threshold)
    precision, recall, _, support = skm.precision_recall_fscore_support(
        labels, pred, labels=list(range(k)), zero_division=0)
    per_class = {c.id: {"name": c.name, "support": int(support[i]), "recall": float(recall[i]),
                        "precision": float(precision[i]), "auc": safe_auc(labels == i, probs[:, i])}
                 for i, c in enumerate(spec.classes)}
    out = {"task": spec.id, **headline_metrics(spec, labels, probs, threshold)}
    out.update({
        "per_class": per_class,
        "confusion_matrix": skm.confusion_matrix(labels, pred, labels=list(range(k))).tolist(),
        "ece": expected_calibration_error(probs, labels),
        "nll": negative_log_likelihood(probs, labels),
        "accuracy_ci95": list(wilson_interval(int((pred == labels).sum()), len(labels))),
    })
    return out


# ----------------------------------------------------------------------------- the CNN

def predict_folder(task_model, spec: TaskSpec, data_dir: Path, on_error=None,
                   batch_size: int = 64) -> tuple[list, np.ndarray, np.ndarray]:
    """Read a labelled folder and predict it, ``batch_size`` images at a time (only the
    probabilities are kept). Returns (samples kept, labels (N,), probs (N, K)).

    ``on_error(path, message)`` is called for each image that cannot be read; it is skipped.
    """
    from lifelens.imaging import InputError
    from lifelens.models import ensemble_proba

    folder = Path(data_dir)
    kept, batch, probs = [], [], []
    for s in spec.samples(folder):
        try:
            batch.append(spec.prepare_image(spec.load_image(folder / "images" / s.path)))
            kept.append(s)
        except (InputError, OSError) as exc:
            if on_error is None:
                raise
            on_error(folder / "images" / s.path, str(exc) if isinstance(exc, InputError) else f"cannot read the file ({exc})")
        if len(batch) == batch_size:
            probs.append(ensemble_proba(task_model, np.stack(batch)))
            batch.clear()
    if batch:
        probs.append(ensemble_proba(task_model, np.stack(batch)))
    out = np.concatenate(probs) if probs else np.zeros((0, spec.num_classes), np.float32)
    return kept, np.array([s.label for s in kept], dtype=int), out


def _predict_labelled_folder(opened, class_names: list[str], folder: Path, on_error, batch_size: int):
    """(labels list, probabilities (N, K)) of a labelled folder, read and predicted in batches."""
    import csv

    from lifelens import imaging
    from lifelens.model_formats import prepare_for_model

    index = {name.lower(): i for i, name in enumerate(class_names)}
    labels, probs, batch, batch_labels = [], [], [], []
    with open(folder / "labels.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            label = index.get(str(row.get("label", "")).strip().lower())
            path = folder / "images" / str(row.get("path", ""))
            if label is None:
                raise ValueError(f"label {row.get('label')!r} of {row.get('path')} is not one of the classes "
                                 f"({', '.join(class_names)})")
            try:
                image = imaging.decode_image(path.read_bytes(), channels=3, name=path.name)
            except (imaging.InputError, OSError) as exc:
                if on_error is None:
                    raise
                on_error(path, str(exc) if isinstance(exc, imaging.InputError) else f"cannot read the file ({exc})")
                continue
            batch.append(prepare_for_model(image, opened))
            batch_labels.append(label)
            if len(batch) == batch_size:
                probs.append(opened.predict(np.stack(batch)))
                labels += batch_labels
                batch, batch_labels = [], []
    if batch:
        probs.append(opened.predict(np.stack(batch)))
        labels += batch_labels
    if not labels:
        raise ValueError("no readable labelled images")
    return labels, np.concatenate(probs)


def evaluate_opened_folder(opened, class_names: list[str], data_dir: Path, on_error=None,
                           batch_size: int = 64) -> dict:
    """A user's model (:class:`lifelens.model_formats.OpenedModel`) on a labelled folder
    (``images/`` + ``labels.csv`` with ``path,label``; labels are class names), streamed in
    batches. Returns accuracy with its 95 % Wilson interval, balanced accuracy, macro AUC,
    NLL, ECE, per-class recall and the confusion matrix."""
    folder = Path(data_dir)
    t0 = time.time()
    labels, probs = _predict_labelled_folder(opened, class_names, folder, on_error, batch_size)
    y, p = np.array(labels), np.asarray(probs, np.float64)
    p = p / p.sum(axis=1, keepdims=True)  # float32 outputs sum to 1 only within rounding
    k, pred = len(class_names), p.argmax(axis=1)
    correct = int((pred == y).sum())
    result = {
        "data": str(folder), "model": opened.name, "format": opened.format, "n": len(y),
        "accuracy": correct / len(y), "accuracy_interval_95": list(wilson_interval(correct, len(y))),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, pred)),
        "macro_auc": macro_auc(y, p),
        "nll": negative_log_likelihood(p, y),
        "ece": float(expected_calibration_error(p, y)),
        "per_class_recall": {name: None if not (y == i).any() else float((pred[y == i] == i).mean())
                             for i, name in enumerate(class_names)},
        "confusion_matrix": skm.confusion_matrix(y, pred, labels=list(range(k))).tolist(),
        "class_names": class_names, "seconds": round(time.time() - t0, 1),
    }
    return result


def evaluate_folder(task_model, spec: TaskSpec, data_dir: Path, on_error=None, with_confidence: bool = True) -> dict:
    """The evaluate contract on a folder never seen before (uses the card's threshold for mammography)."""
    t0 = time.time()
    kept, labels, probs = predict_folder(task_model, spec, data_dir, on_error)
    result = classification_metrics(spec, labels, probs, task_model.card.get("threshold"))
    result.update(_paired_read(task_model, spec, kept, labels, probs, result))
    result["data"] = str(Path(data_dir))
    result["ensemble_members"] = len(task_model.members)
    fusion = task_model.card.get("fusion") or {}
    result["fused_with_boosted_model"] = (
        {"file": fusion["file"], "network_weight": fusion["network_weight"], "companion_weight": fusion["companion_weight"]}
        if task_model.companion is not None else None)
    result.update(conformal_coverage(task_model, spec, labels, probs))
    if with_confidence and len(labels):
        result["confidence"] = _confidence(task_model, spec, kept, labels, data_dir)
    result["seconds"] = round(time.time() - t0, 1)
    return result


def _paired_read(task_model, spec: TaskSpec, samples: list, labels: np.ndarray, probs: np.ndarray,
                 one_image: dict) -> dict:
    """Where the card adopted the paired read (lifelens.paired_read) and some patient has two
    images here: the paired read's metrics as the headline, the one-image read's under
    ``one_image_read``, and ``reading`` saying which is which. Otherwise {} (the one-image read
    is the headline)."""
    from lifelens.paired_read import PairedRead, in_pairs

    record = task_model.card.get("paired_read") if spec.paired_read is not None else None
    rule = PairedRead.from_card(record)
    groups = [s.group for s in samples]
    paired_films = int(in_pairs(groups).sum())
    if rule is None or not paired_films:
        return {}
    out = classification_metrics(spec, labels, rule.probabilities(probs, groups), record.get("threshold"))
    out["one_image_read"] = {k: v for k, v in one_image.items() if k != "task"}
    out["reading"] = (f"paired read: each image beside {spec.paired_read.partner} of the same patient "
                      f"({paired_films} of {len(samples)} images are one of a patient's two; the rest are read "
                      "alone). one_image_read: each image alone, as the app reads an upload. Conformal sets and the "
                      "confidence report are of the one-image read.")
    return out


def conformal_coverage(task_model, spec: TaskSpec, labels: np.ndarray, probs: np.ndarray) -> dict:
    """{"conformal": {level: {"coverage", "mean_set_size", "per_class_coverage", "n"}} of the
    card's default set method, "conformal_by_method": the same for every method}; {} when the
    card holds no conformal calibration or there are no images."""
    from lifelens.uncertainty import conformal

    calibrations = conformal.from_card(task_model.card)
    if not calibrations or not len(labels):
        return {}
    by_method = {m: conformal.set_report(cal, probs, labels, spec.class_ids) for m, cal in calibrations.items()}
    default = task_model.card["conformal"].get("default", "lac")
    return {"conformal": by_method[default], "conformal_method": default, "conformal_by_method": by_method}


def _confidence(task_model, spec, samples, labels, data_dir):
    """The Bayesian-vs-frequentist calibration report, where the uncertainty module provides it."""
    try:
        from lifelens.uncertainty import confidence_report
    except ImportError:
        return None
    folder = Path(data_dir)
    x = np.stack([spec.prepare_image(spec.load_image(folder / "images" / s.path)) for s in samples])
    return confidence_report(task_model, x, labels, task_model.card.get("temperature", 1.0))


BOOTSTRAP_RESAMPLES = 400  # enough for a 95 % interval to two decimals; the card step stays minutes, not tens


def bootstrap_intervals(spec: TaskSpec, labels: np.ndarray, probs: np.ndarray, threshold=None,
                        seed: int = 0) -> dict:
    """95 % percentile-bootstrap intervals of the task's key metrics and accuracy:
    {metric: [low, high]} (resampling images; scipy.stats.bootstrap)."""
    from scipy.stats import bootstrap

    point = headline_metrics(spec, labels, probs, threshold)
    keys = [k for k in dict.fromkeys(spec.key_metrics + ("accuracy",)) if point.get(k) is not None]

    def statistic(index):
        found = headline_metrics(spec, labels[index], probs[index], threshold)
        return np.array([np.nan if found.get(k) is None else found[k] for k in keys])

    res = bootstrap((np.arange(len(labels)),), statistic, n_resamples=BOOTSTRAP_RESAMPLES, vectorized=False,
                    method="percentile", random_state=seed)
    low, high = (np.atleast_1d(v) for v in res.confidence_interval)
    return {k: [round(float(a), 4), round(float(b), 4)] for k, a, b in zip(keys, low, high)}


def _scored(spec, labels, probs, threshold, method: str | None = None) -> dict:
    """Metrics with their bootstrap intervals (and, for a baseline, how it was made)."""
    metrics = classification_metrics(spec, labels, probs, threshold)
    metrics["intervals95"] = bootstrap_intervals(spec, labels, probs, threshold)
    return {"method": method, "metrics": metrics} if method else metrics


def write_card_metrics(spec: TaskSpec, log=print) -> dict:
    """Evaluate the shipped deep ensemble, its first member and two baselines on OUR test
    split, each source's test share separately; choose the mammography threshold on the
    validation split; write them into the card."""
    from lifelens import baseline as simple
    from lifelens.models import load_task_model, update_card, write_member_cards

    task_model = load_task_model(spec)
    splits = data.task_splits(spec)
    xs = {k: data.load_prepared(spec, v) for k, v in splits.items()}
    ys = {k: np.array([s.label for s in v]) for k, v in splits.items()}
    train = data.training_splits(spec)
    x_train = data.load_prepared(spec, train["train"])
    y_train = np.array([s.label for s in train["train"]])
    # Fitted once: the baseline the ensemble must beat, and the second opinion fusion may add.
    boosted = simple.fit_boosted(x_train, y_train)
    log(f"[{spec.id}] gradient-boosted model fitted on {len(y_train)} training images")
    entries = _ensemble_entries(task_model, xs, ys, log, boosted=boosted, every_source_val=train["val"])
    entries["fusion"] = task_model.card["fusion"]
    update_card(spec, ensemble=task_model.card["ensemble"])
    entries["baselines"] = _baseline_entries(spec, x_train, y_train, xs, ys, log, boosted)
    entries["baseline"] = entries["baselines"]["logistic"]  # the Model cards page's first comparison
    entries["reference_levels"] = reference_levels(spec, y_train, ys["test"], entries.get("threshold"))
    own_probs = {"val": entries.pop("_val_probs"), "test": entries.pop("_test_probs")}
    every_source_val = entries.pop("_every_source_val_probs")
    known = {}
    if spec.paired_read:
        # every source's validation and test images, predicted once for fusion, the paired read and the source table
        probs = {"val": every_source_val, "test": _with_extra_sources(task_model, train["test"], own_probs["test"])}
        entries["paired_read"] = paired_read_entry(spec, train, probs, entries.get("threshold"), log)
        known = {src: probs["test"][ix] for src, ix in data.by_source(train["test"]).items()}
    # the own folder's share is the headline test split, already scored with its intervals above
    own = {k: v for k, v in entries["metrics"].items() if k not in ("split", "ensemble_members")}
    entries["metrics_by_source"] = metrics_by_source(task_model, spec, train["test"], entries.get("threshold"),
                                                     known=known, scored={"": own})
    entries["source_goals"] = source_goal_status(spec, entries["metrics_by_source"], entries.get("paired_read"))
    entries["intended_use"] = intended_use(spec)
    entries["limitations"] = list(spec.limitations)
    entries["dataset"] = dataset_entry(spec)
    entries["goals"] = goal_status(spec, entries["metrics"])
    from lifelens.card_tables import versus_boosted

    entries["ensemble_vs_boosted"] = versus_boosted(spec, entries)
    write_member_cards(spec, update_card(spec, **entries))
    key = spec.key_metrics[0]
    log(f"[{spec.id}] test {key}: ensemble {entries['metrics'].get(key)} vs member "
        f"{entries['single_member_metrics'].get(key)} vs boosted {entries['baselines']['boosted']['metrics'].get(key)}")
    return entries


def _ensemble_entries(task_model, xs: dict, ys: dict, log, boosted, every_source_val: list) -> dict:
    """Test-time flips, temperatures and fusion with the ``boosted`` model chosen on
    validation, then the shipped ensemble, the networks alone, the first member and every
    member scored on test. Sets ``task_model.card`` ``tta``, ``ensemble.temperature`` and
    ``fusion`` (and ``task_model.companion``); ``_test_probs`` and ``_val_probs`` are the
    shipped test and validation predictions, ``_every_source_val_probs`` the shipped prediction
    of ``every_source_val`` (for reuse). ``every_source_val``: the validation
    samples of every training source, the own folder's first (fusion is fitted on them)."""
    from lifelens.models import as_shipped, member_probabilities, temper

    spec = task_model.spec
    tta, raw_val = choose_tta(task_model, xs["val"].astype(np.float32), ys["val"])
    task_model.card["tta"] = tta
    log(f"[{spec.id}] flip test-time augmentation {'on' if tta['used'] else 'off'}: validation score "
        f"{tta['val_score_without']:.4f} without, {tta['val_score_with']:.4f} with")
    raw = {"val": raw_val, "test": member_probabilities(task_model, xs["test"].astype(np.float32), tempered=False)}
    ensemble_t = fit_temperature(raw["val"], ys["val"])
    member_ts = [fit_temperature(raw["val"][m:m + 1], ys["val"]) for m in range(len(raw["val"]))]
    task_model.card.setdefault("ensemble", {})["temperature"] = ensemble_t
    log(f"[{spec.id}] ensemble temperature {ensemble_t:.3f}, member 0 alone {member_ts[0]:.3f} (validation NLL)")
    networks = {k: temper(v, ensemble_t).mean(axis=0) for k, v in raw.items()}
    raw_every, boosted_every = _choose_fusion(task_model, boosted, raw["val"], xs["val"], every_source_val, log)
    # the own folder's validation images lead every source's: their shipped prediction is its first rows
    every_val = as_shipped(task_model, raw_every, None, companion_probs=boosted_every).mean(axis=0)
    members = {"val": every_val[:len(ys["val"])], "test": as_shipped(task_model, raw["test"], xs["test"]).mean(axis=0)}
    single = {k: temper(v[0], member_ts[0]) for k, v in raw.items()}
    entries, thresholds = {"tta": tta, "_test_probs": members["test"], "_val_probs": members["val"],
                           "_every_source_val_probs": every_val}, {}
    rule = fit_decision_rule(spec, ys["val"], members["val"])
    if rule is not None:
        entries["threshold"] = thresholds["ensemble"] = rule
        thresholds["member"] = fit_decision_rule(spec, ys["val"], single["val"])
        entries["threshold_rule"] = DECISION_RULES["ordinal" if spec.ordinal else "binary"]
        log(f"[{spec.id}] decision rule on validation: {rule}")
    entries["metrics"] = _scored(spec, ys["test"], members["test"], thresholds.get("ensemble"))
    entries["metrics"]["split"] = "our test split (never used for training or model selection)"
    entries["metrics"]["ensemble_members"] = len(task_model.members)
    entries["single_member_metrics"] = _scored(spec, ys["test"], single["test"], thresholds.get("member"))
    entries["single_member_metrics"]["temperature"] = member_ts[0]
    if task_model.companion is not None:
        entries["network_ensemble_metrics"] = _scored(spec, ys["test"], networks["test"], fit_decision_rule(
            spec, ys["val"], networks["val"]) if rule is not None else None)
    entries["ensemble_vs_member"] = ensemble_vs_members(members["test"], raw["test"], ys["test"], member_ts)
    entries["member_metrics"] = [
        {k: classification_metrics(spec, ys["test"], p, None).get(k) for k in spec.key_metrics + ("nll", "accuracy")}
        for p in raw["test"]]  # each member as trained, untempered
    return entries


def _choose_fusion(task_model, boosted, raw_own_val: np.ndarray, x_own_val: np.ndarray, every_source_val,
                   log) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the boosted model into the prediction if that lowers the cross-fitted validation
    NLL (:func:`lifelens.fusion.choose_fusion`, on every training source's validation images);
    sets ``task_model.card["fusion"]`` and ``task_model.companion``, writes or removes
    ``models/<task>.boosted.skops``. Returns the members' own softmax (M, N, K) of those images
    and the boosted model's probabilities (N, K) of them, for reuse."""
    from lifelens import fusion as late
    from lifelens.models import member_probabilities

    spec = task_model.spec
    path = late.companion_path(spec)
    rest = every_source_val[raw_own_val.shape[1]:]  # the extra sources' validation images follow the own folder's
    raw, images = raw_own_val, x_own_val
    if rest:
        x_rest = data.load_prepared(spec, rest).astype(np.float32)
        raw = np.concatenate([raw, member_probabilities(task_model, x_rest, tempered=False)], axis=1)
        images = np.concatenate([images, x_rest])
    labels = np.array([s.label for s in every_source_val])
    groups = [s.group for s in every_source_val]
    boosted_probs = late.companion_probabilities(boosted, images)
    record = late.choose_fusion(raw, boosted_probs, labels, groups)
    crossed = record["validation"]["cross_fitted_nll"]
    log(f"[{spec.id}] fusion with the boosted model {'adopted' if record['used'] else 'not adopted'}: cross-fitted "
        f"validation NLL {crossed['networks']:.4f} networks alone, {crossed['fused']:.4f} fused "
        f"(weights {record['network_weight']} / {record['companion_weight']}, {len(labels)} images)")
    if record["used"]:
        record.update(file=path.name, sha256=late.save_companion(boosted, path), method=boosted.description)
        task_model.companion = boosted
    else:
        task_model.companion = None
        path.unlink(missing_ok=True)  # a companion the card no longer uses
    task_model.card["fusion"] = record
    return raw, boosted_probs


def _with_extra_sources(task_model, items: list, own_probs: np.ndarray) -> np.ndarray:
    """(N, K) the ensemble's prediction of a split of every source (:func:`data.training_splits`),
    from the own folder's (which come first, ``own_probs``) and the extra sources' images."""
    from lifelens.models import ensemble_proba

    rest = items[len(own_probs):]
    if not rest:
        return own_probs
    return np.concatenate([own_probs, ensemble_proba(task_model, data.load_prepared(task_model.spec, rest)
                                                     .astype(np.float32))])


def paired_read_entry(spec: TaskSpec, splits: dict, probs: dict, one_image_threshold, log) -> dict:
    """The card's ``paired_read`` (:mod:`lifelens.paired_read`): fitted on the validation images
    of every source that come in pairs of one patient, adopted (``used``) only if it raises the
    validation score, then scored on each source's test share that has pairs (``metrics_by_source``,
    with intervals). ``metrics`` and ``goals`` are the own folder's, where it has pairs.
    ``splits``: :func:`data.training_splits`; ``probs``: the ensemble's (N, K) prediction of its
    "val" and "test" images; ``one_image_threshold``: the decision rule of the one-image read
    (the card's ``threshold``)."""
    from lifelens.paired_read import fit_paired_read, in_pairs
    from lifelens.scoring import selection_score

    labels = {part: np.array([s.label for s in splits[part]]) for part in probs}
    groups = {part: [s.group for s in splits[part]] for part in probs}
    positive = spec.operating_point.positive if spec.operating_point is not None else 1
    rule = fit_paired_read(spec.paired_read.kind, probs["val"], labels["val"], groups["val"], positive)
    paired = {k: rule.probabilities(probs[k], groups[k]) for k in probs}
    film_score, paired_score = (selection_score(spec, p, labels["val"]) for p in (probs["val"], paired["val"]))
    threshold = fit_decision_rule(spec, labels["val"], paired["val"])
    entry = {**rule.to_card(), "partner": spec.paired_read.partner, "used": bool(paired_score > film_score),
             "threshold": threshold,
             "rule": "adopted when it raises the validation score of the one-image read; fitted on the validation "
                     "images in pairs (see lifelens.paired_read for what is fixed beforehand)",
             "val_score_film": round(film_score, 4), "val_score_paired": round(paired_score, 4),
             "images_in_pairs": {k: int(in_pairs(g).sum()) for k, g in groups.items()}, "metrics_by_source": {}}
    for source, index in data.by_source(splits["test"]).items():
        if not in_pairs([groups["test"][i] for i in index]).any():
            continue  # nothing to read in pairs: the source's test share is the one-image read's
        name = source or spec.data_folder
        scored = _scored(spec, labels["test"][index], paired["test"][index], threshold)
        scored["one_image_read"] = {k: v for k, v in classification_metrics(
            spec, labels["test"][index], probs["test"][index], one_image_threshold).items()
            if k in spec.key_metrics + ("nll", "accuracy")}
        entry["metrics_by_source"][name] = scored
    own = entry["metrics_by_source"].get(spec.data_folder)
    if own is not None:
        entry["metrics"] = dict(own, split="our test split (never used for training or model selection)")
        entry["goals"] = goal_status(spec, entry["metrics"])
    log(f"[{spec.id}] paired read {'adopted' if entry['used'] else 'not adopted'}: validation score "
        f"{film_score:.4f} one image at a time, {paired_score:.4f} paired; test shares with pairs: "
        + (", ".join(entry["metrics_by_source"]) or "none"))
    return entry


def _baseline_entries(spec: TaskSpec, x_train, y_train, xs: dict, ys: dict, log, boosted) -> dict:
    """Both simple models, fitted on the training split (``boosted``: already fitted), scored like the ensemble."""
    from lifelens import baseline as simple

    out = {}
    for fitted in (simple.fit_logistic(x_train, y_train), boosted):
        threshold = fit_decision_rule(spec, ys["val"], fitted.predict_proba(xs["val"]))
        out[fitted.kind] = _scored(spec, ys["test"], fitted.predict_proba(xs["test"]), threshold, fitted.description)
        log(f"[{spec.id}] baseline {fitted.kind} (fitted on {len(y_train)} training images) scored")
    return out


def ensemble_vs_members(ensemble_test: np.ndarray, raw_test: np.ndarray, y_test: np.ndarray, member_ts: list) -> dict:
    """Test NLL of the shipped ensemble prediction (N, K) against each member (``raw_test``
    (M, N, K)) at its own validation-fitted temperature: is the ensemble better than one
    network, the first or a typical one?"""
    from lifelens.models import temper

    ensemble = negative_log_likelihood(ensemble_test, y_test)
    members = [negative_log_likelihood(temper(p, t), y_test) for p, t in zip(raw_test, member_ts)]
    verdict = ("below every member" if ensemble < min(members) else "below the mean member"
               if ensemble < float(np.mean(members)) else "NOT below a single member")
    return {"ensemble_nll": ensemble, "member_nll": members, "mean_member_nll": float(np.mean(members)),
            "verdict": f"ensemble NLL {ensemble:.4f} is {verdict} (members {', '.join(f'{v:.4f}' for v in members)}; "
                       "each at its own temperature fitted on validation)"}


def fit_temperature(members: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the validation NLL of the mean of the (M, N, K) member
    softmaxes, each taken to temperature T (a bounded search on log T, scipy)."""
    from scipy.optimize import minimize_scalar

    from lifelens.models import temper

    def nll(log_t):
        mean = temper(members, float(np.exp(log_t))).mean(axis=0)
        return negative_log_likelihood(mean, labels)

    return round(float(np.exp(minimize_scalar(nll, bounds=(np.log(0.2), np.log(5.0)), method="bounded").x)), 4)


def reference_levels(spec: TaskSpec, y_train: np.ndarray, y_test: np.ndarray, threshold=None, draws: int = 200) -> dict:
    """What a model that learned nothing scores on the test split: {"majority_class": answering
    the training split's most common class for every image, "chance": the mean over ``draws``
    random guesses}; each {metric: value}. A gain means something only above both."""
    k = spec.num_classes
    majority = np.full((len(y_test), k), 0.0)
    majority[:, np.bincount(y_train, minlength=k).argmax()] = 1.0
    rng = np.random.default_rng(0)
    guesses = [headline_metrics(spec, y_test, rng.dirichlet(np.ones(k), len(y_test)), threshold) for _ in range(draws)]
    keys = [key for key, v in guesses[0].items() if isinstance(v, float)]
    chance = {key: float(np.mean([g[key] for g in guesses if g.get(key) is not None])) for key in keys}
    return {"majority_class": headline_metrics(spec, y_test, majority, threshold), "chance": chance}


def choose_tta(task_model, x_val: np.ndarray, y_val: np.ndarray) -> tuple[dict, np.ndarray]:
    """Use flip test-time augmentation only if it raises the ensemble's validation score
    (balanced accuracy, or AUC for a binary task): chosen on validation, never on test.

    Returns (the card's ``tta`` record, the members' untempered validation softmax (M, N, K)
    under the choice).
    """
    from lifelens.models import member_probabilities
    from lifelens.scoring import selection_score

    spec = task_model.spec
    raw = {tta: member_probabilities(task_model, x_val, tta=tta, tempered=False) for tta in (False, True)}
    scores = {tta: selection_score(spec, p.mean(axis=0), y_val) for tta, p in raw.items()}
    used = bool(spec.augmentation != "film" and scores[True] > scores[False])
    return ({"flips": "identity, left-right, up-down" if spec.augmentation != "film" else "none (films face left)",
             "val_score_without": round(scores[False], 4), "val_score_with": round(scores[True], 4),
             "used": used, "rule": "on when it raises the validation score of the ensemble"}, raw[used])


def metrics_by_source(task_model, spec: TaskSpec, test_samples: list, threshold=None, known: dict | None = None,
                      scored: dict | None = None) -> dict:
    """{source folder: metrics of the ensemble on that source's test share, with their bootstrap
    intervals}; ``known``: {source: (N, K) probabilities already computed for it}; ``scored``:
    {source: its metrics already scored, taken as they are} ("" = the task's own folder)."""
    from lifelens.models import ensemble_proba

    out = {}
    for source, index in data.by_source(test_samples).items():
        if source in (scored or {}):
            out[source or spec.data_folder] = scored[source]
            continue
        chosen = [test_samples[i] for i in index]
        labels = np.array([s.label for s in chosen])
        probs = (known or {}).get(source)
        if probs is None:
            probs = ensemble_proba(task_model, data.load_prepared(spec, chosen).astype(np.float32))
        out[source or spec.data_folder] = _scored(spec, labels, probs, threshold)
    return out


def source_goal_status(spec: TaskSpec, by_source: dict, paired_read: dict | None = None) -> list[dict]:
    """Each goal of the second held-out set (:attr:`ExtraSource.goals`) beside what the test share
    of the source standing in for it measured, with its 95 % bootstrap interval: read in pairs where
    the card's paired read is used and the share has pairs (as ``evaluate`` reads a set with
    patients), else one image at a time. ``by_source``: the card's ``metrics_by_source``."""
    paired_read = paired_read or {}
    paired = paired_read.get("metrics_by_source", {}) if paired_read.get("used") else {}
    out = []
    for source in spec.extra_sources:
        read = "paired" if source.folder in paired else "one image"
        metrics = (paired if read == "paired" else by_source).get(source.folder) or {}
        for name, goal in source.goals:
            value = metrics.get(name)
            out.append({"source": source.folder, "source_name": source.name or source.folder, "metric": name,
                        "goal": goal, "read": read,
                        "our_test_share": value, "interval95": (metrics.get("intervals95") or {}).get(name),
                        "met_on_our_test_share": value is not None and value >= goal})
    return out


def goal_status(spec: TaskSpec, metrics: dict) -> list[dict]:
    """Each held-out goal of the task beside what our test split measured, and whether it is met
    there: the card says plainly where the model falls short."""
    return [{"metric": name, "goal": goal, "our_test_split": metrics.get(name),
             "met_on_our_test_split": metrics.get(name) is not None and metrics[name] >= goal}
            for name, goal in spec.goals]
