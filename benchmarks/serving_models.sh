#!/usr/bin/env bash
# The models of benchmarks/serving_speed.py: the multi30k recipe's teacher (kd_lstm_2x256, 6 epochs) and 1x128 student
# (NLL, 7 epochs), then a 4-layer 128-dim transformer trained for 15 minutes (its amount of training depends on
# the machine: run nothing else meanwhile).   bash benchmarks/serving_models.sh   (BENCH=work/serving_bench)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH
# the recipe's LSTM teacher and student of the time this benchmark was run (the recipe's defaults are now others)
WORK=${BENCH:-work/serving_bench}/m30k TEACHER_ARCH=kd_lstm_2x256 TEACHER_EPOCHS=6 TEACHER_HOURS=0 TEACHER_AVERAGE=0 \
  STUDENT_ARCHS=lstm=kd_lstm_1x128 STUDENT_EPOCHS=7 STUDENT_HOURS=0 PATIENCE=-1 STUDENTS=lstm_nll \
  STOP_AFTER=student_lstm_nll bash recipes/multi30k_en_de/run.sh
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
timeout 900 fairseq-train ${BENCH:-work/serving_bench}/m30k/bin --user-dir fairseq_kd --arch transformer \
  --encoder-layers 4 --decoder-layers 4 --encoder-embed-dim 128 --decoder-embed-dim 128 \
  --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 --encoder-attention-heads 4 --decoder-attention-heads 4 \
  --share-decoder-input-output-embed --dropout 0.1 --optimizer adam --adam-betas '(0.9,0.98)' --lr 3e-3 \
  --lr-scheduler inverse_sqrt --warmup-updates 400 --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
  --max-tokens 4000 --save-dir ${BENCH:-work/serving_bench}/tf4x128 --no-epoch-checkpoints --no-progress-bar --log-interval 100 \
  --seed 1 --max-epoch 30 || true
ls -la ${BENCH:-work/serving_bench}/tf4x128
echo done
