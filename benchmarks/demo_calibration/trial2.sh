#!/usr/bin/env bash
# trial.sh NAME MINUTES DATA ARCH ARGS... : train for MINUTES, then greedy valid BLEU (ctranslate2)
set -euo pipefail
name=$1 minutes=$2 data=$3 arch=$4; shift 4
cd /work/main; source .venv/bin/activate
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2
W=/work/exp/$name
hours=$(python3 -c "print($minutes/60)")
start=$(date +%s)
fairseq-train $data --user-dir fairseq_kd --arch $arch --save-dir $W --share-all-embeddings \
  --optimizer adam --adam-betas '(0.9,0.98)' --lr-scheduler inverse_sqrt \
  --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --max-epoch 100 --stop-time-hours $hours \
  --no-epoch-checkpoints --no-progress-bar --log-interval 50 --seed 1 "$@" > $W.train.log 2>&1
echo "train_s $(( $(date +%s) - start ))" > $W.summary
grep -E '\| valid \| epoch' $W.train.log | tail -3 >> $W.summary
fairseq-kd-speed /work/exp/m30k/bin --user-dir fairseq_kd --path $W/checkpoint_last.pt --name $name --gen-subset valid \
  --beam 1 --batch-size 64 --repeats 1 --warmup 0 --threads 2 --ref /work/exp/m30k/raw/valid.ref.de \
  --post-process sentencepiece --engine ctranslate2 --max-len-a 1.2 --max-len-b 10 --output $W.valid.json > $W.eval.log 2>&1
python3 -c "import json;r=json.load(open('$W.valid.json'))['results'][0];print('valid_greedy_bleu',r['bleu'])" >> $W.summary
cat $W.summary
