"""Fuzzing the decoder: arbitrary bytes and mutated real images (2 x 1,000 examples).

The contract: ``decode_image`` returns a valid uint8 (H, W, channels) array or raises
InputError with a one-line message; nothing else ever escapes, and no single call takes
2 s or more (the one time bound that is part of a contract: a crafted upload must not
stall the app). The seeds are small re-encodings of a real leaf photograph and a real
mammography film, so every example stays cheap.
"""
import io
import os
import time
from functools import lru_cache

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import corpus
from lifelens import imaging
from lifelens.imaging import InputError, decode_image

EXAMPLES = int(os.environ.get("LIFELENS_FUZZ_EXAMPLES", 1000))  # raise it for a longer campaign
SECONDS_PER_CALL = 2.0
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def decode_within_contract(data: bytes, channels: int, name) -> np.ndarray | None:
    start = time.perf_counter()
    try:
        out = decode_image(data, channels=channels, name=name)
    except InputError as exc:
        message = str(exc)
        assert message and "\n" not in message
        out = None
    elapsed = time.perf_counter() - start
    assert elapsed < SECONDS_PER_CALL, f"one decode took {elapsed:.2f} s"
    if out is not None:
        assert isinstance(out, np.ndarray) and out.dtype == np.uint8
        assert out.ndim == 3 and out.shape[-1] == channels
        assert min(out.shape[:2]) >= imaging.MIN_SIDE and out.shape[0] * out.shape[1] <= imaging.MAX_PIXELS
    return out


@lru_cache(maxsize=None)
def seeds() -> dict[str, bytes]:
    """Small valid files of every readable format, made from real images."""
    photo = corpus.leaf(24)
    grey = corpus.film(24)
    out = {
        "jpeg": corpus.encode(photo, "JPEG", quality=80),
        "jpeg_progressive": corpus.encode(photo, "JPEG", quality=80, progressive=True),
        "exif_jpeg": corpus.exif_jpeg(photo, 6),
        "cmyk_jpeg": corpus.encode(photo, "JPEG", mode="CMYK"),
        "png": corpus.encode(photo, "PNG"),
        "png_grey": corpus.encode(grey, "PNG"),
        "png16": corpus.png16(grey.astype(np.uint16) * 16),
        "png_palette": corpus.encode(photo, "PNG", mode="P"),
        "png_rgba": corpus.encode(np.dstack([photo, grey]), "PNG"),
        "tiff": corpus.encode(photo, "TIFF"),
        "tiff_lzw": corpus.encode(grey, "TIFF", compression="tiff_lzw"),
        "bmp": corpus.encode(photo, "BMP"),
        "pgm": corpus.encode(grey, "PPM"),
        "gif": corpus.encode(photo, "GIF"),
        "dicom_mono1": corpus.dicom_bytes((4095 - grey.astype(np.uint16) * 16), "MONOCHROME1", bits_stored=12,
                                          window=(2048, 4096)),
        "dicom_rgb": corpus.dicom_bytes(photo, "RGB"),
    }
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="TIFF", save_all=True, append_images=[Image.fromarray(grey)])
    out["tiff_pages"] = buf.getvalue()
    return out


def test_seeds_are_valid():
    for key, data in seeds().items():
        assert decode_within_contract(data, 3, key) is not None, key


MAGIC = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM", b"P5\n", b"GIF89a",
         b"\x00" * 128 + b"DICM"]
NAMES = st.sampled_from([None, "upload.png", "photo.jpg", "scan.dcm", "film.pgm"])


@FUZZ
@given(prefix=st.sampled_from(MAGIC), body=st.binary(max_size=2048), channels=st.sampled_from([1, 3]), name=NAMES)
def test_arbitrary_bytes_only_ever_raise_input_error(prefix, body, channels, name):
    decode_within_contract(prefix + body, channels, name)


# A mutation: (kind, position, value). Positions are biased to the first bytes, where the
# headers are; large positions wrap around the file length.
MUTATION = st.tuples(
    st.sampled_from(["set", "cut", "insert", "delete", "repeat"]),
    st.one_of(st.integers(0, 400), st.integers(0, 1 << 16)),
    st.integers(0, 255),
)


def mutate(data: bytes, mutations) -> bytes:
    out = bytearray(data)
    for kind, position, value in mutations:
        if not out:
            break
        i = position % len(out)
        if kind == "set":
            out[i] = value
        elif kind == "cut":
            del out[i:]
        elif kind == "insert":
            out[i:i] = bytes([value]) * (1 + value % 16)
        elif kind == "delete":
            del out[i:i + 1 + value % 16]
        else:  # repeat a stretch: duplicated chunks, markers and frames
            out[i:i] = out[i:i + 1 + value]
    return bytes(out)


@FUZZ
@given(seed=st.sampled_from(sorted(seeds())), mutations=st.lists(MUTATION, min_size=1, max_size=6),
       channels=st.sampled_from([1, 3]))
def test_mutated_real_images_only_ever_raise_input_error(seed, mutations, channels):
    name = "scan.dcm" if seed.startswith("dicom") else f"upload.{seed.split('_')[0]}"
    decode_within_contract(mutate(seeds()[seed], mutations), channels, name)
