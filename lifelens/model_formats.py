"""Open an image classifier someone brings, in any of four formats, behind one object.

    opened = open_model(content, "net.onnx", class_names=["healthy", "blight"],
                        preprocessing=Preprocessing(value_range="0-1"))
    opened.predict(images)          # float32 (N, S, S, C) in [0, 255] -> (N, K) probabilities
    opened.explainable              # what lifelens.explain.explain takes
    opened.method_support("gradcam")  # None = supported, else the reason it is not

Formats (:data:`FORMATS`):

* ``keras``: a Keras 3 ``.keras`` archive, read from memory in safe mode (no code runs).
* ``h5``: a legacy HDF5 file from tf.keras 2 / Keras 2, read from memory; refused when its
  configuration names a ``Lambda`` layer or any class that is not a built-in Keras layer
  (both would run code from the file).
* ``savedmodel``: a zipped TensorFlow SavedModel folder, called through
  ``keras.layers.TFSMLayer``: predictions and input gradients, but its layers are sealed.
* ``onnx``: an ONNX graph run by onnxruntime on the CPU, NCHW or NHWC read from the input
  shape: predictions only, so the black-box explanation methods and test-time-augmentation
  uncertainty.

LifeLens feeds every model float32 (N, S, S, C) images with values in [0, 255], RGB; a
file cannot say which value range and channel order its network was trained on, so the
user declares them (:class:`Preprocessing`) and the opened model applies them inside.
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field

import numpy as np

from lifelens.models import ModelError

FORMATS = {"keras": "Keras 3 (.keras)", "h5": "tf.keras 2 / Keras 2 HDF5 (.h5)",
           "savedmodel": "TensorFlow SavedModel (a .zip of the folder)", "onnx": "ONNX (.onnx)"}
SUFFIXES = {".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".zip": "savedmodel", ".onnx": "onnx"}
MAX_MODEL_BYTES = 512 * 1024 * 1024

# value range name -> (scale, offset per channel) applied to x in [0, 255]: x * scale + offset
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
VALUE_RANGES = {
    "0-255": "pixel values 0 to 255, as LifeLens's own models take them",
    "0-1": "pixel values divided by 255",
    "-1-1": "pixel values scaled to -1 … 1 (x / 127.5 - 1)",
    "imagenet": "divided by 255, minus the ImageNet mean, over the ImageNet standard deviation",
}
CHANNEL_ORDERS = {"rgb": "red, green, blue (Keras, PIL)", "bgr": "blue, green, red (OpenCV, Caffe)"}

# What each kind of explanation needs of the model (lifelens.explain.base.Method.needs).
NEEDS = {"predictions": "the model's predictions", "gradients": "gradients through the model",
         "layers": "the activations of its convolution layers"}


@dataclass(frozen=True)
class Preprocessing:
    """What the network expects, declared by the user: value range and channel order."""

    value_range: str = "0-255"
    channel_order: str = "rgb"
    input_size: int | None = None  # used only when the file leaves the image size open

    def __post_init__(self):
        if self.input_size is not None and not 8 <= int(self.input_size) <= 1024:
            raise ValueError(f"input size {self.input_size}: between 8 and 1024 pixels")
        if self.value_range not in VALUE_RANGES:
            raise ValueError(f"value range {self.value_range!r}: choose one of {', '.join(VALUE_RANGES)}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel order {self.channel_order!r}: choose rgb or bgr")

    @property
    def identity(self) -> bool:
        return self.value_range == "0-255" and self.channel_order == "rgb"

    def scale_offset(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (scale, offset), float32 (C,): model input = x * scale + offset."""
        if self.value_range == "imagenet":
            mean = IMAGENET_MEAN if channels == 3 else IMAGENET_MEAN.mean(keepdims=True)
            std = IMAGENET_STD if channels == 3 else IMAGENET_STD.mean(keepdims=True)
            if self.channel_order == "bgr":
                mean, std = mean[::-1], std[::-1]
            return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)
        scale, offset = {"0-255": (1.0, 0.0), "0-1": (1 / 255.0, 0.0), "-1-1": (1 / 127.5, -1.0)}[self.value_range]
        return np.full(channels, scale, np.float32), np.full(channels, offset, np.float32)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """float32 (N, S, S, C) in [0, 255] RGB -> the network's input, in numpy."""
        x = np.asarray(images, np.float32)
        if self.channel_order == "bgr" and x.shape[-1] == 3:
            x = x[..., ::-1]
        scale, offset = self.scale_offset(x.shape[-1])
        return np.ascontiguousarray(x * scale + offset, dtype=np.float32)


@dataclass
class OpenedModel:
    """A user's classifier, opened.

    format: a key of :data:`FORMATS`. input_size: S. channels: C (1 or 3). num_classes: K.
    keras_model: a Keras model taking LifeLens inputs ((N, S, S, C) in [0, 255], RGB) with
    the declared preprocessing inside, or None (ONNX). explainable: the object
    ``lifelens.explain.explain`` takes (the Keras model, or a BlackBoxModel).
    """

    format: str
    name: str
    input_size: int
    channels: int
    num_classes: int
    preprocessing: Preprocessing
    explainable: object
    keras_model: object | None = None
    conv_layers: tuple[str, ...] = ()
    dropout_layer: str | None = None
    parameters: int | None = None
    outputs_probabilities: bool = True
    notes: list[str] = field(default_factory=list)
    _keep: list = field(default_factory=list, repr=False)  # what must live as long as the model

    @property
    def has(self) -> tuple[str, ...]:
        """Which of :data:`NEEDS` this model offers."""
        if self.keras_model is None:
            return ("predictions",)
        return ("predictions", "gradients", "layers") if self.conv_layers else ("predictions", "gradients")

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """float32 (N, S, S, C) in [0, 255] -> float32 (N, K) class probabilities."""
        from lifelens.explain.base import handle_for

        return handle_for(self.explainable).probs(np.asarray(images, np.float32), batch_size)

    def method_support(self, method_id: str) -> str | None:
        """None when ``method_id`` (a lifelens.explain method, or ``mc_dropout``) works on
        this model; otherwise one sentence saying why it does not."""
        from lifelens.explain import METHODS

        if method_id == "mc_dropout":
            if self.keras_model is None:
                return "MC dropout needs the network's dropout layers; an ONNX graph runs sealed, with them switched off."
            if self.format == "savedmodel":
                return "MC dropout needs the network's dropout layers; a SavedModel's serving function has them switched off."
            return None if self.dropout_layer else "MC dropout needs dropout layers, and this model has none."
        needs = METHODS[method_id].needs
        if needs in self.has and METHODS[method_id].needs_dropout and not self.dropout_layer:
            return f"{METHODS[method_id].name} needs dropout layers, and this model has none."
        if needs in self.has:
            return None
        why = {"onnx": "an ONNX graph gives LifeLens its predictions only",
               "savedmodel": "a SavedModel is called as one sealed layer, so its convolution layers cannot be reached",
               }.get(self.format, "the model has no convolution layer")
        return f"{METHODS[method_id].name} needs {NEEDS[needs]}; {why}."

    def supported_methods(self) -> list[str]:
        from lifelens.explain import METHODS

        return [m for m in METHODS if self.method_support(m) is None]


def detect_format(content: bytes, name: str) -> str:
    """The format of a model file, from its first bytes (and its name for ONNX)."""
    head = bytes(content[:8])
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "h5"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(io.BytesIO(content)) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, EOFError):
            raise ModelError(f"{name}: the zip archive is damaged.") from None
        if "config.json" in names:
            return "keras"
        if any(n.rsplit("/", 1)[-1] == "saved_model.pb" for n in names):
            return "savedmodel"
        raise ModelError(f"{name}: a zip that is neither a Keras 3 archive (config.json) nor a SavedModel "
                         "folder (saved_model.pb).")
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if SUFFIXES.get(suffix) == "onnx":
        return "onnx"
    raise ModelError(f"{name}: not a model file LifeLens opens ({', '.join(FORMATS.values())}).")


def open_model(content: bytes, name: str, class_names: list[str] | None = None,
               preprocessing: Preprocessing | None = None) -> OpenedModel:
    """Open a model file's bytes (any of :data:`FORMATS`). Raises ModelError saying why not."""
    content = bytes(content)
    if not content:
        raise ModelError(f"{name}: the model file is empty.")
    if len(content) > MAX_MODEL_BYTES:
        raise ModelError(f"{name}: larger than 512 MB; LifeLens does not load it.")
    preprocessing = preprocessing or Preprocessing()
    fmt = detect_format(content, name)
    from lifelens import config

    config.compute_device()
    if fmt == "onnx":
        opened = _open_onnx(content, name, preprocessing)
    else:
        loader = {"keras": load_keras_bytes, "h5": load_h5_bytes, "savedmodel": load_savedmodel_zip}[fmt]
        keep: list = []
        saved = loader(content, name, keep) if fmt == "savedmodel" else loader(content, name)
        opened = _open_keras(classifier_view(saved), fmt, name, preprocessing)
        opened._keep.extend(keep)
        if len(saved.outputs) > 1:
            opened.notes.append(f"Of its {len(saved.outputs)} outputs the first is explained.")
    if class_names is not None and len(class_names) != opened.num_classes:
        raise ModelError(f"{name}: the model has {opened.num_classes} outputs but {len(class_names)} class names "
                         "were given; give one name per output, in output order.")
    return opened


# ----------------------------------------------------------------------------- Keras 3, HDF5, SavedModel

def load_keras_bytes(content: bytes, name: str = "model.keras"):
    """A ``.keras`` archive held in memory -> Keras model, never touching the disk.

    ``keras.saving.load_model`` only takes paths; the Keras 3 loader underneath it
    (``saving_lib.load_model``) reads any file-like object and is called with a BytesIO and
    ``safe_mode=True`` (no Python code or pickles executed). Only the archive's three standard
    members are kept: any other member makes the loader extract the archive to disk.
    """
    import zlib

    keep = ("config.json", "metadata.json", "model.weights.h5")
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            names = set(zf.namelist())
            if "config.json" not in names:
                raise ModelError(f"{name}: the zip is not a Keras 3 `.keras` archive (no config.json inside).")
            if sum(zf.getinfo(n).file_size for n in keep if n in names) > MAX_MODEL_BYTES:
                raise ModelError(f"{name}: the model unpacks to more than 512 MB; LifeLens does not load it.")
            slim = io.BytesIO()
            with zipfile.ZipFile(slim, "w", zipfile.ZIP_STORED) as out:
                for member in keep:
                    if member in names:
                        out.writestr(member, zf.read(member))
    except zipfile.BadZipFile:
        raise ModelError(f"{name}: not a Keras 3 `.keras` archive (not a zip file). "
                         "Save your model with `model.save('name.keras')`.") from None
    except (zipfile.LargeZipFile, zlib.error, OSError, EOFError):
        raise ModelError(f"{name}: the `.keras` archive is damaged.") from None
    from lifelens import bayesian_layers  # noqa: F401  (registers the layers LifeLens saves)
    from keras.src.saving import saving_lib

    return _loaded(lambda: saving_lib.load_model(io.BytesIO(slim.getvalue()), compile=False, safe_mode=True), name)


# Class names an HDF5 model may contain: Keras's own layers and models. Anything else would be
# looked up as custom code, and a Lambda layer carries Python bytecode in the file.
_SAFE_CONTAINERS = {"Sequential", "Functional", "Model"}


def _h5_classes(config) -> set[str]:
    found = set()
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config["class_name"], str):
            found.add(config["class_name"])
        for value in config.values():
            found |= _h5_classes(value)
    elif isinstance(config, list):
        for value in config:
            found |= _h5_classes(value)
    return found


def load_h5_bytes(content: bytes, name: str = "model.h5"):
    """A legacy HDF5 model (tf.keras 2 ``model.save('x.h5')``) held in memory -> Keras 3 model.

    The configuration is read first, without building anything: a ``Lambda`` layer or a
    class Keras does not ship is refused before any of it is deserialised.
    """
    import h5py
    import keras

    try:
        handle = h5py.File(io.BytesIO(content), "r")
    except OSError:
        raise ModelError(f"{name}: the HDF5 file is damaged.") from None
    with handle:
        raw = handle.attrs.get("model_config")
        if raw is None:
            raise ModelError(f"{name}: an HDF5 file with weights only (no model_config); save the whole model "
                             "with `model.save('name.h5')`.")
        try:
            config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        except (ValueError, UnicodeDecodeError):
            raise ModelError(f"{name}: the HDF5 file's model configuration is damaged.") from None
        classes = _h5_classes(config)
        if "Lambda" in classes:
            raise ModelError(f"{name}: the model has a Lambda layer, which would run Python code stored in the file; "
                             "LifeLens refuses it. Replace it with built-in layers and save again.")
        known = {n for n in dir(keras.layers) if not n.startswith("_")} | _SAFE_CONTAINERS
        # initialisers, regularisers, constraints, dtype policies and the like are named in configs too
        known |= {n for mod in (keras.initializers, keras.regularizers, keras.constraints, keras.activations)
                  for n in dir(mod) if not n.startswith("_")}
        known |= {"DTypePolicy", "Policy", "FloatDTypePolicy", "InputLayer"}
        unknown = sorted(classes - known)
        if unknown:
            raise ModelError(f"{name}: the model names classes that are not built-in Keras layers "
                             f"({', '.join(unknown[:5])}); LifeLens does not run custom code from a model file.")
        from keras.src.legacy.saving import legacy_h5_format

        if not _keras3_compatible(config):
            handle = _with_config(handle, config)  # an in-memory copy whose configuration Keras 3 reads
        nested = sum(c.get("class_name") in _SAFE_CONTAINERS for c in config.get("config", {}).get("layers", [])
                     if isinstance(c, dict))
        hint = (" The model nests another model (e.g. a tf.keras.applications backbone), which Keras 3 often cannot "
                "rebuild from a tf.keras 2 .h5: upload it as a zipped SavedModel or an ONNX export instead."
                if nested else "")
        return _loaded(lambda: legacy_h5_format.load_model_from_hdf5(handle, compile=False, safe_mode=True), name, hint)


def _keras3_compatible(config) -> bool:
    """Rewrite, in place, what tf.keras 2 wrote that Keras 3 misreads; False if anything changed.

    tf.keras 2 saves BatchNormalization's ``axis`` as a list (``[3]``) and DepthwiseConv2D
    with a ``groups`` argument, both of which Keras 3's legacy loader refuses (every
    tf.keras.applications backbone has such layers)."""
    unchanged = True
    if isinstance(config, dict):
        layer = config.get("config") if isinstance(config.get("config"), dict) else {}
        if config.get("class_name") == "BatchNormalization" and isinstance(layer.get("axis"), list) \
                and len(layer["axis"]) == 1:
            layer["axis"] = int(layer["axis"][0])
            unchanged = False
        if config.get("class_name") == "DepthwiseConv2D" and "groups" in layer:
            del layer["groups"]
            unchanged = False
        for value in config.values():
            unchanged &= _keras3_compatible(value)
    elif isinstance(config, list):
        for value in config:
            unchanged &= _keras3_compatible(value)
    return unchanged


def _with_config(handle, config):
    """An in-memory HDF5 copy of ``handle`` with ``config`` as its model configuration."""
    import h5py

    copy = h5py.File(io.BytesIO(), "w")
    for key in handle:
        handle.copy(handle[key], copy, name=key)
    for key, value in handle.attrs.items():
        copy.attrs[key] = value
    copy.attrs["model_config"] = json.dumps(config)
    return copy


def load_savedmodel_zip(content: bytes, name: str, keep: list):
    """A zipped TensorFlow SavedModel folder -> a Keras model around ``keras.layers.TFSMLayer``.

    TensorFlow reads a SavedModel only from a folder: it is extracted into a private
    temporary folder, which ``keep`` holds (deleted when the model is dropped). The serving
    signature ``serving_default`` (tf.saved_model.save) or ``serve`` (Keras ``export``) is used.
    """
    import tempfile
    from pathlib import Path

    import keras

    folder = tempfile.TemporaryDirectory(prefix="lifelens-savedmodel-")
    keep.append(folder)
    root = Path(folder.name)
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as zf:
            total = sum(i.file_size for i in zf.infolist())
            if total > MAX_MODEL_BYTES:
                raise ModelError(f"{name}: the SavedModel unpacks to more than 512 MB; LifeLens does not load it.")
            for info in zf.infolist():
                target = (root / info.filename).resolve()
                if not str(target).startswith(str(root.resolve())):
                    raise ModelError(f"{name}: the zip names a path outside its folder ({info.filename}).")
            zf.extractall(root)
    except (zipfile.BadZipFile, OSError, EOFError):
        raise ModelError(f"{name}: the SavedModel zip is damaged.") from None
    found = sorted(root.rglob("saved_model.pb"), key=lambda p: len(p.parts))
    saved_dir = found[0].parent
    import tensorflow as tf

    try:
        signatures = tf.saved_model.load(str(saved_dir)).signatures  # read once for its endpoints and input
    except Exception as exc:  # TensorFlow raises many types for a damaged SavedModel
        raise ModelError(f"{name}: the SavedModel could not be loaded ({type(exc).__name__}).") from None
    endpoint = next((e for e in ("serving_default", "serve") if e in signatures), next(iter(signatures), None))
    if endpoint is None:
        raise ModelError(f"{name}: the SavedModel has no serving signature to call.")
    spec = next(iter(signatures[endpoint].structured_input_signature[1].values()))
    layer = keras.layers.TFSMLayer(str(saved_dir), call_endpoint=endpoint)
    shape = tuple(spec.shape)
    if len(shape) != 4:
        raise ModelError(f"{name}: the SavedModel's input has shape {shape[1:]}: not an image.")
    inputs = keras.Input(shape=shape[1:], name="image")
    out = layer(inputs)
    if isinstance(out, dict):
        if len(out) != 1:
            raise ModelError(f"{name}: the SavedModel's signature has {len(out)} outputs; LifeLens explains one.")
        out = next(iter(out.values()))
    return keras.Model(inputs, out, name=Path(name).stem.replace(" ", "_") or "savedmodel")


def _loaded(load, name: str, hint: str = ""):
    try:
        return load()
    except ModelError:
        raise
    except Exception as exc:  # Keras raises many types for a damaged or unsafe file
        message = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ModelError(f"{name}: the model could not be loaded ({type(exc).__name__}: {message}). "
                         + (hint.strip() or "LifeLens loads models in safe mode: Lambda layers and custom code "
                                            "are refused.")) from None


def classifier_view(model):
    """A single-output view of a model: the model itself, or (model -> first output) when it
    has several outputs, as LifeLens models with a Bayesian head do ([probs, variational
    head]). The view shares every layer and weight."""
    if len(model.outputs) <= 1:
        return model
    import keras

    return keras.Model(model.inputs, model.outputs[0], name=f"{model.name}_first_output")


def dropout_layer(model) -> str | None:
    """The name of the model's last dropout layer (what MC dropout samples), or None."""
    from lifelens.explain import graph

    path = graph.dropout_path(model)
    return None if path is None else path[-1]


def _image_input(shape, name: str, declared: int | None = None) -> tuple[int, int]:
    """(S, C) of a (None, S, S, C) input, S from ``declared`` where the file leaves it open;
    ModelError saying why not."""
    if len(shape) != 4:
        raise ModelError(f"{name}: the model's input has shape {tuple(shape[1:])}: not an image "
                         "(expected height x width x channels).")
    _, h, w, c = shape
    if c not in (1, 3):
        raise ModelError(f"{name}: the model's input has {c} channels; LifeLens feeds greyscale (1) or colour (3) images.")
    if h is None or w is None:
        if declared is None:
            raise ModelError(f"{name}: the model's input size is not fixed in the file; declare the size its network "
                             "was trained at (the input size field, or --input-size).")
        h = h or int(declared)
        w = w or int(declared)
    if h != w:
        raise ModelError(f"{name}: the model's input is {h} x {w}; LifeLens prepares square images only.")
    return int(h), int(c)


def _open_keras(model, fmt: str, name: str, preprocessing: Preprocessing) -> OpenedModel:
    import keras

    from lifelens.explain import graph

    if len(model.inputs) != 1:
        raise ModelError(f"{name}: the model has {len(model.inputs)} inputs; LifeLens explains models with one image input.")
    size, channels = _image_input(tuple(model.inputs[0].shape), name, preprocessing.input_size)
    open_size = None in tuple(model.inputs[0].shape)[1:3]
    if len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
        raise ModelError(f"{name}: the model must have one output of class scores (batch x classes).")
    units = int(model.outputs[0].shape[-1])
    conv = tuple(path[-1] for path, layer, _ in graph.walk(model) if isinstance(layer, keras.layers.Conv2D))
    if fmt != "savedmodel" and not conv:
        raise ModelError(f"{name}: the model has no Conv2D layer: the explanation and inside views need "
                         "convolutional feature maps.")
    # Wrapped when there is preprocessing to apply, or a size to fix (explanations need one).
    wrapped = model if preprocessing.identity and not open_size else _with_preprocessing(model, preprocessing, size,
                                                                                         channels)
    return OpenedModel(fmt, name, size, channels, 2 if units == 1 else units, preprocessing, wrapped, wrapped,
                       conv, dropout_layer(model), int(model.count_params()))


def _with_preprocessing(model, preprocessing: Preprocessing, size: int, channels: int):
    """(LifeLens input -> declared preprocessing -> ``model``) as one Keras model; the user's
    model is nested, so its layers keep their names under its own."""
    import keras

    from lifelens.input_layers import InputScaling

    scale, offset = preprocessing.scale_offset(channels)
    inputs = keras.Input(shape=(size, size, channels), name="lifelens_image")
    x = InputScaling(scale.tolist(), offset.tolist(), preprocessing.channel_order == "bgr", name="declared_preprocessing")(inputs)
    return keras.Model(inputs, model(x), name=f"{model.name}_declared_input")


# ----------------------------------------------------------------------------- ONNX

ONNX_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                    "tensor(uint8)": np.uint8}


def _open_onnx(content: bytes, name: str, preprocessing: Preprocessing) -> OpenedModel:
    """An ONNX graph in onnxruntime (CPU, from memory) as a BlackBoxModel."""
    import onnxruntime as ort

    from lifelens.explain.base import BlackBoxModel

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(content, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a damaged graph
        message = str(exc).splitlines()[0][:200] if str(exc) else ""
        raise ModelError(f"{name}: the ONNX graph could not be loaded ({type(exc).__name__}: {message}).") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ModelError(f"{name}: the ONNX graph has {len(inputs)} inputs; LifeLens explains graphs with one image input.")
    shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
    if len(shape) != 4:
        raise ModelError(f"{name}: the ONNX input has shape {inputs[0].shape}: not an image batch.")
    channels_first = shape[1] in (1, 3) and shape[3] not in (1, 3)
    size, channels = _image_input([None, shape[2], shape[3], shape[1]] if channels_first else shape, name,
                                  preprocessing.input_size)
    input_name, output_name = inputs[0].name, outputs[0].name
    layout = "NCHW" if channels_first else "NHWC"
    dtype = ONNX_INPUT_TYPES.get(inputs[0].type)
    if dtype is None:
        raise ModelError(f"{name}: the ONNX input is {inputs[0].type}; LifeLens feeds float or 8-bit images.")

    def raw(images: np.ndarray) -> np.ndarray:
        x = preprocessing.apply(images)
        if channels_first:
            x = np.transpose(x, (0, 3, 1, 2))
        x = np.ascontiguousarray(np.clip(np.rint(x), 0, 255) if dtype == np.uint8 else x, dtype=dtype)
        return np.asarray(session.run([output_name], {input_name: x})[0], np.float32).reshape(len(x), -1)

    probe = raw(np.full((2, size, size, channels), 127.0, np.float32))
    units = probe.shape[1]
    probabilities = bool(np.all(probe >= 0) and np.allclose(probe.sum(axis=1), 1.0, atol=1e-3)) or units == 1

    def predict_proba(images: np.ndarray) -> np.ndarray:
        out = raw(images)
        if units == 1:
            p = 1.0 / (1.0 + np.exp(-out)) if not np.all((out >= 0) & (out <= 1)) else out
            return np.concatenate([1.0 - p, p], axis=1).astype(np.float32)
        if probabilities:
            return out
        shifted = np.exp(out - out.max(axis=1, keepdims=True))  # logits: softmax them
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)

    black_box = BlackBoxModel(predict_proba, (size, size, channels), 2 if units == 1 else units, name=name)
    opened = OpenedModel("onnx", name, size, channels, 2 if units == 1 else units, preprocessing, black_box,
                         outputs_probabilities=probabilities)
    opened.notes.append(f"Input layout {layout}, read from the input shape {inputs[0].shape}.")
    if not probabilities:
        opened.notes.append("Its outputs are not probabilities (they do not sum to 1): LifeLens applies a softmax.")
    opened._keep.append(session)
    return opened


def image_baselines(prepared: np.ndarray) -> np.ndarray:
    """Black, blurred and mean-colour versions of one image (3, S, S, C): a SHAP background
    for a model that has no training images at hand (bring your own model)."""
    from lifelens.explain.integrated_gradients import baseline_images

    x = np.asarray(prepared, np.float32)[None]
    return np.concatenate([baseline_images(x, kind) for kind in ("black", "blur", "mean")], axis=0)


def method_options(method_id: str, prepared: np.ndarray) -> dict:
    """Options a method needs for a model from outside LifeLens: SHAP's background images."""
    return {"background": image_baselines(prepared)} if method_id == "shap" else {}


def parse_class_names(text: str) -> list[str]:
    """Class names typed one per line or separated by commas; blanks dropped."""
    parts = [p.strip() for line in text.splitlines() for p in line.split(",")]
    return [p for p in parts if p]


def prepare_for_model(image: np.ndarray, opened: OpenedModel) -> np.ndarray:
    """uint8 (H, W, C) image -> float32 (S, S, C) in [0, 255] for an opened model (a square resize)."""
    from lifelens import imaging

    s, c = opened.input_size, opened.channels
    return imaging.resize(imaging.to_channels(image, c), s).astype(np.float32).reshape(s, s, c)
