#!/usr/bin/env bash
# Train ensemble members on a GPU machine that has PyTorch but no TensorFlow (Keras 3 on the
# PyTorch backend), in parallel, each for a bounded time; then check that each saved member
# predicts under PyTorch what it will predict here under TensorFlow (bench/device_check.py).
#
#   bench/device_train.sh TASK SECONDS EPOCHS:MEMBER[,MEMBER...] [EPOCHS:MEMBER...]
#
# LIFELENS_TRAIN_ARGS adds arguments to each `lifelens train` (e.g. --limit 64 for a quick check).
# Reads the data from $LIFELENS_DATA (default .devdata: the task's train and validation images,
# copied byte for byte by bench/device_data.py) and Keras from .whl when it is not installed.
# A call to this workplace's GPU machine carries at most 64 MiB with the working tree; models/ alone
# is 67 MB and is not needed there, so it was left out of git's index for the call (git rm -r
# --cached models, and /models/ in .git/info/exclude; git reset -- models afterwards).
# Writes each finished member's file and device.tar (cards, logs, predictions) to $OUT.
set -u
task=$1 seconds=$2; shift 2
if ! python3 -c "import keras" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD KERAS_BACKEND=torch PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
export LIFELENS_DATA=${LIFELENS_DATA:-$PWD/.devdata} TF_CPP_MIN_LOG_LEVEL=3
out=${OUT:-runs/device/out} work=runs/device
mkdir -p "$out" "$work"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import keras, torch; print('keras', keras.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())"
members=()
for plan in "$@"; do
  epochs=${plan%%:*}
  IFS=, read -ra ms <<< "${plan#*:}"
  for m in "${ms[@]}"; do
    members+=("$m")
    timeout "$seconds" python3 -m lifelens train --task "$task" --member "$m" --epochs "$epochs" \
      --out "$work/m$m" --run-dir "$work/run$m" ${LIFELENS_TRAIN_ARGS:-} > "$work/train_m$m.log" 2>&1 &
  done
done
wait
for m in "${members[@]}"; do tail -n 3 "$work/train_m$m.log"; done
python3 bench/device_check.py record "$task" "$work" "$out" "${members[@]}"
tar -cf "$out/device.tar" -C "$work" $(cd "$work" && ls -d m*/*.json train_m*.log check_*.npz run*/*/state.json 2>/dev/null)
ls -la "$out"
