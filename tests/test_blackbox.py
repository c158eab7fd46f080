"""The black-box explanation methods (RISE, Partition SHAP) on real plant images: maps in
range and deterministic, localisation on a model that only looks at one quadrant, and
faithfulness on the shipped plant model against a random map."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from lifelens.explain import METHODS, deletion_auc, explain, random_maps
from lifelens.explain.base import handle_for
from lifelens.explain.rise import rise_masks
from lifelens.tasks import get_task

BLACK_BOX = ("rise", "shap_partition")


def plant_model(load_shipped):
    if not get_task("plant").model_path.exists():
        pytest.skip("models/plant.keras is not trained yet")
    return load_shipped("plant").classifier


@pytest.fixture(scope="module")
def plant_explained(load_shipped, real_images):
    """(model, 4 real plant images, {method: Explanation with the default options})."""
    model = plant_model(load_shipped)
    _, images = real_images("plant", 4, per_class=True)
    return model, images, {m: explain(model, images, method=m) for m in BLACK_BOX}


def quadrant_model(images):
    """A fixed-weight model that sees only the top-left quadrant: p(class 0) rises with the
    quadrant's edge energy (|Laplacian| of each channel, averaged), which both black masks
    and blurring take away."""
    import keras

    side = images.shape[1]
    inputs = keras.Input(images.shape[1:])
    x = keras.layers.Cropping2D(((0, side // 2), (0, side // 2)))(inputs)
    edges = keras.layers.Conv2D(2, 3, activation="relu", name="edges")
    energy = keras.layers.GlobalAveragePooling2D()(edges(x))
    dense = keras.layers.Dense(2, activation="softmax", name="probs")
    model = keras.Model(inputs, dense(energy), name="quadrant")
    laplacian = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], np.float32) / 3.0
    kernel = np.zeros((3, 3, images.shape[-1], 2), np.float32)
    kernel[..., 0], kernel[..., 1] = laplacian[..., None], -laplacian[..., None]
    edges.set_weights([kernel, np.zeros(2, np.float32)])
    typical = float(keras.Model(inputs, energy)(images).numpy().sum(axis=1).mean())
    steep = 6.0 / typical  # logit(class 0) = 6 * (energy / typical - 1/2)
    dense.set_weights([np.array([[steep / 2, -steep / 2]] * 2, np.float32), np.array([-1.5, 1.5], np.float32)])
    return model


# ----------------------------------------------------------------------------- registry and options

def test_registered_with_names_and_refuses_unknown_options(load_shipped, real_images):
    assert METHODS["rise"].name == "RISE" and not METHODS["rise"].signed and not METHODS["rise"].uses_layer
    assert METHODS["shap_partition"].name == "SHAP (Partition)" and METHODS["shap_partition"].signed
    model = plant_model(load_shipped)
    _, images = real_images("plant", 1)
    for method in BLACK_BOX:
        with pytest.raises(ValueError, match="no option"):
            explain(model, images, method=method, nsamples=3)
        with pytest.raises(ValueError, match="takes no layer"):
            explain(model, images, method=method, layer="block4_relu2")
    with pytest.raises(ValueError, match="keep"):
        explain(model, images, method="rise", keep=1.0)
    with pytest.raises(ValueError, match="fill"):
        explain(model, images, method="shap_partition", fill="zeros")


# ----------------------------------------------------------------------------- the shipped plant model

def test_maps_in_range_and_deterministic(plant_explained):
    model, images, results = plant_explained
    for method, result in results.items():
        assert result.maps.shape == (4, 128, 128) and result.maps.dtype == np.float32, method
        assert np.isfinite(result.maps).all() and result.maps.min() >= 0.0, method
        assert result.maps.max() == pytest.approx(1.0), method
        assert np.array_equal(result.targets, result.probs.argmax(axis=1)), method
        again = explain(model, images[:1], method=method)  # same (default) seed, same map
        np.testing.assert_array_equal(again.maps[0], result.maps[0], err_msg=method)
    shap = results["shap_partition"]
    assert shap.signed.shape == (4, 128, 128) and np.isfinite(shap.signed).all()
    assert np.array_equal(shap.maps > 0, shap.signed > 0)
    # Owen values add up: the sum is p(image) - p(image blurred all over) for the explained class
    kernel = shap.options["blur"]
    blurred = np.stack([cv2.blur(image, (kernel, kernel)) for image in images])
    drop = shap.probs[np.arange(4), shap.targets] - handle_for(model).target_probs(blurred, shap.targets)
    np.testing.assert_allclose(shap.signed.sum(axis=(1, 2)), drop, atol=2e-3)
    rise = results["rise"]
    assert rise.signed is None and rise.extra["saliency"].shape == (4, 128, 128)
    other_seed = explain(model, images[:1], method="rise", seed=1)
    assert not np.array_equal(other_seed.maps[0], rise.maps[0])


def test_both_beat_a_random_map_on_deletion(plant_explained):
    model, images, results = plant_explained
    targets = results["rise"].targets
    noise_auc = deletion_auc(model, images, random_maps(4, 128, 128, seed=3), targets).mean()
    for method, result in results.items():
        auc = deletion_auc(model, images, result.maps, targets).mean()
        assert auc < noise_auc, (method, auc, noise_auc)


# ----------------------------------------------------------------------------- localisation

def test_maps_find_the_only_quadrant_the_model_sees(real_images):
    _, images = real_images("plant", 3, per_class=True)
    model = quadrant_model(images)
    inside = np.zeros((128, 128), bool)
    inside[:64, :64] = True
    top = int(0.1 * inside.size)
    for method in BLACK_BOX:
        result = explain(model, images, targets=0, method=method)
        share = result.maps[:, inside].sum(axis=1) / result.maps.sum(axis=(1, 2))
        top_inside = [inside.ravel()[np.argsort(-m.ravel(), kind="stable")[:top]].mean() for m in result.maps]
        assert (share > 0.6).all(), (method, share)
        assert (np.array(top_inside) > 0.9).all(), (method, top_inside)
    # Partition SHAP gives exactly nothing to pixels the model never sees
    assert np.abs(result.signed[:, ~inside]).max() < 1e-6


def test_rise_masks_do_not_depend_on_the_batch_size():
    one = np.concatenate(list(rise_masks(100, 40, 30, cells=5, seed=2, batch_size=64)))
    other = np.concatenate(list(rise_masks(100, 40, 30, cells=5, seed=2, batch_size=7)))
    assert one.shape == (100, 40, 30) and np.array_equal(one, other)
    assert 0.0 <= one.min() and one.max() <= 1.0 and abs(one.mean() - 0.5) < 0.1


def test_rise_map_does_not_depend_on_the_batch_size(load_shipped, real_images):
    """The page's fast setting scores all 120 masks in one call: the same map as in calls of 64."""
    member = load_shipped("plant").classifier
    _, images = real_images("plant", 2)
    assert METHODS["rise"].fast == {"masks": 120, "batch_size": 120}
    whole = explain(member, images, targets=[0, 1], method="rise", masks=120, batch_size=120).maps
    in_parts = explain(member, images, targets=[0, 1], method="rise", masks=120, batch_size=64).maps
    np.testing.assert_allclose(whole, in_parts, atol=1e-5)


def test_explaining_does_not_keep_the_model_alive(real_images):
    import gc
    import weakref

    from lifelens.explain.base import _HANDLES

    _, images = real_images("plant", 1)
    model = quadrant_model(images)
    for method in BLACK_BOX:
        explain(model, images, method=method, **({"masks": 32} if method == "rise" else {"max_evals": 32}))
    gone, key = weakref.ref(model), id(model)
    assert key in _HANDLES
    del model
    gc.collect()
    assert gone() is None and key not in _HANDLES
