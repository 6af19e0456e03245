#!/usr/bin/env bash
# The multi30k recipe's two transformer students (NLL on the gold corpus, Seq-KD on the teacher's) trained past the
# recipe's 1,400 updates to 2,800, as the recipe trains them (its TRANSFORMER_* settings, label smoothing 0.1, seed
# 1, side by side at one thread each; no patience, every epoch checkpoint kept), then greedy BLEU of every epoch on
# valid, averages of 5 epochs at about 1,400 and 2,800 updates, test BLEU of chosen checkpoints, and the paired
# bootstrap against the teacher's beam 5 and the recipe's students (their hypotheses in RECIPE_WORK/hyps).
#
#   RECIPE_WORK=work/multi30k_en_de OUT_DIR=work/student_updates bash benchmarks/student_updates.sh
#
# RECIPE_WORK: a finished multi30k recipe run's work directory (bin/, seqkd/bin/, raw/, hyps/). Each stage skips
# what exists (a rerun continues). Writes OUT_DIR/{nll,seqkd}/ (checkpoints), OUT_DIR/eval/*.json and
# OUT_DIR/summary.json (docs/experiments/2026-12-06-transformer-student-updates.md).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH
: "${RECIPE_WORK:?set RECIPE_WORK to a finished multi30k recipe work directory}" "${OUT_DIR:=work/student_updates}"
: "${UPDATES:=2800}"
W=$RECIPE_WORK E=$OUT_DIR U=$PWD/fairseq_kd
mkdir -p "$E/eval" "$E/avg" "$E/hyps"

train() {  # train NAME DATA
  [ -s "$E/$1.done" ] && return 0
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 fairseq-train "$2" --user-dir "$U" --arch kd_transformer_e6d1_128 \
    --save-dir "$E/$1" --lr 0.003 --optimizer adam --adam-betas '(0.9,0.98)' --lr-scheduler inverse_sqrt \
    --warmup-updates 400 --max-tokens 4096 --share-all-embeddings --max-epoch 100 --max-update "$UPDATES" \
    --keep-last-epochs 100 --no-progress-bar --log-interval 100 --seed 1 --criterion label_smoothed_cross_entropy \
    --label-smoothing 0.1 > "$E/$1.log" 2>&1
  date > "$E/$1.done"
}
bleu() {  # bleu CKPT NAME SUBSET: greedy, batch 64, fairseq; test with the speed stage's length limits
  local out=$E/eval/$2.$3.json extra=()
  [ -s "$out" ] && return 0
  [ "$3" = test ] && extra=(--max-len-a 1.2 --max-len-b 10 --hyp-dir "$E/hyps")
  fairseq-kd-speed "$W/bin" --user-dir "$U" --path "$1" --name "$2" --gen-subset "$3" --beam 1 --batch-size 64 \
    --repeats 1 --warmup 0 --threads 2 --ref "$W/raw/$3.ref.de" --post-process sentencepiece --engine fairseq \
    --output "$out" "${extra[@]}" > "$E/eval/$2.$3.log" 2>&1
}

train seqkd "$W/seqkd/bin" & train nll "$W/bin" & wait
for run in seqkd nll; do
  for c in "$E/$run"/checkpoint[0-9]*.pt "$E/$run/checkpoint_last.pt"; do
    n=$(basename "$c" .pt); bleu "$c" "${run}_${n#checkpoint}" valid
  done
  for last in 10 20; do  # epochs last-4..last; checkpoint_last.pt where training ended inside that last epoch
    files=()
    for i in $(seq $((last - 4)) $last); do
      if [ -f "$E/$run/checkpoint$i.pt" ]; then files+=("$E/$run/checkpoint$i.pt"); else files+=("$E/$run/checkpoint_last.pt"); fi
    done
    avg=$E/avg/${run}_avg$((last - 4))-$last.pt
    [ -s "$avg" ] || fairseq-kd-average "${files[@]}" --output "$avg"
    bleu "$avg" "${run}_avg$((last - 4))-$last" valid
  done
done
# test: the epochs the recipe's choices would take (valid loss: nll 19, seqkd 12 = checkpoint_best.pt), the
# valid-BLEU best, the last weights, and epoch 10 (about the recipe's 1,400 updates)
tests=(nll_18 nll_19 nll_last seqkd_20 seqkd_last seqkd_best12 nll_10 seqkd_10 nll_avg16-20 seqkd_avg16-20)
for t in "${tests[@]}"; do
  case $t in
    *_avg*) bleu "$E/avg/$t.pt" "$t" test; continue ;;
    *_best12) ckpt=checkpoint_best ;; *_last) ckpt=checkpoint_last ;; *) ckpt=checkpoint${t#*_} ;;
  esac
  bleu "$E/${t%%_*}/$ckpt.pt" "$t" test
done
names=(--name teacher_beam5 --name recipe_tf_nll --name recipe_tf_seqkd) files=()
for t in "${tests[@]}"; do names+=(--name "$t"); files+=("$E/hyps/$t.beam1.batch64.txt"); done
fairseq-kd-score --text --paired-bs --ref "$W/raw/test.ref.de" --json "$E/eval/paired_vs_teacher.json" "${names[@]}" \
  "$W/hyps/teacher.beam5.batch64.txt" "$W/hyps/student_tf_nll.beam1.batch64.txt" \
  "$W/hyps/student_tf_seqkd.beam1.batch64.txt" "${files[@]}"
fairseq-kd-score --text --paired-bs --ref "$W/raw/test.ref.de" --json "$E/eval/paired_vs_recipe_nll.json" \
  --name recipe_tf_nll --name nll_last --name seqkd_last --name nll_19 "$W/hyps/student_tf_nll.beam1.batch64.txt" \
  "$E/hyps/nll_last.beam1.batch64.txt" "$E/hyps/seqkd_last.beam1.batch64.txt" "$E/hyps/nll_19.beam1.batch64.txt"
# within the runs: averaging against the recipe's checkpoint (NLL), Seq-KD against NLL at the same 2,800 updates
fairseq-kd-score --text --paired-bs --ref "$W/raw/test.ref.de" --json "$E/eval/paired_within_nll19.json" \
  --name nll_19 --name nll_avg16-20 "$E/hyps/nll_19.beam1.batch64.txt" "$E/hyps/nll_avg16-20.beam1.batch64.txt"
fairseq-kd-score --text --paired-bs --ref "$W/raw/test.ref.de" --json "$E/eval/paired_within_nll_last.json" \
  --name nll_last --name seqkd_last "$E/hyps/nll_last.beam1.batch64.txt" "$E/hyps/seqkd_last.beam1.batch64.txt"
python3 - "$E" <<'PY'
import glob, json, os, re, sys
e = sys.argv[1]
valid = {os.path.basename(p)[:-len(".valid.json")]: json.load(open(p))["results"][0]["bleu"]
         for p in glob.glob(os.path.join(e, "eval", "*.valid.json"))}
test = {os.path.basename(p)[:-len(".test.json")]: json.load(open(p))["results"][0]["bleu"]
        for p in glob.glob(os.path.join(e, "eval", "*.test.json"))}
loss = {}
for run in ("nll", "seqkd"):
    for line in open(os.path.join(e, f"{run}.log")):
        m = re.search(r"epoch (\d+) \| valid on 'valid' subset \| loss ([\d.]+).*num_updates (\d+)", line)
        if m:
            loss[f"{run}_{int(m.group(1))}"] = {"valid_loss": float(m.group(2)), "updates": int(m.group(3))}
paired = {k: json.load(open(os.path.join(e, "eval", f"paired_{k}.json")))
          for k in ("vs_teacher", "vs_recipe_nll", "within_nll19", "within_nll_last")}
json.dump({"valid_bleu": valid, "test_bleu": test, "valid_loss": loss,
           "paired": {k: [{"name": r["name"], "bleu": r["bleu"], **({"paired_bs": r["paired_bs"]} if "paired_bs" in r else {})}
                          for r in v] for k, v in paired.items()}},
          open(os.path.join(e, "summary.json"), "w"), indent=1, sort_keys=True)
print("wrote", os.path.join(e, "summary.json"))
PY
