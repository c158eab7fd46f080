"""Train the variational head on frozen CNN features and attach it to the shipped model.

The head reads the ``features`` tensor (global-average-pooled conv features), so it
is trained on cached features of our TRAIN split in seconds, with the same class
weighting as the CNN. Attaching builds ``keras.Model(inputs, [probs, variational_head])``
over the unchanged CNN, saves it in place of ``models/<task>.keras`` after checking the
CNN weights are bit-identical, and updates the card's ``sha256``/``size_bytes``.
"""
from __future__ import annotations

import os
import time

import keras
import numpy as np

from lifelens import data, models
from lifelens.tasks import TaskSpec
from lifelens.uncertainty import metrics
from lifelens.bayesian_layers import VariationalDense, variational_samples

HEAD_NAME = "variational_head"
EPOCHS = 200
BATCH_SIZE = 128
LEARNING_RATE = 3e-3
PRIOR_STD = 1.0
POSTERIOR_STD_INIT = 0.01
EVAL_SAMPLES = 100


def train_variational_head(spec: TaskSpec, train_features: np.ndarray, train_labels: np.ndarray,
                           val_features: np.ndarray | None = None, val_labels: np.ndarray | None = None,
                           epochs: int = EPOCHS, seed: int = 0, prior_std: float = PRIOR_STD,
                           log=None) -> tuple[VariationalDense, dict]:
    """Fit features -> VariationalDense(K, softmax) by Bayes by Backprop.

    train_features: (N, F) float32; train_labels: (N,) int. Returns the trained layer
    (named ``variational_head``) and a JSON-able record of how it was trained (and its
    validation NLL/accuracy under the posterior predictive, if a val split is given).
    """
    train_features = np.asarray(train_features, dtype=np.float32)
    train_labels = np.asarray(train_labels, dtype=np.int64)
    n, width = train_features.shape
    if n == 0:
        raise ValueError("The variational head needs training features (the train split is empty).")
    weights = data.class_weights(train_labels, spec.num_classes, spec.recipe.class_weighting)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((width,), name="features")
    head = VariationalDense(spec.num_classes, activation="softmax", prior_std=prior_std,
                            posterior_std_init=POSTERIOR_STD_INIT, kl_weight=1.0 / n, seed=seed, name=HEAD_NAME)
    model = keras.Model(inputs, head(inputs), name=f"{spec.id}_variational_head")
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss="sparse_categorical_crossentropy")
    t0 = time.time()
    history = model.fit(train_features, train_labels, batch_size=BATCH_SIZE, epochs=epochs, shuffle=True,
                        class_weight=weights, verbose=0)
    seconds = time.time() - t0
    std = np.concatenate([np.ravel(head.kernel_std), np.ravel(head.bias_std)])
    details = {
        "method": "Bayes by Backprop (Blundell et al. 2015), local reparameterisation in training",
        "input": "features (global average pool), frozen CNN",
        "train_images": int(n),
        "epochs": int(epochs),
        "batch_size": BATCH_SIZE,
        "optimizer": "Adam",
        "learning_rate": LEARNING_RATE,
        "prior": f"N(0, {prior_std}^2) on every weight and bias",
        "posterior_std_init": POSTERIOR_STD_INIT,
        "kl_weight": 1.0 / n,
        "class_weighting": spec.recipe.class_weighting,
        "seed": seed,
        "final_loss": float(history.history["loss"][-1]),
        "kl_nats": float(head.kl_divergence()),
        "posterior_std": {"mean": float(std.mean()), "min": float(std.min()), "max": float(std.max())},
        "seconds": round(seconds, 1),
    }
    if val_features is not None and len(val_features):
        probs = variational_samples(head, val_features, EVAL_SAMPLES, seed=seed).mean(axis=0)
        details["val"] = {"images": int(len(val_labels)), "samples": EVAL_SAMPLES,
                          "nll": metrics.negative_log_likelihood(probs, val_labels),
                          "accuracy": float(np.mean(probs.argmax(axis=1) == val_labels))}
    if log:
        log(f"[{spec.id}] variational head: {epochs} epochs in {seconds:.0f}s, KL {details['kl_nats']:.0f} nats, "
            f"mean posterior std {details['posterior_std']['mean']:.3f}"
            + (f", val NLL {details['val']['nll']:.3f} acc {details['val']['accuracy']:.3f}" if "val" in details else ""))
    return head, details


def _same_bits(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(map(np.asarray, a), map(np.asarray, b)))


def attach_variational_head(spec: TaskSpec, head: VariationalDense) -> dict:
    """Save ``models/<task>.keras`` as (image -> [probs, variational_head]) and update the card.

    Replaces a previously attached head; the CNN (every other layer) is copied unchanged
    and checked bit-for-bit after a safe_mode reload before the file is replaced.
    Returns {"sha256", "size_bytes"} as written into the card. Raises ModelError.
    """
    if head.name != HEAD_NAME:
        raise ValueError(f"The variational head must be named {HEAD_NAME!r} (got {head.name!r}).")
    path = spec.model_path
    full = models.load_model_file(path, models.read_card(spec).get("sha256"))
    before = {layer.name: layer.get_weights() for layer in full.layers if layer.name != HEAD_NAME}
    features = full.get_layer("features").output
    combined = keras.Model(full.input, [full.get_layer("probs").output, head(features)], name=full.name)
    staging = path.with_name(path.stem + ".attaching.keras")
    try:
        combined.save(staging)
        reloaded = models.load_model_file(staging)
        after = {layer.name: layer.get_weights() for layer in reloaded.layers if layer.name != HEAD_NAME}
        if before.keys() != after.keys() or not all(_same_bits(before[k], after[k]) for k in before):
            raise models.ModelError(f"Attaching the Bayesian head would change the CNN weights of {path.name}; nothing was written.")
        if not _same_bits(head.get_weights(), reloaded.get_layer(HEAD_NAME).get_weights()):
            raise models.ModelError("The variational head did not survive saving and reloading; nothing was written.")
        os.replace(staging, path)
    finally:
        if staging.exists():
            staging.unlink()
    entries = {"sha256": models.sha256_file(path), "size_bytes": path.stat().st_size}
    ensemble = models.read_card(spec).get("ensemble")
    if ensemble:  # member 0 is this very file: its row follows the new checksum
        for row in ensemble["members"]:
            if row["member"] == 0:
                row.update(entries)
        entries["ensemble"] = ensemble
    models.update_card(spec, **entries)
    return entries
