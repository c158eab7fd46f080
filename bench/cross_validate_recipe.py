"""Recipe variants compared by grouped K-fold cross-validation over the training and
validation images (never the test split): for a task whose validation split is too small to
tell two recipes apart (mammography: 52 films, so one AUC has a standard error near 0.08).

Fold k is scored by a network trained on the other folds but one, with the next fold
(k + 1) as its validation images (epoch selection, BatchNorm statistics): no film is scored
by a network that was selected on it. Every variant sees the same folds and seeds, so the
variants' differences are paired, film by film. Folds: lifelens.data.grouped_folds
(stratified by label, grouped by the task's group column: a patient's films stay together).

    python bench/cross_validate_recipe.py mammo shipped epochs=24 input_size=448,patch_size=128 --last-epoch

A variant is ``shipped`` or comma-separated ``key=value`` replacements of the task spec's
fields (``input_size``, ``patch_size``) or of its recipe's (``epochs``, ``mixup_alpha``,
``epoch_selection=best`` ...). Each fold's scores are kept in runs/cv/<task>/<key>/fold<k>.npz,
the key a digest of the variant's whole recipe and sizes (written beside them in variant.json),
so an interrupted run resumes where it stopped and ``shipped`` never reads folds trained for an
earlier recipe. Prints, per variant, each fold's selection score (AUC of the
positive class, or balanced accuracy) and their mean; then the score pooled over every
cross-validated image (which also charges the folds' networks for disagreeing in calibration)
with a 95 % interval from resampling groups and the NLL of those probabilities, and its paired
difference from the first variant (or the reading ``--against`` names) with its interval.
``--last-epoch`` also scores each variant's folds with their networks' last epoch in place of
the selected one (read from the fold's run folder, no training), with the BatchNorm moving
statistics as trained and with exact statistics of the fold's training images: whether
selecting on one small fold, and recalibrating, are worth their noise; and, for a variant that
averages its last epochs' weights (``average_last_epochs=8``), the averages of fewer of them.

Not a ``bench_*`` module: it measures a choice, not a time, so ``make bench`` skips it.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from lifelens import config, data, scoring  # noqa: E402
from lifelens.tasks import TaskSpec, get_task  # noqa: E402
from lifelens.uncertainty.metrics import negative_log_likelihood  # noqa: E402

SPEC_FIELDS = ("input_size", "patch_size")


def variant_spec(spec: TaskSpec, variant: str) -> TaskSpec:
    """The task spec with a variant's replacements (``shipped``: none)."""
    if variant == "shipped":
        return spec
    on_spec, on_recipe = {}, {}
    for item in variant.split(","):
        key, value = item.split("=")
        current = getattr(spec if key in SPEC_FIELDS else spec.recipe, key)
        if isinstance(current, bool):
            if value.lower() not in ("true", "false"):
                raise ValueError(f"{key} is true or false, not {value!r}")
            parsed = value.lower() == "true"
        else:
            parsed = type(current)(value)
        (on_spec if key in SPEC_FIELDS else on_recipe)[key] = parsed
    return dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, **on_recipe), **on_spec)


def variant_record(spec: TaskSpec) -> dict:
    """What a variant trains: its sizes and its whole recipe (the cache is keyed by it)."""
    return {"input_size": spec.input_size, "patch_size": spec.patch_size, "recipe": dataclasses.asdict(spec.recipe)}


def variant_folder(spec: TaskSpec) -> Path:
    """runs/cv/<task>/<digest of variant_record>, with variant.json saying what it holds."""
    record = json.dumps(variant_record(spec), sort_keys=True)
    root = config.PROJECT_ROOT / "runs" / "cv" / spec.id / hashlib.sha256(record.encode()).hexdigest()[:12]
    root.mkdir(parents=True, exist_ok=True)
    (root / "variant.json").write_text(record)
    return root


def fold_split(parts: list[list[int]], k: int) -> dict[str, list[int]]:
    """Fold ``k``'s sample indices: trained on every fold but ``k`` and ``k + 1``, selected on
    ``k + 1``, scored on ``k``."""
    following = (k + 1) % len(parts)
    return {"train": [i for j, part in enumerate(parts) if j not in (k, following) for i in part],
            "val": list(parts[following]), "test": list(parts[k])}


def fold_scores(spec: TaskSpec, samples: list, parts: list[list[int]], k: int, out: Path) -> dict:
    """Fold ``k`` scored by a network trained and selected as :func:`fold_split` says."""
    from lifelens.models import load_model_file, predict_proba
    from lifelens.train import train

    if out.is_file():
        return dict(np.load(out))
    splits = {name: [samples[i] for i in ix] for name, ix in fold_split(parts, k).items()}
    started = time.perf_counter()
    model_path = train(spec, out.parent / f"fold{k}", member=k, run_dir=out.parent / f"fold{k}_run", splits=splits)
    seconds = time.perf_counter() - started
    model = load_model_file(model_path)
    probs = predict_proba(model, data.load_prepared(spec, splits["test"]), batch_size=16)
    result = {"index": np.array(parts[k]), "probs": probs, "seconds": np.array(seconds)}
    np.savez(out, **result)
    return result


def last_epoch_scores(spec: TaskSpec, images: np.ndarray, parts: list[list[int]], k: int, root: Path) -> dict[str, dict]:
    """Fold ``k`` scored by the last epoch of the network :func:`fold_scores` trained for it,
    by reading name: "last epoch" (BatchNorm moving statistics as trained), "last epoch,
    BatchNorm recalibrated" (exact statistics of its training images) and, where the run kept
    the weights of its last epochs (``average_last_epochs``), "last n epochs averaged" for
    n = 2, 4, 8 ... up to what it kept. ``images``: every sample, prepared at the variant's input size."""
    import keras

    from lifelens.models import build_model, predict_proba
    from lifelens.train import averaged_weights, epoch_weights_file, recalibrate_batchnorm

    run = root / f"fold{k}_run"
    run = run / "fine_tune" if (run / "fine_tune").is_dir() else run
    net = build_model(spec, seed=k)  # the task's input size, as fold_scores's saved network
    split = fold_split(parts, k)

    def read() -> dict:
        return {"index": np.array(split["test"]), "probs": predict_proba(net, images[split["test"]], batch_size=16)}

    last = len(json.loads((run / "state.json").read_text())["history"])
    readings = {}
    for n in (2, 4, 8, 16, 32):
        window = list(range(last - n + 1, last + 1))
        if n < last and all(epoch_weights_file(run, e).is_file() for e in window):
            net.set_weights(averaged_weights(run, window))
            readings[f"last {n} epochs averaged"] = read()
    net.set_weights(keras.saving.load_model(run / "last.keras", safe_mode=True).get_weights())
    readings["last epoch"] = read()
    recalibrate_batchnorm(net, images[sorted(split["train"])])
    readings["last epoch, BatchNorm recalibrated"] = read()
    return readings


def pooled(results: list[dict]) -> np.ndarray:
    """The probabilities of every cross-validated image, in the order of the folds' ``samples``."""
    order = np.concatenate([r["index"] for r in results])
    return np.concatenate([r["probs"] for r in results])[np.argsort(order)]


def group_bootstrap(groups: np.ndarray, score, reps: int = 2000, seed: int = 0) -> np.ndarray:
    """``score(indices)`` over ``reps`` resamples of whole groups (with replacement)."""
    rng = np.random.default_rng(seed)
    names = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in names}
    out = []
    for _ in range(reps):
        pick = np.concatenate([members[g] for g in rng.choice(names, size=len(names))])
        value = score(pick)
        if np.isfinite(value):
            out.append(value)
    return np.array(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--last-epoch", action="store_true",
                        help="also score each variant by its folds' last epoch instead of the selected one")
    parser.add_argument("--against", help="the printed name the paired differences are taken against "
                                          "(default: the first variant), e.g. 'shipped (last epoch)'")
    args = parser.parse_args(argv)
    spec = get_task(args.task)
    splits = data.task_splits(spec)
    samples = sorted(splits["train"] + splits["val"], key=lambda s: s.path)  # never the test split
    parts = data.grouped_folds(samples, args.folds)
    print(f"[{spec.id}] {len(samples)} images (train + validation), {args.folds} folds of "
          + ", ".join(str(len(p)) for p in parts), flush=True)
    labels = np.array([s.label for s in samples])
    groups = np.array([s.group for s in samples])
    scored = {}  # variant (and its last-epoch readings) -> pooled probabilities, in print order
    prepared: dict[int, np.ndarray] = {}  # every sample by input size, prepared once for --last-epoch
    for variant in args.variants:
        vspec = variant_spec(spec, variant)
        root = variant_folder(vspec)
        results = [fold_scores(vspec, samples, parts, k, root / f"fold{k}.npz") for k in range(args.folds)]
        scored[variant] = pooled(results)
        each = [scoring.selection_score(spec, r["probs"], labels[r["index"]]) for r in results]
        print(f"[{spec.id}] {variant}: fold scores " + ", ".join(f"{v:.3f}" for v in each)
              + f" (mean {np.mean(each):.3f}); trained in {np.mean([float(r['seconds']) for r in results]):.0f} s a fold",
              flush=True)
        if args.last_epoch:
            if vspec.input_size not in prepared:
                prepared[vspec.input_size] = data.load_prepared(vspec, samples)
            last = [last_epoch_scores(vspec, prepared[vspec.input_size], parts, k, root) for k in range(args.folds)]
            for name in last[0]:
                folds = [reading[name] for reading in last]
                scored[f"{variant} ({name})"] = pooled(folds)
                each = [scoring.selection_score(spec, r["probs"], labels[r["index"]]) for r in folds]
                print(f"[{spec.id}] {variant}, {name}: fold scores " + ", ".join(f"{v:.3f}" for v in each)
                      + f" (mean {np.mean(each):.3f})", flush=True)
    first = args.against or args.variants[0]
    if first not in scored:
        raise SystemExit(f"--against: no reading named {first!r}; there are {', '.join(map(repr, scored))}")

    def score(variant, ix):
        return scoring.selection_score(spec, scored[variant][ix], labels[ix]) if len(set(labels[ix])) > 1 else np.nan

    for variant in scored:
        value = score(variant, np.arange(len(labels)))
        low, high = np.percentile(group_bootstrap(groups, lambda ix: score(variant, ix)), [2.5, 97.5])
        line = (f"{variant}: cross-validated selection score {value:.3f} [{low:.3f}, {high:.3f}], "
                f"NLL {negative_log_likelihood(scored[variant], labels):.3f}")
        if variant != first:
            diffs = group_bootstrap(groups, lambda ix: score(variant, ix) - score(first, ix))
            gap = value - score(first, np.arange(len(labels)))
            line += (f"; against {first} {gap:+.3f} [{np.percentile(diffs, 2.5):+.3f}, "
                     f"{np.percentile(diffs, 97.5):+.3f}]")
        print(line, flush=True)


if __name__ == "__main__":
    main()
