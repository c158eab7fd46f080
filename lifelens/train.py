"""Train a task CNN (one deep-ensemble member) from scratch, checkpointing every epoch.

    python -m lifelens train --task plant --member 1 --out models/

Run state lives in ``runs/<task>/member<k>/`` (``last.keras`` each epoch, ``best.keras``
by the validation score, ``state.json`` with the history and the seconds spent). The member
keeps the best epoch's weights, or the last's where the recipe's ``epoch_selection`` says so.
Re-running the same command resumes from the last finished epoch. The recipe (epochs,
stages, class weighting, label smoothing, split fractions) is the task spec's
:class:`~lifelens.tasks.TrainingRecipe`; the training data is the task's own folder
plus its extra sources, each split by its own groups.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from lifelens import config, data, scoring
from lifelens.models import build_model, load_model_file, member_file, sha256_file
from lifelens.tasks import TaskSpec

WEIGHT_DECAY = 1e-4
# A fine-tuning run (``train(init_from=...)``) starts from trained weights at this share of the
# recipe's learning rate, so it adjusts what the member learnt instead of starting over.
FINE_TUNE_RATE_SCALE = 0.25
# The faults shown to validation images come from their own seed, never a member's.
VAL_FAULT_SEED = 10_000
FAULTY_VALIDATION = "; with camera faults in training, on the validation images both as they are and through a fault"
SELECTION_RULE = ("highest validation score on whole validation images of every source (balanced accuracy; "
                  "ROC AUC for a binary task)")
NO_SELECTION = " (the epoch count chosen by cross-validation; no selection on the validation images)"
LAST_EPOCH_RULE = "the last epoch" + NO_SELECTION
AVERAGED_EPOCHS_RULE = "the mean of the last {n} epochs' weights (stochastic weight averaging)" + NO_SELECTION


def augmenter(kind: str, seed: int):
    """A function (batch float32 [0,255] (B, H, W, C), one-hot labels, epoch, batch index) ->
    (augmented batch, labels), fit for the modality. numpy and OpenCV, so it is the same on
    every Keras backend (PyTorch on a GPU machine without TensorFlow) and costs about 50 ms a
    batch of 64 plant leaves on one core. Each batch draws from its own generator (seed, epoch,
    index), so a resumed run repeats the draws. Flips, rotation and zoom are per image;
    brightness, contrast and colour once per batch."""
    import cv2

    rotation = {"natural": 180.0, "dermoscopy": 180.0, "fundus": 180.0, "film": 10.8}[kind]  # degrees
    zoom = {"natural": 0.15, "dermoscopy": 0.15, "fundus": 0.08, "film": 0.1}[kind]
    border = cv2.BORDER_CONSTANT if kind == "fundus" else cv2.BORDER_REFLECT  # a fundus photo has a black surround
    brightness = 0.08 if kind != "film" else 0.05

    def apply(images, labels, epoch: int = 0, index: int = 0):
        rng = np.random.default_rng([seed, epoch, index])
        n, h, w, c = images.shape
        x = np.empty((n, h, w, c), np.float32)
        for i, image in enumerate(images):
            if kind != "film":  # films are canonicalised to face left; a mirror would undo that
                image = image[:, ::-1] if rng.random() < 0.5 else image
                image = image[::-1] if rng.random() < 0.5 else image
            turn = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rng.uniform(-rotation, rotation),
                                           rng.uniform(1 - zoom, 1 + zoom))
            x[i] = cv2.warpAffine(np.ascontiguousarray(image), turn, (w, h), flags=cv2.INTER_LINEAR,
                                  borderMode=border).reshape(h, w, c)
        x /= 255.0
        x += rng.uniform(-brightness, brightness)
        mean = x.mean(axis=(1, 2), keepdims=True)
        x = (x - mean) * rng.uniform(0.85, 1.15) + mean
        if kind == "dermoscopy":  # skin tone and dermoscope colour vary; leaf colour is a disease cue
            saturation, hue = rng.uniform(0.85, 1.15), rng.uniform(-0.02, 0.02) * 360.0
            for i in range(n):
                hsv = cv2.cvtColor(np.clip(x[i], 0.0, 1.0), cv2.COLOR_RGB2HSV)  # hue in degrees
                hsv[..., 0] = np.mod(hsv[..., 0] + hue, 360.0)
                hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0.0, 1.0)
                x[i] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        return np.clip(x, 0.0, 1.0) * 255.0, labels

    return apply


def mixer(alpha: float, seed: int):
    """A function (batch (B, H, W, C), one-hot labels (B, K), epoch, batch index) -> the batch and
    its labels blended with a shuffled copy of themselves by one lambda ~ Beta(alpha, alpha) (mixup,
    Zhang et al. 2018). Labels stay rows that sum to 1. Keras's ``class_weight`` weighs a blended
    label by its larger part. numpy, like :func:`augmenter`.
    """
    def apply(images, labels, epoch: int = 0, index: int = 0):
        rng = np.random.default_rng([seed, epoch, index])
        lam = rng.beta(alpha, alpha)
        order = rng.permutation(len(images))
        return (lam * images + (1.0 - lam) * images[order]).astype(np.float32), \
            (lam * labels + (1.0 - lam) * labels[order]).astype(np.float32)

    return apply


def _fit_arrays(spec: TaskSpec, splits: dict, x_train, y_train, x_val, y_val, data_dir, seed: int):
    """What the network is fitted on: whole images, or lesion patches for a film task.

    Returns (x_train, y_train, x_val, y_val, train input size or None for the task's own).
    """
    if spec.training_unit != "lesion_patches":
        return x_train, y_train, x_val, y_val, None
    px, py = lesion_patches(spec, splits["train"], x_train, data_dir, per_lesion=30, seed=seed)
    vx, vy = lesion_patches(spec, splits["val"], x_val, data_dir, per_lesion=8, seed=seed + 1)
    return px, py, vx, vy, spec.patch_size


def _compiled_model(spec: TaskSpec, seed: int, input_size, steps: int, init_from: Path | None = None):
    """A fresh network, or one starting from ``init_from``'s weights at a quarter of the learning rate."""
    import keras

    recipe = spec.recipe
    model = build_model(spec, seed=seed, input_size=input_size)
    rate = recipe.learning_rate
    if init_from is not None:
        trained = load_model_file(init_from)  # by layer name: a shipped member may carry a variational head too
        for layer in model.layers:
            if layer.weights:
                layer.set_weights(trained.get_layer(layer.name).get_weights())
        rate *= FINE_TUNE_RATE_SCALE
    schedule = keras.optimizers.schedules.CosineDecay(rate, decay_steps=steps, alpha=0.02)
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    return model


def _batches(spec: TaskSpec, x, y, seed: int, x_faulty=None, first_epoch: int = 0):
    """The training batches as a Keras ``PyDataset`` over in-memory arrays (no tf.data, so a
    PyTorch-only GPU machine trains too): reshuffled each epoch, augmented, mixed up when the
    recipe says so. With ``x_faulty`` (the same images through a camera fault), each image is
    drawn from it with probability ``recipe.acquisition_faults``. Batches are numpy float32."""
    import keras

    k, size = spec.num_classes, spec.recipe.batch_size
    onehot = np.eye(k, dtype=np.float32)[y]  # label smoothing and mixup need one-hot
    augment = augmenter(spec.augmentation, seed)
    mix = mixer(spec.recipe.mixup_alpha, seed + 4) if spec.recipe.mixup_alpha > 0 else None
    share = spec.recipe.acquisition_faults if x_faulty is not None else 0.0
    # A last batch of one or two images would drag the BatchNorm moving statistics.
    count = len(x) // size if len(x) >= 2 * size else -(-len(x) // size)

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.epoch = first_epoch
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(x))

        def __len__(self):
            return count

        def __getitem__(self, i):
            rows = self.order[i * size:(i + 1) * size]
            images = x[rows]
            if share > 0:
                faulty = np.random.default_rng([seed, self.epoch, i, 1]).random(len(rows)) < share
                images = np.where(faulty[:, None, None, None], x_faulty[rows], images)
            images, labels = augment(images, onehot[rows], self.epoch, i)
            if mix is not None:
                images, labels = mix(images, labels, self.epoch, i)
            return images, labels

        def on_epoch_end(self):
            self.epoch += 1
            self.order = np.random.default_rng([seed, self.epoch]).permutation(len(x))

    return Batches()


def _epoch_callbacks(spec, run_dir: Path, state: dict, scorer, x_val, y_val, epochs: int, log) -> list:
    """Keras callbacks for one epoch: score it on whole validation images (``val_score`` in
    the logs), save ``best.keras`` by that score and ``last.keras`` (resume) with Keras's
    ModelCheckpoint, then write the run state (history, seconds, best epoch)."""
    import keras

    state_path = run_dir / "state.json"
    scores = [r["val_score"] for r in state["history"]]

    class Score(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            # Runs before the checkpoints (list order), which read val_score from the same logs.
            if scorer is not self.model:  # patch training: copy the weights into the full-size network
                scorer.set_weights(self.model.get_weights())
            logs["val_score"] = selection_score(spec, scorer, x_val, y_val)

    class WriteState(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            state["seconds"] += time.time() - self.t0
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}}
            state["history"].append(row)
            history = [r["val_score"] for r in state["history"]]
            state["best_epoch"] = int(np.argmax(history)) + 1  # the first best, as ModelCheckpoint keeps it
            state_path.write_text(json.dumps(state, indent=1))
            log(f"[{spec.id}] epoch {epoch + 1}/{epochs} loss {row['loss']:.3f} acc {row['accuracy']:.3f} "
                f"val_loss {row['val_loss']:.3f} val_acc {row['val_accuracy']:.3f} "
                f"val_score {row['val_score']:.3f} ({state['seconds']:.0f}s)")

    class KeepAveragedEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 in averaged_epochs(spec, epochs):
                np.savez(epoch_weights_file(run_dir, epoch + 1), *self.model.get_weights())

    return [
        Score(),
        keras.callbacks.ModelCheckpoint(run_dir / "best.keras", monitor="val_score", mode="max", save_best_only=True,
                                        initial_value_threshold=max(scores) if scores else None),
        keras.callbacks.ModelCheckpoint(run_dir / "last.keras"),
        KeepAveragedEpochs(),
        WriteState(),
    ]


def averaged_epochs(spec: TaskSpec, epochs: int) -> list[int]:
    """The epochs (1-based) whose weights the member averages: the recipe's last
    ``average_last_epochs`` of ``epochs``; none when the recipe keeps one epoch."""
    return list(range(max(1, epochs - spec.recipe.average_last_epochs + 1), epochs + 1)) if spec.recipe.average_last_epochs else []


def epoch_weights_file(run_dir: Path, epoch: int) -> Path:
    """Where one epoch's weights are kept for averaging (``np.savez`` of ``get_weights()``)."""
    return Path(run_dir) / f"weights_epoch{epoch:03d}.npz"


def averaged_weights(run_dir: Path, epochs: list[int]) -> list[np.ndarray]:
    """The element-wise mean of those epochs' weights (floating-point variables; any other, such
    as a counter, is the last epoch's)."""
    kept = [np.load(epoch_weights_file(run_dir, e)) for e in epochs]
    stacks = [[f[f"arr_{i}"] for f in kept] for i in range(len(kept[0].files))]
    return [np.mean(s, axis=0).astype(s[-1].dtype) if np.issubdtype(s[-1].dtype, np.floating) else s[-1]
            for s in stacks]


def _resume_or_build(spec, run_dir: Path, seed: int, input_size, steps: int, log, init_from: Path | None = None):
    """(model, state): the last checkpoint and its state if there is one, else a fresh model.

    A fine-tuning run resumes only from the weights it started from: when its start has changed
    (the from-scratch stage trained on), the old epochs belong to another network and it starts again.
    """
    import keras

    started_from = sha256_file(init_from) if init_from else None
    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"history": []}
    if state["history"] and (run_dir / "last.keras").is_file():
        if state.get("started_from") == started_from:
            log(f"[{spec.id}] resuming {run_dir.name} after epoch {len(state['history'])}")
            return keras.saving.load_model(run_dir / "last.keras", safe_mode=True), state
        log(f"[{spec.id}] starting {run_dir.name} again: the weights it started from have changed")
        (run_dir / "best.keras").unlink(missing_ok=True)
    fresh = {"history": [], "seconds": 0.0, "started_from": started_from}
    return _compiled_model(spec, seed, input_size, steps, init_from), fresh


def train(spec: TaskSpec, out_dir: Path, data_dir: Path | None = None, epochs: int | None = None,
          member: int = 0, run_dir: Path | None = None, limit: int | None = None, mixup: float | None = None,
          faults: float | None = None, init_from: Path | None = None, input_size: int | None = None,
          train_sources: tuple[str, ...] | None = None, splits: dict | None = None, log=print) -> Path:
    """Train (or resume) ensemble member ``member`` (seed = member) and write it to
    ``out_dir`` (:func:`~lifelens.models.member_file`) with its entry in the card.

    ``limit`` keeps only the first N training and validation images of each source (smoke tests).
    ``mixup`` and ``faults`` replace the recipe's ``mixup_alpha`` and ``acquisition_faults`` (recipe
    trials; the card records the values used); ``input_size`` replaces the task's (each member's
    row records it; a model of another size is a trial until the spec adopts it). ``init_from``
    fine-tunes a trained member (same task and seed; of any input size, since the weights do not
    depend on it) instead of starting from random weights, at a quarter of the recipe's learning
    rate; its training seconds count in the card's. ``train_sources`` keeps only those sources'
    training images ("" = the task's own folder; a recipe trial): validation is unchanged. ``splits``
    ({"train", "val", ...} lists of samples) replaces the task's split, as a cross-validation fold
    does (bench/cross_validate_recipe.py). A recipe with ``fine_tune_epochs`` does both:
    ``epochs`` from scratch on clean images (in ``run_dir/from_scratch``), then the fine-tuning
    with camera faults (``run_dir/fine_tune``). Returns the path of the saved model.

    When the recipe shows training images through camera faults, epochs (and the BatchNorm
    statistics) are selected on the validation images both as they are and through a fault.
    """
    import dataclasses

    import keras

    if mixup is not None:
        spec = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, mixup_alpha=mixup))
    if faults is not None:
        spec = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, acquisition_faults=faults))
    if input_size is not None:
        spec = dataclasses.replace(spec, input_size=input_size)
    run_dir = Path(run_dir or config.PROJECT_ROOT / "runs" / spec.id / f"member{member}")
    if spec.recipe.fine_tune_epochs > 0 and init_from is None:  # the two stages, each resumable in its folder
        clean = dataclasses.replace(spec.recipe, acquisition_faults=0.0, fine_tune_epochs=0)
        start = train(dataclasses.replace(spec, recipe=clean), run_dir / "from_scratch", data_dir, epochs, member,
                      run_dir / "from_scratch", limit, splits=splits, log=log)
        tuned = dataclasses.replace(spec, recipe=dataclasses.replace(spec.recipe, fine_tune_epochs=0))
        return train(tuned, out_dir, data_dir, spec.recipe.fine_tune_epochs, member, run_dir / "fine_tune", limit,
                     init_from=start, splits=splits, log=log)
    if spec.recipe.acquisition_faults and spec.training_unit != "images":
        raise ValueError("acquisition_faults applies to whole-image training only, not to lesion patches")

    config.compute_device()
    seed = member
    epochs = epochs or spec.recipe.epochs
    run_dir.mkdir(parents=True, exist_ok=True)
    given_split = splits is not None
    splits = {k: list(v) for k, v in (splits or data.training_splits(spec, data_dir)).items()}
    if limit:
        splits = {k: [v[i] for ix in data.by_source(v).values() for i in ix[:limit]] for k, v in splits.items()}
    if train_sources is not None:
        splits["train"] = [s for s in splits["train"] if s.source in train_sources]
    log(f"[{spec.id}] member {member} split: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    x_train, y_train = data.load_prepared(spec, splits["train"], data_dir), np.array([s.label for s in splits["train"]])
    x_val, y_val = data.load_prepared(spec, splits["val"], data_dir), np.array([s.label for s in splits["val"]])
    fx, fy, fvx, fvy, train_size = _fit_arrays(spec, splits, x_train, y_train, x_val, y_val, data_dir, seed)
    if spec.recipe.acquisition_faults > 0:  # select for the cameras we train for, not only ours
        x_val = np.concatenate([x_val, data.load_prepared(spec, splits["val"], data_dir, fault_seed=VAL_FAULT_SEED)])
        y_val = np.concatenate([y_val, y_val])
    steps = max(1, len(fx) // spec.recipe.batch_size)
    model, state = _resume_or_build(spec, run_dir, seed, train_size, max(1, epochs * steps), log, init_from)
    done = len(state["history"])
    keras.utils.set_random_seed(seed * 1000 + done)
    # The network at the task's input size (patch-trained weights apply to whole films).
    scorer = model if train_size is None else build_model(spec, seed=seed)
    if done < epochs:
        faulty = (data.load_prepared(spec, splits["train"], data_dir, fault_seed=seed)
                  if spec.recipe.acquisition_faults > 0 else None)
        weights = data.class_weights(fy, spec.num_classes, spec.recipe.class_weighting)
        validation = (fvx.astype(np.float32), np.eye(spec.num_classes, dtype=np.float32)[fvy])
        model.fit(_batches(spec, fx, fy, seed, faulty, done), validation_data=validation,
                  validation_batch_size=64, epochs=epochs, initial_epoch=done, class_weight=weights,
                  callbacks=_epoch_callbacks(spec, run_dir, state, scorer, x_val, y_val, epochs, log), verbose=0)
    final, bn_note = _final_model(spec, run_dir, seed, epochs, x_train, x_val, y_val, log)
    target = Path(out_dir) / member_file(spec, member)
    target.parent.mkdir(parents=True, exist_ok=True)
    final.save(target)
    _write_card(spec, Path(out_dir), target, member, final, splits, state, epochs, bn_note,
                _origin(spec, init_from) if init_from else None, given_split)
    log(f"[{spec.id}] saved {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return target


def _kept_epoch(spec, state: dict) -> int:
    """The epoch whose weights the member keeps (1-based): the recipe's ``epoch_selection``."""
    return len(state["history"]) if spec.recipe.epoch_selection == "last" else state["best_epoch"]


def _kept_checkpoint(spec) -> str:
    """The run folder's checkpoint holding :func:`_kept_epoch`'s weights."""
    return "last.keras" if spec.recipe.epoch_selection == "last" else "best.keras"


def _selection_rule(spec) -> str:
    """How the kept epoch was chosen, as the card says it."""
    if spec.recipe.average_last_epochs:
        return AVERAGED_EPOCHS_RULE.format(n=spec.recipe.average_last_epochs)
    if spec.recipe.epoch_selection == "last":
        return LAST_EPOCH_RULE
    return SELECTION_RULE + (FAULTY_VALIDATION if spec.recipe.acquisition_faults > 0 else "")


def _final_model(spec, run_dir: Path, seed: int, epochs: int, x_train, x_val, y_val, log):
    """The kept epoch's weights (:func:`_kept_epoch`; the mean over :func:`averaged_epochs` where
    the recipe averages) in a fresh, uncompiled model (no optimizer state on disk), with exact
    BatchNorm statistics where the recipe recalibrates them and they do better on validation."""
    import keras

    final = build_model(spec, seed=seed)
    averaged = averaged_epochs(spec, epochs)
    final.set_weights(averaged_weights(run_dir, averaged) if averaged else
                      keras.saving.load_model(run_dir / _kept_checkpoint(spec), safe_mode=True).get_weights())
    if not spec.recipe.recalibrate_batchnorm:
        return final, {"batchnorm": "moving statistics from training (the recipe does not recalibrate them)"}
    before = selection_score(spec, final, x_val, y_val)
    trained = final.get_weights()
    # A fixed random subset: exact enough for the statistics, and a few passes instead of many.
    subset = np.random.default_rng(seed).permutation(len(x_train))[:1024]
    recalibrate_batchnorm(final, x_train[np.sort(subset)])
    after = selection_score(spec, final, x_val, y_val)
    if after < before:
        final.set_weights(trained)
    log(f"[{spec.id}] BatchNorm statistics from clean training images: validation score "
        f"{before:.3f} -> {after:.3f} ({'kept' if after >= before else 'reverted'})")
    note = ("moving statistics replaced by exact statistics of the clean training images" if after >= before
            else "moving statistics from training (recalibration did worse on validation)")
    return final, {"batchnorm": note, "validation_score_before_after_bn_recalibration": [round(before, 4), round(after, 4)]}


def _origin(spec: TaskSpec, init_from: Path) -> dict:
    """What a fine-tuned member started from: the file, its sha256, and its own row of the card
    beside it (training seconds, selected epoch), found by that sha256."""
    digest = sha256_file(init_from)
    card_path = Path(init_from).with_name(f"{spec.id}.json")
    rows = json.loads(card_path.read_text()).get("ensemble", {}).get("members", []) if card_path.is_file() else []
    row = next((r for r in rows if r.get("sha256") == digest), {})
    return {"file": Path(init_from).name, "sha256": digest, "training_seconds": row.get("training_seconds", 0.0),
            "selected_epoch": row.get("selected_epoch"), "epochs": row.get("epochs")}


def _write_card(spec, out_dir: Path, target: Path, member: int, final, splits, state, epochs, bn_note,
                origin: dict | None = None, given_split: bool = False) -> None:
    """Member 0 owns the card's training keys; every member owns its row of ``ensemble.members``
    (with its own ``split`` when it was given one, as a cross-validation fold is)."""
    import dataclasses

    import keras

    card_path = out_dir / f"{spec.id}.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    seconds = state["seconds"] + (origin["training_seconds"] if origin else 0.0)
    row = {
        "member": member, "file": target.name, "seed": member, "sha256": sha256_file(target),
        "size_bytes": target.stat().st_size, "training_seconds": round(seconds, 1),
        **({"fine_tuned_from": origin, "fine_tuning_seconds": round(state["seconds"], 1)} if origin else {}),
        "selected_epoch": _kept_epoch(spec, state), "epochs": epochs,
        **({"averaged_epochs": averaged_epochs(spec, epochs)} if spec.recipe.average_last_epochs else {}),
        "best_val_score": round(max(r["val_score"] for r in state["history"]), 4),
        "input_size": spec.input_size, "mixup_alpha": spec.recipe.mixup_alpha,
        # per source, so a member trained on part of the data (train --train-sources) says so
        "training_images": {src or spec.data_folder: len(ix) for src, ix in data.by_source(splits["train"]).items()},
        "acquisition_faults": spec.recipe.acquisition_faults,
        "training_device": config.compute_device(), "keras_backend": keras.backend.backend(),
        **({"split": data.describe_split(splits)} if given_split else {}),
    }
    ensemble = card.setdefault("ensemble", {"members": []})
    ensemble["members"] = sorted([m for m in ensemble["members"] if m["member"] != member] + [row],
                                 key=lambda m: m["member"])
    ensemble["training_seconds_total"] = round(sum(m["training_seconds"] for m in ensemble["members"]), 1)
    if member == 0:
        card.update({
            "task": spec.id,
            "title": spec.title,
            "architecture": architecture_summary(final),
            "parameters": int(final.count_params()),
            "input": {"size": spec.input_size, "channels": spec.channels, "range": "0-255 after task preparation"},
            "split": data.describe_split(splits),
            "sources": [spec.data_folder] + [s.folder for s in spec.extra_sources if s.trains],
            "hyperparameters": {
                # The member count is the ensemble's (``ensemble.members``), not this member's training.
                **{k: v for k, v in dataclasses.asdict(spec.recipe).items() if k != "members"},
                "epochs": epochs, "optimizer": "AdamW", "weight_decay": WEIGHT_DECAY,
                "schedule": "cosine decay to 2%", "dropout_before_head": 0.4, "augmentation": spec.augmentation,
                "selected_epoch": _kept_epoch(spec, state),
                "selection": _selection_rule(spec),
                **bn_note,
                # A fine-tuned member: its first stage's epochs, then these (history and selected epoch are theirs).
                **({"fine_tuned_from": origin, "epochs": origin["epochs"], "fine_tune_epochs": epochs} if origin else {}),
                "training_unit": spec.training_unit,
                **({"patch_size": spec.patch_size, "patches_per_lesion": 30} if spec.training_unit == "lesion_patches" else {}),
            },
            "history": state["history"],
            "training_seconds": round(seconds, 1),
            "training_device": config.compute_device(), "keras_backend": keras.backend.backend(),
            "sha256": row["sha256"],
            "size_bytes": row["size_bytes"],
            "citation": spec.citation,
            "licence": spec.licence,
        })
    card_path.write_text(json.dumps(card, indent=1))


def selection_score(spec: TaskSpec, model, x: np.ndarray, y: np.ndarray) -> float:
    """Validation balanced accuracy, or ROC AUC of the positive class for a binary task."""
    from lifelens.models import predict_proba

    return scoring.selection_score(spec, predict_proba(model, x, batch_size=32), y)


def lesion_patches(spec: TaskSpec, samples, prepared: np.ndarray, data_dir, per_lesion: int, seed: int):
    """Square patches (spec.patch_size) from prepared films: ``per_lesion`` jittered crops
    around each annotated lesion (label 1) and as many crops of tissue away from any lesion,
    mostly from normal films (label 0). Abnormal films without a recorded centre give none.

    Returns (uint8 (M, P, P, C), labels (M,)).
    """
    rng = np.random.default_rng(seed)
    p = spec.patch_size
    half = p // 2
    padded = np.pad(prepared, ((0, 0), (half, half), (half, half), (0, 0)))
    positives, negatives = [], []
    for i, s in enumerate(samples):
        if s.label == 1 and not s.lesions:
            continue
        centres = _lesion_centres(spec, s, data_dir)
        for col, row, radius in centres:
            jitter = max(2.0, min(radius / 2, p / 4))
            for _ in range(per_lesion):
                c = int(np.clip(col + rng.uniform(-jitter, jitter), 0, spec.input_size - 1))
                r = int(np.clip(row + rng.uniform(-jitter, jitter), 0, spec.input_size - 1))
                positives.append((i, r, c))
        want = per_lesion if s.label == 0 else per_lesion // 3
        negatives.extend((i, r, c) for r, c in _tissue_points(prepared[i, ..., 0], centres, p, want, rng))
    rng.shuffle(negatives)
    negatives = negatives[: max(len(positives), 1)]
    where = positives + negatives
    x = np.stack([padded[i, r:r + p, c:c + p] for i, r, c in where])
    y = np.array([1] * len(positives) + [0] * len(negatives))
    return x, y


def _lesion_centres(spec: TaskSpec, sample, data_dir) -> list[tuple[float, float, float]]:
    """(col, row, radius) of each annotated lesion in prepared-film pixels."""
    from lifelens import imaging

    if not sample.lesions:
        return []
    film = spec.load_image(spec.image_path(sample, data_dir))
    geometry = imaging.film_geometry(film)
    scale = spec.input_size / geometry["side"]
    out = []
    for x, y, r in sample.lesions:
        col, row = imaging.film_point_to_prepared(x, y, film.shape[0], geometry, spec.input_size)
        out.append((col, row, r * scale))
    return out


def _tissue_points(film: np.ndarray, centres, p: int, want: int, rng) -> list[tuple[int, int]]:
    """Up to ``want`` random (row, col) inside the breast (not its edge: the hard cases are
    normal dense tissue) and at least a patch away from every lesion."""
    import cv2

    tissue = film > 40
    inner = cv2.erode(tissue.astype(np.uint8), np.ones((p // 3, p // 3), np.uint8)) > 0
    if inner.sum() > 50:
        tissue = inner
    rows, cols = np.nonzero(tissue)
    out = []
    for j in rng.choice(len(rows), size=min(len(rows), want * 3), replace=False) if len(rows) else []:
        if all((cols[j] - c) ** 2 + (rows[j] - r0) ** 2 > (rad + p // 2) ** 2 for c, r0, rad in centres):
            out.append((int(rows[j]), int(cols[j])))
        if len(out) >= want:
            break
    return out


def architecture_summary(model) -> list[dict]:
    """One row per layer: name, type, output shape, parameters."""
    rows = []
    for layer in model.layers:
        shape = getattr(layer, "output", None)
        rows.append({
            "name": layer.name,
            "type": type(layer).__name__,
            "output_shape": list(shape.shape[1:]) if shape is not None else None,
            "parameters": int(layer.count_params()),
        })
    return rows


def recalibrate_batchnorm(model, images: np.ndarray, batch_size: int = 64) -> None:
    """Set every BatchNorm layer's moving mean/variance to the exact statistics of its input
    over ``images`` (clean, un-augmented training images), layer by layer in order.

    The moving averages collected during training lag behind the weights and mix in the
    augmented distribution; exact ("precise") statistics remove that train/inference gap
    (Wu & Johnson 2021). Modifies ``model`` in place.
    """
    import keras

    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for bn in bns:
        probe = keras.Model(model.inputs[0], bn.input)
        total, total_sq, count = 0.0, 0.0, 0
        for i in range(0, len(images), batch_size):
            a = keras.ops.convert_to_numpy(probe(images[i:i + batch_size].astype(np.float32), training=False)).astype(np.float64)
            a = a.reshape(-1, a.shape[-1])
            total = total + a.sum(axis=0)
            total_sq = total_sq + (a * a).sum(axis=0)
            count += a.shape[0]
        mean = total / count
        var = np.maximum(total_sq / count - mean * mean, 0.0)
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(var.astype(np.float32))
