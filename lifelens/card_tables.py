"""The model cards as rows to show: every compared model (ensemble, one member, the two
baselines, majority class, chance) per headline metric, whether a gain is clear of the
interval, and the faithfulness table with the random map first."""
from __future__ import annotations

FUSED_LABEL = "Deep ensemble fused with gradient boosting (shipped)"  # the "ensemble" row of a fused card
COMPARED = (("ensemble", "Deep ensemble"), ("networks", "Deep ensemble, networks alone"),
            ("paired", "Deep ensemble, read in pairs"), ("member", "One member"),
            ("boosted", "Gradient boosting"), ("logistic", "Logistic regression"),
            ("majority_class", "Majority class"), ("chance", "Chance"))


def _compared(card: dict) -> dict:
    """{who: metrics} for every model the card scores, the references included."""
    baselines = card.get("baselines") or {}
    refs = card.get("reference_levels") or {}
    paired = card.get("paired_read") or {}
    found = {"ensemble": card.get("metrics"),
             "networks": card.get("network_ensemble_metrics") if is_fused(card) else None,
             "paired": paired.get("metrics") if paired.get("used") else None,
             "member": card.get("single_member_metrics"),
             "boosted": (baselines.get("boosted") or {}).get("metrics"),
             "logistic": (baselines.get("logistic") or card.get("baseline") or {}).get("metrics"),
             "majority_class": refs.get("majority_class"), "chance": refs.get("chance")}
    return {k: v for k, v in found.items() if v}


def is_fused(card: dict) -> bool:
    """Whether the shipped prediction fuses the networks with the boosted model (card ``fusion``)."""
    return bool((card.get("fusion") or {}).get("used"))


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
        if who == "ensemble" and is_fused(card):
            label = FUSED_LABEL
        row = {"model": label, "_values": {n: scored.get(n) for n in names}}
        row.update({n.replace("_", " "): metric_cell(scored, n) for n in names})
        rows.append(row)
    return rows, names


def metric_cell(scored: dict, name: str) -> str:
    """One metric of a scored model as a table cell: "0.974 [0.948, 0.995]", "—" where it has none."""
    value = scored.get(name)
    return "—" if value is None else with_interval(value, (scored.get("intervals95") or {}).get(name))


def with_interval(value: float, interval) -> str:
    """"0.974 [0.948, 0.995]": a value with its 95 % interval when there is one."""
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def clear_gain(card: dict, name: str) -> tuple[float | None, bool]:
    """(the best simpler model's or reference's value, whether the ensemble's 95 % interval lies above it)."""
    compared = _compared(card)
    others = [m.get(name) for who, m in compared.items() if who not in ("ensemble", "networks", "paired", "member")]
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
                     "beats random": _share_text(entry.get("beats_random_share"), m == "random")})
    return rows


def _share_text(share: float | None, is_reference: bool) -> str:
    """A share of images as the table shows it: the random map is the reference, not a blank."""
    if is_reference:
        return "(the reference)"
    return "n/a" if share is None else f"{100 * share:.0f} % of images"


def versus_boosted(spec, card: dict) -> str | None:
    """One sentence: does the deep ensemble (its networks alone, where the shipped prediction
    fuses the boosted model in) beat the gradient-boosted baseline on each key metric of our
    test split, and where not, by how much (None when the card lacks either)."""
    compared = _compared(card)
    ensemble, boosted = compared.get("networks") or compared.get("ensemble"), compared.get("boosted")
    if not ensemble or not boosted:
        return None
    lower_is_better = {"nll", "ece", "brier"}
    wins, losses = [], []
    for name in spec.key_metrics:
        a, b = ensemble.get(name), boosted.get(name)
        if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            continue
        better = a < b if name in lower_is_better else a > b
        (wins if better else losses).append(f"{name.replace('_', ' ')} {a:.3f} vs {b:.3f}")
    plural = "networks" in compared
    who = "The deep ensemble's networks alone" if plural else "The deep ensemble"
    if not losses:
        sentence = f"{who} beat{'' if plural else 's'} the gradient-boosted baseline on every key metric (" + "; ".join(wins) + ")."
    else:
        sentence = (f"{who} do{'' if plural else 'es'} NOT beat the gradient-boosted baseline on " + "; ".join(losses)
                    + (f" ({'they do' if plural else 'it does'} on " + "; ".join(wins) + ")" if wins else "")
                    + ", on our test split.")
    if plural:
        fused = compared["ensemble"]
        sentence += (" Fused with it (the shipped prediction, weights chosen on validation): " + "; ".join(
            f"{n.replace('_', ' ')} {fused[n]:.3f}" for n in spec.key_metrics if isinstance(fused.get(n), (int, float))) + ".")
    return sentence


def _duration(seconds) -> str:
    """Seconds as people read them: '45 s', '13 min', '1 h 05 min'; '?' when unknown."""
    if not isinstance(seconds, (int, float)):
        return "?"
    minutes = round(seconds / 60)
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def training_summary(card: dict) -> str:
    """How the shipped network (member 0) and the whole ensemble were trained, in words, from
    the card's ``ensemble.members`` rows (falling back to its top-level history): a member
    fine-tuned with camera faults names both stages, since its curves show the second only."""
    hp = card.get("hyperparameters") or {}
    members = (card.get("ensemble") or {}).get("members") or []
    first = next((m for m in members if m.get("member") == 0), {})
    device = first.get("training_device") or card.get("training_device") or "?"
    kept = first.get("selected_epoch", hp.get("selected_epoch", "?"))
    rule = hp.get("selection", "lowest validation loss")
    origin = first.get("fine_tuned_from")
    if origin:
        faults = first.get("acquisition_faults") or hp.get("acquisition_faults")
        text = (f"The shown network was trained from scratch for {origin.get('epochs', '?')} epochs (epoch "
                f"{origin.get('selected_epoch', '?')} kept, {_duration(origin.get('training_seconds'))}), then fine-tuned "
                f"for {first.get('epochs', len(card.get('history') or []))} epochs"
                + (f" with simulated camera faults on {faults:.0%} of the images" if faults else "")
                + f" (epoch {kept} kept, {_duration(first.get('fine_tuning_seconds'))}); the curves show the "
                f"fine-tuning, which kept the epoch with the {rule}. "
                f"{_duration(first.get('training_seconds', card.get('training_seconds')))} in all on {device}.")
    else:
        text = (f"{len(card.get('history') or [])} epochs in {_duration(card.get('training_seconds'))} on {device}; "
                f"epoch {kept} was kept, the one with the {rule}.")
        if first.get("note"):
            text += f" This network was {first['note']}."
    total = (card.get("ensemble") or {}).get("training_seconds_total")
    if len(members) > 1 and total:
        text += f" The deep ensemble's {len(members)} members took {_duration(total)} of training in all."
    return text


def goal_lines(card: dict) -> list[str]:
    """Each goal of the card as one phrase: "quadratic kappa 0.865 [0.831, 0.897] (goal 0.80: met)",
    the value the ensemble scored on our test split with its 95 % bootstrap interval, then the
    second held-out set's goals (:func:`source_goal_lines`); [] before evaluation."""
    intervals = (card.get("metrics") or {}).get("intervals95") or {}
    lines = []
    for goal in card.get("goals") or []:
        value = goal.get("our_test_split")
        if not isinstance(value, (int, float)):
            continue
        lines.append(_goal_phrase(goal, value, intervals.get(goal["metric"]), goal.get("met_on_our_test_split")))
    return lines + source_goal_lines(card)


def source_goal_lines(card: dict) -> list[str]:
    """Each goal of the second held-out set as one phrase, scored on the test share of the source
    that stands in for it: "on EyePACS, read in pairs: referable auc 0.776 [0.729, 0.817]
    (goal 0.90 on other sources' images: NOT met)"; [] where the card has none."""
    lines = []
    for goal in card.get("source_goals") or []:
        value = goal.get("our_test_share")
        if not isinstance(value, (int, float)):
            continue
        read = ", read in pairs" if goal.get("read") == "paired" else ""
        lines.append(f"on {goal.get('source_name', goal['source'])}{read}: "
                     + _goal_phrase(goal, value, goal.get("interval95"), goal.get("met_on_our_test_share"),
                                    " on other sources' images"))
    return lines


def _goal_phrase(goal: dict, value: float, interval, met: bool, whose: str = "") -> str:
    """"referable auc 0.776 [0.729, 0.817] (goal 0.90<whose>: NOT met)"."""
    return (f"{goal['metric'].replace('_', ' ')} {with_interval(value, interval)} "
            f"(goal {goal['goal']:.2f}{whose}: {'met' if met else 'NOT met'})")


def best_ood_score(ood: dict) -> tuple[str, float] | None:
    """(score, its mean AUROC over the foreign sources) of the card's ``ood_auroc`` score that best
    tells foreign images from the task's own; None when the card has no scores."""
    means = {score: sum(by_source.values()) / len(by_source) for score, by_source in ood.items()
             if score != "images" and isinstance(by_source, dict) and by_source}
    if not means:
        return None
    best = max(means, key=means.get)
    return best, means[best]
