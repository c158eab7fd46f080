HELP = ("mean deletion/insertion AUC of every explanation method (and a random map) on our test split; "
        "written to the model card under `faithfulness`")


def add_arguments(p) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--images", type=int, default=12, help="test images, every class in turn")
    p.add_argument("--methods", help="comma-separated method ids (default: all)")
    p.add_argument("--no-card", action="store_true", help="print only; do not write the model card")


def run(args) -> int:
    import json
    import sys

    import numpy as np

    from lifelens import data
    from lifelens.explain.base import METHODS
    from lifelens.explain.faithfulness import faithfulness_summary
    from lifelens.models import ModelError, load_task_model, update_card
    from lifelens.tasks import get_task

    try:
        spec = get_task(args.task)
        model = load_task_model(spec).classifier
    except (KeyError, ModelError) as exc:
        print(f"lifelens: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        print(f"lifelens: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    # every class in turn, so the summary is not one class's story
    chosen = data.every_class_in_turn(data.task_splits(spec)["test"], args.images)
    images = data.load_prepared(spec, chosen).astype(np.float32)
    summary = faithfulness_summary(
        model, images, methods,
        progress=lambda m, r: print(f"{m}: deletion {r['deletion_auc']:.3f} insertion {r['insertion_auc']:.3f}",
                                    file=sys.stderr))
    if not args.no_card:
        update_card(spec, faithfulness=summary)
    print(json.dumps(summary, indent=1))
    return 0
