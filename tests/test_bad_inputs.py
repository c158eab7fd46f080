"""The bad-input corpus (tests/corpus.py, made from real images in a tmp dir): for each
file the library either refuses it with InputError and a clear message, or handles it
correctly (the test says which and checks the pixels). Then the CLIs are given the same
files: one stderr line per bad file naming it, no traceback, the good files still
processed, exit status 2.
"""
import csv
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest

import corpus
from lifelens import config
from lifelens.imaging import InputError
from lifelens.tasks import get_task


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return corpus.make_corpus(tmp_path_factory.mktemp("corpus"))


def _decode(case):
    spec = get_task(case.task)
    return spec.load_image_bytes(case.path.read_bytes(), case.name)


REFUSED = ["empty", "random", "truncated", "tiff_damaged", "bomb", "one_pixel", "strip", "dicom_no_pixels",
           "dicom_text"]


@pytest.mark.parametrize("key", REFUSED)
def test_refused_with_a_clear_message(cases, key):
    case = cases[key]
    assert case.outcome == "refused"
    with pytest.raises(InputError) as info:
        _decode(case)
    message = str(info.value)
    assert case.message in message, message
    assert f"'{case.name}'" in message  # names the file
    assert "\n" not in message and "Traceback" not in message


def test_the_whole_corpus_is_covered(cases):
    handled = {"png16", "cmyk", "rgba", "palette", "gif", "tiff_pages", "exif", "mono1", "grey_to_colour",
               "colour_to_mammo"}
    assert set(cases) == set(REFUSED) | handled
    assert {k for k, c in cases.items() if c.outcome == "refused"} == set(REFUSED)


def test_bomb_is_refused_from_its_header_without_allocating(cases):
    """Handled: refused. The 50000 x 50000 claim (7.5 GB of RGB) is refused from the header:
    decoding it would need far more memory than this test could allocate."""
    import psutil

    before = psutil.Process().memory_info().rss
    for _ in range(20):
        with pytest.raises(InputError, match="megapixels are refused"):
            _decode(cases["bomb"])
    assert psutil.Process().memory_info().rss - before < 50 * 2**20


def test_16_bit_png_keeps_its_dynamic_range(cases):
    """Handled: a 12-bit film in a 16-bit PNG (values 37..4117) is stretched, not clipped."""
    out = _decode(cases["png16"])[..., 0]
    film = corpus.film(256)
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) == len(np.unique(film))
    assert np.abs(out.astype(int) - np.round((film - film.min()) * 255.0 / (film.max() - film.min()))).max() <= 1


def test_cmyk_jpeg_is_converted_to_its_rgb(cases):
    """Handled: converted to RGB close to the photograph it was made from."""
    out = _decode(cases["cmyk"])
    assert out.shape == (256, 256, 3)
    assert np.abs(out.astype(int) - corpus.leaf()).mean() < 6.0


def test_rgba_png_is_composited_over_white(cases):
    """Handled: the opaque half is the photograph, the transparent half white."""
    out = _decode(cases["rgba"])
    photo = corpus.leaf()
    np.testing.assert_array_equal(out[:, :128], photo[:, :128])
    assert (out[:, 128:] == 255).all()


def test_palette_png_is_expanded_to_its_colours(cases):
    """Handled: every pixel is the palette colour it indexes, close to the photograph."""
    from PIL import Image

    out = _decode(cases["palette"])
    with Image.open(cases["palette"].path) as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))
    assert np.abs(out.astype(int) - corpus.leaf()).mean() < 20.0


def test_animated_gif_gives_its_first_frame(cases):
    """Handled: frame 1 is the leaf, frame 2 its negative; the leaf comes out."""
    out = _decode(cases["gif"]).astype(int)
    photo = corpus.leaf().astype(int)
    assert np.abs(out - photo).mean() < 20.0
    assert np.abs(out - (255 - photo)).mean() > 80.0


def test_multi_page_tiff_gives_its_first_page(cases):
    """Handled: page 1 is the leaf (lossless), pages 2-3 its negative and a film."""
    np.testing.assert_array_equal(_decode(cases["tiff_pages"]), corpus.leaf())


def test_exif_rotated_jpeg_comes_out_rotated(cases):
    """Handled: stored 256 wide x 160 high with Orientation 6 (rotate 90 clockwise to view):
    it comes out 160 wide x 256 high, the red stored top-left corner at the top right and
    the green stored top-right corner at the bottom right."""
    out = _decode(cases["exif"]).astype(float)
    assert out.shape == (256, 160, 3)
    np.testing.assert_allclose(out[:8, -8:].reshape(-1, 3).mean(0), corpus.RED, atol=40)
    np.testing.assert_allclose(out[-8:, -8:].reshape(-1, 3).mean(0), corpus.GREEN, atol=40)
    np.testing.assert_allclose(out[:8, :8].reshape(-1, 3).mean(0), corpus.leaf()[-8:, :8].reshape(-1, 3).mean(0), atol=40)


def test_monochrome1_dicom_comes_out_inverted(cases):
    """Handled: stored values are LOW where the tissue is; after the VOI window and the
    MONOCHROME1 inversion the tissue is bright, as on the original film."""
    out = _decode(cases["mono1"])[..., 0].astype(int)
    film = corpus.film(256).astype(int)
    assert out.shape == film.shape
    assert np.abs(out - film).max() <= 2
    tissue = film > 100
    assert out[tissue].mean() > out[~tissue].mean() + 80


def test_grey_image_for_a_colour_task_is_replicated(cases):
    """Handled: a grey film given to the leaf task comes out as RGB with three equal channels."""
    out = _decode(cases["grey_to_colour"])
    assert out.shape == (256, 256, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], corpus.film(256))


def test_colour_image_for_mammography_becomes_its_luma(cases):
    """Handled: a colour photograph given to mammography is converted to one grey channel
    (ITU-R 601 luma), the film task's input."""
    out = _decode(cases["colour_to_mammo"])
    colour = get_task("plant").load_image_bytes(cases["colour_to_mammo"].path.read_bytes())
    assert out.shape == (256, 256, 1)
    np.testing.assert_array_equal(out[..., 0], cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY))
    mammo = get_task("mammo")
    prepared = mammo.prepare_image(out)
    assert prepared.shape == (mammo.input_size, mammo.input_size, 1) and np.isfinite(prepared).all()


# ----------------------------------------------------------------------------- the CLIs

ROOT = config.PROJECT_ROOT


@lru_cache(maxsize=None)
def _cli_commands() -> frozenset:
    out = subprocess.run([sys.executable, "-m", "lifelens", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    text = out.stdout
    start = text.find("{")
    return frozenset(text[start + 1:text.find("}", start)].split(",")) if start >= 0 else frozenset()


def _need(command: str, task_id: str):
    if command not in _cli_commands():
        pytest.skip(f"`python -m lifelens {command}` does not exist yet (python -m lifelens --help)")
    if not get_task(task_id).model_path.is_file():
        pytest.skip(f"models/{task_id}.keras is not there yet")


def _run(args, tmp_path):
    # Run from a scratch folder (nothing lands in the working tree), the project importable.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "lifelens", *map(str, args)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env=env)


def _assert_reported_each_bad_file_once(result, bad: list[Path]):
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    # Nothing else talks about the files: decoders' own chatter (libtiff, libjpeg) is muted.
    chatter = [line for line in lines if not line.startswith("lifelens: ") and any(
        word in line for word in ("TIFF", ".tif", "JPEG", "Decode", "Corrupt", "PNG", "DICOM", "pydicom"))]
    assert chatter == [], chatter
    for path in bad:
        naming = [line for line in lines if path.name in line]
        assert len(naming) == 1, f"{path.name}: expected one stderr line, got {naming}\n{result.stderr}"
    assert result.returncode == 2, (result.returncode, result.stderr)


def _plant_bad_files(cases) -> list[Path]:
    return [cases[k].path for k in ("empty", "random", "truncated", "tiff_damaged", "bomb", "one_pixel", "strip")]


def test_predict_cli_reports_bad_files_and_carries_on(cases, tmp_path):
    _need("predict", "plant")
    good = corpus.good_files(tmp_path / "good", "plant", 2)
    bad = _plant_bad_files(cases) + [tmp_path / "missing.jpg"]
    files = [good[0], *bad[:4], good[1], *bad[4:]]
    result = _run(["predict", "--task", "plant", *files], tmp_path)
    _assert_reported_each_bad_file_once(result, bad)
    for path in good:
        assert path.name in result.stdout, result.stdout
    for path in bad:
        assert path.name not in result.stdout


def test_explain_cli_reports_bad_files_and_carries_on(cases, tmp_path):
    _need("explain", "plant")
    good = corpus.good_files(tmp_path / "good", "plant", 1)
    bad = [cases[k].path for k in ("empty", "truncated", "bomb")]
    out_dir = tmp_path / "out"
    result = _run(["explain", "--task", "plant", *bad[:2], *good, bad[2], "--out", out_dir], tmp_path)
    if result.returncode != 2 and "unrecognized arguments: --out" in result.stderr:
        result = _run(["explain", "--task", "plant", *bad[:2], *good, bad[2]], tmp_path)
    _assert_reported_each_bad_file_once(result, bad)
    assert good[0].name in result.stdout or (out_dir.is_dir() and any(out_dir.iterdir())), result.stdout


def test_evaluate_cli_reports_bad_files_and_carries_on(cases, tmp_path):
    _need("evaluate", "plant")
    spec = get_task("plant")
    folder = tmp_path / "held_out"
    (folder / "images").mkdir(parents=True)
    samples = spec.samples()
    picked = [samples[i] for i in np.linspace(0, len(samples) - 1, 6).astype(int)]  # several classes
    rows = []
    for i, s in enumerate(picked):
        name = f"good_{i}.jpg"
        (folder / "images" / name).write_bytes((spec.data_dir() / "images" / s.path).read_bytes())
        rows.append({"path": name, "label": spec.class_ids[s.label]})
    bad = []
    for key in ("empty", "truncated", "random"):
        target = folder / "images" / cases[key].name
        target.write_bytes(cases[key].path.read_bytes())
        rows.append({"path": target.name, "label": spec.class_ids[0]})
        bad.append(target)
    rows.append({"path": "not_there.jpg", "label": spec.class_ids[0]})
    bad.append(folder / "images" / "not_there.jpg")
    with open(folder / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    result = _run(["evaluate", "--task", "plant", "--data", folder, "--no-confidence"], tmp_path)
    _assert_reported_each_bad_file_once(result, bad)
    report = json.loads(result.stdout)
    assert report["n"] == len(picked)


def test_cli_reading_a_dicom_never_prints_patient_data(cases, tmp_path):
    """The MONOCHROME1 DICOM (and one without pixels) through `predict`: the prediction is
    printed and none of the patient-identifying values of the headers appears on stdout or
    stderr. (The plant model reads the film as grey RGB: the file handling is the same for
    every task, and it is the first model trained.)"""
    _need("predict", "plant")
    result = _run(["predict", "--task", "plant", cases["mono1"].path, cases["dicom_no_pixels"].path], tmp_path)
    assert result.returncode == 2
    assert cases["mono1"].name in result.stdout and "no pixel data" in result.stderr
    for text in corpus.PHI_STRINGS:
        assert text not in result.stdout and text not in result.stderr
