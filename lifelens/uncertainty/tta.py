"""Test-time augmentation (TTA) spread, the uncertainty any model has, and the confidence of
a model someone brings (:class:`lifelens.model_formats.OpenedModel`).

TTA runs the model on views of the image it should answer alike (mirror images and a
slight zoom) and reads the spread of its answers. It is not a posterior: it measures how
much the answer hangs on nuisances of acquisition, which is what a sealed graph (ONNX,
SavedModel) lets us measure. MC dropout, where the model has dropout, samples networks.
"""
from __future__ import annotations

import numpy as np

TTA_VIEWS = ("identity", "mirror left-right", "mirror top-bottom", "rotate 180°",
             "zoom 90 %", "zoom 90 %, mirrored", "zoom 90 %, flipped", "zoom 90 %, rotated")


def tta_views(images: np.ndarray) -> np.ndarray:
    """float32 (N, S, S, C) -> (V, N, S, S, C), V = len(TTA_VIEWS): four flips, each also
    zoomed to the central 90 % and resized back to S."""
    import cv2

    images = np.asarray(images, np.float32)
    if images.ndim == 3:
        images = images[None]
    n, s, _, c = images.shape
    margin = max(1, int(round(s * 0.05)))
    zoomed = np.stack([cv2.resize(im[margin:s - margin, margin:s - margin], (s, s), interpolation=cv2.INTER_LINEAR)
                       .reshape(s, s, c) for im in images])
    views = []
    for base in (images, zoomed):
        views += [base, base[:, :, ::-1], base[:, ::-1, :], base[:, ::-1, ::-1]]
    return np.stack(views).astype(np.float32)


def tta_draws(predict, images: np.ndarray) -> np.ndarray:
    """predict: (M, S, S, C) -> (M, K). Returns float32 (V, N, K): one answer per view."""
    views = tta_views(images)
    v, n = views.shape[:2]
    probs = np.asarray(predict(views.reshape((v * n,) + views.shape[2:])), np.float32)
    return probs.reshape(v, n, -1)


def posterior_draws(opened, images: np.ndarray, samples: int = 30, seed: int = 0) -> tuple:
    """(softmax (N, K), draws (D, N, K), method, note) for prepared images (N, S, S, C) of an
    OpenedModel: MC dropout where the model has dropout layers it can reach (one seeded run
    per image, so an image's draws do not depend on the batch it came in), TTA otherwise (the
    whole batch in one call; its first view is the image itself, so it is the softmax too)."""
    from lifelens.uncertainty.mc_dropout import mc_dropout_predict

    x = np.asarray(images, np.float32)
    reason = opened.method_support("mc_dropout")
    if reason is None:
        softmax = opened.predict(x)
        draws = np.concatenate([mc_dropout_predict(opened.keras_model, x[i:i + 1], samples=samples, seed=seed)
                                for i in range(len(x))], axis=1)
        return softmax, draws, "mc_dropout", f"{len(draws)} networks sampled by the model's own dropout."
    draws = tta_draws(opened.predict, x)
    return draws[0], draws, "tta", f"{reason} The spread shown is over {len(draws)} test-time views instead."


def predict_with_uncertainty(opened, prepared: np.ndarray, samples: int = 30, seed: int = 0) -> dict:
    """Both confidences for one prepared image (S, S, C) in [0, 255] of an OpenedModel.

    Returns {"softmax": (K,), "method": "mc_dropout" or "tta", "method_note": why this one,
    plus :func:`~lifelens.uncertainty.metrics.bayesian_summary` of the draws (mean, interval,
    mutual information ...)} (:func:`posterior_draws`).
    """
    from lifelens.uncertainty.metrics import bayesian_summary

    softmax, draws, method, note = posterior_draws(opened, np.asarray(prepared, np.float32)[None], samples, seed)
    return {"softmax": softmax[0], "method": method, "method_note": note, **bayesian_summary(draws[:, 0], softmax[0])}
