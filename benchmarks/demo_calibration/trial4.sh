#!/usr/bin/env bash
# trial4.sh NAME UPDATES THREADS ARCH ARGS... : train on m30k for a fixed number of updates (all optimizer args
# given) on THREADS threads, then greedy valid BLEU (auto engine). Two trials side by side on one thread each
# compare quality at equal updates; their times are not the solo ones.
set -euo pipefail
name=$1 updates=$2 threads=$3 arch=$4; shift 4
source /work/main/.venv/bin/activate; cd ${ROOT_DIR:-/work/main}
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
W=/work/exp/$name
data=${DATA_BIN:-/work/exp/m30k/bin}
start=$(date +%s)
fairseq-train $data --user-dir fairseq_kd --arch $arch --save-dir $W \
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --max-epoch 100 --max-update $updates \
  --no-epoch-checkpoints --no-progress-bar --log-interval 50 --seed 1 "$@" > $W.train.log 2>&1
echo "train_s $(( $(date +%s) - start ))" > $W.summary
grep -E '\| valid \| epoch' $W.train.log | tail -4 | cut -c 60-200 >> $W.summary
fairseq-kd-speed ${EVAL_BIN:-/work/exp/m30k/bin} --user-dir fairseq_kd --path $W/checkpoint_last.pt --name $name --gen-subset valid \
  --beam 1 --batch-size 64 --repeats 1 --warmup 0 --threads $threads --ref ${EVAL_REF:-/work/exp/m30k/raw/valid.ref.de} \
  --post-process sentencepiece --engine auto --max-len-a 1.2 --max-len-b 10 --output $W.valid.json > $W.eval.log 2>&1
python3 -c "import json;r=json.load(open('$W.valid.json'))['results'][0];print('valid_greedy_bleu',r['bleu'],r.get('engine'),r['words_per_s'])" >> $W.summary
cat $W.summary
