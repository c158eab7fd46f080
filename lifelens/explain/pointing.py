"""The pointing game (Zhang et al. 2016) on mini-MIAS: does a map's maximum fall on the lesion?

For the abnormal films of OUR mammography TEST split that have a recorded lesion centre
and radius, the film is prepared as the network sees it (``imaging.prepare_film``: crop,
flip, pad, resize), the MIAS centre (y measured from the bottom-left) is mapped with
``imaging.film_point_to_prepared`` and the radius scaled by the same factor. A hit is a
map whose maximum lies inside any lesion circle of the film (plus ``tolerance`` pixels).
The explained class is "abnormal". ``chance`` is the share of the image the circles
cover (what a uniformly random point would score).

    python -m lifelens.explain.pointing [--methods gradcam,scorecam] [--no-card]
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass

import numpy as np

ABNORMAL = 1


@dataclass
class LesionFilm:
    """One test film: ``image`` float32 (S, S, 1) network input, ``circles`` [(col, row, radius)]
    in prepared-image pixels."""

    path: str
    image: np.ndarray
    circles: list



def lesion_task():
    """The task whose data records lesion positions (the pointing game needs them)."""
    from lifelens.tasks import TASKS

    return next(t for t in TASKS.values() if t.training_unit == "lesion_patches")

def lesion_films(spec=None, split: str = "test") -> list[LesionFilm]:
    """The abnormal films of ``split`` with at least one lesion centre, prepared, with their circles."""
    from lifelens import data, imaging

    spec = spec or lesion_task()
    folder = spec.data_dir()
    films = []
    for sample in data.task_splits(spec)[split]:
        if sample.label != ABNORMAL or not sample.lesions:
            continue
        film = spec.load_image(folder / "images" / sample.path)
        image, geometry = imaging.prepare_film(film, spec.input_size)
        scale = spec.input_size / geometry["side"]
        circles = []
        for x, y, radius in sample.lesions:
            col, row = imaging.film_point_to_prepared(x, y, film.shape[0], geometry, spec.input_size)
            circles.append((float(col), float(row), float(radius) * scale))
        films.append(LesionFilm(sample.path, image.astype(np.float32), circles))
    return films


def pointing_hits(maps: np.ndarray, circles: list, tolerance: float = 0.0) -> np.ndarray:
    """maps (N, H, W); circles: per map a list of (col, row, radius). -> bool (N,): max inside a circle."""
    maps = np.asarray(maps)
    hits = np.zeros(len(maps), bool)
    for i, (m, film_circles) in enumerate(zip(maps, circles)):
        row, col = np.unravel_index(int(np.argmax(m)), m.shape)
        hits[i] = any((col - c) ** 2 + (row - r) ** 2 <= (rad + tolerance) ** 2 for c, r, rad in film_circles)
    return hits


def circle_coverage(circles: list, size: int) -> float:
    """Share of a (size, size) image inside any of the circles."""
    rows, cols = np.mgrid[0:size, 0:size]
    inside = np.zeros((size, size), bool)
    for c, r, rad in circles:
        inside |= (cols - c) ** 2 + (rows - r) ** 2 <= rad ** 2
    return float(inside.mean())


def pointing_game(model, methods=None, films: list[LesionFilm] | None = None, tolerance: float = 0.0,
                  options: dict | None = None, progress=None) -> dict:
    """{method: {"hit_rate", "hits", "films", "chance", "tolerance_px"}} for the abnormal class on the test films.

    methods: ids (default: every registered method). options: {method: {option: value}}.
    """
    from lifelens.explain.base import METHODS, explain

    films = lesion_films() if films is None else films
    if not films:
        raise ValueError("No abnormal test films with a lesion centre to play the pointing game on.")
    images = np.stack([f.image for f in films])
    circles = [f.circles for f in films]
    size = images.shape[1]
    chance = float(np.mean([circle_coverage(c, size) for c in circles]))
    results = {}
    for method in methods or list(METHODS):
        maps = np.concatenate([
            explain(model, images[i:i + 8], targets=ABNORMAL, method=method, **(options or {}).get(method, {})).maps
            for i in range(0, len(images), 8)
        ])
        hits = pointing_hits(maps, circles, tolerance)
        results[method] = {"hit_rate": float(hits.mean()), "hits": int(hits.sum()), "films": len(films),
                           "chance": round(chance, 4), "tolerance_px": float(tolerance)}
        if progress is not None:
            progress(method, results[method])
    return results


def write_to_card(results: dict, spec=None) -> dict:
    """Store the results in the mammography model card under ``pointing_game``."""
    from lifelens import models

    return models.update_card(spec or lesion_task(), pointing_game=results)


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # as the lifelens CLI: no TensorFlow start-up chatter
    from lifelens.models import ModelError, load_task_model

    parser = argparse.ArgumentParser(prog="python -m lifelens.explain.pointing", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", help="comma-separated method ids (default: all)")
    parser.add_argument("--tolerance", type=float, default=0.0, help="pixels added to each lesion radius")
    parser.add_argument("--no-card", action="store_true", help="print only; do not write the model card")
    args = parser.parse_args(argv)
    spec = lesion_task()
    try:
        model = load_task_model(spec).classifier
    except ModelError as exc:
        print(f"lifelens: {exc}", file=sys.stderr)
        return 1
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    results = pointing_game(model, methods, tolerance=args.tolerance,
                            progress=lambda m, r: print(f"{m}: {r['hits']}/{r['films']} hits", file=sys.stderr))
    if not args.no_card:
        write_to_card(results, spec)
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
