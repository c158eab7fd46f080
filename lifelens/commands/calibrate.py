HELP = ("fit the temperature, train and attach the variational Bayesian head, and write the confidence report "
        "and OOD AUROCs into models/<task>.json (safe to re-run; the CNN weights are never changed)")


def add_arguments(p) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--samples", type=int, default=50, help="posterior samples per Bayesian method (default 50)")
    p.add_argument("--epochs", type=int, help="epochs for the variational head (default from bayes_head.EPOCHS)")
    p.add_argument("--ood-per-source", type=int, default=40, help="images per out-of-distribution source")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain-head", action="store_true",
                   help="train and attach a new variational head even if one fitted to this CNN is attached")


def run(args) -> int:
    from lifelens.models import ModelError
    from lifelens.commands._common import log, task_spec
    from lifelens.uncertainty.calibration import calibrate, summary_lines

    spec = task_spec(args.task)
    if spec is None:
        return 2
    try:
        entries = calibrate(spec, args.samples, args.epochs, args.ood_per_source, args.seed,
                            retrain_head=args.retrain_head, log=log)
    except (ModelError, FileNotFoundError, ValueError) as exc:
        log(f"lifelens: {exc}")
        return 2
    for line in summary_lines(spec, entries):
        print(line)
    return 0
