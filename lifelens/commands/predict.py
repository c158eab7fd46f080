HELP = ("predict images with frequentist (softmax, temperature-scaled) and Bayesian (MC dropout, variational head) "
        "confidence; prints one JSON object per image, one per line")

CHUNK = 32  # images run through the network together


def add_arguments(p) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--samples", type=int, default=50, help="posterior samples per Bayesian method (default 50)")
    p.add_argument("--seed", type=int, help="seed for the Bayesian samples (default: fresh draws every run)")
    p.add_argument("--coverage", type=float, default=0.9, choices=(0.8, 0.9, 0.95),
                   help="coverage of the conformal prediction set (default 0.9)")


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
            "threshold": task_model.card.get("threshold") if spec.operating_point else None,
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


def run(args) -> int:
    import json
    import sys

    from lifelens.commands._common import FileFailures, read_images
    from lifelens.models import ModelError, load_task_model
    from lifelens.tasks import get_task

    if args.samples < 1:
        print("lifelens: --samples must be at least 1", file=sys.stderr)
        return 2
    try:
        spec = get_task(args.task)
        task_model = load_task_model(spec)
    except KeyError as exc:
        print(f"lifelens: {exc.args[0]}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"lifelens: {exc}", file=sys.stderr)
        return 2
    temperature = task_model.card.get("temperature")
    temperature = float(temperature) if isinstance(temperature, (int, float)) and temperature > 0 else None
    failures = FileFailures()
    paths, prepared = [], []

    def flush():
        for record in records(task_model, paths, prepared, temperature, args.samples, args.seed, args.coverage):
            print(json.dumps(record), flush=True)
        paths.clear()
        prepared.clear()

    for path, _image, x in read_images(spec, args.images, failures):
        paths.append(path)
        prepared.append(x)
        if len(paths) == CHUNK:
            flush()
    if paths:
        flush()
    return failures.exit_code
