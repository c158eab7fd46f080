HELP = ("explain a task model's prediction for image files: an overlay PNG per image and method, "
        "and a JSON per image with the prediction and each method's deletion/insertion AUC")


def add_arguments(p) -> None:
    p.add_argument("--task", required=True, help="a task id of the registry (lifelens.tasks.TASKS)")
    p.add_argument("--single", action="store_true",
                   help="explain the first ensemble member only (default: the mean map of every member)")
    p.add_argument("--method", default="gradcam",
                   help="comma-separated method ids: gradcam, gradcam++, hirescam, layercam, eigencam, scorecam, "
                        "shap, integrated_gradients, occlusion, rise, shap_partition (default: gradcam)")
    p.add_argument("images", nargs="+", metavar="IMAGE")
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


def _target_index(spec, value: str | None) -> int | None:
    if value is None:
        return None
    for i, c in enumerate(spec.classes):
        if value in (str(i), c.id, c.name) or value.lower() == c.name.lower():
            return i
    raise ValueError(f"--target {value!r} is not a class of {spec.id} ({', '.join(spec.class_ids)})")


def _jsonable(options: dict) -> dict:
    return {k: v for k, v in options.items() if isinstance(v, (bool, int, float, str))}


def _explain_image(task_model, args, methods, options, target, path, prepared, stem, out, failures) -> dict:
    """Every method's map of one image, written as PNGs; returns the image's JSON record.

    The prediction is the shipped one (the ensemble, at the card's threshold); a map is the
    mean of the members' maps for that class (``--single``: the first member's alone), and
    its deletion/insertion AUC is measured on the first member.
    """
    import numpy as np

    from lifelens import imaging, scoring
    from lifelens.explain import METHODS, deletion_auc, explain, explain_ensemble, insertion_auc
    from lifelens.explain.render import overlay_image
    from lifelens.models import ensemble_proba
    from lifelens.tasks import DISCLAIMER

    spec, model = task_model.spec, task_model.classifier
    batch = prepared[None]
    probs = ensemble_proba(task_model, batch)[0]
    top = int(scoring.predicted_class(spec, probs[None], task_model.card.get("threshold"))[0])
    chosen = top if target is None else target
    record = {
        "image": str(path), "task": spec.id, "disclaimer": DISCLAIMER, "ensemble_members": len(task_model.members),
        "prediction": {"class": spec.classes[top].name, "class_id": spec.classes[top].id,
                       "probabilities": {c.name: round(float(p), 6) for c, p in zip(spec.classes, probs)}},
        "explained_class": spec.classes[chosen].name, "methods": {},
    }
    members = [model] if args.single else task_model.members
    for method in methods:
        info = METHODS[method]
        layer = args.layer if info.uses_layer else None
        try:
            result = explain_ensemble(members, batch, chosen, method=method, layer=layer, **options[method])
            auc = {"steps": args.auc_steps, "baseline": args.auc_baseline}
            deletion = float(deletion_auc(model, batch, result.maps, result.targets, **auc)[0])
            insertion = float(insertion_auc(model, batch, result.maps, result.targets, **auc)[0])
        except ValueError as exc:
            failures.report(path, f"{method}: {exc}")
            continue
        picture = overlay_image(result, prepared, colormap=args.colormap, alpha=args.alpha, contour_top=args.contour)
        png = f"{stem}_{method.replace('+', 'p')}.png"
        (out / png).write_bytes(imaging.encode_png(picture))
        record["methods"][method] = {
            "name": info.name, "options": _jsonable(result.options), "layer": result.layer,
            "overlay": png, "signed": result.signed is not None, "members": len(members),
            "deletion_auc": round(deletion, 6), "insertion_auc": round(insertion, 6),
            "auc_steps": args.auc_steps, "auc_baseline": args.auc_baseline, "auc_model": "member 0",
        }
        if "std" in result.extra:
            spread = imaging.colorize(result.extra["std"][0] / max(float(result.extra["std"].max()), 1e-6), "magma")
            (out / f"{stem}_{method.replace('+', 'p')}_spread.png").write_bytes(imaging.encode_png(spread))
    return record


def run(args) -> int:
    import json
    import sys
    from pathlib import Path

    from lifelens import imaging
    from lifelens.commands._common import FileFailures, read_images
    from lifelens.explain import METHODS
    from lifelens.models import ModelError, load_task_model
    from lifelens.tasks import get_task

    def usage(message: str) -> int:
        print(f"lifelens explain: {message}", file=sys.stderr)
        return 2

    try:
        spec = get_task(args.task)
    except KeyError as exc:
        return usage(exc.args[0])
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if not methods or unknown:
        return usage(f"unknown method {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}")
    if args.colormap not in imaging.COLORMAPS or not 0 <= args.alpha <= 1 or not 0 <= args.contour < 1 or args.auc_steps < 1:
        return usage("--colormap must be one of " + ", ".join(imaging.COLORMAPS)
                     + "; --alpha in [0, 1]; --contour in [0, 1); --auc-steps at least 1")
    try:
        options = _parse_options(args.option, methods)
        target = _target_index(spec, args.target)
    except ValueError as exc:
        return usage(str(exc))
    try:
        task_model = load_task_model(spec)
    except ModelError as exc:
        print(f"lifelens: {exc}", file=sys.stderr)
        return 1
    model = task_model.classifier
    try:  # a wrong layer or option is a usage error, not a failure of every file
        for method in methods:
            METHODS[method](model, layer=args.layer if METHODS[method].uses_layer else None, **options[method])
    except ValueError as exc:
        return usage(str(exc))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures = FileFailures()
    used_stems: set[str] = set()
    for path, _, prepared in read_images(spec, args.images, failures):
        stem, k = path.stem, 1
        while stem in used_stems:  # two inputs with the same name from different folders
            k += 1
            stem = f"{path.stem}_{k}"
        used_stems.add(stem)
        record = _explain_image(task_model, args, methods, options, target, path, prepared, stem, out, failures)
        (out / f"{stem}.json").write_text(json.dumps(record, indent=1))
    return failures.exit_code
