HELP = ("evaluate the shipped model of a task, or your own model (--model), on a labelled folder (images/ + "
        "labels.csv) and print one JSON object; --card evaluates on our own test split and writes the model card's "
        "metrics")


def add_arguments(p) -> None:
    from lifelens.commands._common import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--data", help="folder with images/ and labels.csv (default: $LIFELENS_DATA/<task>; "
                                  "required with --model, whose labels are the class names)")
    p.add_argument("--out", help="also write the JSON to this file")
    p.add_argument("--no-confidence", action="store_true", help="skip the Bayesian calibration report")
    p.add_argument("--card", action="store_true", help="evaluate on our test split + baseline, write models/<task>.json")


def run(args) -> int:
    import sys
    from pathlib import Path

    from lifelens import evaluate
    from lifelens.commands._common import FileFailures, log, task_spec
    from lifelens.models import ModelError, load_task_model

    if args.model:
        return _evaluate_model_file(args)
    spec = task_spec(args.task)
    if spec is None:
        return 2
    if args.card:
        evaluate.write_card_metrics(spec, log=log)
        return 0
    folder = Path(args.data) if args.data else spec.data_dir()
    if not (folder / "labels.csv").is_file():
        print(f"lifelens: {folder}: no labels.csv here (expected images/ and labels.csv)", file=sys.stderr)
        return 2
    try:
        task_model = load_task_model(spec)
    except ModelError as exc:
        print(f"lifelens: {exc}", file=sys.stderr)
        return 2
    failures = FileFailures()
    try:
        result = evaluate.evaluate_folder(task_model, spec, folder, on_error=failures.report,
                                          with_confidence=not args.no_confidence)
    except (ValueError, KeyError) as exc:
        print(f"lifelens: {folder / 'labels.csv'}: {exc}", file=sys.stderr)
        return 2
    _print_result(result, args.out)
    return failures.exit_code


def _evaluate_model_file(args) -> int:
    import sys
    from pathlib import Path

    from lifelens import evaluate
    from lifelens.commands._common import FileFailures, model_target

    if not args.data or not (Path(args.data) / "labels.csv").is_file():
        print("lifelens: --model needs --data, a folder with images/ and labels.csv", file=sys.stderr)
        return 2
    target = model_target(args)
    if target is None:
        return 2
    failures = FileFailures()
    try:
        result = evaluate.evaluate_opened_folder(target.load(), target.class_names(), Path(args.data),
                                                 on_error=failures.report)
    except (ValueError, KeyError) as exc:
        print(f"lifelens: {Path(args.data) / 'labels.csv'}: {exc}", file=sys.stderr)
        return 2
    _print_result(result, args.out)
    return failures.exit_code


def _print_result(result: dict, out: str | None) -> None:
    """The JSON on stdout, and in ``out`` when given."""
    import json
    from pathlib import Path

    text = json.dumps(result, indent=1, default=float)
    print(text)
    if out:
        Path(out).write_text(text)
