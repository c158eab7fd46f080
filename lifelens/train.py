"""Train a task CNN from scratch, checkpointing every epoch so a run can resume.

    python -m lifelens train --task plant --out models/

Run state lives in ``runs/<task>/`` (``last.keras`` each epoch, ``best.keras`` by
validation loss, ``state.json`` with the history and the seconds spent). Re-running
the same command resumes from the last finished epoch.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from lifelens import config, data
from lifelens.models import build_model, sha256_file
from lifelens.tasks import TaskSpec

DEFAULT_EPOCHS = {"plant": 60, "skin": 35, "retina": 24, "mammo": 60}
CLASS_WEIGHTING = {"plant": None, "skin": "balanced", "retina": "sqrt", "mammo": "balanced"}
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4


def class_weights(labels: np.ndarray, num_classes: int, kind: str | None) -> dict[int, float] | None:
    """Inverse-frequency ("balanced") or its square root ("sqrt"), normalised to mean 1."""
    if kind is None:
        return None
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    w = counts.sum() / np.maximum(counts, 1) / num_classes
    if kind == "sqrt":
        w = np.sqrt(w)
    w = w / np.mean(w)
    return {i: float(v) for i, v in enumerate(w)}


def augmenter(kind: str, size: int, seed: int):
    """A function (batch float32 [0,255]) -> augmented batch, fit for the modality."""
    import keras
    import tensorflow as tf

    rotation = {"natural": 0.5, "dermoscopy": 0.5, "fundus": 0.5, "film": 0.03}[kind]
    zoom = {"natural": 0.15, "dermoscopy": 0.15, "fundus": 0.08, "film": 0.1}[kind]
    geo = keras.Sequential([
        keras.layers.RandomRotation(rotation, fill_mode="reflect" if kind != "fundus" else "constant", seed=seed),
        keras.layers.RandomZoom((-zoom, zoom), fill_mode="reflect" if kind != "fundus" else "constant", seed=seed + 1),
    ])

    def apply(images, labels):
        x = images
        if kind != "film":  # films are canonicalised to face left; a mirror would undo that
            x = tf.image.random_flip_left_right(x, seed=seed)
            x = tf.image.random_flip_up_down(x, seed=seed + 2)
        x = geo(x, training=True)
        x = x / 255.0
        x = tf.image.random_brightness(x, 0.08 if kind != "film" else 0.05)
        x = tf.image.random_contrast(x, 0.85, 1.15)
        if kind == "dermoscopy":  # skin tone and dermoscope colour vary; leaf colour is a disease cue
            x = tf.image.random_saturation(x, 0.85, 1.15)
            x = tf.image.random_hue(x, 0.02)
        return tf.clip_by_value(x, 0.0, 1.0) * 255.0, labels

    return apply


def train(spec: TaskSpec, out_dir: Path, data_dir: Path | None = None, epochs: int | None = None,
          seed: int = 0, run_dir: Path | None = None, limit: int | None = None, log=print) -> Path:
    """Train (or resume) and write ``out_dir/<task>.keras`` and a first model card.

    ``limit`` keeps only the first N training and validation images (smoke tests).
    Returns the path of the saved model.
    """
    import keras
    import tensorflow as tf

    config.compute_device()
    epochs = epochs or DEFAULT_EPOCHS.get(spec.id, 30)
    run_dir = Path(run_dir or config.PROJECT_ROOT / "runs" / spec.id)
    run_dir.mkdir(parents=True, exist_ok=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    splits = data.task_splits(spec, data_dir)
    if limit:
        splits = {k: v[:limit] for k, v in splits.items()}
    log(f"[{spec.id}] split: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
    x_train = data.load_prepared(spec, splits["train"], data_dir)
    y_train = np.array([s.label for s in splits["train"]])
    x_val = data.load_prepared(spec, splits["val"], data_dir)
    y_val = np.array([s.label for s in splits["val"]])
    fit_x_train, fit_y_train, fit_x_val, fit_y_val = x_train, y_train, x_val, y_val
    train_size = None
    if spec.training_unit == "lesion_patches":
        fit_x_train, fit_y_train = lesion_patches(spec, splits["train"], x_train, data_dir, per_lesion=30, seed=seed)
        fit_x_val, fit_y_val = lesion_patches(spec, splits["val"], x_val, data_dir, per_lesion=8, seed=seed + 1)
        train_size = spec.patch_size
        log(f"[{spec.id}] patches: train {len(fit_x_train)} ({fit_y_train.sum()} lesion), "
            f"val {len(fit_x_val)} ({fit_y_val.sum()} lesion)")

    state_path = run_dir / "state.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {"history": [], "seconds": 0.0}
    done = len(state["history"])
    steps_per_epoch = max(1, len(fit_x_train) // BATCH_SIZE)

    if done and (run_dir / "last.keras").is_file():
        model = keras.saving.load_model(run_dir / "last.keras", safe_mode=True)
        log(f"[{spec.id}] resuming after epoch {done}")
    else:
        state = {"history": [], "seconds": 0.0}
        done = 0
        model = build_model(spec, seed=seed, input_size=train_size)
        schedule = keras.optimizers.schedules.CosineDecay(
            LEARNING_RATE, decay_steps=max(1, epochs * steps_per_epoch), warmup_target=None, alpha=0.02)
        model.compile(
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=WEIGHT_DECAY),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    keras.utils.set_random_seed(seed + done)

    weights = class_weights(fit_y_train, spec.num_classes, CLASS_WEIGHTING.get(spec.id))
    train_ds = (
        tf.data.Dataset.from_tensor_slices((fit_x_train.astype(np.float32), fit_y_train))
        .shuffle(len(fit_x_train), seed=seed + done, reshuffle_each_iteration=True)
        # A last batch of one or two images would drag the BatchNorm moving statistics.
        .batch(BATCH_SIZE, drop_remainder=len(fit_x_train) >= 2 * BATCH_SIZE)
        .map(augmenter(spec.augmentation, spec.input_size, seed), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    val_ds = tf.data.Dataset.from_tensor_slices((fit_x_val.astype(np.float32), fit_y_val)).batch(64)

    class Checkpoint(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            state["seconds"] += time.time() - self.t0
            row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}}
            # Select on what the task is judged by, on whole validation images: the unweighted
            # validation loss favours the majority class on skewed tasks (and patches are not films).
            if scorer is not self.model:  # patch training: copy the weights into the full-size network
                scorer.set_weights(self.model.get_weights())
            row["val_score"] = _selection_score(spec, scorer, x_val, y_val)
            state["history"].append(row)
            self.model.save(run_dir / "last.keras")
            best = max(r.get("val_score", -r["val_loss"]) for r in state["history"])
            if row["val_score"] >= best:
                self.model.save(run_dir / "best.keras")
                state["best_epoch"] = epoch + 1
            state_path.write_text(json.dumps(state, indent=1))
            log(f"[{spec.id}] epoch {epoch + 1}/{epochs} loss {row['loss']:.3f} acc {row['accuracy']:.3f} "
                f"val_loss {row['val_loss']:.3f} val_acc {row['val_accuracy']:.3f} "
                f"val_score {row['val_score']:.3f} ({state['seconds']:.0f}s)")

    # The network at the task's input size (patch-trained weights apply to whole films).
    scorer = model if train_size is None else build_model(spec, seed=seed)

    if done < epochs:
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=done,
                  class_weight=weights, callbacks=[Checkpoint()], verbose=0)

    # Ship the best epoch's weights in a fresh, uncompiled model: no optimizer state on disk.
    best = keras.saving.load_model(run_dir / "best.keras", safe_mode=True)
    final = build_model(spec, seed=seed)
    final.set_weights(best.get_weights())
    val_before = _selection_score(spec, final, x_val, y_val)
    trained_weights = final.get_weights()
    recalibrate_batchnorm(final, x_train)
    val_after = _selection_score(spec, final, x_val, y_val)
    if val_after < val_before:  # keep whichever BatchNorm statistics do better on validation
        final.set_weights(trained_weights)
    log(f"[{spec.id}] BatchNorm statistics from clean training images: validation "
        f"{'AUC' if spec.num_classes == 2 else 'balanced accuracy'} {val_before:.3f} -> {val_after:.3f} "
        f"({'kept' if val_after >= val_before else 'reverted'})")
    target = out_dir / f"{spec.id}.keras"
    final.save(target)
    card_path = out_dir / f"{spec.id}.json"
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    card.update({
        "task": spec.id,
        "title": spec.title,
        "architecture": architecture_summary(final),
        "parameters": int(final.count_params()),
        "input": {"size": spec.input_size, "channels": spec.channels, "range": "0-255 after task preparation"},
        "split": data.describe_split(splits),
        "hyperparameters": {
            "epochs": epochs, "batch_size": BATCH_SIZE, "optimizer": "AdamW", "learning_rate": LEARNING_RATE,
            "schedule": "cosine decay to 2%", "weight_decay": WEIGHT_DECAY, "dropout_before_head": 0.4,
            "class_weighting": CLASS_WEIGHTING.get(spec.id), "augmentation": spec.augmentation, "seed": seed,
            "selected_epoch": state.get("best_epoch"), "selection": SELECTION_RULE,
            "batchnorm": ("moving statistics replaced by exact statistics of the clean training images"
                          if val_after >= val_before else "moving statistics from training (recalibration did worse on validation)"),
            "validation_score_before_after_bn_recalibration": [round(val_before, 4), round(val_after, 4)],
            "training_unit": spec.training_unit,
            **({"patch_size": spec.patch_size, "patches_per_lesion": 30} if spec.training_unit == "lesion_patches" else {}),
        },
        "history": state["history"],
        "training_seconds": round(state["seconds"], 1),
        "training_device": config.compute_device(),
        "sha256": sha256_file(target),
        "size_bytes": target.stat().st_size,
        "citation": spec.citation,
        "licence": spec.licence,
    })
    card_path.write_text(json.dumps(card, indent=1))
    log(f"[{spec.id}] saved {target} ({target.stat().st_size / 1e6:.1f} MB)")
    return target


SELECTION_RULE = ("highest validation score on whole validation images (balanced accuracy; "
                  "ROC AUC for a binary task)")


def _selection_score(spec: TaskSpec, model, x: np.ndarray, y: np.ndarray) -> float:
    """Validation balanced accuracy, or ROC AUC of the positive class for a binary task."""
    from sklearn.metrics import roc_auc_score

    probs = np.concatenate([np.asarray(model(x[i:i + 32].astype(np.float32), training=False))
                            for i in range(0, len(x), 32)])
    if spec.num_classes == 2 and len(np.unique(y)) == 2:
        return float(roc_auc_score(y, probs[:, 1]))
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y, probs.argmax(axis=1)))


def lesion_patches(spec: TaskSpec, samples, prepared: np.ndarray, data_dir, per_lesion: int, seed: int):
    """Square patches (spec.patch_size) from prepared films: ``per_lesion`` jittered crops
    around each annotated lesion (label 1) and as many crops of tissue away from any lesion,
    mostly from normal films (label 0). Abnormal films without a recorded centre give none.

    Returns (uint8 (M, P, P, C), labels (M,)).
    """
    import cv2

    from lifelens import imaging

    rng = np.random.default_rng(seed)
    size, p = spec.input_size, spec.patch_size
    half = p // 2
    padded = np.pad(prepared, ((0, 0), (half, half), (half, half), (0, 0)))
    positives, negatives_at = [], []
    folder = spec.data_dir(data_dir)
    for i, s in enumerate(samples):
        if s.label == 1 and not s.lesions:
            continue
        tissue = prepared[i, ..., 0] > 40
        # Negatives from inside the breast, not its edge: the hard cases are normal dense tissue.
        inner = cv2.erode(tissue.astype(np.uint8), np.ones((p // 3, p // 3), np.uint8)) > 0
        if inner.sum() > 50:
            tissue = inner
        centres = []
        if s.lesions:
            film = spec.load_image(folder / "images" / s.path)
            geometry = imaging.film_geometry(film)
            scale = size / geometry["side"]
            for x, y, r in s.lesions:
                col, row = imaging.film_point_to_prepared(x, y, film.shape[0], geometry, size)
                radius = r * scale
                centres.append((col, row, radius))
                jitter = max(2.0, min(radius / 2, p / 4))
                for _ in range(per_lesion):
                    c = int(np.clip(col + rng.uniform(-jitter, jitter), 0, size - 1))
                    rr = int(np.clip(row + rng.uniform(-jitter, jitter), 0, size - 1))
                    positives.append((i, rr, c))
        rows, cols = np.nonzero(tissue)
        if len(rows) == 0:
            continue
        want = per_lesion if s.label == 0 else per_lesion // 3
        for j in rng.choice(len(rows), size=min(len(rows), want * 3), replace=False):
            if all((cols[j] - c) ** 2 + (rows[j] - r0) ** 2 > (rad + half) ** 2 for c, r0, rad in centres):
                negatives_at.append((i, rows[j], cols[j]))
            if len([n for n in negatives_at if n[0] == i]) >= want:
                break
    rng.shuffle(negatives_at)
    negatives_at = negatives_at[: max(len(positives), 1)]
    where = positives + negatives_at
    x = np.stack([padded[i, r:r + p, c:c + p] for i, r, c in where])
    y = np.array([1] * len(positives) + [0] * len(negatives_at))
    return x, y


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
        probe = keras.Model(model.inputs, bn.input)
        total, total_sq, count = 0.0, 0.0, 0
        for i in range(0, len(images), batch_size):
            a = np.asarray(probe(images[i:i + batch_size].astype(np.float32), training=False), dtype=np.float64)
            a = a.reshape(-1, a.shape[-1])
            total = total + a.sum(axis=0)
            total_sq = total_sq + (a * a).sum(axis=0)
            count += a.shape[0]
        mean = total / count
        var = np.maximum(total_sq / count - mean * mean, 0.0)
        bn.moving_mean.assign(mean.astype(np.float32))
        bn.moving_variance.assign(var.astype(np.float32))
