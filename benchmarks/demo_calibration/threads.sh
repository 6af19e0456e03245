#!/usr/bin/env bash
# Training throughput of the demo's models by thread count: one fairseq-train at 2 threads, one at 1 thread, and
# two 1-thread runs side by side (what running two stages at once would give each). Target tokens/s (fairseq's
# wps) of each run's last logged interval (updates 41-80, after the first 40), as a markdown table on stdout.
#   bash benchmarks/demo_calibration/threads.sh DEMO_WORK > threads.md
# DEMO_WORK: a demo work directory after its seqkd_data stage (bin/, seqkd/bin/); nothing else on the cores.
set -euo pipefail
work=${1:?usage: threads.sh DEMO_WORK}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
common=(--user-dir "$ROOT/fairseq_kd" --share-all-embeddings --optimizer adam --adam-betas '(0.9,0.98)' --lr 0.003
        --lr-scheduler inverse_sqrt --warmup-updates 200 --max-tokens 2048 --criterion label_smoothed_cross_entropy
        --label-smoothing 0.1 --max-update 80 --log-interval 40 --no-progress-bar --log-format simple --no-save
        --disable-validation --seed 1)
run() {  # run NAME THREADS ARCH DATA
  OMP_NUM_THREADS=$2 MKL_NUM_THREADS=$2 fairseq-train "$4" --arch "$3" --save-dir "$tmp/$1" "${common[@]}" \
    > "$tmp/$1.log" 2>&1
}
wps() { grep -o 'train_inner.*' "$tmp/$1.log" | tail -1 | grep -o 'wps=[0-9.]*' | cut -d= -f2; }
echo "| model | data | run | target tokens/s |"
echo "|---|---|---|---|"
for m in "teacher kd_transformer_e4d4_128 $work/bin" "student kd_transformer_e6d1_64 $work/seqkd/bin"; do
  read -r name arch data <<< "$m"
  run "${name}_2t" 2 "$arch" "$data"
  run "${name}_1t" 1 "$arch" "$data"
  run "${name}_a" 1 "$arch" "$data" & run "${name}_b" 1 "$arch" "$data" & wait
  echo "| $name ($arch) | $(basename "$(dirname "$data")")/$(basename "$data") | 1 run, 2 threads | $(wps "${name}_2t") |"
  echo "| $name ($arch) | | 1 run, 1 thread | $(wps "${name}_1t") |"
  echo "| $name ($arch) | | 2 runs side by side, 1 thread each | $(wps "${name}_a") + $(wps "${name}_b") |"
done
