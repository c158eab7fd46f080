HELP = ("print the model cards' measured numbers as Markdown tables (the README's tables are made with it): "
        "headline metrics against baselines and goals, calibration, conformal coverage, the input gate, shift")


def add_arguments(p) -> None:
    p.add_argument("--tasks", help="comma-separated task ids (default: all; not with --readme)")
    p.add_argument("--readme", metavar="FILE",
                   help="instead of printing, rewrite in FILE (a Markdown file such as README.md) every table "
                        "whose header row is the header row of one of these tables")


def _f(value, digits: int = 3) -> str:
    return "–" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def _with_interval(scored: dict | None, key: str) -> str:
    scored = scored or {}
    return _value_with_interval(scored.get(key), (scored.get("intervals95") or {}).get(key))


def _value_with_interval(value, interval) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return _f(value) + (f" ({interval[0]:.3f}–{interval[1]:.3f})" if interval else "")


def metrics_table(specs, cards) -> list[str]:
    lines = ["| task | metric | deep ensemble | one member | gradient boosting | logistic regression | majority class "
             "| chance | n test |", "|---|---|---|---|---|---|---|---|---|"]
    for spec in specs:
        card = cards[spec.id]
        base = card.get("baselines") or {}
        refs = card.get("reference_levels") or {}
        for key in dict.fromkeys(spec.key_metrics + ("balanced_accuracy", "accuracy")):
            if not isinstance((card.get("metrics") or {}).get(key), (int, float)):
                continue
            lines.append(f"| {spec.id} | {key} | {_with_interval(card.get('metrics'), key)} | "
                         f"{_with_interval(card.get('single_member_metrics'), key)} | "
                         f"{_with_interval((base.get('boosted') or {}).get('metrics'), key)} | "
                         f"{_with_interval((base.get('logistic') or {}).get('metrics'), key)} | "
                         f"{_f((refs.get('majority_class') or {}).get(key))} | {_f((refs.get('chance') or {}).get(key))} | "
                         f"{card['metrics'].get('n', '')} |")
    return lines


def sources_table(specs, cards) -> list[str]:
    lines = ["| task | source | n test | key metric (ensemble) | read in pairs |", "|---|---|---|---|---|"]
    for spec in specs:
        key = spec.goals[0][0] if spec.goals else spec.key_metrics[0]  # what the task is judged by
        paired = cards[spec.id].get("paired_read") or {}
        in_pairs = (paired.get("metrics_by_source") or {}) if paired.get("used") else {}
        for source, m in (cards[spec.id].get("metrics_by_source") or {}).items():
            cells = []
            for found in (m, in_pairs.get(source)):
                if found is None:
                    cells.append("–")
                    continue
                extra = (f"; referable AUC {_with_interval(found, 'referable_auc')}"
                         if found.get("referable_auc") is not None else "")
                cells.append(f"{key} {_with_interval(found, key)}{extra}")
            lines.append(f"| {spec.id} | {source} | {m.get('n')} | {cells[0]} | {cells[1]} |")
    return lines


def goals_table(specs, cards) -> list[str]:
    lines = ["| task | goal (held-out set) | ours (our test split, 95 % interval) | status |", "|---|---|---|---|"]
    for spec in specs:
        card = cards[spec.id]
        paired = card.get("paired_read") or {}
        reads = [("", card)] + ([(" (paired read)", paired)] if paired.get("used") else [])
        for read, scored in reads:
            for goal in scored.get("goals") or []:
                lines.append(f"| {spec.id} | {goal['metric']} ≥ {goal['goal']:.2f}{read} | "
                             f"{_with_interval(scored.get('metrics'), goal['metric'])} | "
                             f"{'met' if goal['met_on_our_test_split'] else '**below**'} |")
        for goal in card.get("source_goals") or []:
            read = "; paired read" if goal.get("read") == "paired" else ""
            lines.append(f"| {spec.id} | {goal['metric']} ≥ {goal['goal']:.2f} (second set: {goal['source']}'s test "
                         f"share{read}) | {_value_with_interval(goal['our_test_share'], goal.get('interval95'))} | "
                         f"{'met' if goal['met_on_our_test_share'] else '**below**'} |")
    return lines


def calibration_table(specs, cards) -> list[str]:
    lines = ["| task | method | accuracy | ECE | NLL | Brier |", "|---|---|---|---|---|---|"]
    for spec in specs:
        confidence = cards[spec.id].get("confidence") or {}
        for method in ("softmax", "temperature", "ensemble", "mc_dropout", "variational"):
            r = confidence.get(method)
            if isinstance(r, dict):
                lines.append(f"| {spec.id} | {method} | {_f(r['accuracy']['value'])} | {_f(r['ece'])} | {_f(r['nll'])} "
                             f"| {_f(r['brier'])} |")
    return lines


def ensemble_table(specs, cards) -> list[str]:
    lines = ["| task | test NLL: ensemble | each member (own temperature) | verdict |", "|---|---|---|---|"]
    for spec in specs:
        r = cards[spec.id].get("ensemble_vs_member")
        if r:
            verdict = r["verdict"].split(" is ", 1)[1].split(" (", 1)[0]
            lines.append(f"| {spec.id} | {r['ensemble_nll']:.4f} | " + ", ".join(f"{v:.4f}" for v in r["member_nll"])
                         + f" | {verdict} |")
    return lines


def boosted_table(specs, cards) -> list[str]:
    lines = ["| task | deep ensemble against gradient boosting (our test split) |", "|---|---|"]
    return lines + [f"| {spec.id} | {cards[spec.id]['ensemble_vs_boosted']} |" for spec in specs
                    if cards[spec.id].get("ensemble_vs_boosted")]


def fusion_table(specs, cards) -> list[str]:
    lines = ["| task | fused with gradient boosting? | weights: networks / boosted | validation NLL, cross-fitted: "
             "networks / fused | test: networks alone -> fused |", "|---|---|---|---|---|"]
    for spec in specs:
        card = cards[spec.id]
        record = card.get("fusion")
        if not record:
            continue
        crossed = record["validation"]["cross_fitted_nll"]
        alone, shipped = card.get("network_ensemble_metrics"), card.get("metrics") or {}
        test = "–" if not record["used"] or not alone else "; ".join(
            f"{k.replace('_', ' ')} {_f(alone.get(k))} -> {_f(shipped.get(k))}"
            for k in dict.fromkeys([g[0] for g in spec.goals] + [spec.key_metrics[0], "nll"])
            if isinstance(alone.get(k), (int, float)))
        lines.append(f"| {spec.id} | {'yes' if record['used'] else 'no'} | {record['network_weight']} / "
                     f"{record['companion_weight']} | {crossed['networks']:.4f} / {crossed['fused']:.4f} | {test} |")
    return lines


def conformal_table(specs, cards) -> list[str]:
    lines = ["| task | method | coverage at 0.8 / 0.9 / 0.95 | mean set size | worst class coverage at 0.9 |",
             "|---|---|---|---|---|"]
    for spec in specs:
        test = ((cards[spec.id].get("conformal") or {}).get("test")) or {}
        for method, levels in test.items():
            worst = min((v for v in levels["0.9"]["per_class_coverage"].values() if v is not None), default=None)
            lines.append(f"| {spec.id} | {method} | " + " / ".join(_f(levels[k]["coverage"]) for k in ("0.8", "0.9", "0.95"))
                         + " | " + " / ".join(_f(levels[k]["mean_set_size"], 2) for k in ("0.8", "0.9", "0.95"))
                         + f" | {_f(worst)} |")
    return lines


def gate_table(specs, cards) -> list[str]:
    lines = ["| task | in domain: own test | AUROC / share let in, per other source |", "|---|---|---|"]
    for spec in specs:
        gate = cards[spec.id].get("input_gate") or {}
        if not gate:
            continue
        rates = gate["in_domain_rate"]
        others = ", ".join(f"{k} {v:.2f} / {rates.get(k, 0):.2f}" for k, v in gate["auroc"].items())
        lines.append(f"| {spec.id} | {rates['our test split']:.2f} | {others} |")
    return lines


OOD_SCORES = (("ensemble_mutual_information", "deep ensemble: mutual information"),
              ("mutual_information", "MC dropout: mutual information"),
              ("variational_mutual_information", "variational head: mutual information"),
              ("max_softmax", "1 − max softmax"))


def ood_table(specs, cards) -> list[str]:
    """The card's ``ood_auroc``: how well each uncertainty score tells foreign images from ours."""
    lines = ["| task | score | AUROC against our test images, per foreign source |", "|---|---|---|"]
    for spec in specs:
        ood = cards[spec.id].get("ood_auroc") or {}
        for key, label in OOD_SCORES:
            if isinstance(ood.get(key), dict):
                lines.append(f"| {spec.id} | {label} | {', '.join(f'{k} {v:.2f}' for k, v in ood[key].items())} |")
    return lines


def shift_table(specs, cards) -> list[str]:
    lines = ["| task | shift (strongest) | accuracy | coverage (0.9 set) | set size | AUROC of MI / set size |",
             "|---|---|---|---|---|---|"]
    for spec in specs:
        shift = cards[spec.id].get("shift") or {}
        if not shift:
            continue
        c = shift["clean"]
        lines.append(f"| {spec.id} | none | {_f(c['accuracy'])} | {_f(c['coverage'])} | {_f(c['mean_set_size'], 2)} | – |")
        for kind, rows in shift["acquisition"].items():
            r = rows[-1]
            lines.append(f"| {spec.id} | {kind} {r['amount']} | {_f(r['accuracy'])} | {_f(r['coverage'])} | "
                         f"{_f(r['mean_set_size'], 2)} | {_f(r['auroc']['mutual_information'], 2)} / "
                         f"{_f(r['auroc']['set_size'], 2)} |")
    return lines


def run(args) -> int:
    import sys
    from pathlib import Path

    from lifelens.models import ModelError, read_card
    from lifelens.tasks import TASKS

    if args.readme and args.tasks:
        # A README table holds every task's rows: rewriting it from some cards would drop the others'.
        print("lifelens: --readme rewrites the tables of every task; leave out --tasks", file=sys.stderr)
        return 2
    wanted = [t.strip() for t in args.tasks.split(",")] if args.tasks else list(TASKS)
    unknown = [t for t in wanted if t not in TASKS]
    if unknown:
        print(f"lifelens: unknown task(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    specs = [TASKS[t] for t in wanted]
    try:
        cards = {s.id: read_card(s) for s in specs}
    except ModelError as exc:
        print(f"lifelens: {exc}", file=sys.stderr)
        return 2
    tables = [(title, table(specs, cards)) for title, table in TABLES]
    if args.readme:
        path = Path(args.readme)
        text, replaced = replace_tables(path.read_text(encoding="utf-8"), [t for _, t in tables])
        path.write_text(text, encoding="utf-8")
        print(f"{path}: {replaced} table(s) rewritten from the model cards")
        return 0
    for title, lines in tables:
        print(f"### {title}\n")
        print("\n".join(lines) + "\n")
    return 0


TABLES = (("Metrics on our test split", metrics_table), ("By source", sources_table), ("Goals", goals_table),
          ("Calibration", calibration_table), ("Ensemble against one network", ensemble_table),
          ("Ensemble against the gradient-boosted baseline", boosted_table),
          ("Fusion with the gradient-boosted model", fusion_table), ("Conformal sets", conformal_table),
          ("Input gate", gate_table), ("Foreign images and uncertainty", ood_table), ("Shift", shift_table))


def replace_tables(text: str, tables: list[list[str]]) -> tuple[str, int]:
    """``text`` (Markdown) with each table whose header row matches one of ``tables`` (lists of
    lines, header first) replaced by it whole; returns (new text, tables replaced)."""
    by_header = {t[0]: t for t in tables}
    lines, out, replaced, i = text.split("\n"), [], 0, 0
    while i < len(lines):
        table = by_header.get(lines[i])
        if table is None:
            out.append(lines[i])
            i += 1
            continue
        while i < len(lines) and lines[i].startswith("|"):
            i += 1
        out.extend(table)
        replaced += 1
    return "\n".join(out), replaced
