"""One image of a shipped task model, both confidences: the frequentist softmax and the chosen
posterior (deep ensemble, MC dropout, variational head), and the calibrated warnings in
plain sentences."""
from __future__ import annotations

import numpy as np

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


