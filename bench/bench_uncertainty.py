"""The cost of the shipped deep ensemble and of the shift lab, measured in one run.

* ``shift_lab_update_s``: one slider change of the shift lab on a plant case, warm: the
  shift applied to the photograph, preparation, the ensemble posterior, the conformal set
  and the Grad-CAM map (the work the page's fragment does; goal < 1 s on 2 cores).
* ``ensemble_over_member_predict_ratio``: time to predict one image with the shipped
  ensemble (its members and flip views) over one member's single pass.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import best_of  # noqa: E402

TASK = "plant"
REPEATS = 5


def run() -> dict:
    from lifelens import cases, explain, scoring
    from lifelens.uncertainty import case_prediction
    from lifelens.models import ensemble_proba, load_task_model, predict_proba
    from lifelens.tasks import get_task
    from lifelens.uncertainty import conformal, shift

    spec = get_task(TASK)
    tm = load_task_model(spec)
    case = cases.case_from_sample(spec, cases.gallery(spec)[0])
    calibration = conformal.from_card(tm.card).get("lac")

    def shift_lab_update(blur: float) -> None:
        image = shift.apply_shift(case.image, "blur", blur)
        prepared = spec.prepare_image(image)
        pred = case_prediction.predict_case(tm, prepared, "ensemble" if tm.is_ensemble else "mc_dropout", 30)
        top = int(scoring.predicted_class(spec, pred["mean"][None], tm.card.get("threshold"))[0])
        if calibration is not None:
            conformal.prediction_sets(calibration, case_prediction.shipped_probabilities(tm, prepared, pred), 0.9)
        explain.explain(tm.classifier, prepared, targets=top, method="gradcam")

    shift_lab_update(1.0)  # warm: traces and caches
    blurs = iter(np.linspace(1.5, 4.0, REPEATS))
    update = best_of(lambda: shift_lab_update(next(blurs)), REPEATS, warm_up=False)
    x = case.prepared[None].astype(np.float32)
    ratio = best_of(lambda: ensemble_proba(tm, x), REPEATS) / best_of(lambda: predict_proba(tm.classifier, x), REPEATS)
    return {"shift_lab_update_s": round(update, 3), "shift_lab_update_goal_s": 1.0,
            "ensemble_over_member_predict_ratio": round(ratio, 2), "ensemble_members": len(tm.members)}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))
