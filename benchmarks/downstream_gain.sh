#!/bin/bash
# The downstream study (docs/downstream.md): synthetic tiles from the training split's layouts into /tmp
# (dihedral + jitter + density perturbations, one per real tile), then benchmarks/downstream_study.py over
# its arms and seeds; results accumulate in benchmarks/downstream_study_cpu.json. Each segmenter is about
# 40-80 min of one busy core (2,500 steps); every step is resumable, so rerun the script after a stop.
# ENRICH="inflammatory=2,other=3" adds the rare-class arm (tiles from `cosyn augment --enrich`).
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
DATA=${DATA:-../shared/data/consep_patched}
WORK=${WORK:-/tmp/cosyn_downstream}
N=${N:-368}
augment() {  # OUT [extra augment args]: resumable; skipped when complete
  local out=$1; shift
  [ -f "$out/.done" ] || { .venv/bin/cosyn augment --checkpoint checkpoints/default --data "$DATA" --n "$N" \
    --split train --out "$out" --steps 20 --seed 100 --threads 1 "$@" && touch "$out/.done"; }
}
augment "$WORK/synthetic"
ARGS=(--data "$DATA" --work "$WORK/segmenters" --synthetic "$WORK/synthetic" --controls)
if [ -n "$ENRICH" ]; then
  augment "$WORK/enriched" --enrich "$ENRICH"
  ARGS+=(--enriched "$WORK/enriched")
fi
.venv/bin/python benchmarks/downstream_study.py "${ARGS[@]}" "$@"
