"""Models from outside LifeLens, built by the tests the way their owners would build them.

A small CNN is trained with tf.keras 2 (the ``tf_keras`` package) for a few epochs on
real plant thumbnails (healthy vs the first disease), expecting inputs in 0..1, as most
tf.keras tutorials do. It is then saved as a legacy ``.h5``, as a zipped SavedModel
(``tf.saved_model.save``), and as ONNX (NHWC from Keras 3's exporter, and an NCHW
variant made by putting a transpose in front, as a PyTorch export would be laid out).
The test compares every format against the tf.keras model's own predictions.
"""
from __future__ import annotations

import io
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

SIZE = 48
CLASSES = ("healthy", "diseased")


def _folder_zip(folder: Path, prefix: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, f"{prefix}/{path.relative_to(folder)}")
    return buffer.getvalue()


def plant_thumbnails(n: int = 96, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images float32 (n, SIZE, SIZE, 3) in [0, 255], labels (n,) 0 = healthy, 1 = not)."""
    from lifelens import data, imaging
    from lifelens.tasks import get_task

    spec = get_task("plant")
    samples = data.task_splits(spec)[split]
    healthy = [s for s in samples if spec.classes[s.label].id.endswith("healthy")][: n // 2]
    sick = [s for s in samples if not spec.classes[s.label].id.endswith("healthy")][: n - len(healthy)]
    chosen = healthy + sick
    images = np.stack([imaging.resize(spec.load_image(spec.image_path(s)), SIZE) for s in chosen]).astype(np.float32)
    return images, np.array([0] * len(healthy) + [1] * len(sick))


def leaf_cnn(library, size: int | None, name: str):
    """The test network in ``library`` (tf_keras or keras); ``size`` None leaves it open."""
    layers = library.layers
    return library.Sequential([
        layers.Input((size, size, 3)),
        layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1"),
        layers.Conv2D(16, 3, activation="relu", name="conv2"),
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.3, name="dropout"),
        layers.Dense(2, activation="softmax", name="probs"),
    ], name=name)


@lru_cache(maxsize=1)
def build(folder: str) -> dict:
    """Train the tf.keras 2 model once and write every format into ``folder``.

    Returns {"reference": tf.keras model, "images": test images (0..255), "h5": bytes,
    "h5_lambda": bytes (a Lambda layer), "savedmodel": zip bytes, "onnx": bytes,
    "onnx_nchw": bytes, "keras_open_size" / "onnx_open_size": the same network with its
    image size left open}.
    """
    import tensorflow as tf
    import tf_keras as k2

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    x, y = plant_thumbnails(96, "train")
    k2.utils.set_random_seed(0)
    model = leaf_cnn(k2, SIZE, "tfkeras_leaf_cnn")
    model.compile(optimizer=k2.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x / 255.0, y, epochs=25, batch_size=16, verbose=0)
    model.save(out / "leaf.h5")
    tf.saved_model.save(model, str(out / "leaf_savedmodel"))
    lam = k2.Sequential([k2.layers.Input((SIZE, SIZE, 3)), k2.layers.Lambda(lambda t: t / 255.0),
                         k2.layers.Conv2D(4, 3), k2.layers.GlobalAveragePooling2D(), k2.layers.Dense(2)])
    lam.save(out / "lambda.h5")

    import keras

    as_keras3 = keras.saving.load_model(out / "leaf.h5", compile=False)
    as_keras3.predict(np.zeros((1, SIZE, SIZE, 3), np.float32), verbose=0)
    as_keras3.export(str(out / "leaf.onnx"), format="onnx", verbose=False)
    onnx_bytes = (out / "leaf.onnx").read_bytes()
    # The same network with its image size left open, as fully convolutional exports often are.
    dynamic = leaf_cnn(keras, None, "open_size_leaf_cnn")
    dynamic.set_weights(as_keras3.get_weights())
    dynamic.save(out / "open_size.keras")
    dynamic.predict(np.zeros((1, SIZE, SIZE, 3), np.float32), verbose=0)
    dynamic.export(str(out / "open_size.onnx"), format="onnx", verbose=False)
    test_x, _ = plant_thumbnails(16, "test")
    return {"reference": model, "images": test_x, "h5": (out / "leaf.h5").read_bytes(),
            "h5_lambda": (out / "lambda.h5").read_bytes(),
            "savedmodel": _folder_zip(out / "leaf_savedmodel", "leaf_savedmodel"),
            "onnx": onnx_bytes, "onnx_nchw": nchw_variant(onnx_bytes),
            "keras_open_size": (out / "open_size.keras").read_bytes(),
            "onnx_open_size": (out / "open_size.onnx").read_bytes()}


def nchw_variant(onnx_bytes: bytes) -> bytes:
    """The same graph taking (N, C, H, W): a Transpose node in front of the NHWC input."""
    import onnx
    from onnx import helper

    graph_model = onnx.load_from_string(onnx_bytes)
    graph = graph_model.graph
    old = graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in old.type.tensor_type.shape.dim]
    new_name = "image_nchw"
    new_input = helper.make_tensor_value_info(new_name, old.type.tensor_type.elem_type,
                                              ["batch", dims[3], dims[1], dims[2]])
    transpose = helper.make_node("Transpose", [new_name], [old.name], perm=[0, 2, 3, 1], name="to_nhwc")
    graph.node.insert(0, transpose)
    graph.input.remove(old)
    graph.input.insert(0, new_input)
    onnx.checker.check_model(graph_model)
    return graph_model.SerializeToString()


def uint8_variant(onnx_bytes: bytes) -> bytes:
    """The same graph taking uint8 pixels 0..255 (a Cast and a division by 255 in front), as
    exports that bake their preprocessing in do."""
    import onnx
    from onnx import TensorProto, helper

    graph_model = onnx.load_from_string(onnx_bytes)
    graph = graph_model.graph
    old = graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else "batch" for d in old.type.tensor_type.shape.dim]
    new_input = helper.make_tensor_value_info("pixels_uint8", TensorProto.UINT8, dims)
    scale = helper.make_tensor("scale_255", TensorProto.FLOAT, [], [255.0])
    graph.initializer.append(scale)
    cast = helper.make_node("Cast", ["pixels_uint8"], ["pixels_float"], to=TensorProto.FLOAT, name="to_float")
    divide = helper.make_node("Div", ["pixels_float", "scale_255"], [old.name], name="to_unit_range")
    graph.node.insert(0, divide)
    graph.node.insert(0, cast)
    graph.input.remove(old)
    graph.input.insert(0, new_input)
    onnx.checker.check_model(graph_model)
    return graph_model.SerializeToString()
