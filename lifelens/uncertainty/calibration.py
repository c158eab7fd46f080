"""Calibrate one shipped model: everything ``python -m lifelens calibrate`` writes into its card.

1. fit the temperature on OUR validation split;
2. train the variational head on frozen TRAIN features and attach it (kept if one
   fitted to this very CNN is already attached);
3. conformal prediction sets on the ensemble's validation probabilities, and warning
   thresholds from the validation split's uncertainty;
4. the confidence report on OUR test split (ensemble, MC dropout, variational head);
5. AUROCs for other tasks' images and noise (out of distribution).
"""
from __future__ import annotations

import time

import numpy as np

from lifelens import data
from lifelens.models import load_task_model, member_probabilities, update_card
from lifelens.tasks import TaskSpec
from lifelens.uncertainty import bayes_head, conformal, features, frequentist, metrics, warnings
from lifelens.uncertainty.report import OOD_PER_SOURCE, confidence_report, ood_auroc, ood_images, referral_data


def calibrate(spec: TaskSpec, samples: int = 50, epochs: int | None = None, ood_per_source: int = OOD_PER_SOURCE,
              seed: int = 0, retrain_head: bool = False, log=print) -> dict:
    """The steps above for one task; returns the card entries written. A variational head already
    attached for this very CNN (same trunk weights) is kept unless ``retrain_head``, so a re-run
    does not rewrite the model file; a retrained CNN always gets a new head."""
    t0 = time.time()
    task_model = load_task_model(spec)
    trunk = features.trunk_digest(task_model)
    split = {name: features.split_features(task_model, name, log=log) for name in ("train", "val", "test")}

    # 1. temperature on OUR validation split
    val_features, val_labels = split["val"]
    temperature, fit = validation_temperature(task_model, val_features, val_labels, log)

    # 2. the variational head on frozen TRAIN features, attached in place
    details = task_model.card.get("variational_head")
    current = (task_model.variational_head is not None and isinstance(details, dict)
               and details.get("trunk_sha256_16") == trunk)
    if current and not retrain_head and (epochs is None or epochs == details.get("epochs")):
        log(f"[{spec.id}] keeping the attached variational head (fitted to this CNN; --retrain-head to replace it)")
    else:
        head, details = bayes_head.train_variational_head(
            spec, *split["train"], val_features, val_labels, epochs=epochs or bayes_head.EPOCHS, seed=seed, log=log)
        details["trunk_sha256_16"] = trunk
        written = bayes_head.attach_variational_head(spec, head)
        log(f"[{spec.id}] attached the variational head: {spec.model_path.name} sha256 {written['sha256'][:12]}…, "
            f"CNN weights verified bit-identical")
        task_model = load_task_model(spec)

    # 3. conformal sets and warning thresholds, from the validation split
    members = {k: member_probabilities(task_model, data.load_prepared(spec, data.task_splits(spec)[k]).astype(np.float32))
               for k in ("val", "test")}
    test_features, test_labels = split["test"]
    sets = conformal_entry(spec, members, val_labels, test_labels, log)
    alarms = warning_thresholds(task_model, split["val"][0], test_features, members, temperature, samples, seed)

    # 3b. the input gate on the pooled features
    ood_sets = ood_images(spec, ood_per_source, seed)
    gate_entry = fit_input_gate(task_model, split, ood_sets, log)

    # 4. confidence report on OUR test split; 5. out-of-distribution inputs
    report = confidence_report(task_model, None, test_labels, temperature, samples, seed,
                               features=test_features, ensemble=members["test"])
    report["split"] = "our test split"
    ood = ood_auroc(task_model, test_features, ood_sets, samples, seed, ensemble=members["test"])
    entries = {"temperature": temperature, "temperature_fit": fit, "variational_head": details,
               "confidence": report, "ood_auroc": ood, "conformal": sets, "warnings": alarms,
               "input_gate": gate_entry}
    task_model.card.update(entries)
    lac = conformal.from_card(task_model.card)["lac"]
    test_mean = members["test"].mean(0)
    entries["referral_data"] = referral_data(
        test_labels, members["test"], conformal.prediction_sets(lac, test_mean / test_mean.sum(1, keepdims=True), "0.9"))
    entries["shift"] = shift_entry(task_model, ood_sets, log)
    update_card(spec, **entries)
    log(f"[{spec.id}] calibrated in {time.time() - t0:.0f}s")
    return entries


def conformal_entry(spec: TaskSpec, members: dict, val_labels, test_labels, log=print) -> dict:
    """The card's ``conformal`` record: sets calibrated on the ensemble's validation outputs."""
    sets = conformal.card_entry(members["val"].mean(0), val_labels, members["test"].mean(0), test_labels,
                                spec.class_ids, spec.ordinal)
    lac = sets["test"]["lac"]["0.9"]
    log(f"[{spec.id}] conformal LAC at 0.9: test coverage {lac['coverage']:.3f}, mean set size {lac['mean_set_size']:.2f}")
    return sets


def validation_temperature(task_model, val_features, val_labels, log=print) -> tuple[float, dict]:
    """(T, the card's ``temperature_fit`` record): the temperature that minimises the validation NLL."""
    logits = frequentist.head_logits(task_model.full.get_layer("probs"), val_features)
    temperature = frequentist.fit_temperature(logits, val_labels)
    fit = {"split": "val", "images": int(len(val_labels)), "method": "minimise NLL (bounded scalar search on log T)",
           "nll_before": metrics.negative_log_likelihood(frequentist.softmax(logits), val_labels),
           "nll_after": metrics.negative_log_likelihood(frequentist.softmax(logits, temperature), val_labels)}
    log(f"[{task_model.spec.id}] temperature {temperature:.3f}: validation NLL {fit['nll_before']:.4f} -> "
        f"{fit['nll_after']:.4f}")
    return temperature, fit


def fit_input_gate(task_model, split: dict, ood_sets: dict, log=print) -> dict:
    """Fit and save the input gate (:mod:`.gate`); measure it on the test split and on images
    of other kinds. Returns the card's ``input_gate`` record."""
    from sklearn.metrics import roc_auc_score

    from lifelens.uncertainty import gate as input_gate

    spec = task_model.spec
    images = {"train": data.load_prepared(spec, data.training_splits(spec)["train"]),
              **{k: data.load_prepared(spec, data.task_splits(spec)[k]) for k in ("val", "test")}}
    parts = {k: (split[k][0], images[k], split[k][1]) for k in images}
    fitted = input_gate.fit_input_gate(parts["train"], parts["val"], alpha=spec.gate_alpha)
    fitted.save(input_gate.gate_path(spec))
    test_typ = fitted.typicality(split["test"][0], images["test"])
    record = {"method": "Mahalanobis distance to the nearest class mean (shared Ledoit-Wolf covariance; Lee et al. "
                        "2018) of the pooled network features and of colour/texture statistics; typicality = the "
                        "smaller share of validation images as far away", "alpha": fitted.alpha,
              "file": input_gate.gate_path(spec).name,
              "in_domain_rate": {"our test split": float(np.mean(fitted.in_domain(test_typ)))}, "auroc": {}}
    others = dict(ood_sets)
    for folder in spec.near_ood:
        others[folder] = near_ood_images(spec, folder)
    for source, x in others.items():
        typ = fitted.typicality(features.features_of(task_model, x), x)
        truth = np.r_[np.zeros(len(test_typ)), np.ones(len(typ))]
        record["auroc"][source] = float(roc_auc_score(truth, -np.r_[test_typ, typ]))
        record["in_domain_rate"][source] = float(np.mean(fitted.in_domain(typ)))
    log(f"[{spec.id}] input gate AUROC: " + ", ".join(f"{k} {v:.2f}" for k, v in record["auroc"].items())
        + "; in domain: " + ", ".join(f"{k} {v:.2f}" for k, v in record["in_domain_rate"].items()))
    return record


def near_ood_images(spec: TaskSpec, folder: str, n: int = 120) -> np.ndarray:
    """Up to ``n`` prepared images, evenly spread, of a data folder near the task (any labels)."""
    import csv

    from lifelens import config

    root = config.data_root() / folder
    with open(root / "labels.csv", newline="", encoding="utf-8") as fh:
        paths = sorted(row["path"] for row in csv.DictReader(fh))
    chosen = [paths[i] for i in np.linspace(0, len(paths) - 1, min(n, len(paths))).round().astype(int)]
    return np.stack([spec.prepare_image(spec.load_image(root / "images" / p)) for p in chosen])


SHIFT_IMAGES = 150


def shift_entry(task_model, ood_sets: dict, log=print) -> dict:
    """:func:`shift.shift_report` on up to ``SHIFT_IMAGES`` test images spread over the split,
    with the other tasks' images, noise and the task's near-distribution folders as real shifts."""
    from lifelens.uncertainty import shift

    spec = task_model.spec
    test = data.task_splits(spec)["test"]
    chosen = [test[i] for i in np.unique(np.linspace(0, len(test) - 1, min(SHIFT_IMAGES, len(test))).round().astype(int))]
    raw = [spec.load_image(spec.image_path(s)) for s in chosen]
    real = {**ood_sets, **{folder: near_ood_images(spec, folder) for folder in spec.near_ood}}
    return shift.shift_report(task_model, raw, np.array([s.label for s in chosen]), real, log)


def warning_thresholds(task_model, val_features, test_features, members: dict, temperature, samples, seed) -> dict:
    """:func:`warnings.fit_thresholds` for every Bayesian method of the model."""
    from lifelens.uncertainty.report import head_predictions

    heads = {k: head_predictions(task_model, f, temperature, samples, seed, members[k])
             for k, f in (("val", val_features), ("test", test_features))}
    methods = [m for m in ("ensemble", "mc_dropout", "variational") if heads["val"][m] is not None]
    return warnings.fit_thresholds(heads["val"]["temperature"], {m: heads["val"][m] for m in methods},
                                   heads["test"]["temperature"], {m: heads["test"][m] for m in methods})


def summary_lines(spec, entries: dict) -> list[str]:
    """A few human lines: NLL/ECE per method, referral at 20 %, OOD AUROCs."""
    report = entries["confidence"]
    lines = []
    for method in ("softmax", "temperature", "ensemble", "mc_dropout", "variational"):
        if method in report:
            r = report[method]
            lines.append(f"[{spec.id}] {method:12s} acc {r['accuracy']['value']:.3f} "
                         f"[{r['accuracy']['low']:.3f}, {r['accuracy']['high']:.3f}]  "
                         f"balanced {r['balanced_accuracy']:.3f}  NLL {r['nll']:.3f}  "
                         f"ECE {r['ece']:.3f}  Brier {r['brier']:.3f}")
    curve = report["referral_curve"]
    at = curve["fractions"].index(0.2)
    lines.append(f"[{spec.id}] referral of 20 %: accuracy on the rest " + ", ".join(
        f"{k} {v[at]:.3f}" for k, v in curve.items() if k not in ("fractions", "retained")) + f" (all: {curve['max_softmax'][0]:.3f})")
    for score in ("mutual_information", "max_softmax", "variational_mutual_information", "ensemble_mutual_information"):
        if score in entries["ood_auroc"]:
            lines.append(f"[{spec.id}] OOD AUROC {score}: " + ", ".join(
                f"{k} {v:.2f}" for k, v in entries["ood_auroc"][score].items()))
    return lines
