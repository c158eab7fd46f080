"""Concurrency: 8 threads x 50 requests on the shared, cached plant model, mixing
decoding uploads (JPEG and DICOM), prediction, Grad-CAM, SHAP, MC-dropout prediction and
Grad-CAM under MC dropout (as the dashboard's sessions do). No request may fail, and
every seeded or deterministic result must equal the one computed serially beforehand. Every thread opens with a SHAP
request, so eight SHAP calls certainly overlap (shap draws its samples from numpy's
global generator, which concurrent calls share).
"""
import threading
from collections import Counter

import numpy as np
import pytest

import conftest
import corpus
from lifelens.tasks import get_task

TASK = "plant"
THREADS = 8
REQUESTS = 50
IMAGES = 8
# Request mix (weights): mostly the cheap requests, a few SHAP to keep CPU time low.
MIX = {"decode": 16, "predict": 30, "gradcam": 28, "mc_dropout": 10, "gradcam_mc": 8, "shap": 8}
DETERMINISTIC = ("decode", "predict", "gradcam", "mc_dropout", "shap")  # seeded where random
SHAP_OPTIONS = {"nsamples": 8, "background_size": 8, "seed": 0}


def _uploads(samples) -> list[tuple[bytes, bytes]]:
    """Per image: its real file's bytes and a DICOM made from it (both decoded per request)."""
    spec = get_task(TASK)
    out = []
    for sample in samples:
        content = (spec.data_dir() / "images" / sample.path).read_bytes()
        grey = spec.load_image_bytes(content)[..., 0]
        out.append((content, corpus.dicom_bytes((4095 - grey.astype(np.uint16) * 16), "MONOCHROME1",
                                                bits_stored=12, window=(2048, 4096))))
    return out


def _requests(images, uploads):
    """kind -> request(i) on image i, as the dashboard makes them."""
    from lifelens.explain import explain
    from lifelens.models import predict_proba
    from lifelens.uncertainty import mc_dropout_predict

    tm = conftest.shipped_model(TASK)
    model = tm.classifier
    spec, mammo = get_task(TASK), get_task("mammo")

    def decode(i):
        content, dicom = uploads[i]
        return np.concatenate([spec.prepare_image(spec.load_image_bytes(content, "upload.jpg")).ravel(),
                               mammo.load_image_bytes(dicom, "upload.dcm").ravel().astype(np.float32)])

    return {
        "decode": decode,
        "predict": lambda i: predict_proba(model, images[i:i + 1]),
        "gradcam": lambda i: explain(model, images[i:i + 1], method="gradcam").maps,
        "shap": lambda i: explain(model, images[i:i + 1], method="shap", task=TASK, **SHAP_OPTIONS).signed,
        "mc_dropout": lambda i: mc_dropout_predict(tm, images[i:i + 1], samples=16, seed=3),
        "gradcam_mc": lambda i: explain(model, images[i:i + 1], method="gradcam_mc", samples=8),
    }


def test_concurrent_requests_match_the_serial_results():
    if not get_task(TASK).model_path.is_file():
        pytest.skip(f"models/{TASK}.keras is not there yet")
    samples, images = conftest.test_images(TASK, IMAGES, per_class=True)
    requests = _requests(images, _uploads(samples))
    serial = {(kind, i): requests[kind](i) for kind in DETERMINISTIC for i in range(IMAGES)}
    # Serial answers are reproducible (so a mismatch below is the threads' doing).
    for kind in DETERMINISTIC:
        np.testing.assert_array_equal(requests[kind](0), serial[(kind, 0)])

    rng = np.random.default_rng(0)
    kinds, weights = list(MIX), np.array(list(MIX.values()), float)
    plans = [[("shap", t % IMAGES)] + [(str(k), int(i)) for k, i in zip(
        rng.choice(kinds, REQUESTS - 1, p=weights / weights.sum()), rng.integers(0, IMAGES, REQUESTS - 1))]
        for t in range(THREADS)]
    results = [[] for _ in range(THREADS)]
    errors = []
    start = threading.Barrier(THREADS)

    def worker(t):
        try:
            start.wait()
            for kind, i in plans[t]:
                results[t].append((kind, i, requests[kind](i)))
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            errors.append(f"thread {t}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert errors == []
    done = Counter(kind for per_thread in results for kind, _, _ in per_thread)
    assert sum(done.values()) == THREADS * REQUESTS and set(done) == set(MIX), done

    mismatches = Counter()
    for per_thread in results:
        for kind, i, value in per_thread:
            if kind in DETERMINISTIC:
                if not np.allclose(value, serial[(kind, i)], rtol=1e-5, atol=1e-6):
                    mismatches[kind] += 1
            else:  # MC-dropout Grad-CAM is random by design: check it is a valid result
                assert value.maps.shape == (1,) + images.shape[1:3]
                assert np.isfinite(value.maps).all() and value.maps.max() <= 1.0 + 1e-6
                assert np.isfinite(value.extra["std"]).all()
    assert not mismatches, f"results differing from the serial ones: {dict(mismatches)} of {dict(done)}"
