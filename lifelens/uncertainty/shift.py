"""What happens to accuracy, calibration, conformal coverage and uncertainty under shift.

Acquisition shifts are applied to the decoded photograph BEFORE the task's preparation,
as a camera or a scanner would produce them (a blurred fundus photo is then contrast-
normalised like any other); each has three severities. Real shifts are other data: other
tasks' images and the task's near-distribution folders.

``shift_report`` scores the shipped predictor (the deep ensemble) on our test split and on
every shifted version of it, and asks how well each uncertainty score separates the
shifted images from the clean ones (AUROC; 0.5 = it does not notice).
"""
from __future__ import annotations

import numpy as np

# kind -> the three severities' parameter (mild, medium, strong)
SHIFTS = {
    "blur": (1.0, 2.0, 4.0),  # Gaussian sigma in pixels at 256 px across the image
    "noise": (8.0, 16.0, 32.0),  # Gaussian sensor noise, standard deviation in grey levels
    "jpeg": (30, 12, 5),  # JPEG quality
    "brightness": (1.3, 1.6, 2.0),  # multiply intensities (overexposure)
    "contrast": (0.7, 0.5, 0.3),  # scale deviations from the mean
    "rotation": (15.0, 30.0, 60.0),  # degrees
    "crop": (0.85, 0.7, 0.55),  # keep this share of the side, centred, scaled back up
    # Another white balance: log gain of red (and minus that of blue), a warmer cast; 0.35 is
    # red x1.42, blue x0.70. Random in hue when a fault draws it (see apply_shift).
    "colour": (0.1, 0.2, 0.35),
}
LEVEL = "0.9"
COLOUR_ONLY = ("colour",)  # kinds a greyscale image does not have

# Camera faults a training image may be shown through (``random_fault``, the recipe's
# ``acquisition_faults``): the photometric kinds above, each drawn up to about the medium
# severity, so the strongest severity of SHIFTS stays beyond anything seen in training.
# Geometry (rotation, crop) is the augmenter's, on every image.
FAULT_RANGES = {
    "blur": (0.3, 2.0),
    "noise": (2.0, 16.0),
    "jpeg": (12, 60),
    "brightness": (0.7, 1.6),  # under- and overexposure
    "contrast": (0.5, 1.2),
    "colour": (0.05, 0.25),
}


def shift_kinds(channels: int) -> list[str]:
    """The kinds of :data:`SHIFTS` an image of ``channels`` channels can undergo (a greyscale
    film has no white balance)."""
    return [k for k in SHIFTS if channels == 3 or k not in COLOUR_ONLY]


def apply_shift(image: np.ndarray, kind: str, amount: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """A uint8 (H, W, C) image as a camera with this fault would give it; uint8, same shape.

    ``amount`` is the kind's own parameter (see :data:`SHIFTS`; the identity is 0 for blur,
    noise and colour, 100 for jpeg, 1 for brightness, contrast and crop, 0 for rotation).
    A colour cast is warmer without ``rng`` and of a random hue with it.
    """
    import cv2

    x = np.asarray(image)
    h, w = x.shape[:2]
    scale = max(h, w) / 256.0
    if kind == "blur":
        out = cv2.GaussianBlur(x, (0, 0), amount * scale) if amount > 0 else x
    elif kind == "noise":
        # Fixed unless an rng is given: the same image, the same noise (training faults pass theirs).
        noise = (rng or np.random.default_rng(0)).normal(0.0, amount, x.shape)
        out = np.clip(x + noise, 0, 255)
    elif kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", x if x.shape[-1] == 1 else x[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(amount)])
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        out = out.reshape(x.shape) if x.shape[-1] == 1 else out[..., ::-1]
    elif kind == "brightness":
        out = np.clip(x.astype(np.float32) * amount, 0, 255)
    elif kind == "contrast":
        mean = x.reshape(-1, x.shape[-1]).mean(axis=0)
        out = np.clip((x.astype(np.float32) - mean) * amount + mean, 0, 255)
    elif kind == "rotation":
        m = cv2.getRotationMatrix2D((w / 2, h / 2), amount, 1.0)
        out = cv2.warpAffine(x, m, (w, h), borderMode=cv2.BORDER_CONSTANT).reshape(x.shape)
    elif kind == "crop":
        ch, cw = max(1, int(h * amount)), max(1, int(w * amount))
        top, left = (h - ch) // 2, (w - cw) // 2
        out = cv2.resize(x[top:top + ch, left:left + cw], (w, h), interpolation=cv2.INTER_LINEAR).reshape(x.shape)
    elif kind == "colour":
        if x.shape[-1] != 3:
            raise ValueError("A colour cast needs a colour image.")
        angle = 0.0 if rng is None else rng.uniform(0.0, 2 * np.pi)
        # Log gains in the plane where grey stays grey: angle 0 is red up, blue down (warmer).
        direction = (np.cos(angle) * np.array([1.0, 0.0, -1.0]) / np.sqrt(2)
                     + np.sin(angle) * np.array([1.0, -2.0, 1.0]) / np.sqrt(6))
        out = np.clip(x.astype(np.float32) * np.exp(amount * np.sqrt(2) * direction).astype(np.float32), 0, 255)
    else:
        raise ValueError(f"Unknown shift {kind!r}; choose one of {', '.join(SHIFTS)}.")
    return np.asarray(out).astype(np.uint8).reshape(x.shape)


def random_fault(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8 (H, W, C), decoded, before the task's preparation) through one camera
    fault of :data:`FAULT_RANGES`, its kind and amount drawn uniformly from ``rng``."""
    kinds = [k for k in FAULT_RANGES if k in shift_kinds(np.asarray(image).shape[-1])]
    kind = kinds[rng.integers(len(kinds))]
    low, high = FAULT_RANGES[kind]
    return apply_shift(image, kind, rng.uniform(low, high), rng)


def scores(members: np.ndarray, sets: np.ndarray) -> dict[str, np.ndarray]:
    """Uncertainty scores per image, higher = less sure: (M, N, K) member softmaxes and
    (N, K) conformal sets -> {"max_softmax" (1 - max of the mean), "entropy",
    "mutual_information", "set_size"}, each (N,)."""
    from lifelens.uncertainty import metrics

    mean = members.mean(axis=0)
    return {"max_softmax": 1.0 - mean.max(axis=1), "entropy": metrics.entropy(mean),
            "mutual_information": metrics.mutual_information(members) if len(members) > 1 else np.zeros(len(mean)),
            "set_size": sets.sum(axis=1).astype(np.float64)}


def _condition(spec, calibration, members, labels, threshold=None) -> dict:
    """Accuracy, ECE, conformal coverage and set size of one (shifted) set; labels may be None."""
    from lifelens.scoring import predicted_class
    from lifelens.uncertainty import conformal, metrics

    mean = members.mean(axis=0)
    sets = conformal.prediction_sets(calibration, mean / mean.sum(axis=1, keepdims=True), LEVEL)
    row = {"n": int(len(mean)), "mean_set_size": float(sets.sum(axis=1).mean()),
           "mean_scores": {k: float(v.mean()) for k, v in scores(members, sets).items()}}
    if labels is not None:
        row["accuracy"] = float((predicted_class(spec, mean, threshold) == labels).mean())
        row["ece"] = metrics.expected_calibration_error(mean, labels)
        row["coverage"] = float(sets[np.arange(len(labels)), labels].mean())
    return row, sets


def _auroc(clean: dict, shifted: dict) -> dict:
    from sklearn.metrics import roc_auc_score

    out = {}
    for name in clean:
        truth = np.r_[np.zeros(len(clean[name])), np.ones(len(shifted[name]))]
        values = np.r_[clean[name], shifted[name]]
        out[name] = float(roc_auc_score(truth, values)) if np.ptp(values) > 0 else 0.5
    return out


def shift_report(task_model, raw_test: list, labels: np.ndarray, real: dict, log=print) -> dict:
    """The card's ``shift`` record.

    raw_test: decoded uint8 test images (as ``TaskSpec.load_image`` gives them); labels (N,);
    real: {name: prepared images (n, S, S, C)} of real shifts (unlabelled for this task).
    Returns {"level": "0.9", "clean": {...}, "acquisition": {kind: [per severity {...,
    "severity", "amount", "auroc": {score: value}}]}, "real": {name: {..., "auroc"}}}.
    """
    from lifelens.models import member_probabilities
    from lifelens.uncertainty import conformal

    spec = task_model.spec
    calibration = conformal.from_card(task_model.card)["lac"]
    threshold = task_model.card.get("threshold")
    prepare = lambda images: np.stack([spec.prepare_image(im) for im in images])  # noqa: E731
    clean_members = member_probabilities(task_model, prepare(raw_test))
    clean, clean_sets = _condition(spec, calibration, clean_members, labels, threshold)
    clean_scores = scores(clean_members, clean_sets)
    report = {"level": LEVEL, "predictor": "deep ensemble mean", "clean": clean, "acquisition": {}, "real": {}}
    for kind in shift_kinds(spec.channels):
        amounts = SHIFTS[kind]
        report["acquisition"][kind] = []
        for severity, amount in enumerate(amounts, start=1):
            members = member_probabilities(task_model, prepare([apply_shift(im, kind, amount) for im in raw_test]))
            row, sets = _condition(spec, calibration, members, labels, threshold)
            row.update(severity=severity, amount=amount, auroc=_auroc(clean_scores, scores(members, sets)))
            report["acquisition"][kind].append(row)
        log(f"[{spec.id}] shift {kind}: accuracy " + ", ".join(f"{r['accuracy']:.3f}" for r in report["acquisition"][kind])
            + f"; coverage " + ", ".join(f"{r['coverage']:.3f}" for r in report["acquisition"][kind]))
    for name, images in real.items():
        members = member_probabilities(task_model, images)
        row, sets = _condition(spec, calibration, members, None)
        row["auroc"] = _auroc(clean_scores, scores(members, sets))
        report["real"][name] = row
    return report
