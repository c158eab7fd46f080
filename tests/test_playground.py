"""The convolution playground: exact numbers, the output-size formula, numpy == OpenCV."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lifelens import playground as pg
from lifelens.imaging import decode_image


def naive_correlate(image, kernel, stride, pad_before, pad_after, pad_cols=None):
    """Textbook loops, written independently of the library (2-D only). ``pad_cols``:
    (before, after) for the columns when they differ from the rows'."""
    left, right = pad_cols or (pad_before, pad_after)
    padded = np.zeros((image.shape[0] + pad_before + pad_after, image.shape[1] + left + right))
    padded[pad_before:pad_before + image.shape[0], left:left + image.shape[1]] = image
    kh, kw = kernel.shape
    rows = (padded.shape[0] - kh) // stride + 1
    cols = (padded.shape[1] - kw) // stride + 1
    out = np.zeros((rows, cols))
    for r in range(rows):
        for c in range(cols):
            total = 0.0
            for i in range(kh):
                for j in range(kw):
                    total += padded[r * stride + i, c * stride + j] * kernel[i, j]
            out[r, c] = total
    return out


def test_worked_example_is_exact():
    out = pg.convolve2d(pg.EXAMPLE_IMAGE, pg.EXAMPLE_KERNEL, stride=1, padding="valid")
    expected = np.array([[-5, -4, 0, 8], [-10, -2, 2, 3], [0, -2, -4, -7], [-3, -2, -3, -16]])
    assert out.shape == (4, 4)
    assert np.array_equal(out, expected)
    # the same numbers from OpenCV, which is what the playground uses on real images
    assert np.array_equal(pg.apply_kernel(pg.EXAMPLE_IMAGE, pg.EXAMPLE_KERNEL, padding="valid"), expected)


def test_worked_example_steps_show_every_number():
    steps = pg.convolution_steps(pg.EXAMPLE_IMAGE, pg.EXAMPLE_KERNEL)
    assert len(steps) == 16
    first = steps[0]
    assert first["window"] == [[3, 0, 1], [1, 5, 8], [2, 7, 2]]
    assert first["products"] == [[3, 0, -1], [1, 0, -8], [2, 0, -2]]
    assert first["value"] == -5
    assert first["expression"].endswith("= -5") and "1x(-1)" in first["expression"]
    last = steps[-1]
    assert (last["row"], last["col"], last["value"]) == (3, 3, -16)
    assert [s["value"] for s in steps] == pg.convolve2d(pg.EXAMPLE_IMAGE, pg.EXAMPLE_KERNEL).ravel().tolist()


def test_max_pooling_worked_example():
    out = pg.max_pool2d(pg.EXAMPLE_IMAGE, size=2, stride=2)
    assert np.array_equal(out, [[5, 9, 7], [7, 5, 8], [4, 6, 9]])
    steps = pg.pooling_steps(pg.EXAMPLE_IMAGE)
    assert [s["value"] for s in steps] == out.ravel().tolist()
    assert steps[1]["argmax"] == (1, 3)  # the 9 in row 1, column 3
    # overlapping windows (size 3, stride 1) follow the same formula
    assert pg.max_pool2d(pg.EXAMPLE_IMAGE, size=3, stride=1).shape == (4, 4)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 20), m=st.integers(3, 20), k=st.integers(1, 5), stride=st.integers(1, 4),
    padding=st.sampled_from(["valid", "same", 0, 1, 2]), seed=st.integers(0, 2**16),
)
def test_output_size_formula_and_values(n, m, k, stride, padding, seed):
    if padding == "valid" or isinstance(padding, int):
        p = 0 if padding == "valid" else padding
        before = after = p
        cols = (before, after)
    else:  # Keras: ceil(n / stride) outputs, the total padding that needs, the smaller half first
        total = max((-(-n // stride) - 1) * stride + k - n, 0)
        before, after = total // 2, total - total // 2
        total_m = max((-(-m // stride) - 1) * stride + k - m, 0)
        cols = (total_m // 2, total_m - total_m // 2)
    if n + before + after < k or m + sum(cols) < k:
        with pytest.raises(ValueError):
            pg.convolve2d(np.zeros((n, m)), np.ones((k, k)), stride, padding)
        return
    rng = np.random.default_rng(seed)
    image = rng.integers(-9, 10, (n, m)).astype(float)
    kernel = rng.integers(-3, 4, (k, k)).astype(float)
    out = pg.convolve2d(image, kernel, stride, padding)
    expected_shape = ((n + before + after - k) // stride + 1, (m + sum(cols) - k) // stride + 1)
    assert out.shape == expected_shape
    assert pg.output_size(n, k, stride, padding) == expected_shape[0]
    if k % 2 == 1 and isinstance(padding, str) and padding == "same":
        assert out.shape == (-(-n // stride), -(-m // stride))  # "same" = ceil(n / stride), as in Keras
    assert np.array_equal(out, naive_correlate(image, kernel, stride, before, after, cols))
    assert np.allclose(pg.apply_kernel(image, kernel, stride, padding), out, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 30), size=st.integers(1, 4), stride=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_max_pool_matches_loops(n, size, stride, seed):
    image = np.random.default_rng(seed).normal(size=(n, n + 3))
    out = pg.max_pool2d(image, size, stride)
    assert out.shape == ((n - size) // stride + 1, (n + 3 - size) // stride + 1)
    for r in range(out.shape[0]):
        for c in range(out.shape[1]):
            assert out[r, c] == image[r * stride:r * stride + size, c * stride:c * stride + size].max()


def test_named_kernels():
    assert len(pg.KERNELS) >= 9
    for name, (kernel, description) in pg.KERNELS.items():
        assert kernel.shape == (3, 3) and description
    for name in ("vertical edge", "horizontal edge", "sobel x", "sobel y", "laplacian"):
        assert pg.named_kernel(name).sum() == 0
    for name in ("box blur", "gaussian blur", "sharpen", "identity"):
        assert pg.named_kernel(name).sum() == pytest.approx(1.0)
    assert np.array_equal(pg.named_kernel("Sobel_X"), [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    with pytest.raises(ValueError, match="Unknown kernel"):
        pg.named_kernel("emboss-3000")
    # a vertical step edge: the vertical-edge kernel fires on it, the horizontal one does not
    step = np.zeros((8, 8))
    step[:, 4:] = 10
    vertical = pg.convolve2d(step, pg.named_kernel("vertical edge"))
    horizontal = pg.convolve2d(step, pg.named_kernel("horizontal edge"))
    assert np.abs(vertical).max() == 30 and np.abs(horizontal).max() == 0
    assert np.array_equal(np.nonzero(vertical.any(axis=0))[0], [2, 3])  # only windows straddling column 3|4


def test_typed_kernel():
    assert np.allclose(pg.parse_kernel("1/9 1/9 1/9; 1/9 1/9 1/9\n1/9, 1/9, 1/9"), np.full((3, 3), 1 / 9))
    assert np.array_equal(pg.parse_kernel("[[0,-1,0],[-1,5,-1],[0,-1,0]]"), pg.named_kernel("sharpen"))
    with pytest.raises(ValueError, match="needs 9 numbers"):
        pg.parse_kernel("1 2 3 4 5 6 7 8")
    with pytest.raises(ValueError, match="not a number"):
        pg.parse_kernel("1 2 3 4 x 6 7 8 9")
    with pytest.raises(ValueError, match="not a number"):
        pg.parse_kernel("1 2 3 4 1/0 6 7 8 9")


def test_bad_arguments_raise_plain_errors():
    with pytest.raises(ValueError, match="padding"):
        pg.convolve2d(np.zeros((5, 5)), np.ones((3, 3)), padding="reflect")
    with pytest.raises(ValueError, match="larger than the padded input"):
        pg.convolve2d(np.zeros((2, 2)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="stride"):
        pg.convolve2d(np.zeros((5, 5)), np.ones((3, 3)), stride=0)
    with pytest.raises(ValueError, match="finite"):
        pg.convolve2d(np.zeros((5, 5)), np.array([[np.nan]]))


@pytest.mark.parametrize("task_id", ["plant", "mammo"])
def test_real_image_numpy_and_opencv_agree(task_id, data_root):
    """Colour and greyscale photographs, every named kernel, with stride and padding."""
    from lifelens.tasks import get_task

    spec = get_task(task_id)
    sample = spec.samples()[0]
    image = decode_image((spec.data_dir() / "images" / sample.path).read_bytes(), channels=spec.channels)
    image = pg.apply_kernel(image, pg.named_kernel("box blur"), stride=max(1, image.shape[0] // 100))  # keep it small
    for name in pg.KERNELS:
        kernel = pg.named_kernel(name)
        for stride, padding in ((1, "same"), (2, "valid"), (3, 1)):
            fast = pg.apply_kernel(image, kernel, stride, padding)
            exact = pg.convolve2d(image, kernel, stride, padding)
            assert fast.shape == exact.shape
            assert np.allclose(fast, exact, rtol=1e-5, atol=1e-3), (name, stride, padding)
    shown = pg.response_to_display(pg.apply_kernel(image, pg.named_kernel("sobel x")), pg.named_kernel("sobel x"))
    assert shown.dtype == np.uint8 and shown.max() == 255 and shown.min() < 50


def test_large_kernel_opencv_path_agrees():
    """cv2.filter2D switches to a DFT for big kernels: still the same numbers."""
    rng = np.random.default_rng(3)
    image, kernel = rng.normal(size=(40, 37, 3)), rng.normal(size=(13, 13))
    assert np.allclose(pg.apply_kernel(image, kernel, 2, "same"), pg.convolve2d(image, kernel, 2, "same"), atol=1e-3)


def test_worked_example_figure():
    fig = pg.worked_example_figure(at=(3, 3))
    assert fig.dtype == np.uint8 and fig.ndim == 3 and fig.shape[2] == 3
    assert (fig == [255, 140, 0]).all(axis=-1).sum() > 50  # the outlined window and output cell
    with pytest.raises(ValueError, match="outside"):
        pg.worked_example_figure(at=(4, 0))
    pooled = pg.pooling_figure(at=(2, 2))
    assert pooled.dtype == np.uint8 and (pooled == [255, 140, 0]).all(axis=-1).sum() > 50


@pytest.mark.parametrize("n,k,stride", [(6, 3, 2), (7, 3, 2), (8, 5, 3), (6, 2, 1), (9, 4, 2)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_padding_stride_and_output_equal_keras_conv2d(n, k, stride, padding):
    """What a student gets from keras.layers.Conv2D on the same input is what the playground shows."""
    import keras

    rng = np.random.default_rng(n * 100 + k)
    image = rng.integers(-9, 10, (n, n)).astype(np.float32)
    kernel = rng.integers(-3, 4, (k, k)).astype(np.float32)
    layer = keras.layers.Conv2D(1, k, strides=stride, padding=padding, use_bias=False)
    layer.build((1, n, n, 1))
    layer.set_weights([kernel[:, :, None, None]])
    expected = np.asarray(layer(image[None, :, :, None]))[0, :, :, 0]
    ours = pg.convolve2d(image, kernel, stride, padding)
    assert ours.shape == expected.shape == (pg.output_size(n, k, stride, padding),) * 2
    np.testing.assert_allclose(ours, expected, atol=1e-4)
