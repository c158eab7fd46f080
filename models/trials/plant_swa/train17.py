# Trial: plant's first stage (45 clean epochs) keeping its last 12 epochs' weights, to compare
# the best epoch, the last and the averages within one run (bench/measure_weight_averaging.py).
# Not shipped (models/EXPERIMENTS.md, "Averaging the last epochs' weights"): plant.m17.keras is that run's first stage,
# its last 12 epochs averaged with BatchNorm recalibrated, without the recipe's fault fine-tuning.
# The card's training_seconds (4792) counts about 48 minutes when the run was paused (SIGSTOP) to
# leave the cores to the mammography cross-validation. Run from the repository root with
# PYTHONPATH=. to remake it in runs/plant_swa.
import dataclasses
from pathlib import Path
from lifelens.tasks import get_task
from lifelens.train import train
spec = get_task("plant")
recipe = dataclasses.replace(spec.recipe, epoch_selection="last", average_last_epochs=12, fine_tune_epochs=0,
                             acquisition_faults=0.0)
train(dataclasses.replace(spec, recipe=recipe), Path("runs/plant_swa"), member=17, run_dir=Path("runs/plant_swa/member17"))
