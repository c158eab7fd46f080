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


def _run(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# Imports every third-party library lifelens uses once, then forks one child per module (argv[1:]):
# a child starts with no lifelens module loaded, so a cycle inside lifelens still fails, yet no child
# pays TensorFlow's import again (75 fresh interpreters took over 300 s on a loaded 2-core machine).
IMPORT_EACH_IN_A_FORK = r"""
import importlib, json, os, subprocess, sys, traceback
mods = sys.argv[1:]
listing = ("import importlib, json, sys\n"
           f"for m in {mods!r}:\n"
           "    try: importlib.import_module(m)\n"
           "    except Exception: pass\n"
           "print(json.dumps(sorted({n.split('.')[0] for n in sys.modules} - {'lifelens'})))")
done = subprocess.run([sys.executable, "-c", listing], capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr)
for name in json.loads(done.stdout.strip().splitlines()[-1]):
    try:
        importlib.import_module(name)
    except Exception:
        pass
assert not any(n.startswith("lifelens") for n in sys.modules)
bad = {}
for m in mods:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(m)
            os._exit(0)
        except BaseException:
            os.write(write, traceback.format_exc().strip().splitlines()[-1].encode())
            os._exit(1)
    os.close(write)
    with os.fdopen(read) as child:
        message = child.read()
    if os.waitpid(pid, 0)[1]:
        bad[m] = message or "the child died"
print(json.dumps(bad))
"""


def test_every_module_imports_alone():
    """Each module imported first, with no other lifelens module loaded: an import cycle would fail here."""
    assert _run(IMPORT_EACH_IN_A_FORK, *MODULES) == {}


@pytest.mark.parametrize("entry", ["from lifelens.models import load_task_model; from lifelens.tasks import get_task; "
                                   "tm = load_task_model(get_task('plant'))"])
def test_loading_a_model_imports_no_training_or_evaluation_code(entry):
    loaded = set(_run(f"import json, sys\n{entry}\nprint(json.dumps(sorted(sys.modules)))\n"))
    assert "lifelens.models" in loaded and "lifelens.bayesian_layers" in loaded
    for heavy in ("lifelens.train", "lifelens.evaluate", "lifelens.uncertainty.calibration",
                  "lifelens.uncertainty.bayes_head", "mapie", "torch"):
        assert heavy not in loaded, heavy
    # plant fuses its boosted model: its reader and its features (lifelens.baseline, numpy alone
    # at import) come with it, and nothing else of the simple models' fitting
    card = json.loads((Path(__file__).resolve().parent.parent / "models" / "plant.json").read_text())
    assert ("lifelens.fusion" in loaded) == card["fusion"]["used"]
