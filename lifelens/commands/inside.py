HELP = ("inside the network: write the first-layer filters, the images that excite the last block's "
        "channels and, given images, each block's feature maps as PNGs")


def add_arguments(p) -> None:
    p.add_argument("--task", required=True)
    p.add_argument("--image", nargs="*", default=[], metavar="IMG",
                   help="image file(s) to show the feature hierarchy of (one PNG each)")
    p.add_argument("--out", default="out/inside", help="folder for the PNGs (created if needed)")
    p.add_argument("--layer", help="layer for activation maximisation (default: the last block's output)")
    p.add_argument("--top", type=int, default=8, help="feature maps shown per block")
    p.add_argument("--precompute", action="store_true",
                   help="(re)build models/<task>.actmax.npz and models/<task>.patches.npz first")


def run(args) -> int:
    import sys
    from pathlib import Path

    import numpy as np

    from lifelens import inside
    from lifelens.batch_run import ModelTarget, read_batch
    from lifelens.commands._common import FileFailures
    from lifelens.imaging import encode_png
    from lifelens.models import ModelError
    from lifelens.tasks import get_task

    try:
        spec = get_task(args.task)
        target = ModelTarget(task=spec.id)
        task_model = target.load()
    except (KeyError, ValueError, ModelError) as exc:
        print(f"lifelens: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    model = task_model.classifier
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"lifelens: cannot create the output folder {out} ({exc.strerror or exc})", file=sys.stderr)
        return 1

    def write(name: str, image: np.ndarray) -> None:
        path = out / name
        path.write_bytes(encode_png(image))
        print(path)

    if args.precompute:
        inside.precompute(task_model, log=lambda line: print(line, file=sys.stderr))

    write(f"{spec.id}_filters.png", inside.filter_grid(model))

    layer = args.layer or inside.block_output_layers(model)[-1]
    try:
        channels = _write_actmax(spec, model, layer, write)
    except ValueError as exc:
        print(f"lifelens: {exc}", file=sys.stderr)
        return 1
    _write_patches(spec, model, layer, channels, write)

    failures = FileFailures()
    for path in args.image:  # one at a time: a bad file is reported in order and the rest carries on
        good, _, prepared, errors = read_batch(target, [path])
        for error in errors:
            failures.report(error["file"], error["error"])
        for x in prepared:
            levels = inside.feature_hierarchy(model, x, top=args.top, task_id=spec.id)
            write(f"{spec.id}_hierarchy_{Path(path).stem}.png", inside.hierarchy_figure(x, levels))
    return failures.exit_code


def _write_actmax(spec, model, layer: str, write) -> list[int]:
    """The images that excite ``layer``'s showcase channels, as one grid PNG; returns the channels."""
    import sys

    import numpy as np

    from lifelens import inside

    channels = inside.cached_layers(model, inside.actmax_cache_path(spec)).get(layer)
    channels = channels or inside.showcase_channels(model, layer, 16)
    result = inside.activation_maximisation(
        model, layer, channels, cache_path=inside.actmax_cache_path(spec),
        progress=lambda done, total: print(f"\ractivation maximisation {done}/{total}", end="", file=sys.stderr))
    titles = None
    votes = inside.class_votes(model)
    if votes is not None and layer == inside.block_output_layers(model)[-1]:
        titles = [f"ch {c} +{spec.class_names[int(np.argmax(votes[c]))][:11]}" for c in result.channels]
    write(f"{spec.id}_actmax_{layer}.png", inside.actmax_grid(result, columns=8, titles=titles))
    return list(result.channels)


def _write_patches(spec, model, layer: str, channels, write) -> None:
    """The training-image patches that excite the first four channels most (only when the
    patch index is precomputed: never a long search here)."""
    from lifelens import inside
    from lifelens.inside import figures

    index = inside.task_patch_index(model, spec)
    if index is None or layer not in index.layers:
        return
    rows = []
    typical = index.layers[layer].mean_activation
    for channel in channels[:4]:
        found = inside.top_patches(index, spec, layer, int(channel))
        if found:
            grid = inside.patches_grid(found, cell=64)
            title = (f"{layer} channel {channel}: the training-image patches that excite it most "
                     f"(typical level {typical[channel]:.2f})")
            rows.append(figures.vstack([figures.text_block(title, grid.shape[1]), grid], gap=0))
    if rows:
        write(f"{spec.id}_patches_{layer}.png", figures.vstack(rows, gap=12))
