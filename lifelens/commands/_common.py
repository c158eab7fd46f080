"""Shared by the commands: which model a command runs (a task's, or a file's) and how a
folder run is spread (serial or Ray)."""
from __future__ import annotations

import sys


def log(message: str) -> None:
    """Progress and errors go to stderr; stdout carries the command's result."""
    print(message, file=sys.stderr, flush=True)


def task_spec(task_id: str):
    """The registered :class:`~lifelens.tasks.TaskSpec`, or None after one line naming the tasks."""
    from lifelens.tasks import get_task

    try:
        return get_task(task_id)
    except KeyError as exc:
        log(f"lifelens: {exc.args[0]}")
        return None


def add_model_arguments(p) -> None:
    """--task, or --model FILE --classes a,b with the declared preprocessing."""
    from lifelens.model_formats import CHANNEL_ORDERS, FORMATS, VALUE_RANGES

    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="a task id of the registry: its shipped model (the deep ensemble)")
    which.add_argument("--model", metavar="FILE", help="your own classifier: " + ", ".join(FORMATS.values()))
    p.add_argument("--classes", help="with --model: class names in output order, comma-separated")
    p.add_argument("--input-range", default="0-255", choices=list(VALUE_RANGES),
                   help="with --model: the pixel values the network was trained on (default 0-255)")
    p.add_argument("--channel-order", default="rgb", choices=list(CHANNEL_ORDERS),
                   help="with --model: rgb (default) or bgr")
    p.add_argument("--input-size", type=int,
                   help="with --model: the image size the network takes, where the file leaves it open")


def add_run_arguments(p) -> None:
    p.add_argument("--engine", default="serial", choices=("serial", "ray"),
                   help="serial (default) or ray: the same per-batch function as a Ray Data map_batches job")
    p.add_argument("--workers", type=int, default=2, help="with --engine ray: worker actors (default 2)")
    p.add_argument("--ray-address", help="with --engine ray: a cluster's address (default: start Ray on this machine)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")


def model_target(args):
    """The :class:`~lifelens.batch_run.ModelTarget` the arguments name, opened once here so a
    bad model or task is one message before any image is read; None after printing why."""
    from lifelens.batch_run import ModelTarget
    from lifelens.models import ModelError

    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if getattr(args, "classes", None) else None
    if args.task and classes:
        print("lifelens: --classes goes with --model (a task names its own classes)", file=sys.stderr)
        return None
    target = ModelTarget(task=args.task, model=args.model, classes=classes, value_range=args.input_range,
                         channel_order=args.channel_order, input_size=args.input_size)
    try:
        target.load()
    except KeyError as exc:
        print(f"lifelens: {exc.args[0]}", file=sys.stderr)
        return None
    except (ModelError, ValueError) as exc:
        print(f"lifelens: {exc}", file=sys.stderr)
        return None
    except OSError as exc:
        print(f"lifelens: {args.model}: cannot read the model file ({exc.strerror or type(exc).__name__})", file=sys.stderr)
        return None
    return target


class FileFailures:
    """Counts failed files; ``exit_code`` is 2 if any failed (the CLIs' contract)."""

    def __init__(self) -> None:
        self.count = 0

    def report(self, path, message: str) -> None:
        self.count += 1
        print(f"lifelens: {path}: {message}", file=sys.stderr)

    @property
    def exit_code(self) -> int:
        return 2 if self.count else 0
