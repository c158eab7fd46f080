"""Does a member trained on another backend predict the same here?

On the GPU machine (PyTorch backend), after bench/device_train.sh has trained::

    python bench/device_check.py record TASK WORKDIR OUT MEMBER...

copies each finished member file (``WORKDIR/mK/``) to OUT and saves 16 validation inputs and
the member's probabilities on them (``WORKDIR/check_mK.npz``). Here (TensorFlow backend), with the member file brought back::

    python bench/device_check.py compare CHECK.npz MEMBER.keras

prints the largest difference between the two backends' probabilities and exits 1 above 1e-4.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def record(task: str, workdir: Path, out: Path, members: list[int]) -> None:
    import shutil

    import keras

    from lifelens import config, data
    from lifelens.models import load_model_file, member_file, predict_proba, split_views
    from lifelens.tasks import get_task

    spec = get_task(task)
    backend, device = keras.backend.backend(), config.compute_device()
    x = data.load_prepared(spec, data.training_splits(spec)["val"][:16])
    for m in members:
        path = workdir / f"m{m}" / member_file(spec, m)
        if not path.is_file():
            print(f"member {m}: no file (did not finish)")
            continue
        shutil.copy2(path, out / path.name)
        probs = predict_proba(split_views(load_model_file(path))[0], x.astype(np.float32))
        np.savez(workdir / f"check_m{m}.npz", inputs=x, probs=probs, backend=backend, device=device)
        print(f"member {m}: recorded on {backend} ({device})")


def compare(check: Path, model_file: Path) -> float:
    from lifelens.models import load_model_file, predict_proba, split_views

    saved = np.load(check)
    here = predict_proba(split_views(load_model_file(model_file))[0], saved["inputs"].astype(np.float32))
    gap = float(np.abs(here - saved["probs"]).max())
    print(f"{model_file.name}: trained on {saved['backend']} ({saved['device']}); largest probability "
          f"difference here {gap:.2e}; same top class {np.mean(here.argmax(1) == saved['probs'].argmax(1)):.0%}")
    return gap


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), [int(m) for m in sys.argv[5:]])
    else:
        sys.exit(0 if compare(Path(sys.argv[2]), Path(sys.argv[3])) <= 1e-4 else 1)
