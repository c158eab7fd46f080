"""The training lab: train a small CNN on a subset of real images, live, and watch the knobs
the course talks about (data size, augmentation, dropout, batch norm, learning rate) make it
under- or overfit, against a logistic regression on the same pixels.

    settings = LabSettings(**PRESETS["overfitting"].changes)
    run = LAB_QUEUE.submit(settings, session="abc")     # one training at a time per process
    run.history                                          # one row per finished epoch
    run.stop()                                           # ends after the current batch

Nothing is written to disk: subsets are decoded once and kept in memory (a few, bounded),
models live in their run. A run stops when it is asked to, when its session stops asking
about it (:data:`SESSION_TIMEOUT_S` without :meth:`LabRun.touch`), or at :data:`TIME_LIMIT_S`.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from lifelens.tasks import TASKS

INPUT_SIZES = (32, 48, 64)
TRAIN_SIZES = (100, 200, 500, 1000, 2000)
VALIDATION_IMAGES = 300  # the fixed validation subset every run of a task is scored on
TIME_LIMIT_S = 300.0
SESSION_TIMEOUT_S = 60.0
RUNS_KEPT = 4  # per session, drawn side by side


@dataclass(frozen=True)
class LabSettings:
    """Every knob of one run."""

    task: str = field(default_factory=lambda: next(iter(TASKS)))  # the registry's first task
    train_images: int = 500
    input_size: int = 48
    blocks: int = 3
    filters: int = 16
    batch_norm: bool = True
    dropout: float = 0.3
    pooling: str = "global"  # "global" average pooling or "flatten"
    augmentation: bool = True
    optimizer: str = "adam"  # "adam" or "sgd"
    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.input_size not in INPUT_SIZES:
            raise ValueError(f"input size must be one of {INPUT_SIZES}")
        if not 20 <= self.train_images <= 2000:
            raise ValueError("between 20 and 2000 training images")
        if not 1 <= self.blocks <= 4 or not 4 <= self.filters <= 64:
            raise ValueError("1 to 4 blocks of 4 to 64 filters")
        if not 0 <= self.dropout < 1 or self.pooling not in ("global", "flatten") or self.optimizer not in ("adam", "sgd"):
            raise ValueError("dropout in [0, 1), pooling global or flatten, optimiser adam or sgd")
        if not 0 < self.learning_rate <= 10 or not 1 <= self.batch_size <= 512 or not 1 <= self.epochs <= 100:
            raise ValueError("learning rate in (0, 10], batch size 1-512, 1-100 epochs")


KNOB_NAMES = {"task": "task", "train_images": "training images", "input_size": "input size", "blocks": "conv blocks",
              "filters": "filters", "batch_norm": "batch norm", "dropout": "dropout", "pooling": "pooling",
              "augmentation": "augmentation", "optimizer": "optimiser", "learning_rate": "learning rate",
              "batch_size": "batch size", "epochs": "epochs", "seed": "seed"}


@dataclass(frozen=True)
class Preset:
    title: str
    lesson: str  # one sentence: what to look for
    changes: dict


PRESETS = {
    "default": Preset("Default", "A reasonable small CNN: watch training and validation curves rise together.", {}),
    "overfitting": Preset(
        "Overfitting", "100 images, no augmentation, no dropout: training accuracy climbs to 100 % while validation "
        "stalls far below; the gap between the curves is the overfitting.",
        {"train_images": 100, "augmentation": False, "dropout": 0.0, "batch_norm": False, "pooling": "flatten",
         "epochs": 30}),
    "regularised": Preset(
        "Regularised", "The same 100 images with augmentation and dropout: training accuracy rises more slowly and "
        "the gap to validation shrinks.",
        {"train_images": 100, "augmentation": True, "dropout": 0.5, "batch_norm": False, "pooling": "flatten",
         "epochs": 30}),
    "lr_too_low": Preset(
        "Learning rate too low", "A learning rate of 0.00001: the loss barely moves and the network learns almost "
        "nothing in the epochs it has.", {"learning_rate": 1e-5}),
    "lr_too_high": Preset(
        "Learning rate too high", "Plain SGD at a learning rate of 2: the loss jumps around or explodes instead of "
        "falling.", {"optimizer": "sgd", "learning_rate": 2.0, "batch_norm": False}),
    "more_data": Preset(
        "More data", "The overfitting network on 2,000 images: with 20 times the data the same network generalises "
        "far better, the cheapest regulariser there is.",
        {"train_images": 2000, "augmentation": False, "dropout": 0.0, "batch_norm": False, "pooling": "flatten",
         "epochs": 12}),
}


def preset_settings(name: str, **overrides) -> LabSettings:
    return LabSettings(**{**PRESETS[name].changes, **overrides})


def difference(before: LabSettings | None, after: LabSettings) -> str:
    """How a run differs from the one before it, e.g. "dropout 0.0 → 0.5, epochs 10 → 30"."""
    if before is None:
        return "first run"
    a, b = asdict(before), asdict(after)
    changed = [f"{KNOB_NAMES[k]} {a[k]} → {b[k]}" for k in a if a[k] != b[k]]
    return ", ".join(changed) if changed else "same settings"


# ----------------------------------------------------------------------------- data

@dataclass(frozen=True)
class LabData:
    """x_*: float32 (N, S, S, C) in [0, 255]; y_*: int (N,); class_names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    class_names: tuple[str, ...]


@lru_cache(maxsize=3)
def lab_data(task: str, train_images: int, input_size: int) -> LabData:
    """The first ``train_images`` of the task's TRAIN split with classes in turn (so every
    subset is class-balanced and a larger subset contains a smaller one), and a fixed
    validation subset from its VALIDATION split, at ``input_size``. Decoded once and kept."""
    from lifelens import data, imaging
    from lifelens.tasks import get_task

    spec = get_task(task)
    splits = data.task_splits(spec)
    train = data.every_class_in_turn(splits["train"], train_images)
    val = data.every_class_in_turn(splits["val"], VALIDATION_IMAGES)

    def load(samples):
        prepared = data.load_prepared(spec, samples)  # the task's own preparation, cached across runs
        return np.stack([imaging.resize(x, input_size).reshape(input_size, input_size, spec.channels)
                         for x in prepared]).astype(np.float32)

    return LabData(load(train), np.array([s.label for s in train]), load(val), np.array([s.label for s in val]),
                   tuple(spec.class_names))


@lru_cache(maxsize=8)
def logistic_reference(task: str, train_images: int, input_size: int) -> dict:
    """A logistic regression on the same subset's pixels (downsampled to 16 x 16): the simple
    model every chart draws as a line. Returns {"val_accuracy", "val_loss", "train_accuracy"}."""
    import cv2
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    d = lab_data(task, train_images, input_size)

    def pixels(x):
        return np.stack([cv2.resize(im, (16, 16), interpolation=cv2.INTER_AREA).reshape(-1) for im in x]) / 255.0

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=300))
    model.fit(pixels(d.x_train), d.y_train)
    probs = np.full((len(d.x_val), len(d.class_names)), 1e-7)
    probs[:, model.classes_] = np.maximum(model.predict_proba(pixels(d.x_val)), 1e-7)
    probs /= probs.sum(axis=1, keepdims=True)
    return {"val_accuracy": float((probs.argmax(1) == d.y_val).mean()),
            "val_loss": float(log_loss(d.y_val, probs, labels=list(range(len(d.class_names))))),
            "train_accuracy": float(model.score(pixels(d.x_train), d.y_train))}


# ----------------------------------------------------------------------------- the network

def build_lab_model(settings: LabSettings, num_classes: int, channels: int):
    """A small CNN: ``blocks`` x (conv 3x3 [-> batch norm] -> ReLU -> max-pool 2), filters
    doubling per block, then global average pooling or flatten, dropout and a softmax.
    Layers are named like LifeLens's own models (``block<b>_conv1`` ...), so the explanation
    and inside-the-network views work on it unchanged. Augmentation layers act in training only."""
    import keras

    keras.utils.set_random_seed(settings.seed)
    s = settings.input_size
    inputs = keras.Input((s, s, channels), name="image")
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    if settings.augmentation:
        x = keras.layers.RandomFlip("horizontal_and_vertical", seed=settings.seed, name="augment_flip")(x)
        x = keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=settings.seed, name="augment_shift")(x)
        x = keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=settings.seed, name="augment_zoom")(x)
    for b in range(1, settings.blocks + 1):
        x = keras.layers.Conv2D(settings.filters * 2 ** (b - 1), 3, padding="same", use_bias=not settings.batch_norm,
                                name=f"block{b}_conv1")(x)
        if settings.batch_norm:
            # momentum 0.9, not Keras's 0.99: a lab run has a few hundred steps, and the moving
            # statistics the validation pass uses must have caught up by then
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{b}_bn1")(x)
        x = keras.layers.ReLU(name=f"block{b}_relu1")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    x = (keras.layers.GlobalAveragePooling2D(name="features") if settings.pooling == "global"
         else keras.layers.Flatten(name="features"))(x)
    x = keras.layers.Dropout(settings.dropout, seed=settings.seed, name="head_dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name=f"lab_{settings.task}")
    optimiser = (keras.optimizers.Adam(settings.learning_rate) if settings.optimizer == "adam"
                 else keras.optimizers.SGD(settings.learning_rate, momentum=0.9))
    model.compile(optimizer=optimiser, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def first_filters(model) -> np.ndarray:
    """The first convolution's kernels, (n, k, k, C) in [-1, 1] (:func:`lifelens.inside.first_layer_filters`)."""
    from lifelens.inside import first_layer_filters

    return first_layer_filters(model)


# ----------------------------------------------------------------------------- one run

@dataclass
class LabRun:
    """One training run: its settings, its state and its curves.

    status: "queued", "running", "done", "stopped" (by the user, the session or the time
    limit; ``stop_reason`` says which) or "failed" (``error``). history: one dict per
    finished epoch {"epoch", "loss", "accuracy", "val_loss", "val_accuracy"}, accuracies of
    the network with dropout and augmentation off, on the training and validation subsets.
    """

    id: int
    session: str
    settings: LabSettings
    label: str = ""
    status: str = "queued"
    stop_reason: str = ""
    error: str = ""
    history: list = field(default_factory=list)
    filters_first_epoch: np.ndarray | None = None
    filters_last_epoch: np.ndarray | None = None
    model: object = None
    reference: dict | None = None
    started: float | None = None
    finished: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def stop(self, reason: str = "stopped by you") -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self._stop.set()

    def touch(self) -> None:
        """The session still shows this run (it stops when nobody has looked for a while)."""
        self.last_seen = time.monotonic()

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def gap(self) -> float | None:
        """Final training accuracy minus validation accuracy: the overfitting signature."""
        if not self.history:
            return None
        last = self.history[-1]
        return last["accuracy"] - last["val_accuracy"]


def train_run(run: LabRun, supervised: bool = True) -> None:
    """Train ``run`` to its end (or until it is stopped), filling its history epoch by epoch.
    ``supervised``: also stop it at the time limit or when its page stops asking about it."""
    import keras

    settings = run.settings
    data = lab_data(settings.task, settings.train_images, settings.input_size)
    run.reference = logistic_reference(settings.task, settings.train_images, settings.input_size)
    model = build_lab_model(settings, len(data.class_names), data.x_train.shape[-1])
    run.model = model
    deadline = time.monotonic() + TIME_LIMIT_S

    class Live(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if run._stop.is_set():
                self.model.stop_training = True
            elif supervised and time.monotonic() > deadline:
                run.stop(f"the {TIME_LIMIT_S:.0f}-second limit of a lab run was reached")
            elif supervised and time.monotonic() - run.last_seen > SESSION_TIMEOUT_S:
                run.stop("its page was closed")

        def on_epoch_end(self, epoch, logs=None):
            # Both accuracies with dropout and augmentation off, so their gap is the overfitting alone.
            train = self.model.evaluate(data.x_train, data.y_train, batch_size=256, verbose=0, return_dict=True)
            val = self.model.evaluate(data.x_val, data.y_val, batch_size=256, verbose=0, return_dict=True)
            run.history.append({"epoch": epoch + 1, "loss": _finite(train["loss"]), "accuracy": float(train["accuracy"]),
                                "val_loss": _finite(val["loss"]), "val_accuracy": float(val["accuracy"])})
            if epoch == 0:
                run.filters_first_epoch = first_filters(self.model)

    model.fit(data.x_train, data.y_train, batch_size=settings.batch_size, epochs=settings.epochs, shuffle=True,
              verbose=0, callbacks=[Live()])
    run.filters_last_epoch = first_filters(model)


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None  # a diverged loss (too high a learning rate) has no point


# ----------------------------------------------------------------------------- one at a time

class LabQueue:
    """One training at a time per server process; the others wait their turn in order."""

    def __init__(self):
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._waiting: list[LabRun] = []
        self._runs: dict[str, list[LabRun]] = {}
        self._ids = itertools.count(1)
        self.current: LabRun | None = None
        self._worker: threading.Thread | None = None

    def submit(self, settings: LabSettings, session: str) -> LabRun:
        """Queue a run for ``session``; keeps the session's last :data:`RUNS_KEPT` runs."""
        with self._lock:
            mine = self._runs.setdefault(session, [])
            previous = mine[-1].settings if mine else None
            run = LabRun(next(self._ids), session, settings, difference(previous, settings))
            mine.append(run)
            for old in mine[:-RUNS_KEPT]:
                old.stop("replaced by a newer run")
                old.model = None
            del mine[:-RUNS_KEPT]
            self._waiting.append(run)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="lifelens-training-lab", daemon=True)
                self._worker.start()
            self._wake.notify()
            return run

    def runs(self, session: str) -> list[LabRun]:
        with self._lock:
            return list(self._runs.get(session, []))

    def position(self, run: LabRun) -> int:
        """0 = training now; n = n-th in the queue (the training run counts as one ahead)."""
        with self._lock:
            if run is self.current:
                return 0
            if run not in self._waiting:
                return -1
            return self._waiting.index(run) + (1 if self.current is not None else 0)

    def clear(self, session: str) -> None:
        with self._lock:
            for run in self._runs.pop(session, []):
                run.stop("cleared")
                run.model = None

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    if not self._wake.wait(timeout=30.0):
                        self._worker = None
                        return
                run = self._waiting.pop(0)
                self.current = run
            try:
                if run._stop.is_set() or time.monotonic() - run.last_seen > SESSION_TIMEOUT_S:
                    run.stop_reason = run.stop_reason or "its page was closed before its turn"
                    run.status = "stopped"
                else:
                    run.status, run.started = "running", time.monotonic()
                    train_run(run)
                    run.status = "stopped" if run._stop.is_set() else "done"
            except Exception as exc:  # noqa: BLE001 - a failed run must not stop the queue
                run.status, run.error = "failed", f"{type(exc).__name__}: {str(exc)[:200]}"
            finally:
                run.finished = time.monotonic()
                with self._lock:
                    self.current = None


LAB_QUEUE = LabQueue()


def wait(run: LabRun, timeout: float = 120.0, poll: float = 0.1) -> LabRun:
    """Block until ``run`` is no longer queued or running (for the command line and tests)."""
    end = time.monotonic() + timeout
    while run.active and time.monotonic() < end:
        run.touch()
        time.sleep(poll)
    return run


def run_now(settings: LabSettings) -> LabRun:
    """Train one run in this thread, outside the queue (benchmarks and tests of the lessons)."""
    run = LabRun(0, "direct", settings, status="running")
    run.started = time.monotonic()
    train_run(run, supervised=False)  # no time limit, no session to lose
    run.status, run.finished = "done", time.monotonic()
    return run

