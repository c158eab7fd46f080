"""Model files: a missing, truncated or tampered `.keras` file is refused with a ModelError
that names the file and says what to do; models load with safe_mode=True, so an archive
carrying Python code (a Lambda layer, a config naming os.system) is refused without
running it; nothing is unpickled. All work is on copies in tmp, never on models/.
"""
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from lifelens import config, models
from lifelens.models import ModelError, load_model_file, load_task_model, sha256_file
from lifelens.tasks import get_task

TASK = "plant"  # the first model to be trained; every task's file goes through the same code


def _shipped(task_id: str = TASK) -> Path:
    spec = get_task(task_id)
    if not spec.model_path.is_file():
        pytest.skip(f"models/{task_id}.keras is not there yet")
    return spec.model_path


@pytest.fixture
def models_copy(tmp_path, monkeypatch):
    """A copy of models/<task>.keras + .json in tmp, the other members and the fused boosted
    model, which the task spec now points at."""
    source = _shipped()
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".keras", ".json"):
        shutil.copy2(source.with_suffix(suffix), folder / source.with_suffix(suffix).name)
    card = json.loads(source.with_suffix(".json").read_text())
    for row in card.get("ensemble", {}).get("members", [])[1:]:
        shutil.copy2(source.parent / row["file"], folder / row["file"])  # the other ensemble members
    if (card.get("fusion") or {}).get("used"):
        shutil.copy2(source.parent / card["fusion"]["file"], folder / card["fusion"]["file"])
    monkeypatch.setattr(config, "MODELS_DIR", folder)
    spec = get_task(TASK)
    assert spec.model_path == folder / f"{TASK}.keras"
    return spec


def _refused(call, *fragments) -> str:
    with pytest.raises(ModelError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message
    return message


def test_the_copy_loads_and_predicts_like_the_original(models_copy):
    tm = load_task_model(models_copy)
    assert tm.card["sha256"] == sha256_file(models_copy.model_path)
    x = np.full((1, models_copy.input_size, models_copy.input_size, models_copy.channels), 128, np.float32)
    probs = models.predict_proba(tm.classifier, x)
    assert probs.shape == (1, models_copy.num_classes) and abs(float(probs.sum()) - 1) < 1e-4


def test_missing_model_file_is_refused(models_copy):
    models_copy.model_path.unlink()
    _refused(lambda: load_task_model(models_copy), f"{TASK}.keras", "missing", "restore it from git")


def test_truncated_model_file_is_refused(models_copy):
    path = models_copy.model_path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    # Through the card: the checksum no longer matches.
    _refused(lambda: load_task_model(models_copy), f"{TASK}.keras", "does not match its model card", "restore it")
    # Without a checksum: not a readable archive.
    _refused(lambda: load_model_file(path), f"{TASK}.keras", "not a Keras archive", "retrain")


def test_tampered_model_file_is_refused_before_it_is_parsed(models_copy):
    path = models_copy.model_path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit pattern inside the weights
    path.write_bytes(bytes(data))
    expected = json.loads(models_copy.card_path.read_text())["sha256"]
    message = _refused(lambda: load_task_model(models_copy), f"{TASK}.keras", "does not match its model card",
                       "restore it from git or retrain it")
    assert expected[:12] in message and sha256_file(path)[:12] in message


def test_damaged_card_is_refused(models_copy):
    models_copy.card_path.write_text("{ not json")
    _refused(lambda: load_task_model(models_copy), f"{TASK}.json", "damaged")


def test_a_zip_that_is_not_a_keras_model_is_refused(tmp_path):
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", "[]")
    _refused(lambda: load_model_file(path), "other.keras", "could not be loaded", "retrain")


def test_nothing_is_unpickled_when_a_model_loads(models_copy, monkeypatch):
    """No pickle call, and numpy arrays (skops stores the boosted model's) only with
    ``allow_pickle`` off."""
    calls = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            if name != "numpy.load" or kwargs.get("allow_pickle", False):
                calls.append(name)
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(pickle, "load", spy("pickle.load", pickle.load))
    monkeypatch.setattr(pickle, "loads", spy("pickle.loads", pickle.loads))
    monkeypatch.setattr(np, "load", spy("numpy.load", np.load))
    tm = load_task_model(models_copy)
    assert calls == []
    assert (tm.companion is not None) == bool(tm.card["fusion"]["used"])


def test_shipped_archives_hold_only_config_metadata_and_weights():
    """Every shipped model is plain JSON + HDF5 weights, and its config names only Keras
    classes and LifeLens's registered layers (no module a loader would import and call)."""
    found = 0
    for spec in map(get_task, ("plant", "skin", "retina", "mammo")):
        if not spec.model_path.is_file():
            continue
        found += 1
        with zipfile.ZipFile(spec.model_path) as zf:
            names = set(zf.namelist())
            assert names <= {"config.json", "metadata.json", "model.weights.h5"}, names
            cfg = json.loads(zf.read("config.json"))
        for module, registered in _modules(cfg):
            assert module == "keras" or module.startswith("keras.") or (registered or "").startswith("lifelens"), (
                spec.id, module, registered)
    if not found:
        pytest.skip("no model has been trained yet")


def _modules(obj):
    if isinstance(obj, dict):
        if "module" in obj and "class_name" in obj:
            yield obj["module"] or "", obj.get("registered_name")
        for value in obj.values():
            yield from _modules(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _modules(value)


def _lambda_model_file(tmp_path: Path, marker: Path) -> Path:
    """A real .keras archive whose Lambda layer writes ``marker`` when its function runs
    (loading a model runs its layers once to build it)."""
    import keras

    # A Python lambda (not a def) so Keras stores its bytecode in the archive; the path is a
    # constant inside that bytecode.
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').write('code from a model file ran'), x * 2.0)[1]")

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(payload, name="payload")(inputs))
    path = tmp_path / "with_lambda.keras"
    model.save(path)
    marker.unlink()  # building the model above ran it once
    return path


def test_lambda_layer_is_refused_under_safe_mode_without_running(tmp_path):
    import keras

    marker = tmp_path / "ran.txt"
    path = _lambda_model_file(tmp_path, marker)
    _refused(lambda: load_model_file(path), "with_lambda.keras", "could not be loaded", "retrain")
    assert not marker.exists(), "the Lambda's code ran while the file was refused"
    # The file really carries code that runs when safe_mode is off: the check above can fail.
    keras.saving.load_model(path, safe_mode=False)
    assert marker.exists()


def test_config_naming_an_arbitrary_function_is_refused_without_calling_it(tmp_path):
    """A hand-edited config asking the loader to call os.system (the CVE-2025-1550 pattern)."""
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))
    clean = tmp_path / "clean.keras"
    model.save(clean)
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.keras"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.namelist():
            content = src.read(item)
            if item == "config.json":
                cfg = json.loads(content)
                layer = next(l for l in cfg["config"]["layers"] if l["config"]["name"] == "dense")
                layer["config"]["kernel_initializer"] = {
                    "module": "os", "class_name": "system", "registered_name": None,
                    "config": {"command": f"touch {marker}"},
                }
                content = json.dumps(cfg).encode()
            dst.writestr(item, content)
    with pytest.raises(ModelError, match="evil.keras"):
        load_model_file(evil)
    assert not marker.exists()


def test_no_code_path_unpickles_or_turns_safe_mode_off():
    """The library's source never unpickles (pickle, joblib, dill, allow_pickle=True) and never
    loads a model with safe_mode off."""
    forbidden = ("import pickle", "pickle.load", "joblib", "import dill", "allow_pickle=True", "safe_mode=False",
                 "enable_unsafe_deserialization")
    found = []
    for path in sorted((config.PROJECT_ROOT / "lifelens").rglob("*.py")):
        text = path.read_text()
        found += [f"{path.relative_to(config.PROJECT_ROOT)}: {word}" for word in forbidden if word in text]
    assert found == []


def test_shipped_array_files_load_without_pickles():
    """models/*.npz (the inside-the-network caches) hold plain arrays: they load with allow_pickle=False."""
    files = sorted(config.MODELS_DIR.glob("*.npz"))
    if not files:
        pytest.skip("no .npz file in models/ yet")
    for path in files:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                assert npz[key].dtype != object, (path.name, key)
