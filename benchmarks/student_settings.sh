#!/usr/bin/env bash
# One transformer student trained as the multi30k recipe trains it (its TRANSFORMER_* settings, NLL with label
# smoothing 0.1, patience 3, a time budget), with the settings given after DATA; then its greedy valid BLEU through
# CTranslate2 (the same greedy output as fairseq).
#
#   RECIPE_WORK=work/multi30k_en_de bash benchmarks/student_settings.sh NAME DATA ARCH HOURS [fairseq-train options]
#   e.g. ... tf_nll_prenorm work/multi30k_en_de/bin kd_transformer_e6d1_128 0.15 --lr 0.003 --warmup-updates 400 \
#        --max-tokens 4096 --encoder-normalize-before --decoder-normalize-before
#
# RECIPE_WORK: a multi30k recipe's work directory (its bin/ and raw/valid.ref.de; DATA is its bin/ or seqkd/bin/).
# Writes OUT_DIR/NAME/ (checkpoints), OUT_DIR/NAME.log and OUT_DIR/NAME.valid.json (fairseq-kd-speed JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH
: "${RECIPE_WORK:?set RECIPE_WORK to a multi30k recipe work directory}" "${OUT_DIR:=work/student_settings}"
: "${THREADS:=2}"
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
name=$1 data=$2 arch=$3 hours=$4
shift 4
mkdir -p "$OUT_DIR"
fairseq-train "$data" --user-dir fairseq_kd --arch "$arch" --save-dir "$OUT_DIR/$name" --share-all-embeddings \
  --optimizer adam --adam-betas '(0.9,0.98)' --lr-scheduler inverse_sqrt --criterion label_smoothed_cross_entropy \
  --label-smoothing 0.1 --max-epoch 100 --stop-time-hours "$hours" --patience 3 --no-epoch-checkpoints \
  --no-progress-bar --log-interval 100 --seed 1 "$@" > "$OUT_DIR/$name.log" 2>&1
fairseq-kd-speed "$RECIPE_WORK/bin" --user-dir fairseq_kd --path "$OUT_DIR/$name/checkpoint_best.pt" --name "$name" \
  --engine ctranslate2 --gen-subset valid --beam 1 --batch-size 64 --repeats 1 --warmup 0 --threads "$THREADS" \
  --ref "$RECIPE_WORK/raw/valid.ref.de" --post-process sentencepiece --output "$OUT_DIR/$name.valid.json" \
  --hyp-dir "$OUT_DIR/hyps"
