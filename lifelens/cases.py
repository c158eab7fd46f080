"""Cases: one image on screen, from the data's galleries or an upload.

A *case* is the decoded image, the network input prepared from it, a larger display
version with the same geometry, and (for mammography films from the data) the recorded
lesion circles in display pixels.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from lifelens import data, imaging
from lifelens.tasks import Sample, TaskSpec

DISPLAY_SIZE = 384  # side in pixels of the image every overlay is drawn on


def digest(content: bytes) -> str:
    """A short hex digest of some bytes: the cache key of an image or an uploaded model."""
    return hashlib.sha256(bytes(content)).hexdigest()[:24]


# ----------------------------------------------------------------------------- data and galleries

def data_status(spec: TaskSpec) -> str | None:
    """None when the task's data folder is usable, else a plain sentence saying what is missing."""
    folder = spec.data_dir()
    if not (folder / "labels.csv").is_file():
        return (f"No data folder for this task at {folder}: the gallery of real cases is empty. "
                "Set LIFELENS_DATA to the folder that holds the task data, or upload an image.")
    return None


def gallery(spec: TaskSpec, limit: int | None = None) -> list[Sample]:
    """The cases offered on a task page: our TEST split, classes interleaved so the first
    few show every class. Raises FileNotFoundError when there is no data folder."""
    ordered = data.every_class_in_turn(data.task_splits(spec)["test"])
    if any(s.lesions for s in ordered):
        # An image with a recorded lesion circle opens the gallery (it teaches the most),
        # then normal and abnormal images alternate.
        ordered.sort(key=lambda s: (0 if s.lesions else 1))
        ordered = data.every_class_in_turn(ordered, reverse=True)
    return ordered[:limit] if limit else ordered


def sample_label(spec: TaskSpec, sample: Sample) -> str:
    """How a gallery case is named in the picker."""
    name = spec.classes[sample.label].name
    extra = " · lesion marked" if sample.lesions else ""
    return f"{name} — {sample.path}{extra}"


# ----------------------------------------------------------------------------- cases

@dataclass
class Case:
    """One image on screen.

    ``image``: uint8 (H, W, C) as decoded for the task; ``prepared``: float32 (S, S, C)
    network input in [0, 255]; ``display``: uint8 RGB (D, D, 3), the network's view at
    a readable size (same crop/flip as ``prepared``); ``marks``: lesion circles
    ((col, row, radius) in display pixels); ``label``: the true class index for gallery
    cases, else None; ``digest``: hash of the source bytes (the cache key).
    """

    task_id: str
    source: str  # "gallery", "upload" or "camera"
    name: str
    image: np.ndarray
    prepared: np.ndarray
    display: np.ndarray
    digest: str
    label: int | None = None
    marks: tuple = field(default_factory=tuple)
    note: str = ""  # how the file was rendered, when it is not plain (e.g. a DICOM window)

    def display_with_marks(self) -> np.ndarray:
        out = self.display
        for col, row, radius in self.marks:
            out = imaging.draw_circle(out, (col, row), radius)
        return out


def partner_indices(gallery: list[Sample], case: Case) -> list[int]:
    """Gallery indices of the other films of a gallery case's patient (none for an upload)."""
    from lifelens.paired_read import other_films

    index = next((i for i, s in enumerate(gallery) if s.path == case.name), None) if case.source == "gallery" else None
    return [] if index is None else other_films([s.group for s in gallery])[index]


def shown_name(case: Case, show_file_names: bool = False) -> str:
    """What the screen and the reports call a case: a gallery image's path; an upload's file
    name only when the user opted in (names such as ``DOE_JANE_1961_L_MLO.dcm`` identify
    people), else "uploaded image" with a short hash that tells two uploads apart."""
    if case.source == "gallery" or show_file_names:
        return case.name
    return f"{'camera photo' if case.source == 'camera' else 'uploaded image'} {case.digest[:8]}"


def display_image(spec: TaskSpec, framed: np.ndarray, size: int = DISPLAY_SIZE) -> tuple[np.ndarray, dict | None]:
    """uint8 RGB (size, size, 3) of what the network sees, for drawing on; ``framed`` is the
    image as :meth:`TaskSpec.framed` gives it (:attr:`TaskSpec.frame` applied, as the network
    sees it).

    Plant, skin and retina inputs are square resizes of the framed photograph (the retina's
    contrast step is left out so the eye looks like an eye); films are cropped and flipped
    exactly as :func:`imaging.prepare_film` does. Returns (display, film geometry or None).
    """
    if spec.augmentation == "film":
        film, geometry = imaging.prepare_film(framed, size)
        return imaging.as_rgb_uint8(film), geometry
    return imaging.as_rgb_uint8(imaging.resize(framed, size)), None


def lesion_marks(sample: Sample | None, film_height: int, geometry: dict | None, size: int = DISPLAY_SIZE) -> tuple:
    """MIAS lesion circles of a gallery film as ((col, row, radius), ...) in display pixels."""
    if sample is None or geometry is None or not sample.lesions:
        return ()
    marks = []
    for x, y, radius in sample.lesions:
        col, row = imaging.film_point_to_prepared(x, y, film_height, geometry, size)
        marks.append((col, row, max(3.0, radius * size / geometry["side"])))
    return tuple(marks)


def case_from_bytes(spec: TaskSpec, content: bytes, name: str, source: str = "upload",
                    sample: Sample | None = None) -> Case:
    """Decode and prepare uploaded (or gallery) bytes; raises imaging.InputError."""
    image = spec.load_image_bytes(content, name)
    framed = spec.framed(image)  # once: framing a 6000 x 4000 fundus photo takes about 90 ms
    prepared = spec.prepare_framed(framed)
    display, geometry = display_image(spec, framed)
    return Case(
        task_id=spec.id, source=source, name=name, image=image, prepared=prepared, display=display,
        digest=digest(content), label=None if sample is None else sample.label,
        marks=lesion_marks(sample, image.shape[0], geometry),
        note=imaging.dicom_rendering(content) or imaging.colour_note(content, spec.channels),
    )


def case_from_sample(spec: TaskSpec, sample: Sample) -> Case:
    """A gallery case from the data folder (with its true label and any lesion circle)."""
    path = spec.data_dir() / "images" / sample.path
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise imaging.InputError(f"The gallery image {sample.path} cannot be read ({exc.strerror}).") from None
    return case_from_bytes(spec, content, sample.path, "gallery", sample)
