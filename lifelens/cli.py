"""``python -m lifelens <command>``: train, evaluate, predict, calibrate, explain, faithfulness, inside.

Each command is a module in :mod:`lifelens.commands` with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when
their command runs, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMANDS = ("train", "evaluate", "predict", "calibrate", "explain", "faithfulness", "inside", "ship", "summary")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lifelens", description="LifeLens command line.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"lifelens.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"lifelens.commands.{name}":
                raise
            continue  # a command not written yet
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
