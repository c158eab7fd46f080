"""Shared by the commands: reading image files with one stderr line per bad file."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from lifelens.imaging import InputError
from lifelens.tasks import TaskSpec


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


def read_images(spec: TaskSpec, paths, failures: FileFailures) -> Iterator[tuple[Path, np.ndarray, np.ndarray]]:
    """Yield (path, decoded uint8 image, prepared network input) for each readable file.

    Unreadable files (missing, not an image, damaged) are reported on stderr and skipped.
    """
    for raw in paths:
        path = Path(raw)
        try:
            data = path.read_bytes()
        except OSError as exc:
            failures.report(path, f"cannot read the file ({exc.strerror or type(exc).__name__})")
            continue
        try:
            image = spec.load_image_bytes(data, path.name)
            prepared = spec.prepare_image(image)
        except InputError as exc:
            failures.report(path, str(exc))
            continue
        yield path, image, prepared
