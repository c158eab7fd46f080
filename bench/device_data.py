"""Copy one task's training and validation images (byte for byte, with every labels.csv) into
``.devdata/`` for a GPU machine, which sees only the repository and what a call carries.

    python bench/device_data.py plant

``.devdata/`` is in .gitignore: the images stay under their own licences and never enter the
repository. Test images are not copied, so
nothing trained there can look at them. Prints the bytes copied (a device call carries 64 MiB
in all, the working tree included).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from lifelens import config, data
from lifelens.tasks import get_task

OUT = config.PROJECT_ROOT / ".devdata"


def copy_training_images(task: str, out: Path = OUT) -> int:
    spec = get_task(task)
    root = config.data_root()
    splits = data.training_splits(spec)
    copied, folders = 0, set()
    for part in ("train", "val"):
        for sample in splits[part]:
            folder = sample.source or spec.data_folder
            folders.add(folder)
            target = out / folder / "images" / sample.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / folder / "images" / sample.path, target)
            copied += target.stat().st_size
    for folder in folders:
        shutil.copy2(root / folder / "labels.csv", out / folder / "labels.csv")
    return copied


if __name__ == "__main__":
    print(f"{copy_training_images(sys.argv[1]) / 2**20:.1f} MiB copied to {OUT}")
