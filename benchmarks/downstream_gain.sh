#!/bin/bash
# Downstream gain (docs/model.md, "Downstream"): 368 synthetic tiles from the training split's layouts
# (dihedral + jitter perturbations, one per real tile), then the segmenter trained 3 times on real vs
# real + synthetic (same steps, same seeds) and scored on the 64 validation tiles. About 70 min on one
# core; the augment step is skipped when its folder is complete. Result: runs/downstream/eval/report.md.
set -e
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
DATA=${DATA:-../shared/data/consep_patched}
[ -f runs/downstream/aug/.done ] || { .venv/bin/cosyn augment --checkpoint checkpoints/default --data "$DATA" \
  --n 368 --split train --out runs/downstream/aug --steps 20 --seed 100 --threads 1 && touch runs/downstream/aug/.done; }
.venv/bin/cosyn evaluate --checkpoint checkpoints/default --data "$DATA" --out runs/downstream/eval \
  --sections downstream --synthetic runs/downstream/aug --seeds 3 --threads 1
