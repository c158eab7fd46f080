HELP = ("predict images (files or whole folders) with frequentist (softmax, temperature-scaled) and Bayesian "
        "(deep ensemble, MC dropout, variational head) confidence; one JSON object per image, one per line, "
        "on stdout or appended to --out (a rerun skips the images already there)")

from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from lifelens.commands._common import add_model_arguments, add_run_arguments  # noqa: E402


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (searched recursively)")
    p.add_argument("--samples", type=int, default=50, help="posterior samples per Bayesian method (default 50)")
    p.add_argument("--seed", type=int, help="seed for the Bayesian samples (default: fresh draws every run)")
    p.add_argument("--coverage", type=float, default=0.9, choices=(0.8, 0.9, 0.95),
                   help="coverage of the conformal prediction set (default 0.9)")
    p.add_argument("--out", help="a JSON Lines file to append the records to; a rerun skips the files already in it")
    add_run_arguments(p)


def _rounded(values, digits: int = 6):
    import numpy as np

    return np.round(np.asarray(values, dtype=np.float64), digits).tolist()


def _bayesian(draws, frequentist) -> dict:
    from lifelens.uncertainty import bayesian_summary

    s = bayesian_summary(draws, frequentist)
    return {
        "samples": int(len(draws)),
        "mean": _rounded(s["mean"]),
        "std": _rounded(s["std"]),
        "interval": _rounded(s["interval"]),
        "entropy": round(s["predictive_entropy"], 6),
        "expected_entropy": round(s["expected_entropy"], 6),
        "mutual_information": round(s["mutual_information"], 6),
        "top_class": s["top_class"],
        "agrees_with_frequentist": s["agrees_with_frequentist"],
    }


def records(task_model, paths: list, prepared, temperature: float | None, samples: int, seed: int | None,
            level: float = 0.9):
    """One JSON-able record per prepared image (N, S, S, C) of ``paths``."""
    import numpy as np

    from lifelens.models import member_probabilities
    from lifelens.scoring import predicted_class
    from lifelens.tasks import DISCLAIMER
    from lifelens.uncertainty import conformal, features_of, head_predictions
    from lifelens.uncertainty.gate import InputGate, gate_path

    spec = task_model.spec
    images = np.stack(prepared)
    feats = features_of(task_model, images)
    heads = head_predictions(task_model, feats, temperature, samples, seed, member_probabilities(task_model, images))
    gate = InputGate.load(gate_path(spec))
    typical = gate.typicality(feats, images) if gate is not None else None
    shipped = heads["ensemble"].mean(axis=0) if heads["ensemble"] is not None else heads["softmax"]
    calibrations = conformal.from_card(task_model.card)
    called = predicted_class(spec, shipped, task_model.card.get("threshold"))
    for i, path in enumerate(paths):
        frequentist = heads["temperature"][i]
        bayes = {name: None if heads[name] is None else _bayesian(heads[name][:, i], frequentist)
                 for name in ("ensemble", "mc_dropout", "variational")}
        top = int(np.argmax(frequentist))
        yield {
            "file": str(path),
            "task": spec.id,
            "class_names": spec.class_names,
            # Whether the image looks like the task's images at all: when not, the prediction means nothing.
            "typicality": None if typical is None else round(float(typical[i]), 4),
            "in_domain": None if typical is None else bool(gate.in_domain(typical[i])),
            # The shipped answer: the deep ensemble's mean, called at the card's threshold where the task has one.
            "prediction": spec.class_names[int(called[i])],
            "probabilities": _rounded(shipped[i]),
            # The card's decision rule: a probability threshold (binary) or grade cut points (ordinal).
            "threshold": task_model.card.get("threshold") if spec.operating_point or spec.ordinal else None,
            # Sets of classes that hold the true one 90 % of the time on images like ours.
            "conformal": conformal.image_sets(calibrations, shipped[i], spec.class_names, level)
            if calibrations else None,
            "frequentist": {
                "probabilities": _rounded(heads["softmax"][i]),
                "temperature_scaled": _rounded(frequentist),
                "temperature": temperature,
                "top_class": top,
                "prediction": spec.class_names[top],
            },
            "bayesian": bayes,
            # Every available Bayesian posterior mean picks the frequentist top class.
            "agree": all(b["agrees_with_frequentist"] for b in bayes.values() if b is not None),
            "disclaimer": DISCLAIMER,
        }


def opened_records(target, opened, paths: list, prepared, samples: int, seed: int | None):
    """One JSON-able record per prepared image of a user's model (``--model``)."""
    import numpy as np

    from lifelens.tasks import DISCLAIMER
    from lifelens.uncertainty import bayesian_summary
    from lifelens.uncertainty.tta import posterior_draws

    names = target.class_names()
    softmax, draws, method, note = posterior_draws(opened, np.stack(prepared), samples, 0 if seed is None else seed)
    for i, path in enumerate(paths):
        s = bayesian_summary(draws[:, i], softmax[i])
        yield {
            "file": str(path), "model": Path(target.model).name, "format": opened.format, "class_names": names,
            "prediction": names[int(np.argmax(softmax[i]))], "probabilities": _rounded(softmax[i]),
            "uncertainty": {"method": method, "note": note, "mean": _rounded(s["mean"]),
                            "interval": _rounded(s["interval"]), "top_class": names[s["top_class"]],
                            "entropy": round(s["predictive_entropy"], 6),
                            "mutual_information": round(s["mutual_information"], 6)},
            "disclaimer": DISCLAIMER,
        }


@dataclass(frozen=True)
class PredictJob:
    """The per-batch function of ``predict``: file paths -> records (or {"file", "error"})."""

    target: object  # lifelens.batch_run.ModelTarget
    samples: int = 50
    seed: int | None = None
    coverage: float = 0.9

    def __call__(self, paths: list[str]) -> list[dict]:
        from lifelens.batch_run import read_batch

        good, _images, prepared, errors = read_batch(self.target, paths)
        if not good:
            return errors
        loaded = self.target.load()
        if self.target.task:
            temperature = loaded.card.get("temperature")
            temperature = float(temperature) if isinstance(temperature, (int, float)) and temperature > 0 else None
            found = records(loaded, good, prepared, temperature, self.samples, self.seed, self.coverage)
        else:
            found = opened_records(self.target, loaded, good, prepared, self.samples, self.seed)
        return list(found) + errors


def run(args) -> int:
    import sys

    from lifelens import batch_run
    from lifelens.commands._common import model_target

    if args.samples < 1:
        print("lifelens: --samples must be at least 1", file=sys.stderr)
        return 2
    target = model_target(args)
    if target is None:
        return 2
    job = PredictJob(target, args.samples, args.seed, args.coverage)
    sink = batch_run.JsonLines(args.out) if args.out else batch_run.PrintLines()
    skip = batch_run.done_files(Path(args.out)) if args.out else set()
    summary = batch_run.run(job, batch_run.image_paths(args.images), sink, engine=args.engine, workers=args.workers,
                            address=args.ray_address, batch_size=args.batch_size, skip=skip, label="predict")
    return 2 if summary["failed"] else 0
