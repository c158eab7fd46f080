"""Run every ``bench/bench_*.py`` and print one JSON object of named figures.

Each benchmark module defines ``run() -> dict`` of figures (mostly ratios measured
within one run, since these machines are noisy). ``python bench/run.py [NAME ...]``
runs only the named modules (e.g. ``mc_dropout``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))  # the benchmarks' shared helper, bench/timing.py


def main(names: list[str]) -> int:
    figures: dict = {}
    failed = False
    for path in sorted(HERE.glob("bench_*.py")):
        if names and path.stem.removeprefix("bench_") not in names:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        t0 = time.perf_counter()
        try:
            spec.loader.exec_module(module)
            figures.update(module.run())
        except Exception:
            failed = True
            traceback.print_exc()
            figures[f"{path.stem}_error"] = traceback.format_exc(limit=1).strip().splitlines()[-1]
        print(f"{path.name}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    print(json.dumps(figures, indent=1, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
