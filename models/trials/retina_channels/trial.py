# Trial: does the colour balance of the fundus detail keep retina from carrying over to EyePACS?
# After the local-average subtraction, APTOS detail (median std inside the fundus, 160 px, 300
# training photos) is strong in red and green and weak in blue; EyePACS's, contrast-enhanced
# upstream, is as strong in every channel. The shipped preparation caps the detail's pooled
# spread (FUNDUS_MAX_DETAIL_STD), which leaves that imbalance: an EyePACS photo reaches the
# network with more blue detail and less red than any APTOS photo of the training set.
# The trial caps each channel at the APTOS training photos' own profile instead.
# Result (2026-12-05, not adopted; models/EXPERIMENTS.md, "Colour balance of the fundus detail"): member 0
# (retina.channels.keras here) against the shipped member 0, validation: EyePACS referable AUC
# 0.715 -> 0.746, APTOS kappa 0.839 -> 0.815, APTOS NLL 0.725 -> 0.791.
#
# Run from the repository root (PYTHONPATH=.):
#   python models/trials/retina_channels/trial.py profile       the APTOS training profile
#   python models/trials/retina_channels/trial.py probe FILE..  shipped members, each preparation at inference
#   python models/trials/retina_channels/trial.py train K       member K (seed K) on the trial preparation
#   python models/trials/retina_channels/trial.py measure SHIPPED.. -- TRIAL..   both kinds, every source's validation
# Validation images only (never test): bench/measure_members.py's metrics and tempered NLL.
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from lifelens import data, imaging  # noqa: E402
from lifelens.tasks import get_task  # noqa: E402

SPEC = get_task("retina")


def fundus_detail(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, S, 3) float32 detail (the photo minus its local average, as the shipped preparation
    takes it) and the (S, S) bool fundus mask of a resized photo."""
    img = image.astype(np.float32)
    detail = img - cv2.GaussianBlur(img, (0, 0), max(1.0, img.shape[0] / 30))
    return detail, img.mean(axis=-1) > 10


def prepare_fundus_channel_capped(image: np.ndarray, size: int) -> np.ndarray:
    """Resize, subtract the local average colour, cap each channel's detail spread at the APTOS
    training profile (python trial.py profile, scaled to a pooled 9 like the shipped cap), 4x gain."""
    caps = np.array([12.2, 8.5, 4.3], np.float32)
    detail, inside = fundus_detail(imaging.resize(image, size))
    std = detail[inside].std(axis=0) if inside.any() else caps
    out = 4.0 * np.minimum(1.0, caps / np.maximum(std, 1e-6)) * detail + 128.0
    return np.clip(np.where(inside[..., None], out, 128.0), 0, 255)


TRIAL = dataclasses.replace(SPEC, prepare=prepare_fundus_channel_capped)


def profile() -> None:
    train = [s for s in data.training_splits(SPEC)["train"] if s.source == ""]
    pick = np.random.default_rng(0).choice(len(train), 300, replace=False)
    stds = []
    for i in pick:
        detail, inside = fundus_detail(imaging.resize(SPEC.framed(SPEC.load_image(SPEC.image_path(train[i]))),
                                                      SPEC.input_size))
        stds.append(np.append(detail[inside].std(axis=0), detail[inside].std()))
    median = np.median(stds, axis=0)
    print(f"APTOS training photos (300): median detail std R G B {median[:3].round(2)}, pooled {median[3]:.2f}; "
          f"scaled to a pooled 9: {(median[:3] * 9 / median[3]).round(2)}")


def measure(groups: list[tuple[object, list[str]]]) -> None:
    import measure_members as mm
    from lifelens import scoring
    from lifelens.uncertainty.metrics import negative_log_likelihood

    val = data.training_splits(SPEC)["val"]
    labels = np.array([s.label for s in val])
    sources = data.by_source(val)
    raws = {}
    for spec, files in groups:
        images: dict = {}
        for f in files:
            raws[f] = mm.validation_probabilities(spec, val, f, images)
            print(f"{f} ({spec.prepare.__name__}) alone: {mm.key_metrics(spec, labels, raws[f])}"
                  f"{mm.per_source(spec, sources, labels, raws[f])}", flush=True)
        if len(files) > 1:
            probs, t = mm.tempered_mean(np.stack([raws[f] for f in files]), labels)
            print(f"{len(files)} together ({spec.prepare.__name__}): NLL {negative_log_likelihood(probs, labels):.4f} "
                  f"(T {t}), selection score {scoring.selection_score(spec, probs, labels):.4f}, "
                  f"{mm.key_metrics(spec, labels, probs)}{mm.per_source(spec, sources, labels, probs)}", flush=True)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "profile":
        profile()
    elif command == "probe":
        measure([(SPEC, args), (TRIAL, args)])
    elif command == "train":
        from lifelens.train import train

        member = int(args[0])
        out = Path("runs/retina_channels")
        train(TRIAL, out, member=member, run_dir=out / f"member{member}")
    elif command == "measure":
        cut = args.index("--")
        measure([(SPEC, args[:cut]), (TRIAL, args[cut + 1:])])
    else:
        raise SystemExit("usage: trial.py profile | probe FILE.. | train K | measure SHIPPED.. -- TRIAL..")
