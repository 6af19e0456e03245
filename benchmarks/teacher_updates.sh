#!/usr/bin/env bash
# The multi30k recipe's transformer teacher trained on from its 1,400 updates to 2,800, through the recipe itself,
# and Seq-KD students from it: does a longer-trained teacher make Seq-KD pay where the 1,400-update one did not
# (docs/experiments/2026-12-06-transformer-student-updates.md)?
#
#   RECIPE_WORK=work/multi30k_en_de STUDENT_UPDATES_DIR=work/student_updates OUT_DIR=work/teacher_updates \
#     bash benchmarks/teacher_updates.sh
#
# RECIPE_WORK: a finished run of the recipe's defaults (its teacher/ with checkpoint_last.pt at 1,400 updates, bin/,
# raw/, hyps/). STUDENT_UPDATES_DIR: benchmarks/student_updates.sh's output (the NLL transformer student at 2,800
# updates, its test hypotheses). Writes OUT_DIR/multi30k_en_de (the recipe's work directory: the teacher trained on,
# its Seq-KD corpus, the students lstm_seqkd at 2,400 and tf_seqkd at 2,800 updates, side by side at one thread,
# no patience), OUT_DIR/snap (each teacher epoch checkpoint, and each student's checkpoint_last.pt as it was at the
# end of each epoch, for BLEU by updates), OUT_DIR/eval/*.json, OUT_DIR/summary.json. A rerun continues.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH
: "${RECIPE_WORK:?set RECIPE_WORK to a finished multi30k recipe work directory}"
: "${STUDENT_UPDATES_DIR:?set STUDENT_UPDATES_DIR to benchmarks/student_updates.sh output}" "${OUT_DIR:=work/teacher_updates}"
R=$RECIPE_WORK N=$STUDENT_UPDATES_DIR E=$OUT_DIR U=$PWD/fairseq_kd W=$OUT_DIR/multi30k_en_de S=$OUT_DIR/snap
mkdir -p "$W" "$S/teacher" "$E/eval" "$E/hyps"

# 1. the recipe from its teacher stage, on a copy of the finished run (its teacher resumes from 1,400 updates)
if [ ! -e "$W/.done/student_tf_seqkd" ]; then
  [ -e "$W/teacher" ] || cp -a "$R/.done" "$R/bin" "$R/raw" "$R/spm.model" "$R/spm.vocab" "$R/teacher" "$R/eval" "$R/logs" "$W/"
  snapshots() {  # teacher epoch checkpoints as hard links (the recipe keeps the last 5); students' last per epoch
    local f b m s
    declare -A seen
    while true; do
      for f in "$W"/teacher/checkpoint[0-9]*.pt; do
        [ -f "$f" ] || continue; b=$(basename "$f"); [ -e "$S/teacher/$b" ] || ln "$f" "$S/teacher/$b"
      done
      for s in student_tf_seqkd student_lstm_seqkd; do
        f=$W/$s/checkpoint_last.pt
        [ -f "$f" ] || continue
        m=$(stat -c %Y "$f")  # copied once it has not changed for 10 s (fairseq copies best to last non-atomically)
        if [ "${seen[$s]:-}" != "$m" ] && [ $(( $(date +%s) - m )) -ge 10 ]; then cp "$f" "$S/$s.$m.pt" && seen[$s]=$m; fi
      done
      sleep 5
    done
  }
  snapshots & watcher=$!
  WORK=$W STAGE=teacher STOP_AFTER=student_tf_seqkd TEACHER_UPDATES=2800 TEACHER_HOURS=0 PATIENCE=-1 \
    STUDENTS="lstm_seqkd tf_seqkd" TRACK_UPDATES="lstm=2400 tf=2800" TRACK_HOURS="lstm=0 tf=0" \
    bash recipes/multi30k_en_de/run.sh
  sleep 15; kill "$watcher"
fi

# 2. each snapshot named by its updates (the checkpoint's own record)
python3 - "$S" <<'PY'
import glob, os, sys, torch
import fairseq_kd  # noqa: F401  (the checkpoint allow-list)
for p in sorted(glob.glob(os.path.join(sys.argv[1], "student_*.[0-9]*.pt"))):
    state = torch.load(p, map_location="cpu", weights_only=False)
    updates = state["optimizer_history"][-1]["num_updates"]
    name = os.path.basename(p).split(".")[0]
    os.rename(p, os.path.join(sys.argv[1], f"{name}_u{updates}.pt"))
PY

bleu() {  # bleu CKPT NAME SUBSET BEAM: batch 64, fairseq; test with the speed stage's length limits
  local out=$E/eval/$2.$3.beam$4.json extra=()
  [ -s "$out" ] && return 0
  [ "$3" = test ] && extra=(--max-len-a 1.2 --max-len-b 10 --hyp-dir "$E/hyps")
  fairseq-kd-speed "$W/bin" --user-dir "$U" --path "$1" --name "$2" --gen-subset "$3" --beam "$4" --batch-size 64 \
    --repeats 1 --warmup 0 --threads 2 --ref "$W/raw/$3.ref.de" --post-process sentencepiece --engine fairseq \
    --output "$out" "${extra[@]}" > "${out%.json}.log" 2>&1
}
# the teacher: greedy valid BLEU of every epoch; test at beam 5 and greedy of the recipe's choice at 2,800 updates
# (checkpoint_teacher.pt) and of the 5-epoch averages its rule would take at about 2,100 and 2,400 updates
for c in "$S"/teacher/checkpoint*.pt; do n=$(basename "$c" .pt); bleu "$c" "teacher_e${n#checkpoint}" valid 1; done
for b in 5 1; do bleu "$W/teacher/checkpoint_teacher.pt" teacher2800 test $b; done
for r in 11-15 13-17; do
  avg=$E/teacher_avg$r.pt
  [ -s "$avg" ] || fairseq-kd-average $(for i in $(seq "${r%-*}" "${r#*-}"); do echo "$S/teacher/checkpoint$i.pt"; done) --output "$avg"
  bleu "$avg" "teacher_avg$r" valid 1
  for b in 5 1; do bleu "$avg" "teacher_avg$r" test $b; done
done
# the students: greedy valid BLEU of every epoch; test greedy at about 1,400 / 2,100 updates and at the end
for c in "$S"/student_*_u*.pt; do n=$(basename "$c" .pt); bleu "$c" "${n#student_}" valid 1; done
# (the Seq-KD corpus makes 136 updates an epoch: epochs 10 and 15 end at 1,360 and 2,040 updates)
bleu "$S/student_tf_seqkd_u1360.pt" tf_seqkd_u1360 test 1
bleu "$S/student_tf_seqkd_u2040.pt" tf_seqkd_u2040 test 1
bleu "$W/student_tf_seqkd/checkpoint_last.pt" tf_seqkd_last test 1
bleu "$W/student_tf_seqkd/checkpoint_best.pt" tf_seqkd_best test 1
bleu "$W/student_lstm_seqkd/checkpoint_best.pt" lstm_seqkd_best test 1
bleu "$W/student_lstm_seqkd/checkpoint_last.pt" lstm_seqkd_last test 1

# paired bootstrap (1,000 resamples): against the new teacher's beam 5, the 1,400-update teacher's students
score() {  # score JSON NAME=HYPS...
  local args=() files=() x
  for x in "${@:2}"; do args+=(--name "${x%%=*}"); files+=("${x#*=}"); done
  [ -s "$E/eval/$1" ] || fairseq-kd-score --text --paired-bs --ref "$W/raw/test.ref.de" --json "$E/eval/$1" "${args[@]}" "${files[@]}"
}
H=$E/hyps
score paired_vs_teacher2800.json teacher2800_beam5=$H/teacher2800.beam5.batch64.txt \
  teacher_avg11-15_beam5=$H/teacher_avg11-15.beam5.batch64.txt \
  tf_seqkd_u1360=$H/tf_seqkd_u1360.beam1.batch64.txt tf_seqkd_u2040=$H/tf_seqkd_u2040.beam1.batch64.txt \
  tf_seqkd_last=$H/tf_seqkd_last.beam1.batch64.txt tf_seqkd_best=$H/tf_seqkd_best.beam1.batch64.txt \
  nll2800_e19=$N/hyps/nll_19.beam1.batch64.txt nll2800_last=$N/hyps/nll_last.beam1.batch64.txt
score paired_vs_teacher1400.json teacher1400_beam5=$R/hyps/teacher.beam5.batch64.txt \
  teacher_avg11-15_beam5=$H/teacher_avg11-15.beam5.batch64.txt teacher_avg13-17_beam5=$H/teacher_avg13-17.beam5.batch64.txt \
  teacher2800_beam5=$H/teacher2800.beam5.batch64.txt
score paired_tf_vs_nll1400.json nll1400=$R/hyps/student_tf_nll.beam1.batch64.txt \
  seqkd1400_from_teacher1400=$R/hyps/student_tf_seqkd.beam1.batch64.txt tf_seqkd_u1360=$H/tf_seqkd_u1360.beam1.batch64.txt
score paired_tf_vs_nll2800.json nll2800_last=$N/hyps/nll_last.beam1.batch64.txt \
  tf_seqkd_last=$H/tf_seqkd_last.beam1.batch64.txt tf_seqkd_u2040=$H/tf_seqkd_u2040.beam1.batch64.txt
score paired_lstm_vs_nll.json lstm_nll=$R/hyps/student_lstm_nll.beam1.batch64.txt \
  lstm_seqkd_from_teacher1400=$R/hyps/student_lstm_seqkd.beam1.batch64.txt \
  lstm_seqkd_best=$H/lstm_seqkd_best.beam1.batch64.txt

python3 - "$E" "$W" <<'PY'
import glob, json, os, re, sys
e, w = sys.argv[1:]
bleu = {os.path.basename(p)[:-len(".json")]: json.load(open(p))["results"][0]["bleu"]
        for p in glob.glob(os.path.join(e, "eval", "*.beam[15].json"))}
loss = {}
for name in ("teacher", "student_tf_seqkd", "student_lstm_seqkd"):
    for line in open(os.path.join(w, "logs", f"{name}.log"), errors="replace"):
        m = re.search(r"epoch (\d+) \| valid on 'valid' subset \| loss ([\d.]+).*num_updates (\d+)", line)
        if m:
            loss.setdefault(name, {})[m.group(1)] = {"valid_loss": float(m.group(2)), "updates": int(m.group(3))}
paired = {os.path.basename(p)[:-len(".json")]: [
    {"name": r["name"], "bleu": r["bleu"], **({"paired_bs": r["paired_bs"]} if "paired_bs" in r else {})}
    for r in json.load(open(p))] for p in glob.glob(os.path.join(e, "eval", "paired_*.json"))}
json.dump({"bleu": bleu, "valid_loss": loss, "paired": paired}, open(os.path.join(e, "summary.json"), "w"),
          indent=1, sort_keys=True)
print("wrote", os.path.join(e, "summary.json"))
PY
