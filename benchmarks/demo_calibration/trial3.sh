#!/usr/bin/env bash
# trial3.sh NAME MINUTES ARCH ARGS... : train on m30k for MINUTES (all optimizer args given), then greedy valid BLEU (auto engine)
set -euo pipefail
name=$1 minutes=$2 arch=$3; shift 3
source /work/main/.venv/bin/activate; cd ${ROOT_DIR:-/work/main}
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W=/work/exp/$name
data=${DATA_BIN:-/work/exp/m30k/bin}
hours=$(python3 -c "print($minutes/60)")
start=$(date +%s)
fairseq-train $data --user-dir fairseq_kd --arch $arch --save-dir $W \
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --max-epoch 100 --stop-time-hours $hours \
  --no-epoch-checkpoints --no-progress-bar --log-interval 50 --seed 1 "$@" > $W.train.log 2>&1
echo "train_s $(( $(date +%s) - start ))" > $W.summary
grep -E '\| valid \| epoch' $W.train.log | tail -4 | cut -c 60-200 >> $W.summary
fairseq-kd-speed ${EVAL_BIN:-/work/exp/m30k/bin} --user-dir fairseq_kd --path $W/checkpoint_last.pt --name $name --gen-subset valid \
  --beam 1 --batch-size 64 --repeats 1 --warmup 0 --threads 2 --ref ${EVAL_REF:-/work/exp/m30k/raw/valid.ref.de} \
  --post-process sentencepiece --engine auto --max-len-a 1.2 --max-len-b 10 --output $W.valid.json > $W.eval.log 2>&1
python3 -c "import json;r=json.load(open('$W.valid.json'))['results'][0];print('valid_greedy_bleu',r['bleu'],r.get('engine'),r['words_per_s'])" >> $W.summary
cat $W.summary
