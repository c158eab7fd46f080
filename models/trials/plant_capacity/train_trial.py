# Trial: does plant underfit? At 45 epochs the members' training accuracy (augmented images) is
# still rising when the cosine schedule ends (member 17: 0.963 at epoch 37, 0.976 at 45).
# Two ways to give member 0 (seed 0, the shipped plant.keras's seed) more capacity, each the whole
# recipe (45 clean epochs + 6 with camera faults) with one change:
#   wide:  every stage 1.5x the channels (measured: twice the CPU per epoch);
#   long:  60 epochs instead of 45 (1.33x the epochs).
# Compared against the shipped member 0 on every source's validation images
# (bench/measure_members.py). Run from the repository root: PYTHONPATH=. python <this> wide|long [member]
# It writes runs/plant_<trial>/ (plant.keras for member 0, plant.m<k>.keras otherwise) and its card;
# committed here: the wide seed-0 member as plant.wide.keras, the unshipped 60-epoch members of
# seeds 8 and 16 as plant.long.m8.keras and plant.long.m16.keras, with their cards (plant.wide.json,
# plant.long.json). The 60-epoch recipe is shipped since 2026-12-05 (members 0, 11, 13 in models/):
# models/EXPERIMENTS.md, "More capacity (plant)".
import dataclasses
import sys
from pathlib import Path

from lifelens.tasks import get_task
from lifelens.train import train

trial = sys.argv[1]
member = int(sys.argv[2]) if len(sys.argv) > 2 else 0  # also the seed
spec = get_task("plant")
if trial == "wide":
    recipe = dataclasses.replace(spec.recipe, stages=tuple((int(width * 1.5), n) for width, n in spec.recipe.stages))
elif trial == "long":
    recipe = dataclasses.replace(spec.recipe, epochs=60)
else:
    raise SystemExit("usage: train_trial.py wide|long [member]")
out = Path(f"runs/plant_{trial}")
train(dataclasses.replace(spec, recipe=recipe), out, member=member, run_dir=out / f"member{member}")
