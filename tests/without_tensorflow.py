"""Run a module or code as on a machine without TensorFlow (a PyTorch-only GPU machine):

    python tests/without_tensorflow.py lifelens train ...
    python tests/without_tensorflow.py -c CODE ARGS...

Every import of tensorflow (or tf_keras) fails with ModuleNotFoundError, and
``importlib.util.find_spec`` answers None, as where it is not installed.
"""
import importlib.abc
import importlib.machinery
import importlib.util
import runpy
import sys

HIDDEN = ("tensorflow", "tf_keras")


def _hidden(name: str) -> bool:
    return name.split(".")[0] in HIDDEN


class NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        return importlib.machinery.ModuleSpec(name, self) if _hidden(name) else None

    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}", name=module.__name__)


_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: None if _hidden(name) else _find_spec(name, package)
sys.meta_path.insert(0, NoTensorFlow())
if sys.argv[1] == "-c":
    code = sys.argv[2]
    sys.argv = ["-c", *sys.argv[3:]]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
else:
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
