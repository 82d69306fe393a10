#!/usr/bin/env bash
# Train the default checkpoint on a lent GPU machine in one call, and time sampling there.
#
# Prepare here first (see docs/model.md, "Training on a lent GPU"); .gpu/ is ignored by git:
#   python -m cosyn prepare ../shared/data/consep_patched --out .gpu/consep_0.5 --mpp 0.5
#   python -m cosyn prompt-cache --checkpoint checkpoints/default --out .gpu/prompts.safetensors
#   pip download --no-deps diffusers==0.42.1 -d .gpu/whl
# then run this there with `carry: [".gpu"]`. It writes the exported checkpoint, the metrics, the
# log, the last preview and GPU timings under $OUT (or outputs/gpu).
set -uo pipefail
out=${OUT:-outputs/gpu}
init=${INIT:-checkpoints/default}
mkdir -p "$out/ckpt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
# SIGTERM makes the trainer save and stop. The config's time limit (8 min, counted from the first step, after
# about 50 s of start-up) ends the run first; TRAIN_TIMEOUT is the backstop and must stay above the two together
timeout --preserve-status -s TERM "${TRAIN_TIMEOUT:-540}" python3 -m cosyn train --data .gpu/consep_0.5 --out /tmp/run \
    --init "$init" --config "${CONFIG:-benchmarks/gpu_train_config.json}" 2>&1 | tr '\r' '\n' | grep -v "^training: *[0-9]*%" \
    | tail -n 60
rc=${PIPESTATUS[0]}
# a lent GPU is rare: bring back whatever the run saved, but say loudly that it failed
[ "$rc" -eq 0 ] || echo "TRAINING FAILED (exit $rc): exporting its last checkpoint for inspection only" >&2
python3 -m cosyn export-checkpoint /tmp/run --out "$out/ckpt" || exit 1
cp /tmp/run/metrics.jsonl /tmp/run/train.log /tmp/run/run_config.json "$out/"
cp "$(ls /tmp/run/previews/*.png | tail -n 1)" "$out/last_preview.png"
# LATENCY=0 skips the timing (already measured) to leave the call's time to training
[ "${LATENCY:-1}" = 0 ] || timeout 120 python3 benchmarks/sample_latency.py --checkpoint "$out/ckpt" --steps 10 25 50 --sizes 256 512 --runs 5 \
    --prompt-cache .gpu/prompts.safetensors --out "$out/sample_latency_gpu.json"
ls -la "$out" "$out/ckpt"
