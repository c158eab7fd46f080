"""The library's modules import alone, in any order, with no cycle; loading a model pulls in
no training or evaluation code (a lab that only predicts pays for nothing else)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for p in (ROOT / "lifelens").rglob("*.py") if p.name != "__main__.py"
)


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_module_imports_alone():
    """Each module imported first, in a fresh interpreter: an import cycle would fail here."""
    code = ("import importlib, json, subprocess, sys\n"
            f"mods = {MODULES!r}\n"
            "bad = {}\n"
            "for m in mods:\n"
            "    r = subprocess.run([sys.executable, '-c', f'import {m}'], capture_output=True, text=True)\n"
            "    if r.returncode: bad[m] = r.stderr.strip().splitlines()[-1]\n"
            "print(json.dumps(bad))\n")
    assert _run(code) == {}


@pytest.mark.parametrize("entry", ["from lifelens.models import load_task_model; from lifelens.tasks import get_task; "
                                   "tm = load_task_model(get_task('plant'))"])
def test_loading_a_model_imports_no_training_or_evaluation_code(entry):
    loaded = set(_run(f"import json, sys\n{entry}\nprint(json.dumps(sorted(sys.modules)))\n"))
    assert "lifelens.models" in loaded and "lifelens.bayesian_layers" in loaded
    for heavy in ("lifelens.train", "lifelens.evaluate", "lifelens.uncertainty.calibration",
                  "lifelens.uncertainty.bayes_head", "lifelens.baseline", "mapie"):
        assert heavy not in loaded, heavy
