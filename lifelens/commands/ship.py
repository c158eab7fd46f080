HELP = ("put trained ensemble members into models/ and measure them: copy the members from a training "
        "output folder, then evaluate --card, calibrate, inside --precompute and faithfulness (each step "
        "re-runnable; --steps picks some)")

STEPS = ("promote", "evaluate", "calibrate", "inside", "faithfulness")


def add_arguments(p) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--from", dest="source", default="runs/stage",
                   help="folder the train command wrote to with --out (default runs/stage)")
    p.add_argument("--drop", default="",
                   help="comma-separated member numbers to take out of the shipped ensemble in the promote step "
                        "(their rows and files; chosen on validation, bench/measure_members.py)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, in order: {','.join(STEPS)}")


def _defaults(command, task_id: str):
    """A command's arguments for a task with every other option at the default it declares."""
    import argparse

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    return parser.parse_args(["--task", task_id])


def run(args) -> int:
    from pathlib import Path

    from lifelens.models import ModelError, drop_members, promote_members
    from lifelens.commands._common import log, task_spec

    spec = task_spec(args.task)
    if spec is None:
        return 2
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        log(f"lifelens: unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
        return 2
    try:
        dropped = [int(k) for k in args.drop.split(",") if k.strip()]
    except ValueError:
        log(f"lifelens: --drop takes member numbers separated by commas, not {args.drop!r}")
        return 2
    if dropped and "promote" not in steps:
        log("lifelens: --drop acts in the promote step; add promote to --steps")
        return 2
    try:
        if "promote" in steps:
            for name in promote_members(spec, Path(args.source)):
                log(f"[{spec.id}] promoted {name}")
            if dropped:
                for name in drop_members(spec, dropped):
                    log(f"[{spec.id}] removed {name}")
        if "evaluate" in steps:
            from lifelens import evaluate

            evaluate.write_card_metrics(spec, log=log)
        if "calibrate" in steps:
            from lifelens.commands import calibrate

            calibrate.run(_defaults(calibrate, spec.id))
        if "inside" in steps:
            from lifelens import inside
            from lifelens.models import load_task_model

            inside.precompute(load_task_model(spec), log=log)
        if "faithfulness" in steps:
            from lifelens.commands import faithfulness

            faithfulness.run(_defaults(faithfulness, spec.id))
    except (ModelError, FileNotFoundError, ValueError) as exc:
        log(f"lifelens: {exc}")
        return 2
    return 0
