"""Image decoding: every listed format decodes to the right pixels, and every kind of
failure raises imaging.InputError with a message that says what is wrong.

The images are real (a tomato leaf and a mini-MIAS film from the shared data),
re-encoded in each format by tests/corpus.py.
"""
import io

import cv2
import numpy as np
import pytest
from PIL import Image

import corpus
from lifelens import imaging
from lifelens.imaging import InputError, decode_image


def _luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


# ----------------------------------------------------------------------------- formats

@pytest.mark.parametrize("fmt, suffix, params", [
    ("PNG", "png", {}), ("TIFF", "tif", {}), ("BMP", "bmp", {}), ("TIFF", "tiff", {"compression": "tiff_lzw"}),
])
def test_lossless_colour_formats_decode_to_the_exact_pixels(fmt, suffix, params):
    photo = corpus.leaf(96)
    out = decode_image(corpus.encode(photo, fmt, **params), name=f"leaf.{suffix}")
    assert out.dtype == np.uint8 and out.shape == (96, 96, 3)
    np.testing.assert_array_equal(out, photo)


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("PPM", "pgm"), ("TIFF", "tif"), ("BMP", "bmp")])
def test_lossless_grey_formats_decode_to_the_exact_pixels(fmt, suffix):
    grey = corpus.film(128)
    data = corpus.encode(grey, fmt)
    if suffix == "pgm":
        assert data.startswith(b"P5")  # binary PGM, as mini-MIAS ships
    out = decode_image(data, channels=1, name=f"film.{suffix}")
    assert out.shape == (128, 128, 1)
    np.testing.assert_array_equal(out[..., 0], grey)


def test_jpeg_decodes_close_to_the_source():
    photo = corpus.leaf(128)
    out = decode_image(corpus.encode(photo, "JPEG", quality=95), name="leaf.jpg")
    assert out.shape == (128, 128, 3)
    assert np.abs(out.astype(int) - photo).mean() < 3.0


def test_the_real_files_of_the_data_folder_decode():
    out = decode_image(corpus.leaf_path().read_bytes(), name=corpus.leaf_path().name)
    np.testing.assert_array_equal(out, corpus.leaf())
    film = decode_image(corpus.film_path().read_bytes(), channels=1, name="mdb001.png")
    assert film.shape == (1024, 1024, 1)
    np.testing.assert_array_equal(film[..., 0], corpus.film(None))


@pytest.mark.parametrize("suffix", ["png", "pgm", "tif"])
def test_16_bit_grey_is_stretched_from_its_own_range_not_clipped(suffix):
    """A 12-bit film in a 16-bit file: every one of its levels keeps its place in 0..255
    (a naive 16->8 bit conversion clips everything above 255 to white)."""
    grey = corpus.film(128)
    values = grey.astype(np.uint16) * 16 + 100  # 100..4180
    if suffix == "png":
        data = corpus.png16(values)
    else:
        buf = io.BytesIO()
        Image.fromarray(values).save(buf, format="PPM" if suffix == "pgm" else "TIFF")
        data = buf.getvalue()
    out = decode_image(data, channels=1, name=f"film16.{suffix}")[..., 0]
    lo, hi = values.min(), values.max()
    expected = np.floor((values - lo) / (hi - lo) * 255.0 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out, expected)
    assert out.min() == 0 and out.max() == 255
    assert len(np.unique(out)) == len(np.unique(grey))  # no two levels merged


def test_float_tiff_with_non_finite_values_is_stretched_over_its_finite_values():
    values = corpus.film(64).astype(np.float32) / 10.0
    values[0, 0], values[0, 1] = np.nan, np.inf
    buf = io.BytesIO()
    Image.fromarray(values, mode="F").save(buf, format="TIFF")
    out = decode_image(buf.getvalue(), channels=1, name="float.tif")[..., 0]
    assert out[0, 0] == 0 and out[0, 1] == 0
    assert out[1:].max() == 255 and out[1:].min() == 0


def test_gif_decodes_its_first_frame():
    photo = corpus.leaf(64)
    first = Image.fromarray(photo).convert("P")
    buf = io.BytesIO()
    first.save(buf, format="GIF", save_all=True, append_images=[Image.fromarray(255 - photo).convert("P")])
    out = decode_image(buf.getvalue(), name="leaf.gif")
    np.testing.assert_array_equal(out, np.asarray(first.convert("RGB")))


# ----------------------------------------------------------------------------- EXIF orientation

# Where the stored top-left (red) and top-right (green) corners must end up once the
# EXIF orientation is applied (TIFF/EXIF 2.3, tag 0x0112), and whether width and height swap.
ORIENTATIONS = {
    1: ("top_left", "top_right", False),
    2: ("top_right", "top_left", False),      # mirrored left-right
    3: ("bottom_right", "bottom_left", False),  # rotated 180
    4: ("bottom_left", "bottom_right", False),  # mirrored top-bottom
    5: ("top_left", "bottom_left", True),     # transposed
    6: ("top_right", "bottom_right", True),   # rotated 90 clockwise
    7: ("bottom_right", "top_right", True),   # transversed
    8: ("bottom_left", "top_left", True),     # rotated 90 counter-clockwise
}


def _corner(image: np.ndarray, where: str, patch: int = 8) -> np.ndarray:
    rows = slice(0, patch) if where.startswith("top") else slice(-patch, None)
    cols = slice(0, patch) if where.endswith("left") else slice(-patch, None)
    return image[rows, cols].reshape(-1, 3).mean(axis=0)


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_exif_orientation_is_applied(orientation):
    stored = corpus.mark_corners(corpus.leaf(96)[:64])  # 96 wide x 64 high, red TL, green TR
    out = decode_image(corpus.exif_jpeg(stored, orientation), name="phone.jpg")
    red_at, green_at, swapped = ORIENTATIONS[orientation]
    assert out.shape == ((96, 64, 3) if swapped else (64, 96, 3))
    np.testing.assert_allclose(_corner(out, red_at), corpus.RED, atol=40)
    np.testing.assert_allclose(_corner(out, green_at), corpus.GREEN, atol=40)


# ----------------------------------------------------------------------------- colour modes

def test_grey_is_replicated_for_colour_tasks_and_colour_becomes_luma_for_grey_ones():
    grey = corpus.film(64)
    rgb = decode_image(corpus.encode(grey, "PNG"), channels=3)
    assert rgb.shape == (64, 64, 3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], grey)
    photo = corpus.leaf(64)
    luma = decode_image(corpus.encode(photo, "PNG"), channels=1)
    np.testing.assert_array_equal(luma[..., 0], _luma(photo))


def test_transparency_is_composited_over_white_for_rgba_la_and_palette():
    photo = corpus.leaf(64)
    alpha = np.full((64, 64), 255, np.uint8)
    alpha[:, 32:] = 0
    out = decode_image(corpus.encode(np.dstack([photo, alpha]), "PNG"))
    np.testing.assert_array_equal(out[:, :32], photo[:, :32])
    assert (out[:, 32:] == 255).all()
    grey = corpus.film(64)
    out = decode_image(corpus.encode(np.dstack([grey, alpha]), "PNG"), channels=1)
    np.testing.assert_array_equal(out[:, :32, 0], grey[:, :32])
    assert (out[:, 32:] == 255).all()
    palette = Image.fromarray(photo).convert("P")
    palette.info["transparency"] = int(np.asarray(palette)[0, 0])
    buf = io.BytesIO()
    palette.save(buf, format="PNG", transparency=palette.info["transparency"])
    out = decode_image(buf.getvalue())
    assert (out[np.asarray(palette) == palette.info["transparency"]] == 255).all()


def test_cmyk_jpeg_comes_out_as_the_rgb_it_shows():
    photo = corpus.leaf(96)
    out = decode_image(corpus.encode(photo, "JPEG", mode="CMYK", quality=95), name="leaf_cmyk.jpg")
    assert out.shape == (96, 96, 3)
    assert np.abs(out.astype(int) - photo).mean() < 6.0


# ----------------------------------------------------------------------------- DICOM

def _window_linear(x, center, width):
    """PS3.3 C.11.2.1.2.1, written out independently of the library."""
    x = np.asarray(x, dtype=np.float64)
    out = ((x - (center - 0.5)) / (width - 1) + 0.5)
    out[x <= center - 0.5 - (width - 1) / 2] = 0.0
    out[x > center - 0.5 + (width - 1) / 2] = 1.0
    return np.floor(out * 255.0 + 0.5).astype(np.uint8)


def test_dicom_monochrome2_8_bit_decodes_to_the_exact_pixels():
    grey = corpus.film(128)
    out = decode_image(corpus.dicom_bytes(grey), channels=1, name="film.dcm")
    np.testing.assert_array_equal(out[..., 0], grey)


def test_dicom_monochrome1_is_inverted_after_its_window():
    data, grey = corpus.mono1_film_dicom(128)
    out = decode_image(data, channels=1, name="film_mono1.dcm")[..., 0]
    # tissue (bright on the film) is stored LOW in MONOCHROME1 and must come out bright again
    assert np.abs(out.astype(int) - grey).max() <= 2
    assert np.corrcoef(out.ravel(), grey.ravel())[0, 1] > 0.999


def test_dicom_window_is_applied_with_the_standard_linear_formula():
    ramp = np.tile(np.linspace(0, 4095, 256).round().astype(np.uint16), (32, 1))
    out = decode_image(corpus.dicom_bytes(ramp, bits_stored=12, window=(1000, 501)), channels=1)[..., 0]
    np.testing.assert_array_equal(out, _window_linear(ramp, 1000, 501))
    assert (out[ramp <= 750] == 0).all() and (out[ramp > 1250] == 255).all()


def test_dicom_rescale_then_window_then_sigmoid_and_linear_exact():
    ramp = np.tile(np.linspace(0, 4095, 128).round().astype(np.uint16), (16, 1))
    # Rescale first: the window is in output units (here: stored * 2 - 1000).
    out = decode_image(corpus.dicom_bytes(ramp, bits_stored=12, rescale=(2, -1000), window=(1000, 2001)), channels=1)
    np.testing.assert_array_equal(out[..., 0], _window_linear(ramp * 2.0 - 1000, 1000, 2001))
    out = decode_image(corpus.dicom_bytes(ramp, bits_stored=12, window=(2000, 1000), voi_function="LINEAR_EXACT"), channels=1)
    exact = np.clip((ramp - 2000.0) / 1000 + 0.5, 0, 1)
    np.testing.assert_array_equal(out[..., 0], np.floor(exact * 255 + 0.5).astype(np.uint8))
    out = decode_image(corpus.dicom_bytes(ramp, bits_stored=12, window=(2000, 1000), voi_function="SIGMOID"), channels=1)
    sigmoid = 1.0 / (1.0 + np.exp(-4.0 * (ramp - 2000.0) / 1000))
    np.testing.assert_array_equal(out[..., 0], np.floor(sigmoid * 255 + 0.5).astype(np.uint8))


def test_dicom_voi_lut_sequence_is_applied():
    ramp = np.tile(np.arange(0, 4096, 16, dtype=np.uint16), (16, 1))
    lut = (np.arange(4096) // 16).astype(np.uint16)  # 12-bit in, 8-bit out
    out = decode_image(corpus.dicom_bytes(ramp, bits_stored=12, voi_lut=((4096, 0, 8), lut)), channels=1)
    np.testing.assert_array_equal(out[..., 0], (ramp // 16).astype(np.uint8))


def test_dicom_without_window_maps_its_declared_bit_depth_to_256_levels():
    grey = corpus.film(64)
    stored = grey.astype(np.uint16) * 4 + 500
    data = corpus.dicom_bytes(stored, bits_stored=12)
    out = decode_image(data, channels=1)[..., 0]
    np.testing.assert_array_equal(out, np.floor(stored / 4095 * 255 + 0.5).astype(np.uint8))
    assert "12-bit range" in imaging.dicom_rendering(data)
    assert "VOI window" in imaging.dicom_rendering(corpus.dicom_bytes(stored, bits_stored=12, window=(1000, 500)))
    assert imaging.dicom_rendering(corpus.encode(corpus.leaf(32), "PNG")) is None


def test_one_film_gives_one_prediction_in_every_encoding(load_shipped):
    """The same mini-MIAS film as 8-bit PNG, 8-bit DICOM, 16-bit DICOM (values x 257) and
    inverted MONOCHROME1 DICOM: the same picture, so the same prediction within 0.02."""
    from lifelens.models import ensemble_proba
    from lifelens.tasks import get_task

    spec = get_task("mammo")
    tm = load_shipped("mammo")
    grey = corpus.film(None)
    encodings = {
        "png8": corpus.encode(grey, "PNG"),
        "dicom8": corpus.dicom_bytes(grey.astype(np.uint8)),
        "dicom16": corpus.dicom_bytes(grey.astype(np.uint16) * 257, bits_stored=16),
        "mono1": corpus.dicom_bytes((65535 - grey.astype(np.uint16) * 257).astype(np.uint16), "MONOCHROME1", bits_stored=16),
    }
    answers = {}
    for name, data in encodings.items():
        image = spec.load_image_bytes(data, f"film.{'png' if name == 'png8' else 'dcm'}")
        np.testing.assert_array_equal(image[..., 0], grey)
        answers[name] = ensemble_proba(tm, spec.prepare_image(image)[None])[0]
    for name, probs in answers.items():
        np.testing.assert_allclose(probs, answers["png8"], atol=0.02, err_msg=name)


def test_dicom_ybr_full_is_converted_to_rgb_once():
    photo = corpus.leaf(64)
    ybr = np.asarray(Image.fromarray(photo).convert("YCbCr"))  # full-range YCbCr = DICOM YBR_FULL
    out = decode_image(corpus.dicom_bytes(ybr, "YBR_FULL"), channels=3)
    assert np.abs(out.astype(int) - photo).max() <= 3


def test_dicom_rgb_and_multi_frame():
    photo = corpus.leaf(64)
    out = decode_image(corpus.dicom_bytes(photo, "RGB"), channels=3)
    np.testing.assert_array_equal(out, photo)
    grey = corpus.film(64)
    stack = np.stack([grey, 255 - grey, grey // 2])
    out = decode_image(corpus.dicom_bytes(stack, frames=3), channels=1)
    np.testing.assert_array_equal(out[..., 0], grey)  # the first frame


# ----------------------------------------------------------------------------- every failure kind

def _refused(data, message: str, name="upload.png", **kw) -> str:
    with pytest.raises(InputError) as info:
        decode_image(data, name=name, **kw)
    text = str(info.value)
    assert message in text, text
    assert "Traceback" not in text and "\n" not in text
    return text


def test_failure_kinds_each_raise_input_error_with_a_screen_message():
    photo = corpus.leaf(64)
    grey = corpus.film(64)
    assert "'upload.png'" in _refused(b"", "is empty")
    _refused("not bytes", "is not file content")
    _refused(b"\x00" * (imaging.MAX_BYTES + 1), "larger than 100 MB")
    _refused(b"just some text", "is not an image LifeLens can read")
    jpeg = corpus.encode(photo, "JPEG")
    _refused(jpeg[: len(jpeg) // 2], "damaged or truncated", name="half.jpg")
    _refused(corpus.png_header_claiming(50000, 50000), "megapixels are refused")
    _refused(corpus.png_header_claiming(7000, 7000), "7000 x 7000 pixels; images over 40 megapixels are refused")
    _refused(corpus.encode(photo[:4, :4], "PNG"), "too small to analyse")
    _refused(corpus.encode(np.zeros((10, 300, 3), np.uint8), "PNG"), "aspect ratio")
    _refused(b"plain text" * 10, "is not a DICOM file", name="scan.dcm")
    # Formats outside the allow-list are not parsed at all, even when Pillow could.
    _refused(corpus.encode(photo, "WEBP"), "is not an image LifeLens can read", name="leaf.webp")
    _refused(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n", "is not an image LifeLens can read", name="x.eps")
    # DICOM failures
    _refused(corpus.dicom_bytes(None), "no pixel data", name="a.dcm")
    dicom = corpus.dicom_bytes(grey)
    _refused(dicom[:200], "no pixel data", name="b.dcm")  # cut inside the header
    _refused(dicom[:132] + dicom[132:].replace(b"UL", b"AL", 1), "not a readable DICOM", name="b.dcm")  # bad VR
    _refused(dicom[:-1000], "pixel data cannot be decoded", name="c.dcm")
    _refused(_dicom_with_size(dicom, 60000, 60000), "megapixels are refused", name="d.dcm")
    _refused(corpus.dicom_bytes(grey, "HSV"), "photometric interpretation LifeLens cannot display", name="e.dcm")
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        decode_image(corpus.encode(photo, "PNG"), channels=2)


def _dicom_with_size(data: bytes, rows: int, columns: int) -> bytes:
    """The same file with Rows/Columns rewritten (the pixel data stays small)."""
    import pydicom
    from pydicom.filewriter import dcmwrite

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.Rows, ds.Columns = rows, columns
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def test_unconvertible_colour_mode_is_refused():
    lab = Image.fromarray(corpus.leaf(32)).convert("LAB")
    buf = io.BytesIO()
    lab.save(buf, format="TIFF")
    _refused(buf.getvalue(), "colour mode LAB", name="lab.tif")


def test_errors_name_the_file_or_say_the_file():
    assert str(pytest.raises(InputError, decode_image, b"").value) == "The file is empty."
    assert "'x y.png'" in str(pytest.raises(InputError, decode_image, b"", name="x y.png").value)


def test_colour_conversions_are_named_in_one_line():
    grey = corpus.encode(corpus.leaf(32)[..., 0], "PNG")
    rgba = corpus.encode(np.dstack([corpus.leaf(32), np.full((32, 32), 128, np.uint8)]), "PNG")
    assert "greyscale" in imaging.colour_note(grey, 3)
    assert "transparent" in imaging.colour_note(rgba, 3)
    assert imaging.colour_note(corpus.encode(corpus.leaf(32), "PNG"), 3) == ""
    assert "converted to grey" in imaging.colour_note(corpus.encode(corpus.leaf(32), "PNG"), 1)


def test_a_huge_jpeg_is_decoded_at_reduced_scale_with_the_same_picture():
    photo = cv2.resize(corpus.leaf(), (4800, 4800), interpolation=cv2.INTER_LINEAR)
    data = corpus.encode(photo, "JPEG", quality=92)
    out = decode_image(data, name="big.jpg")
    assert out.shape == (1200, 1200, 3)  # a quarter of the side, decoded in the DCT (Pillow's draft)
    small = cv2.resize(photo, (1200, 1200), interpolation=cv2.INTER_AREA)
    assert np.abs(out.astype(int) - small.astype(int)).mean() < 6
