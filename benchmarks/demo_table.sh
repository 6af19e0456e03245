#!/usr/bin/env bash
# Speed/BLEU table and Pareto plot of the demo's models (after `make demo`), on multi30k test2016.
# Usage: WORK=demo_work bash benchmarks/demo_table.sh     -> docs/speed_example/{speed.json,table.md,pareto.png}
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$ROOT/demo_work}
OUT=${OUT:-$ROOT/docs/speed_example}
THREADS=${THREADS:-2}
MAX_SENTENCES=${MAX_SENTENCES:-1000}
DATA=${DATA:-$ROOT/../shared/data/multi30k}
mkdir -p "$OUT"
paths=()
for m in teacher student_nll student_word_kd student_block_kd; do
  [ -s "$WORK/$m/checkpoint_best.pt" ] && paths+=(--path "$WORK/$m/checkpoint_best.pt" --name "$m")
done
fairseq-kd-speed "$WORK/bin" --user-dir "$ROOT/fairseq_kd" "${paths[@]}" --gen-subset test --cpu --threads "$THREADS" \
  --beam 1 5 --batch-size 1 64 --max-sentences "$MAX_SENTENCES" --repeats 1 --warmup 2 \
  --ref "$DATA/test2016.de" --post-process sentencepiece --output "$OUT/speed.json"
fairseq-kd-table "$OUT/speed.json" --reference teacher --output-md "$OUT/table.md" --output-png "$OUT/pareto.png"
