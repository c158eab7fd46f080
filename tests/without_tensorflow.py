"""Run a module or code as on a machine without TensorFlow (a PyTorch-only GPU machine):

    python tests/without_tensorflow.py lifelens train ...
    python tests/without_tensorflow.py -c CODE ARGS...

Every import of tensorflow (or tf_keras) fails with ModuleNotFoundError, and
``importlib.util.find_spec`` answers None, as where it is not installed.
"""
import importlib.abc
import importlib.machinery
import runpy
import sys


class NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in ("tensorflow", "tf_keras"):
            return None
        if sys._getframe(1).f_code.co_name == "find_spec":  # importlib.util.find_spec: "not installed"
            return None
        return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r}", name=spec.name)

    def exec_module(self, module):
        raise ModuleNotFoundError(f"No module named {module.__name__!r}", name=module.__name__)


sys.meta_path.insert(0, NoTensorFlow())
if sys.argv[1] == "-c":
    code = sys.argv[2]
    sys.argv = ["-c", *sys.argv[3:]]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
else:
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
