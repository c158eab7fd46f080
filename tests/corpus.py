"""Makes the bad-input corpus (and the format samples) in a folder, from real images.

Nothing here is downloaded or committed as binary: every file is built from a real
leaf photograph and a real mammography film of the shared data, re-encoded, damaged
or wrapped (DICOM) by code. ``make_corpus(folder)`` writes the files and returns a
:class:`Case` per file saying which task it is given to and what must happen.
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lifelens import config
from lifelens.tasks import get_task

# Recognisable patient-identifying values put into every DICOM file the tests make:
# none of them may ever reach a decoded result, a message, a report or a log line.
PHI = {
    "PatientName": "Doe^Jane^Lifelensphi",
    "PatientID": "LLPHI-4711-0815",
    "PatientBirthDate": "19610203",
    "OtherPatientIDs": "LLPHI-OTHER-2323",
    "InstitutionName": "Lifelensphi Infirmary",
    "ReferringPhysicianName": "Who^Lifelensphi^Doctor",
    "AccessionNumber": "ACC-LLPHI-99231",
    "StudyDescription": "Lifelensphi screening study",
}
PHI_STRINGS = ("Lifelensphi", "LLPHI", "Doe^Jane", "19610203", "ACC-LLPHI")

MAMMOGRAPHY_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
RED = (255, 0, 0)
GREEN = (0, 255, 0)


# ----------------------------------------------------------------------------- real bases

@lru_cache(maxsize=None)
def leaf_path() -> Path:
    spec = get_task("plant")
    return spec.data_dir() / "images" / spec.samples()[0].path


@lru_cache(maxsize=None)
def _leaf() -> np.ndarray:
    return np.asarray(Image.open(leaf_path()).convert("RGB"))


def leaf(size: int | None = None) -> np.ndarray:
    """A real tomato-leaf photograph, uint8 RGB (H, W, 3), optionally resized to size x size."""
    image = _leaf()
    if size is not None:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image.copy()


@lru_cache(maxsize=None)
def film_path() -> Path:
    return config.data_root() / "mammo" / "images" / "mdb001.png"


@lru_cache(maxsize=None)
def _film() -> np.ndarray:
    return np.asarray(Image.open(film_path()).convert("L"))


def film(size: int | None = 256) -> np.ndarray:
    """A real mini-MIAS film, uint8 grey (H, W), resized to size x size (None: 1024 x 1024)."""
    image = _film()
    if size is not None:
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image.copy()


# ----------------------------------------------------------------------------- encoders

def encode(image: np.ndarray, fmt: str, mode: str | None = None, **params) -> bytes:
    """uint8/uint16 array -> bytes of ``fmt`` written by Pillow (mode converts first, e.g. "CMYK")."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    pil = Image.fromarray(array)
    if mode is not None:
        pil = pil.convert(mode)
    buf = io.BytesIO()
    pil.save(buf, format=fmt, **params)
    return buf.getvalue()


def png16(values: np.ndarray) -> bytes:
    """uint16 (H, W) -> a 16-bit greyscale PNG (written by OpenCV, which keeps all 16 bits)."""
    ok, buf = cv2.imencode(".png", np.asarray(values, dtype=np.uint16))
    assert ok
    return buf.tobytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png_header_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims width x height RGB pixels, with almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def mark_corners(image: np.ndarray, patch: int = 16) -> np.ndarray:
    """A copy with a red patch in the top-left and a green one in the top-right corner."""
    out = image.copy()
    out[:patch, :patch] = RED
    out[:patch, -patch:] = GREEN
    return out


def exif_jpeg(image: np.ndarray, orientation: int) -> bytes:
    """RGB array stored as is, with the EXIF Orientation tag (0x0112) set."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", quality=95, exif=exif.tobytes())


def dicom_bytes(pixels: np.ndarray | None, photometric: str = "MONOCHROME2", *, bits_stored: int | None = None,
                window: tuple | None = None, voi_function: str | None = None, rescale: tuple | None = None,
                voi_lut: tuple | None = None, frames: int = 1, phi: dict | None = None) -> bytes:
    """A DICOM Part-10 file (preamble + DICM + file meta, Explicit VR Little Endian).

    pixels: uint8/uint16 (H, W), (H, W, 3) for RGB/YBR_FULL, or (frames, H, W); None: no Pixel Data.
    window: (center, width); rescale: (slope, intercept); voi_lut: (descriptor, data).
    Patient-identifying tags are always set (``PHI`` by default).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filewriter import dcmwrite
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MAMMOGRAPHY_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    for key, value in (PHI if phi is None else phi).items():
        setattr(ds, key, value)
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    if pixels is not None:
        arr = np.asarray(pixels)
        colour = photometric == "RGB" or photometric.startswith("YBR")
        rows, cols = (arr.shape[1:3] if frames > 1 else arr.shape[:2])
        ds.Rows, ds.Columns = int(rows), int(cols)
        ds.SamplesPerPixel = 3 if colour else 1
        if colour:
            ds.PlanarConfiguration = 0
        if frames > 1:
            ds.NumberOfFrames = frames
        ds.PhotometricInterpretation = photometric
        allocated = 8 if arr.dtype == np.uint8 else 16
        ds.BitsAllocated = allocated
        ds.BitsStored = bits_stored or allocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = arr.astype(np.uint8 if allocated == 8 else "<u2").tobytes()
    else:
        ds.Rows, ds.Columns = 64, 64
        ds.PhotometricInterpretation = photometric
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if voi_lut is not None:
        item = Dataset()
        item.add_new(0x00283002, "US", [int(v) for v in voi_lut[0]])  # LUT Descriptor
        item.add_new(0x00283006, "US", [int(v) for v in voi_lut[1]])  # LUT Data
        ds.VOILUTSequence = Sequence([item])
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def mono1_film_dicom(size: int = 256) -> tuple[bytes, np.ndarray]:
    """A real film stored as a 12-bit MONOCHROME1 DICOM (tissue = LOW stored values, as
    MONOCHROME1 means) with a full-range window. Returns (bytes, the 8-bit film (H, W))."""
    grey = film(size)
    stored = (4095 - grey.astype(np.uint16) * 16).astype(np.uint16)
    return dicom_bytes(stored, "MONOCHROME1", bits_stored=12, window=(2048, 4096)), grey


# ----------------------------------------------------------------------------- the corpus

@dataclass(frozen=True)
class Case:
    """One corpus file. ``outcome`` is "refused" (InputError whose message contains
    ``message``) or "decoded" (the library handles it; the test checks how)."""

    path: Path
    task: str
    outcome: str
    message: str = ""

    @property
    def name(self) -> str:
        return self.path.name


def make_corpus(folder: Path) -> dict[str, Case]:
    """Write the bad-input corpus into ``folder``; returns {key: Case}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    photo = leaf()  # 256 x 256 RGB, real
    grey_film = film(256)
    real_jpeg = leaf_path().read_bytes()
    cases: dict[str, Case] = {}

    def add(key: str, name: str, content: bytes, task: str, outcome: str, message: str = "") -> None:
        path = folder / name
        path.write_bytes(content)
        cases[key] = Case(path, task, outcome, message)

    add("empty", "empty.png", b"", "plant", "refused", "is empty")
    add("random", "random.png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "plant", "refused",
        "is not an image LifeLens can read")
    add("truncated", "truncated.jpg", real_jpeg[: len(real_jpeg) * 6 // 10], "plant", "refused", "truncated")
    add("bomb", "bomb_50000x50000.png", png_header_claiming(50000, 50000), "plant", "refused", "megapixels are refused")
    stretched = (grey_film.astype(np.uint16) * 16 + 37).astype(np.uint16)  # a 12-bit film, 37..4117
    add("png16", "film_16bit.png", png16(stretched), "mammo", "decoded")
    add("cmyk", "leaf_cmyk.jpg", encode(photo, "JPEG", mode="CMYK", quality=95), "plant", "decoded")
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    rgba[:, 128:, 3] = 0  # right half fully transparent
    add("rgba", "leaf_rgba.png", encode(rgba, "PNG"), "plant", "decoded")
    add("palette", "leaf_palette.png", encode(photo, "PNG", mode="P"), "plant", "decoded")
    frames = [Image.fromarray(photo).convert("P"), Image.fromarray(255 - photo).convert("P"),
              Image.fromarray(photo[::-1]).convert("P")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add("gif", "leaf_animated.gif", buf.getvalue(), "plant", "decoded")
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="TIFF", save_all=True,
                                append_images=[Image.fromarray(255 - photo), Image.fromarray(grey_film)])
    add("tiff_pages", "leaf_3pages.tif", buf.getvalue(), "plant", "decoded")
    lzw = bytearray(encode(leaf(64), "TIFF", compression="tiff_lzw"))
    lzw[20:len(lzw) // 2] = b"\xff" * (len(lzw) // 2 - 20)  # garbage strip data, intact directory
    add("tiff_damaged", "leaf_damaged_lzw.tif", bytes(lzw), "plant", "refused", "damaged or truncated")
    add("one_pixel", "one_pixel.png", encode(photo[:1, :1], "PNG"), "plant", "refused", "too small")
    strip = cv2.resize(photo, (10000, 10), interpolation=cv2.INTER_AREA)
    add("strip", "strip_10000x10.png", encode(strip, "PNG"), "plant", "refused", "aspect ratio")
    marked = mark_corners(photo[:160])  # 256 wide x 160 high as stored
    add("exif", "leaf_exif_rotated.jpg", exif_jpeg(marked, 6), "plant", "decoded")
    add("mono1", "film_mono1.dcm", mono1_film_dicom(256)[0], "mammo", "decoded")
    add("dicom_no_pixels", "no_pixels.dcm", dicom_bytes(None), "mammo", "refused", "no pixel data")
    add("dicom_text", "not_dicom.dcm", b"Patient notes: this is a text file, not a DICOM image.\n" * 20,
        "mammo", "refused", "is not a DICOM file")
    add("grey_to_colour", "film_grey.png", encode(grey_film, "PNG"), "plant", "decoded")
    add("colour_to_mammo", "leaf_colour.jpg", encode(photo, "JPEG", quality=95), "mammo", "decoded")
    return cases


def good_files(folder: Path, task_id: str, n: int = 2) -> list[Path]:
    """Copies of ``n`` real images of a task (readable files for the CLI tests)."""
    spec = get_task(task_id)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, sample in enumerate(spec.samples()[:n]):
        target = folder / f"good_{i}{Path(sample.path).suffix.lower()}"
        target.write_bytes((spec.data_dir() / "images" / sample.path).read_bytes())
        out.append(target)
    return out
