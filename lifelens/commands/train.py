HELP = ("train one deep-ensemble member of a task CNN from scratch (checkpoints every epoch in "
        "runs/<task>/member<k>/; re-run to resume)")


def add_arguments(p) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--data", help="task data folder (images/ + labels.csv); default: $LIFELENS_DATA/<task>")
    p.add_argument("--epochs", type=int)
    p.add_argument("--member", type=int, default=0, help="ensemble member (also its seed); 0 is <task>.keras")
    p.add_argument("--out", default="models")
    p.add_argument("--run-dir")
    p.add_argument("--limit", type=int, help="keep only N images per split (smoke runs)")
    p.add_argument("--mixup", type=float,
                   help="mixup alpha for this run instead of the recipe's (a recipe trial; give it again to resume)")
    p.add_argument("--faults", type=float,
                   help="share of training images shown through a random camera fault, instead of the recipe's "
                        "acquisition_faults (a recipe trial; give it again to resume)")
    p.add_argument("--init-from", help="fine-tune this trained member (same task and seed) at a quarter of the "
                                       "recipe's learning rate instead of starting from random weights")
    p.add_argument("--train-sources",
                   help="comma-separated sources whose training images train ('own' = the task's folder, else an "
                        "extra source's folder); validation is unchanged (a recipe trial; give it again to resume)")
    p.add_argument("--input-size", type=int,
                   help="train at this many pixels a side instead of the task's (a recipe trial: the weights do not "
                        "depend on it, so --init-from may start from a member trained at another size)")


def run(args) -> int:
    from pathlib import Path

    from lifelens import train
    from lifelens.tasks import get_task

    train.train(get_task(args.task), Path(args.out), data_dir=Path(args.data) if args.data else None,
                epochs=args.epochs, member=args.member, limit=args.limit,
                run_dir=Path(args.run_dir) if args.run_dir else None, mixup=args.mixup,
                faults=args.faults, input_size=args.input_size,
                train_sources=None if not args.train_sources else
                tuple("" if s.strip() == "own" else s.strip() for s in args.train_sources.split(",")),
                init_from=Path(args.init_from) if args.init_from else None)
    return 0
