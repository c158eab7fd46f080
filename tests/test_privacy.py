"""Privacy: uploads stay in memory, DICOM patient data never reaches an output, and the
dashboard sends no usage statistics.

"Written to disk" is watched two ways while an upload is decoded, predicted, explained,
reported (and an uploaded model loaded) through the library:
* a Python audit hook records every file this process opens for writing or creates
  (``open``, ``os.open``, ``tempfile``, renames, copies): there must be none;
* every file under the temp dir and the working tree modified meanwhile is searched for
  a random token carried inside the upload: it must not be there (this also catches
  writes made below Python, e.g. by a C library).
The app-level part (Streamlit upload widgets) is tested with the app.
"""
import io
import os
import sys
import tempfile
import time
import tomllib
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest

import conftest
import corpus
from lifelens import config, imaging
from lifelens.imaging import InputError
from lifelens.tasks import get_task

TOKEN = f"LLUPLOAD{uuid.uuid4().hex}".encode()
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
WRITE_EVENTS = {"os.rename", "os.replace", "os.link", "os.symlink", "os.truncate", "os.mkdir", "shutil.copyfile",
                "shutil.copytree", "shutil.move", "shutil.make_archive", "tempfile.mkstemp", "tempfile.mkdtemp"}

_WATCH = {"active": False, "writes": []}


def _audit(event, args, watch=_WATCH):
    # ``watch`` is bound at definition: at interpreter shutdown the module's globals are None already.
    if not watch["active"]:
        return
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None))[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & WRITE_FLAGS)
        if writing and not isinstance(path, int):
            watch["writes"].append((event, str(path), mode))
    elif event in WRITE_EVENTS:
        watch["writes"].append((event, str(args[0]) if args else "", None))


sys.addaudithook(_audit)  # audit hooks cannot be removed; it only records while a watch is on


class DiskWatch:
    """Records this process's file writes, and finds files changed meanwhile that hold TOKEN."""

    ROOTS = (Path(tempfile.gettempdir()), config.PROJECT_ROOT)
    SKIP = {".venv", ".git", "__pycache__", "node_modules"}

    def __enter__(self):
        self.start = time.time() - 1.0
        _WATCH["writes"] = []
        _WATCH["active"] = True
        return self

    def __exit__(self, *exc):
        _WATCH["active"] = False
        self.writes = list(_WATCH["writes"])
        self.holding_token = [p for p in self._changed_files() if self._holds(p, (TOKEN,) + tuple(
            s.encode() for s in corpus.PHI_STRINGS))]
        return False

    def _changed_files(self):
        for root in self.ROOTS:
            for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
                dirnames[:] = [d for d in dirnames if d not in self.SKIP]
                for name in filenames:
                    path = Path(dirpath, name)
                    try:
                        stat = path.stat()
                    except OSError:
                        continue
                    if stat.st_mtime >= self.start and path.is_file() and stat.st_size < 200 * 2**20:
                        yield path

    @staticmethod
    def _holds(path: Path, needles) -> bool:
        try:
            content = path.read_bytes()
        except OSError:
            return False
        return any(n in content for n in needles)


def _jpeg_with_token(image: np.ndarray) -> bytes:
    """A real JPEG carrying TOKEN in a comment segment (invisible in the pixels)."""
    return corpus.encode(image, "JPEG", quality=90, comment=TOKEN)


def _dicom_with_token() -> bytes:
    phi = dict(corpus.PHI, OtherPatientIDs=TOKEN.decode())
    stored = (4095 - corpus.film(256).astype(np.uint16) * 16).astype(np.uint16)
    return corpus.dicom_bytes(stored, "MONOCHROME1", bits_stored=12, window=(2048, 4096), phi=phi)


def _need_model(task_id: str):
    if not get_task(task_id).model_path.is_file():
        pytest.skip(f"models/{task_id}.keras is not there yet")


# ----------------------------------------------------------------------------- uploads stay in memory

def _analyse_upload(tm, content: bytes, name: str):
    """What the dashboard does with an upload, through the library only."""
    from lifelens import cases, report
    from lifelens.uncertainty import case_prediction
    from lifelens.explain import explain
    from lifelens.models import predict_proba

    spec = tm.spec
    image = spec.load_image_bytes(content, name)
    prepared = spec.prepare_image(image)[None]
    probs = predict_proba(tm.classifier, prepared)
    cam = explain(tm.classifier, prepared, method="gradcam")
    shap = explain(tm.classifier, prepared, method="shap", task=spec.id, nsamples=8, background_size=8)
    case = cases.case_from_bytes(spec, content, name)
    result = case_prediction.predict_case(tm, case.prepared, samples=16)
    overlay = imaging.overlay(case.display, cam.maps[0])
    rep = report.CaseReport(
        task_title=spec.title, case_name=name, source="upload", image=case.display, class_names=spec.class_names,
        softmax=result["softmax"], bayes_mean=result["mean"], bayes_low=result["interval"][:, 0],
        bayes_high=result["interval"][:, 1], entropy=result["predictive_entropy"],
        mutual_information=result["mutual_information"],
        explanations=[report.ExplanationPanel("Grad-CAM", overlay)])
    return probs, cam, shap, report.render_html(rep), report.render_png(rep)


def test_an_uploaded_image_is_never_written_to_disk():
    _need_model("plant")
    tm = conftest.shipped_model("plant")
    photo = corpus.leaf()
    _analyse_upload(tm, _jpeg_with_token(photo[::-1]), "warm-up.jpg")  # compiles and caches first
    upload = _jpeg_with_token(photo)
    # libtiff decodes compressed TIFFs through a virtual "tempfile.tif": it must stay virtual.
    tiff = corpus.encode(photo, "TIFF", compression="tiff_lzw", description=TOKEN.decode())
    assert TOKEN in upload and TOKEN in tiff
    with DiskWatch() as watch:
        probs, _, _, html, png = _analyse_upload(tm, upload, "leaf upload.jpg")
        imaging.decode_image(_dicom_with_token(), channels=1, name="film.dcm")
        imaging.decode_image(tiff, name="leaf.tif")
    assert probs.shape == (1, 10) and "<html" in html.lower() and png.startswith(b"\x89PNG")
    assert watch.writes == [], f"files opened for writing while handling an upload: {watch.writes}"
    assert watch.holding_token == [], f"files holding the upload's content: {watch.holding_token}"


def _model_upload(extra_members: dict | None = None) -> bytes:
    """The shipped plant model as uploaded bytes: the archive comment carries TOKEN."""
    source = get_task("plant").model_path.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(source)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item.filename))
        for name, content in (extra_members or {}).items():
            dst.writestr(name, content)
        dst.comment = TOKEN
    return buf.getvalue()


def test_an_uploaded_model_is_loaded_in_memory():
    _need_model("plant")
    from lifelens import model_formats

    model_formats.load_keras_bytes(_model_upload())  # warm-up
    with DiskWatch() as watch:
        model = model_formats.load_keras_bytes(_model_upload())
    assert model.name.startswith("lifelens_plant")
    assert watch.writes == [], f"files opened for writing while loading an uploaded model: {watch.writes}"
    assert watch.holding_token == []


def test_an_uploaded_model_with_extra_files_is_not_extracted_to_disk():
    """A .keras archive with more than the three standard members makes Keras's loader
    extract the whole archive into a temp folder; the upload must not reach the disk."""
    _need_model("plant")
    from lifelens import model_formats
    from lifelens.models import ModelError

    upload = _model_upload({"assets/notes.txt": b"notes " + TOKEN})
    with DiskWatch() as watch:
        try:
            model_formats.load_keras_bytes(upload)
        except ModelError:
            pass  # refusing such an archive is as good as loading it in memory
    assert watch.writes == [], f"files opened for writing while loading an uploaded model: {watch.writes}"
    assert watch.holding_token == []


# ----------------------------------------------------------------------------- DICOM patient data

def _assert_no_phi(text, where: str):
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    for value in corpus.PHI_STRINGS:
        assert value not in text, f"{value!r} found in {where}"


def test_dicom_patient_data_never_reaches_a_result_message_log_or_warning(capfd, caplog, recwarn):
    spec = get_task("mammo")
    # Patient data in forms pydicom complains about (and quotes) when it reads them.
    phi = dict(corpus.PHI, PatientBirthDate="1961-02-03 Lifelensphi", PatientName="Lifelensphi" * 8 + "^Jane")
    grey = corpus.film(128)
    good = corpus.dicom_bytes(grey, phi=phi)
    broken = {
        "no pixel data": corpus.dicom_bytes(None, phi=phi),
        "damaged pixel data": good[:-500],
        "unsupported photometric": corpus.dicom_bytes(grey, "HSV", phi=phi),
        "damaged header": good[:132] + good[132:].replace(b"UL", b"AL", 1),
        "patient name that is not text": good.replace(phi["PatientName"].encode()[:4], b"\xff\xfe\x00\x01", 1),
    }
    # Writing those files made pydicom complain (quoting the values); watch from here on.
    capfd.readouterr()
    recwarn.clear()
    caplog.set_level("DEBUG")
    caplog.clear()
    image = spec.load_image_bytes(good, "film.dcm")
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape == (128, 128, 1)
    _assert_no_phi(image.tobytes(), "the decoded pixels")
    refused = 0
    for kind, data in broken.items():
        try:
            spec.load_image_bytes(data, "film.dcm")
        except InputError as exc:
            refused += 1
            _assert_no_phi(str(exc), f"the message for {kind}")
    assert refused >= 4
    out, err = capfd.readouterr()
    _assert_no_phi(out + err, "stdout/stderr")
    _assert_no_phi("\n".join(r.getMessage() for r in caplog.records), "the log")
    _assert_no_phi("\n".join(str(w.message) for w in recwarn), "warnings")


def test_dicom_case_and_report_carry_no_patient_data():
    from lifelens import cases, report
    from lifelens.uncertainty import case_prediction

    spec = get_task("mammo")
    content = _dicom_with_token()
    case = cases.case_from_bytes(spec, content, "film.dcm")
    for name, value in vars(case).items():
        if isinstance(value, np.ndarray):
            assert value.dtype != object
        else:
            _assert_no_phi(repr(value), f"Case.{name}")
            assert TOKEN.decode() not in repr(value)
    k = spec.num_classes
    uniform = np.full(k, 1.0 / k)
    rep = report.CaseReport(
        task_title=spec.title, case_name=case.name, source="upload", image=case.display, class_names=spec.class_names,
        softmax=uniform, bayes_mean=uniform, bayes_low=uniform * 0.5, bayes_high=np.minimum(uniform * 1.5, 1),
        entropy=float(np.log(k)), mutual_information=0.0)
    for text, where in ((report.render_html(rep), "the HTML report"), (report.render_png(rep), "the PNG report")):
        _assert_no_phi(text, where)
        assert TOKEN.decode() not in (text if isinstance(text, str) else text.decode("latin-1"))


# ----------------------------------------------------------------------------- usage statistics

def test_streamlit_usage_statistics_are_off():
    path = config.PROJECT_ROOT / ".streamlit" / "config.toml"
    if not path.is_file():
        pytest.skip(".streamlit/config.toml is not there yet (the app helper's file)")
    settings = tomllib.loads(path.read_text())
    assert settings.get("browser", {}).get("gatherUsageStats") is False
