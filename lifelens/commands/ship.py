HELP = ("put trained ensemble members into models/ and measure them: copy the members from a training "
        "output folder, then evaluate --card, calibrate, inside --precompute and faithfulness (each step "
        "re-runnable; --steps picks some)")

STEPS = ("promote", "evaluate", "calibrate", "inside", "faithfulness")


def add_arguments(p) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--from", dest="source", default="runs/stage",
                   help="folder the train command wrote to with --out (default runs/stage)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, in order: {','.join(STEPS)}")


def run(args) -> int:
    import sys
    from argparse import Namespace
    from pathlib import Path

    from lifelens.models import ModelError, promote_members
    from lifelens.tasks import get_task

    def log(message):
        print(message, file=sys.stderr, flush=True)

    try:
        spec = get_task(args.task)
    except KeyError as exc:
        log(f"lifelens: {exc.args[0]}")
        return 2
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        log(f"lifelens: unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
        return 2
    try:
        if "promote" in steps:
            for name in promote_members(spec, Path(args.source)):
                log(f"[{spec.id}] promoted {name}")
        if "evaluate" in steps:
            from lifelens import evaluate

            evaluate.write_card_metrics(spec, log=log)
        if "calibrate" in steps:
            from lifelens.commands import calibrate

            calibrate.run(Namespace(task=spec.id, samples=50, epochs=None, ood_per_source=40, seed=0,
                                    retrain_head=False))
        if "inside" in steps:
            from lifelens import inside
            from lifelens.models import load_task_model

            inside.precompute(load_task_model(spec), log=log)
        if "faithfulness" in steps:
            from lifelens.commands import faithfulness

            faithfulness.run(Namespace(task=spec.id, images=12, methods=None, no_card=False))
    except (ModelError, FileNotFoundError) as exc:
        log(f"lifelens: {exc}")
        return 2
    return 0
