#!/usr/bin/env bash
# The demo's students by training length: STUDENTS (default "tf_nll tf_seqkd", the demo's two) trained side by side
# by the demo's own recipe (STUDENT_JOBS=2) to UPDATES updates, a checkpoint every EVERY updates, and each
# checkpoint's greedy valid BLEU (fairseq-kd-speed, its fastest engine). Writes OUT.json and OUT.md (a row per
# checkpoint: each student's BLEU), to choose the demo's students and STUDENT_UPDATES by measurement.
#   [STUDENTS="tf_nll tf_word_kd"] bash benchmarks/demo_calibration/student_curve.sh DEMO_WORK UPDATES EVERY OUT
# DEMO_WORK: a demo work directory after its seqkd_data stage (copied: it is not changed; the stages the students
# need beyond it, such as the top-k caches of word_kd, run on the copy).
set -euo pipefail
work=${1:?usage: student_curve.sh DEMO_WORK UPDATES EVERY OUT} updates=${2:?} every=${3:?} out=${4:?}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for d in raw bin seqkd teacher spm.model spm.vocab; do cp -r "$work/$d" "$tmp/"; done
mkdir -p "$tmp/.done" && cp "$work"/.done/{prepare,teacher,seqkd_data} "$tmp/.done/"
students=${STUDENTS:-tf_nll tf_seqkd}
WORK=$tmp STUDENTS=$students STUDENT_JOBS=2 STUDENT_UPDATES=$updates STOP_AFTER=student_${students##* } \
  TRAIN_EXTRA="--save-interval-updates $every --keep-interval-updates -1" bash "$ROOT/recipes/demo/run.sh" >&2
rows=()
for ((u = every; u <= updates; u += every)); do
  for s in $students; do
    ckpt=$(ls "$tmp/student_$s"/checkpoint_*_"$u".pt)
    fairseq-kd-speed "$tmp/bin" --user-dir "$ROOT/fairseq_kd" --path "$ckpt" --name "${s}_$u" --gen-subset valid \
      --beam 1 --batch-size 64 --repeats 1 --warmup 0 --threads 2 --ref "$tmp/raw/valid.ref.de" \
      --post-process sentencepiece --engine auto --max-len-a 1.2 --max-len-b 10 --output "$tmp/${s}_$u.json" >&2
  done
  rows+=("$u")
done
python3 - "$tmp" "$out" "$work" "$students" "${rows[@]}" <<'PY'
import json, sys
tmp, out, work, students, *updates = sys.argv[1:]
students = students.split()
bleu = lambda name: json.load(open(f"{tmp}/{name}.json"))["results"][0]["bleu"]
rows = [{"updates": int(u), **{s: bleu(f"{s}_{u}") for s in students}} for u in updates]
env = "" if students == ["tf_nll", "tf_seqkd"] else f'STUDENTS="{" ".join(students)}" '
json.dump({"what": "the demo's students by updates: greedy valid BLEU (multi30k val, sacreBLEU)",
           "command": f"{env}bash benchmarks/demo_calibration/student_curve.sh {work} {updates[-1]} {updates[0]} {out}",
           "rows": rows}, open(out + ".json", "w"), indent=1)
with open(out + ".md", "w") as f:
    f.write("| updates | " + " | ".join(f"student_{s}" for s in students) + " |\n|---|" + "---|" * len(students) + "\n")
    for r in rows:
        f.write(f"| {r['updates']} | " + " | ".join(f"{r[s]:.2f}" for s in students) + " |\n")
print(open(out + ".md").read())
PY
