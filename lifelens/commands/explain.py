HELP = ("explain a model's prediction for image files or whole folders: an overlay PNG per image and method, "
        "a JSON per image with the prediction and each method's deletion/insertion AUC, and every record "
        "appended to OUT/explanations.jsonl (a rerun skips the images already there)")

from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

from lifelens.commands._common import add_model_arguments, add_run_arguments  # noqa: E402

RECORDS = "explanations.jsonl"


def add_arguments(p) -> None:
    add_model_arguments(p)
    p.add_argument("--single", action="store_true",
                   help="explain the first ensemble member only (default: the mean map of every member)")
    p.add_argument("--method", default="gradcam",
                   help="comma-separated method ids: gradcam, gradcam++, hirescam, layercam, eigencam, scorecam, "
                        "shap, integrated_gradients, occlusion, rise, shap_partition (default: gradcam)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files and/or folders (searched recursively)")
    p.add_argument("--out", required=True, help="folder for the PNGs and JSONs (created if missing)")
    p.add_argument("--target", help="class to explain: index, id or name (default: the predicted class)")
    p.add_argument("--layer", help="layer for CAM methods (default: the last conv layer before pooling)")
    p.add_argument("--option", action="append", default=[], metavar="[METHOD.]NAME=VALUE",
                   help="a method option, e.g. shap.nsamples=32 or steps=16 (every method that has it); repeatable")
    p.add_argument("--colormap", default="jet", help="jet, turbo, viridis, inferno, magma or hot")
    p.add_argument("--alpha", type=float, default=0.45, help="heatmap opacity 0..1")
    p.add_argument("--contour", type=float, default=0.2, help="outline the top fraction of the map (0 = none)")
    p.add_argument("--auc-steps", type=int, default=32, help="deletion/insertion steps")
    p.add_argument("--auc-baseline", default="blur", choices=("blur", "mean", "black"),
                   help="what deleted pixels become (default: a blurred copy of the image)")
    add_run_arguments(p)


def _parse_options(items: list[str], methods: list[str]) -> dict[str, dict]:
    """``[METHOD.]NAME=VALUE`` strings -> {method: {name: value}}; values parsed as JSON when they can be."""
    import json

    from lifelens.explain import METHODS

    options: dict[str, dict] = {m: {} for m in methods}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {item!r} is not NAME=VALUE")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        method, dot, name = key.rpartition(".") if "." in key else ("", "", key)
        targets = [method] if method else [m for m in methods if name in METHODS[m].defaults]
        if method and method not in methods:
            raise ValueError(f"--option {item!r} names method {method!r}, which is not among --method")
        if not targets or any(name not in METHODS[m].defaults for m in targets):
            raise ValueError(f"--option {item!r}: no chosen method has an option {name!r}")
        for m in targets:
            options[m][name] = value
    return options


def _target_index(class_names: list[str], class_ids: list[str], value: str | None) -> int | None:
    if value is None:
        return None
    for i, (name, cid) in enumerate(zip(class_names, class_ids)):
        if value in (str(i), cid, name) or value.lower() == name.lower():
            return i
    raise ValueError(f"--target {value!r} is not one of the classes ({', '.join(class_ids)})")


def _jsonable(options: dict) -> dict:
    return {k: v for k, v in options.items() if isinstance(v, (bool, int, float, str))}


@dataclass(frozen=True)
class ExplainSettings:
    """Everything of the command line an image's explanation depends on (picklable for Ray)."""

    methods: tuple[str, ...]
    options: dict
    target: int | None
    single: bool
    layer: str | None
    colormap: str
    alpha: float
    contour: float
    auc_steps: int
    auc_baseline: str


def stem_for(path: str, repeated: frozenset) -> str:
    """The file-name stem of an image's outputs: its own, or with a short hash of its path when
    another input has the same name (two folders' ``0001.png``); the same in every run."""
    import hashlib

    stem = Path(path).stem
    return f"{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:6]}" if stem in repeated else stem


def _prediction(loaded, is_task: bool, names: list[str], settings: ExplainSettings, path, prepared):
    """(the image's record with its prediction, the model scored, the members explained or None,
    the explained class). Task models: the shipped prediction (the ensemble, at the card's
    threshold); a user's model (``--model``): its own."""
    import numpy as np

    from lifelens import scoring
    from lifelens.tasks import DISCLAIMER

    batch = prepared[None]
    if is_task:
        from lifelens.models import ensemble_proba

        spec, model = loaded.spec, loaded.classifier
        probs = ensemble_proba(loaded, batch)[0]
        top = int(scoring.predicted_class(spec, probs[None], loaded.card.get("threshold"))[0])
        members, ids = ([model] if settings.single else loaded.members), spec.class_ids
        record = {"file": str(path), "image": str(path), "task": spec.id, "ensemble_members": len(loaded.members)}
    else:
        model = loaded.explainable
        probs = loaded.predict(batch)[0]
        top, members, ids = int(np.argmax(probs)), None, names
        record = {"file": str(path), "image": str(path), "model": loaded.name, "format": loaded.format}
    chosen = top if settings.target is None else settings.target
    record.update({
        "disclaimer": DISCLAIMER,
        "prediction": {"class": names[top], "class_id": ids[top],
                       "probabilities": {c: round(float(p), 6) for c, p in zip(names, probs)}},
        "explained_class": names[chosen], "methods": {},
    })
    return record, model, members, chosen


def _explain_image(loaded, is_task: bool, names: list[str], settings: ExplainSettings, path, prepared, stem, out,
                   errors: list) -> dict:
    """Every method's map of one image, written as PNGs; returns the image's JSON record.

    A task model's map is the mean of the members' maps for the explained class (``--single``:
    the first member's alone), its deletion/insertion AUC measured on the first member; a
    user's model is explained with every method its format allows.
    """
    from lifelens import imaging
    from lifelens.explain import METHODS, deletion_auc, explain, explain_ensemble, insertion_auc
    from lifelens.explain.render import overlay_image
    from lifelens.model_formats import method_options

    record, model, members, chosen = _prediction(loaded, is_task, names, settings, path, prepared)
    batch = prepared[None]
    auc = {"steps": settings.auc_steps, "baseline": settings.auc_baseline}
    for method in settings.methods:
        info = METHODS[method]
        layer = settings.layer if info.uses_layer else None
        options = dict(settings.options[method]) if is_task else {**method_options(method, prepared),
                                                                   **settings.options[method]}
        try:
            result = (explain_ensemble(members, batch, chosen, method=method, layer=layer, **options) if members
                      else explain(model, batch, chosen, method=method, layer=layer, **options))
            deletion = float(deletion_auc(model, batch, result.maps, result.targets, **auc)[0])
            insertion = float(insertion_auc(model, batch, result.maps, result.targets, **auc)[0])
        except ValueError as exc:
            errors.append({"file": str(path), "error": f"{method}: {exc}"})
            continue
        picture = overlay_image(result, prepared, colormap=settings.colormap, alpha=settings.alpha,
                                contour_top=settings.contour)
        png = f"{stem}_{method.replace('+', 'p')}.png"
        (out / png).write_bytes(imaging.encode_png(picture))
        record["methods"][method] = {
            "name": info.name, "options": _jsonable(result.options), "layer": result.layer,
            "overlay": png, "signed": result.signed is not None, "members": len(members or [model]),
            "deletion_auc": round(deletion, 6), "insertion_auc": round(insertion, 6),
            "auc_steps": settings.auc_steps, "auc_baseline": settings.auc_baseline,
            "auc_model": "member 0" if is_task else "the model",
        }
        if "std" in result.extra:
            spread = imaging.colorize(result.extra["std"][0] / max(float(result.extra["std"].max()), 1e-6), "magma")
            (out / f"{stem}_{method.replace('+', 'p')}_spread.png").write_bytes(imaging.encode_png(spread))
    return record


@dataclass(frozen=True)
class ExplainJob:
    """The per-batch function of ``explain``: file paths -> records (or {"file", "error"});
    writes each image's PNGs and JSON into ``out``."""

    target: object  # lifelens.batch_run.ModelTarget
    settings: ExplainSettings
    out: str
    repeated: frozenset = frozenset()

    def __call__(self, paths: list[str]) -> list[dict]:
        import json

        from lifelens.batch_run import read_batch

        good, _images, prepared, errors = read_batch(self.target, paths)
        loaded = self.target.load()
        names = self.target.class_names()
        is_task = bool(self.target.task)
        out = Path(self.out)
        records = []
        for path, x in zip(good, prepared):
            stem = stem_for(path, self.repeated)
            record = _explain_image(loaded, is_task, names, self.settings, path, x, stem, out, errors)
            (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
            records.append(record)
        return records + errors


def run(args) -> int:
    import sys
    from collections import Counter

    from lifelens import batch_run, imaging
    from lifelens.commands._common import model_target
    from lifelens.explain import METHODS

    def usage(message: str) -> int:
        print(f"lifelens explain: {message}", file=sys.stderr)
        return 2

    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        return usage(f"unknown method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}")
    if args.colormap not in imaging.COLORMAPS or not 0 <= args.alpha <= 1 or not 0 <= args.contour < 1 or args.auc_steps < 1:
        return usage("--colormap must be one of " + ", ".join(imaging.COLORMAPS)
                     + "; --alpha in [0, 1]; --contour in [0, 1); --auc-steps at least 1")
    try:
        options = _parse_options(args.option, methods)
    except ValueError as exc:
        return usage(str(exc))
    target = model_target(args)
    if target is None:
        return 2
    loaded = target.load()
    if target.task:
        ids = loaded.spec.class_ids
        model = loaded.classifier
    else:
        ids = target.class_names()
        model = loaded.explainable
        refused = {m: loaded.method_support(m) for m in methods if loaded.method_support(m)}
        if refused:
            return usage(" ".join(refused.values()) + f" This model supports: {', '.join(loaded.supported_methods())}.")
    try:
        class_index = _target_index(target.class_names(), ids, args.target)
        for method in methods:  # a wrong layer or option is a usage error, not a failure of every file
            METHODS[method](model, layer=args.layer if METHODS[method].uses_layer else None, **options[method])
    except ValueError as exc:
        return usage(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = batch_run.image_paths(args.images)
    repeated = frozenset(stem for stem, n in Counter(Path(p).stem for p in paths).items() if n > 1)
    settings = ExplainSettings(tuple(methods), options, class_index, args.single, args.layer, args.colormap,
                               args.alpha, args.contour, args.auc_steps, args.auc_baseline)
    job = ExplainJob(target, settings, str(out), repeated)
    summary = batch_run.run(job, paths, batch_run.JsonLines(out / RECORDS), engine=args.engine, workers=args.workers,
                            address=args.ray_address, batch_size=args.batch_size,
                            skip=batch_run.done_files(out / RECORDS), label="explain")
    return 2 if summary["failed"] else 0
