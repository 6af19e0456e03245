#!/usr/bin/env bash
# Teacher calibration for the multi30k recipe: transformer teachers trained epoch by epoch (every epoch kept), then
# each epoch's greedy valid BLEU (CTranslate2, the same greedy output as fairseq), and on test2016 the best
# checkpoint (lowest valid loss) and the average of the last AVG epochs, greedy and beam 5 with fairseq.
#
#   BIN=work/m30k/bin RAW=work/m30k/raw bash benchmarks/teacher_calibration.sh     (resumable; CONFIGS to choose)
#
# BIN/RAW: a multi30k recipe's prepared data (STOP_AFTER=prepare). CONFIGS: NAME:THREADS:EPOCHS:LR entries, all of
# kd_transformer_e3d3_256 (dropout 0.3, label smoothing 0.1, Adam (0.9, 0.98), inverse_sqrt with 400 warm-up updates,
# 4096-token batches: the recipe's TRANSFORMER_* defaults). Two entries with THREADS=1 run side by side on 2 cores.
# Writes OUT (default docs/results/teacher_calibration.json): per config the epochs' valid BLEU, train wall seconds,
# and the test rows.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH
: "${BIN:?set BIN to a prepared multi30k data-bin (recipe STOP_AFTER=prepare)}" "${RAW:?set RAW to its raw/ directory}"
: "${WORK:=work/teacher_calibration}" "${AVG:=5}" "${OUT:=docs/results/teacher_calibration.json}"
: "${CONFIGS:=lr3e-3:1:12:0.003 lr1.5e-3:1:12:0.0015}"
mkdir -p "$WORK/eval"

train() {  # train NAME THREADS EPOCHS LR
  OMP_NUM_THREADS=$2 MKL_NUM_THREADS=$2 fairseq-train "$BIN" --user-dir fairseq_kd --arch kd_transformer_e3d3_256 \
    --share-all-embeddings --optimizer adam --adam-betas '(0.9,0.98)' --lr-scheduler inverse_sqrt --warmup-updates 400 \
    --lr "$4" --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --max-tokens 4096 --max-epoch "$3" \
    --save-dir "$WORK/$1" --no-progress-bar --log-interval 50 --seed 1 --keep-last-epochs 100 >> "$WORK/$1.log" 2>&1
}
pids=()
for c in $CONFIGS; do
  IFS=: read -r name threads epochs lr <<< "$c"
  train "$name" "$threads" "$epochs" "$lr" &
  pids+=($!)
  [ "$threads" -ge 2 ] && wait "${pids[-1]}"
done
wait

speed() {  # speed CHECKPOINT NAME SUBSET OUT BEAMS...
  local ckpt=$1 name=$2 subset=$3 out=$4 ref=$RAW/valid.ref.de engine=(--engine ctranslate2); shift 4
  [ "$subset" = test ] && ref=$RAW/test.ref.de engine=()
  [ -s "$out" ] || fairseq-kd-speed "$BIN" --user-dir fairseq_kd --path "$ckpt" --name "$name" --gen-subset "$subset" \
    --beam "$@" --batch-size 64 --repeats 1 --warmup 0 --threads 2 "${engine[@]}" --ref "$ref" \
    --post-process sentencepiece --hyp-dir "$WORK/eval/hyps" --output "$out" > /dev/null 2>&1
}
for c in $CONFIGS; do
  name=${c%%:*}
  for ckpt in "$WORK/$name"/checkpoint[0-9]*.pt; do
    e=$(basename "$ckpt" .pt); e=${e#checkpoint}
    speed "$ckpt" "${name}_e$e" valid "$WORK/eval/${name}_e$e.valid.json" 1
  done
  last=$(find "$WORK/$name" -name 'checkpoint[0-9]*.pt' | sed 's/.*checkpoint\([0-9]*\)\.pt/\1/' | sort -n | tail -1)
  avg=$WORK/$name/average_last${AVG}.pt
  [ -s "$avg" ] || fairseq-kd-average "$WORK/$name" --last "$AVG" --output "$avg"
  speed "$WORK/$name/checkpoint_best.pt" "${name}_best" test "$WORK/eval/${name}_best.test.json" 1 5
  speed "$avg" "${name}_avg$AVG" test "$WORK/eval/${name}_avg$AVG.test.json" 1 5
  speed "$avg" "${name}_avg$AVG" valid "$WORK/eval/${name}_avg$AVG.valid.json" 1
  echo "$name: epochs 1..$last"
done

python3 - "$WORK" "$OUT" "$AVG" $CONFIGS <<'EOF'
import glob, json, os, re, sys
work, out, avg, configs = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
def bleu(path, beam):
    rows = json.load(open(path))["results"]
    return next(r["bleu"] for r in rows if r["beam"] == beam)
result = {"command": "bash benchmarks/teacher_calibration.sh", "arch": "kd_transformer_e3d3_256", "average_last": avg,
          "configs": []}
for c in configs:
    name, threads, epochs, lr = c.split(":")
    log = open(os.path.join(work, f"{name}.log")).read()
    walls = [float(w) for w in re.findall(r"\| train \| epoch \d+ \|.*?\| train_wall (\d+)", log)]
    valid_loss = [float(v) for v in re.findall(r"\| valid \| epoch \d+ \| valid on 'valid' subset \| loss ([\d.]+)", log)]
    epochs_done = sorted(int(re.search(r"_e(\d+)\.valid", p).group(1)) for p in glob.glob(f"{work}/eval/{name}_e*.valid.json"))
    row = {"name": name, "threads": int(threads), "lr": float(lr),
           "epochs": [{"epoch": e, "valid_greedy": bleu(f"{work}/eval/{name}_e{e}.valid.json", 1),
                       "valid_loss": valid_loss[e - 1] if e <= len(valid_loss) else None,
                       "train_wall_s": walls[e - 1] if e <= len(walls) else None} for e in epochs_done]}
    for which in ("best", f"avg{avg}"):
        t = f"{work}/eval/{name}_{which}.test.json"
        row[which] = {"test_greedy": bleu(t, 1), "test_beam5": bleu(t, 5)}
    row[f"avg{avg}"]["valid_greedy"] = bleu(f"{work}/eval/{name}_avg{avg}.valid.json", 1)
    result["configs"].append(row)
env = json.load(open(glob.glob(f"{work}/eval/*.test.json")[0]))["environment"]
result["environment"] = env
with open(out, "w") as f:
    json.dump(result, f, indent=2)
print(f"wrote {out}")
EOF
