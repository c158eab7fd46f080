"""Bytes in, validated arrays out; resizing, film preparation and heatmap overlays.

Every failure to read an image raises :class:`InputError`, whose message is fit for
the screen. Decoded images are ``uint8`` arrays of shape (H, W, C), C = 1 or 3.

Hardening (see tests/test_bad_inputs.py and tests/test_fuzz.py): only the formats
listed in :data:`PILLOW_FORMATS` and DICOM are parsed; the pixel size is checked from
the header before any pixel is decoded; every decoder failure becomes an InputError;
nothing read from a DICOM header except the pixel-rendering tags is used, so patient
data never reaches a result, a message or a warning.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 40_000_000  # ~6300 x 6300; larger inputs are refused before full decoding
MIN_SIDE = 8
MAX_ASPECT = 20.0
MAX_BYTES = 100 * 1024 * 1024

# Pillow can parse ~40 formats (some, like EPS, hand the file to external programs);
# only these are ever tried. PPM covers PGM; JPEG covers multi-picture (MPO) camera files.
PILLOW_FORMATS = ("JPEG", "PNG", "TIFF", "BMP", "PPM", "GIF")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
DRAFT_SIDE = 1024  # big JPEGs are decoded at reduced scale, never below this side
DICOM_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR")  # and YBR_*, converted to RGB
READABLE = "JPEG, PNG, TIFF, BMP, PGM or DICOM"

# Only the tags needed to render pixels are ever read from a DICOM file: names, IDs,
# dates and the like are never copied into anything LifeLens returns or shows.
DICOM_PIXEL_TAGS = (
    "PhotometricInterpretation", "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence",
    "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "BitsStored", "PixelRepresentation",
    "Rows", "Columns", "SamplesPerPixel", "NumberOfFrames",
)


class InputError(ValueError):
    """An image that cannot be used, with a message fit for the screen."""


# ``warnings.catch_warnings`` changes process-wide state, so the few places that need it
# hold one lock: concurrent decodes must not switch each other's warning filters.
_WARNINGS_LOCK = threading.RLock()


@contextlib.contextmanager
def _quiet():
    """Silence library warnings: Pillow's bomb warning (our own, lower limit is checked
    right after), its damaged-EXIF/TIFF-tag warnings, and pydicom's, whose texts can quote
    header values such as a patient name."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _mute_libtiff() -> None:
    """libtiff (which Pillow uses for compressed TIFFs) prints its warnings and errors
    straight to stderr; Pillow raises the errors as exceptions anyway, so the printing is
    switched off (the CLIs promise one stderr line per bad file). Best effort: if the
    library cannot be found, nothing changes."""
    import ctypes
    import ctypes.util
    import glob
    import os

    import PIL

    here = os.path.dirname(PIL.__file__)
    bundled = glob.glob(os.path.join(here, os.pardir, "pillow.libs", "libtiff*")) + glob.glob(
        os.path.join(here, ".dylibs", "libtiff*"))
    for path in bundled or [ctypes.util.find_library("tiff")]:  # wheels bundle it; else the system's
        if not path:
            continue
        try:
            library = ctypes.CDLL(path)
            for name in ("TIFFSetWarningHandler", "TIFFSetErrorHandler"):
                setter = getattr(library, name)
                setter.restype, setter.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
                setter(None)
            return
        except (OSError, AttributeError):
            continue


_mute_libtiff()


def _is_dicom(data: bytes) -> bool:
    return len(data) >= 132 and data[128:132] == b"DICM"


def decode_image(data: bytes, *, channels: int = 3, name: str | None = None) -> np.ndarray:
    """Decode JPEG, PNG (8/16 bit), TIFF, BMP, PGM/PPM, GIF or DICOM bytes.

    Returns a uint8 array (H, W, channels); colour is converted to grey with ITU-R 601
    luma, grey is replicated to RGB, transparency is composited over white. EXIF
    orientation is applied; 16-bit and float images are stretched from their own
    minimum..maximum to 0..255; DICOM gets its modality LUT, its VOI window/LUT and
    MONOCHROME1 inversion. Multi-page files give their first page.
    Raises InputError (a ValueError) for anything that cannot be used.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, not {channels}")
    label = f"'{name}'" if name else "The file"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"{label} is not file content.")
    data = bytes(data)
    if len(data) == 0:
        raise InputError(f"{label} is empty.")
    if len(data) > MAX_BYTES:
        raise InputError(f"{label} is larger than {MAX_BYTES // 2**20} MB.")
    if _is_dicom(data):
        array = _decode_dicom(data, label)
    else:
        array = _decode_pillow(data, label, named_dicom=bool(name) and name.lower().endswith(DICOM_SUFFIXES))
    return to_channels(array, channels)


def _check_size(width: int, height: int, label: str) -> None:
    if width * height > MAX_PIXELS:
        raise InputError(
            f"{label} is {width} x {height} pixels; images over {MAX_PIXELS / 1e6:.0f} megapixels are refused."
        )
    if min(width, height) < MIN_SIDE:
        raise InputError(f"{label} is {width} x {height} pixels, too small to analyse (at least {MIN_SIDE} px a side).")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise InputError(f"{label} is {width} x {height} pixels; an aspect ratio over {MAX_ASPECT:.0f}:1 is not a photograph or film LifeLens can read.")


def _decode_pillow(data: bytes, label: str, named_dicom: bool = False) -> np.ndarray:
    try:
        with _quiet():
            image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except UnidentifiedImageError:
        if named_dicom:
            raise InputError(f"{label} is not a DICOM file (no DICM marker) nor another image LifeLens can read.") from None
        raise InputError(f"{label} is not an image LifeLens can read ({READABLE}).") from None
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" (its header claims {int(claimed.group(1)) / 1e6:,.0f} megapixels)" if claimed else ""
        raise InputError(f"{label} is too large{size}; images over {MAX_PIXELS / 1e6:.0f} megapixels are refused.") from None
    except Exception as exc:  # a damaged header can make any parser raise anything
        raise InputError(f"{label} is damaged and cannot be decoded ({type(exc).__name__}).") from None
    try:
        # Image.open reads only the header: the size is known before any pixel is decoded.
        _check_size(image.width, image.height, label)
        if image.format == "JPEG" and max(image.size) > DRAFT_SIDE * 2:
            # Decode a big JPEG at 1/2, 1/4 or 1/8 scale in the DCT (Pillow's draft): a 6000 x 6000
            # photo then takes a fraction of the time, and every view shows at most 512 px anyway.
            image.draft(image.mode, (DRAFT_SIDE, DRAFT_SIDE))
        with _quiet():  # damaged EXIF or TIFF tags warn; the CLIs print one line per bad file
            # Opening leaves multi-page TIFFs and animated GIFs on their first frame, which is used.
            image = ImageOps.exif_transpose(image)
            return _pil_to_array(image, label)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"{label} is too large; images over {MAX_PIXELS / 1e6:.0f} megapixels are refused.") from None
    except Exception as exc:  # truncated or corrupt data: OSError, SyntaxError, struct.error, ...
        raise InputError(f"{label} is damaged or truncated and cannot be decoded ({type(exc).__name__}).") from None


def _pil_to_array(image: Image.Image, label: str = "The image") -> np.ndarray:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        return _to_uint8(np.asarray(image.convert("I")).astype(np.float64))[..., None]
    if mode == "F":
        return _to_uint8(np.asarray(image).astype(np.float64))[..., None]
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"), dtype=np.uint8)[..., None]
    if mode in ("LA", "La"):
        return _flatten_alpha(np.asarray(image.convert("RGBA")))[..., :1]  # grey survives the blend
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        return _flatten_alpha(np.asarray(image.convert("RGBA")))
    if mode in ("RGB", "RGBX", "P", "CMYK", "YCbCr"):
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    raise InputError(f"{label} uses the colour mode {mode}, which LifeLens cannot convert; save it as RGB or greyscale.")


def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Composite over white, as a viewer would show it."""
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def _to_uint8(values: np.ndarray) -> np.ndarray:
    """Stretch the finite values' range linearly to 0..255 (16-bit, float and unwindowed DICOM data).

    Non-finite values become 0; a constant image becomes all 0.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    lo, hi = values[finite].min(), values[finite].max()
    if hi <= lo:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = np.where(finite, (values - lo) / (hi - lo) * 255.0 + 0.5, 0.0)
    return np.clip(scaled, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- DICOM

def colour_note(data: bytes, channels: int) -> str:
    """One line on how an upload's colours were converted for a task of ``channels``, or ""
    when nothing was (reads only the header)."""
    try:
        with _quiet():
            header = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except Exception:
        return ""
    mode, notes = header.mode, []
    if channels == 3 and (mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16")):
        notes.append("a greyscale image: its grey copied into red, green and blue (the model was trained on colour)")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in header.info):
        notes.append("transparent pixels shown over white")
    if channels == 1 and mode in ("RGB", "RGBA", "CMYK", "YCbCr", "P"):
        notes.append("a colour image converted to grey (the model reads grey films)")
    return "; ".join(notes)


def _decode_dicom(data: bytes, label: str) -> np.ndarray:
    """DICOM bytes -> uint8 (H, W, 1) or (H, W, 3). Only DICOM_PIXEL_TAGS are consulted,
    and no exception or warning text from pydicom (which may quote header values) is passed on."""
    try:
        import pydicom
        from pydicom.pixels import apply_color_lut, pixel_array
    except ImportError:  # pragma: no cover - pydicom is a requirement
        raise InputError("DICOM support is not installed.") from None
    # pydicom logs (as well as warns) what it finds odd, quoting values such as a patient
    # name: those records must not reach LifeLens's log (the CLIs print INFO to stderr).
    logging.getLogger("pydicom").propagate = False
    with _quiet():
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=False)
        except Exception:
            raise InputError(f"{label} is not a readable DICOM file (its header is damaged).") from None
        if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise InputError(f"{label} is a DICOM file without an image (no pixel data).")
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
        except Exception:
            raise InputError(f"{label} is a DICOM file without a valid image size (Rows/Columns).") from None
        _check_size(cols, rows, label)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        if photometric not in DICOM_PHOTOMETRICS and not photometric.startswith("YBR"):
            # The header's text is not repeated: only the pixel-rendering meaning matters.
            raise InputError(f"{label} uses a DICOM photometric interpretation LifeLens cannot display "
                             "(it reads MONOCHROME1/2, RGB, YBR and PALETTE COLOR).")
        try:
            pixels = pixel_array(ds, index=0)  # the first frame only; YBR is converted to RGB
            if photometric == "PALETTE COLOR":
                pixels = apply_color_lut(pixels, ds)
        except Exception:
            raise InputError(f"{label}: the DICOM pixel data cannot be decoded (damaged or an unsupported compression).") from None
        if photometric in ("MONOCHROME1", "MONOCHROME2"):
            if pixels.ndim != 2:
                raise InputError(f"{label}: the DICOM pixel data does not match its greyscale header.")
            return _dicom_grey(pixels, ds, photometric == "MONOCHROME1")[..., None]
        if pixels.ndim != 3 or pixels.shape[-1] < 3:
            raise InputError(f"{label}: the DICOM pixel data does not match its colour header.")
        return pixels[..., :3] if pixels.dtype == np.uint8 else _to_uint8(pixels[..., :3])


def _dicom_grey(pixels: np.ndarray, ds, invert: bool) -> np.ndarray:
    """Stored values -> modality LUT -> VOI window (or LUT) -> uint8, MONOCHROME1 inverted
    last (it means low values are displayed bright). Without a usable VOI, the whole range
    the header allows (BitsStored, through the modality LUT) maps to 0..255: the same film
    stored at 8 or 16 bits then gives the same picture, where stretching each file over its
    own minimum and maximum would not (only float data with no bit depth is stretched)."""
    from pydicom.pixels import apply_modality_lut

    try:
        values = apply_modality_lut(pixels, ds)
    except Exception:
        values = pixels  # a malformed modality LUT: the stored values are still an image
    shown = _dicom_window(np.asarray(values, dtype=np.float64), ds)
    if shown is None and ds.get("VOILUTSequence"):
        shown = _dicom_voi_lut(np.asarray(values, dtype=np.float64), ds)
    if shown is None:
        shown = _dicom_full_range(np.asarray(values, dtype=np.float64), pixels, ds)
    if shown is None:
        image = _to_uint8(values)
    else:
        image = np.clip(np.nan_to_num(shown) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return 255 - image if invert else image


def _dicom_full_range(values: np.ndarray, stored: np.ndarray, ds) -> np.ndarray | None:
    """``values`` scaled to [0, 1] over the stored bit depth's range, carried through the
    rescale slope and intercept; None for non-integer data or a header without a bit depth."""
    if not np.issubdtype(np.asarray(stored).dtype, np.integer):
        return None
    try:
        bits = int(ds.get("BitsStored") or np.asarray(stored).dtype.itemsize * 8)
        signed = int(ds.get("PixelRepresentation", 0)) == 1
        slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return None
    if not 1 <= bits <= 32:
        return None
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    if ends[1] <= ends[0]:
        return None
    return np.clip((values - ends[0]) / (ends[1] - ends[0]), 0.0, 1.0)


def dicom_rendering(data: bytes) -> str | None:
    """How :func:`decode_image` turned a DICOM file's values into grey levels, in one
    sentence for the screen (None for other formats). Reads only the rendering tags."""
    if not _is_dicom(data):
        return None
    try:
        import pydicom

        with _quiet():
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=list(DICOM_PIXEL_TAGS))
    except Exception:
        return None
    if "WindowCenter" in ds and "WindowWidth" in ds:
        how = "its own VOI window (WindowCenter/WindowWidth)"
    elif ds.get("VOILUTSequence"):
        how = "its own VOI lookup table"
    else:
        how = (f"no window in the file: the full {ds.get('BitsStored', '?')}-bit range the header declares "
               "mapped to 256 grey levels")
    inverted = " and inverted (MONOCHROME1)" if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" else ""
    return f"DICOM rendered with {how}{inverted}."


def _dicom_window(values: np.ndarray, ds) -> np.ndarray | None:
    """pydicom's ``apply_windowing`` (the first VOI window, PS3.3 C.11.2.1.2) on ``values``,
    scaled to [0, 1], or None when the dataset has no usable window."""
    from pydicom.pixels import apply_windowing

    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            shown = apply_windowing(values, ds)
            # The output range pydicom maps to (from the bit depth and rescale), read back from
            # the two extremes rather than computed again here.
            low, high = apply_windowing(np.array([-1e300, 1e300]), ds)
    except Exception:
        return None
    if not (np.isfinite(low) and np.isfinite(high)) or high == low or not np.all(np.isfinite(shown)):
        return None
    return np.clip((shown - low) / (high - low), 0.0, 1.0)


def _dicom_voi_lut(values: np.ndarray, ds) -> np.ndarray | None:
    """The first VOI LUT of ``ds`` applied to ``values``, in [0, 1] (PS3.3 C.11.2.1.1), or None.

    Written out here because pydicom 3.0's apply_voi indexes an 8-bit LUT with 8-bit
    integers, which wraps for LUTs longer than 256 entries."""
    try:
        item = ds.VOILUTSequence[0]
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
        raw = item.LUTData
        if isinstance(raw, (bytes, bytearray)):  # VR OW: 16-bit words in the file's byte order
            little = getattr(ds, "original_encoding", (None, True))[1] is not False
            lut = np.frombuffer(bytes(raw), dtype="<u2" if little else ">u2")
        else:
            lut = np.atleast_1d(np.asarray(raw, dtype=np.float64))
    except Exception:
        return None
    lut = np.asarray(lut[: entries or 65536], dtype=np.float64)
    if lut.size == 0 or not 8 <= bits <= 16:
        return None
    index = np.clip(np.nan_to_num(np.rint(values)) - first, 0, lut.size - 1).astype(np.int64)
    return np.clip(lut[index] / float(2 ** bits - 1), 0.0, 1.0)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (H, W[, C]) -> (H, W, channels), converting grey <-> RGB as needed."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] == 4:
        image = _flatten_alpha(image)
    if channels == image.shape[-1]:
        return np.ascontiguousarray(image, dtype=np.uint8)
    if channels == 1:
        return cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2GRAY)[..., None]
    if channels == 3:
        return np.repeat(image[..., :1], 3, axis=-1).astype(np.uint8)
    raise ValueError(f"channels must be 1 or 3, not {channels}")


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Square resize (H, W, C) -> (size, size, C); area interpolation when shrinking."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(image, (size, size), interpolation=interp)
    return out.reshape(size, size, image.shape[-1]) if image.ndim == 3 else out


def resize_longest(image: np.ndarray, side: int) -> np.ndarray:
    """(H, W, C) -> the same aspect with the longer side ``side`` (area interpolation)."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return out.reshape(size[1], size[0], image.shape[-1]) if image.ndim == 3 else out


def shades_of_grey(image: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Colour constancy (Finlayson & Trezzi 2004): scale each channel so the image's
    Minkowski p-norm colour becomes neutral grey. Dermoscopes differ in light and white
    balance; this removes that cast (Barata et al. 2015). uint8/float (H, W, 3) -> float32 [0, 255].
    """
    img = image.astype(np.float32)
    norm = np.power(np.mean(np.power(img.reshape(-1, img.shape[-1]), power), axis=0), 1.0 / power)
    gain = np.sqrt(np.sum(norm ** 2) / 3.0) / np.maximum(norm, 1e-6)
    return np.clip(img * gain, 0, 255)


def local_contrast(image: np.ndarray, sigma_fraction: float = 1 / 30, max_detail_std: float | None = None) -> np.ndarray:
    """Subtract the local average colour (Gaussian blur), amplify the detail 4x and re-centre
    it on grey (Graham 2015).

    ``max_detail_std``: where the detail (image minus blur) inside the fundus has a larger
    standard deviation than this, it is scaled down to it before the 4x gain, so a photo
    already contrast-enhanced upstream is not enhanced twice (photos below it are unchanged).
    """
    img = image.astype(np.float32)
    sigma = max(1.0, image.shape[0] * sigma_fraction)
    detail = img - cv2.GaussianBlur(img, (0, 0), sigma)
    mask = _fundus_mask(image)
    gain = 4.0
    if max_detail_std is not None and mask.any():
        gain *= min(1.0, max_detail_std / max(float(detail[mask > 0].std()), 1e-6))
    out = gain * detail + 128.0
    out = out * mask[..., None] + 128.0 * (1 - mask[..., None])
    return np.clip(out, 0, 255).reshape(image.shape)


def _fundus_mask(image: np.ndarray) -> np.ndarray:
    grey = image.mean(axis=-1) if image.ndim == 3 else image
    return (grey > 10).astype(np.float32)


def fundus_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of the fundus, the largest non-black region of a (H, W[, C]) photo,
    or None where there is no clear one (under a tenth of the photo, or none at all).

    Found on a copy at most 256 px wide, so a burnt-in caption in a corner or a few bright
    pixels in the black surround do not count, whatever the photo's size.
    """
    h, w = image.shape[:2]
    scale = min(1.0, 256.0 / max(h, w))
    small = cv2.resize(np.ascontiguousarray(image), (max(1, round(w * scale)), max(1, round(h * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1 else np.ascontiguousarray(image)
    mask = _fundus_mask(small.reshape(small.shape[0], small.shape[1], -1)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh, area = stats[largest]
    if area < 0.1 * mask.size:
        return None
    return (int(np.floor(y / scale)), min(h, int(np.ceil((y + bh) / scale))),
            int(np.floor(x / scale)), min(w, int(np.ceil((x + bw) / scale))))


def shrink_into_frame(photo: np.ndarray, share_x: float, share_y: float) -> np.ndarray:
    """The (H, W[, C]) photo scaled by (share_x, share_y) <= 1 and centred on a black frame
    of its own size: the same eye as a camera with a wider field frames it (what
    :func:`frame_fundus` undoes)."""
    h, w = photo.shape[:2]
    small = cv2.resize(photo, (round(w * share_x), round(h * share_y)), interpolation=cv2.INTER_AREA)
    out = np.zeros_like(photo)
    y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small.reshape(small.shape[0], small.shape[1], *photo.shape[2:])
    return out


def frame_fundus(image: np.ndarray) -> np.ndarray:
    """Crop or pad to a square centred on the fundus, its side the fundus's larger extent
    (black outside), so every camera's photo is framed as most training photos are.

    (H, W[, C]) uint8 -> (S, S[, C]) uint8. Cameras frame the eye differently: some leave a
    wide black surround, some clip the circle at the top and bottom. A network trained on photos where the fundus fills the
    frame misreads a photo where it fills 80 % of it (the shipped retina ensemble's quadratic
    kappa on APTOS validation fell from 0.86 to 0.66, bench/measure_fundus_framing.py), so
    the photo is brought to that framing first. A photo already framed so comes back the same
    size and almost unchanged (re-centred); one with no clear fundus comes back unchanged.
    """
    box = fundus_box(image)
    if box is None:
        return image
    y0, y1, x0, x1 = box
    side = max(y1 - y0, x1 - x0)
    top, left = (y0 + y1 - side) // 2, (x0 + x1 - side) // 2
    square = np.zeros((side, side) + image.shape[2:], dtype=image.dtype)
    sy0, sx0 = max(top, 0), max(left, 0)
    sy1, sx1 = min(top + side, image.shape[0]), min(left + side, image.shape[1])
    square[sy0 - top:sy1 - top, sx0 - left:sx1 - left] = image[sy0:sy1, sx0:sx1]
    return square


def film_geometry(film: np.ndarray) -> dict:
    """Where the breast is on a (H, W[, 1]) film and whether it must be flipped to face left.

    Returns ``{"box": (y0, y1, x0, x1), "flip": bool, "side": int}`` where ``side`` is the
    square the crop is padded to. Film-label tape and scanner edges are left out by keeping
    the largest bright connected region.
    """
    grey = film[..., 0] if film.ndim == 3 else film
    h, w = grey.shape
    small_scale = 256.0 / max(h, w)
    small = cv2.resize(grey, (max(1, int(w * small_scale)), max(1, int(h * small_scale))), interpolation=cv2.INTER_AREA)
    _, mask = cv2.threshold(small, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count <= 1:
        box = (0, h, 0, w)
    else:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        x, y, bw, bh = stats[biggest, :4]
        pad = 4
        box = (
            max(0, int((y - pad) / small_scale)), min(h, int((y + bh + pad) / small_scale)),
            max(0, int((x - pad) / small_scale)), min(w, int((x + bw + pad) / small_scale)),
        )
    y0, y1, x0, x1 = box
    crop = grey[y0:y1, x0:x1].astype(np.float64)
    half = crop.shape[1] // 2
    flip = bool(crop[:, half:].sum() > crop[:, :half].sum())  # the chest wall goes on the left
    return {"box": box, "flip": flip, "side": max(y1 - y0, x1 - x0)}


def prepare_film(film: np.ndarray, size: int) -> tuple[np.ndarray, dict]:
    """Crop to the breast, flip so the chest wall is on the left, pad to a square, resize.

    Returns the (size, size, 1) float32 image and the geometry used (see :func:`film_geometry`),
    which :func:`film_point_to_prepared` uses to map lesion coordinates.
    """
    geometry = film_geometry(film)
    y0, y1, x0, x1 = geometry["box"]
    grey = film[..., 0] if film.ndim == 3 else film
    crop = grey[y0:y1, x0:x1]
    if geometry["flip"]:
        crop = crop[:, ::-1]
    side = geometry["side"]
    square = np.zeros((side, side), dtype=grey.dtype)
    square[: crop.shape[0], : crop.shape[1]] = crop
    out = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    return out.astype(np.float32)[..., None], geometry


def film_point_to_prepared(x: float, y: float, film_height: int, geometry: dict, size: int) -> tuple[float, float]:
    """Map a MIAS (x, y) point (pixels from the bottom-left corner) to (col, row) in the prepared image."""
    row = film_height - y
    col = x
    y0, y1, x0, x1 = geometry["box"]
    row -= y0
    col -= x0
    if geometry["flip"]:
        col = (x1 - x0) - col
    scale = size / geometry["side"]
    return col * scale, row * scale


# ----------------------------------------------------------------------------- overlays

COLORMAPS = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "hot": cv2.COLORMAP_HOT,
}


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Any (H, W[, 1|3]) image with values in [0, 255] -> uint8 RGB."""
    img = np.clip(np.asarray(image, dtype=np.float32), 0, 255).astype(np.uint8)
    return to_channels(img, 3)


def colorize(heatmap: np.ndarray, colormap: str = "jet") -> np.ndarray:
    """(H, W) map in [0, 1] -> uint8 RGB (H, W, 3)."""
    if colormap not in COLORMAPS:
        raise ValueError(f"Unknown colormap {colormap!r}; choose one of {', '.join(COLORMAPS)}")
    scaled = np.uint8(np.clip(np.nan_to_num(heatmap), 0, 1) * 255)
    return cv2.cvtColor(cv2.applyColorMap(scaled, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def diverging(signed_map: np.ndarray) -> np.ndarray:
    """(H, W) signed map -> uint8 RGB: red for positive evidence, blue for negative, white for none."""
    values = np.nan_to_num(np.asarray(signed_map, dtype=np.float32))
    limit = float(np.percentile(np.abs(values), 99.5)) or 1.0
    v = np.clip(values / limit, -1, 1)
    red = np.where(v > 0, 1.0, 1.0 + v)
    blue = np.where(v < 0, 1.0, 1.0 - v)
    green = 1.0 - np.abs(v)
    return np.uint8(np.stack([red, green, blue], axis=-1) * 255)


def overlay(image: np.ndarray, heatmap: np.ndarray, *, colormap: str = "jet", alpha: float = 0.45,
            signed: bool = False, contour_top: float | None = None) -> np.ndarray:
    """Blend a heatmap over an image, at the image's size.

    image: (H, W[, C]) values in [0, 255]; heatmap: (h, w) in [0, 1] (or signed if ``signed``).
    ``contour_top`` in (0, 1): outline the top fraction of the map (e.g. 0.2 = top 20 %).
    Returns uint8 RGB (H, W, 3).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    base = as_rgb_uint8(image)
    h, w = base.shape[:2]
    hm = cv2.resize(np.asarray(heatmap, dtype=np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    color = diverging(hm) if signed else colorize(hm, colormap)
    out = cv2.addWeighted(base, 1.0 - alpha, color, alpha, 0)
    if contour_top is not None and 0 < contour_top < 1:
        strength = np.abs(hm) if signed else hm
        threshold = np.quantile(strength, 1.0 - contour_top)
        mask = (strength >= threshold).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, w // 200))
    return out


def draw_circle(image: np.ndarray, centre: tuple[float, float], radius: float, colour=(0, 255, 0)) -> np.ndarray:
    """Outline a circle (centre = (col, row)) on an RGB uint8 copy of ``image``."""
    out = as_rgb_uint8(image).copy()
    thickness = max(1, out.shape[1] // 150)
    cv2.circle(out, (int(round(centre[0])), int(round(centre[1]))), max(1, int(round(radius))), colour, thickness)
    return out


def encode_png(image: np.ndarray) -> bytes:
    """uint8 RGB or grey array -> PNG bytes."""
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[-1] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()
