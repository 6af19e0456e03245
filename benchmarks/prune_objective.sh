#!/usr/bin/env bash
# Which objective should retrain a pruned student? The multi30k recipe's prune stage, run once per
# PRUNE_OBJECTIVE (own: the student's own objective, seq_inter for the Seq-Inter student; word_kd: word-level KD
# from the teacher's top-k cache) from the same student of a finished (or STOP_AFTER=student_lstm_seqkd_seqinter)
# recipe work dir, each retrained model scored with sacreBLEU on valid and test2016, greedy and beam 5.
#
#   WORK=work/multi30k_en_de STUDENTS=lstm_seqkd_seqinter bash benchmarks/prune_objective.sh
#
# Each objective gets WORK/prune_objective/OBJ, whose inputs (data, teacher, students, caches) are links into
# WORK and whose stage stamps are WORK's up to the prune stage: the recipe then runs what is missing there (the
# top-k cache for word_kd) and the prune stage, with the recipe's own defaults for everything else (override
# them as for the recipe, e.g. PRUNE_EPOCHS, PRUNE_ARGS; VARIANT=name then keeps such a run apart, in
# WORK/prune_objective/OBJ-name and as rows "OBJ-name"). Resumable like the recipe. Writes OUTPUT.json (every
# BLEU row) and OUTPUT.md (per objective and ratio: BLEU and the difference to the same objective's 0% row).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
source "$ROOT/recipes/lib.sh"

: "${WORK:=$ROOT/work/multi30k_en_de}" "${OBJECTIVES:=own word_kd}" "${PRUNE_RATIOS:=0.0 0.8 0.9}"
: "${OUTPUT:=$ROOT/docs/results/prune_objective}" "${THREADS:=2}"
WORK=$(cd "$WORK" && pwd)
require_file "$WORK/bin/dict.en.txt" "(run recipes/multi30k_en_de/run.sh first, at least up to its students)"
export PRUNE_RATIOS THREADS

for obj in $OBJECTIVES; do
  label=$obj${VARIANT:+-$VARIANT}
  w=$WORK/prune_objective/$label
  mkdir -p "$w/.done"
  for x in "$WORK"/*; do
    case $(basename "$x") in pruned_*|models|prune_objective|logs|speed_*|table_*|stage_times.txt|results*|pruned_student.txt) continue ;; esac
    [ -e "$w/$(basename "$x")" ] || ln -s "$x" "$w/"
  done
  for s in "$WORK"/.done/*; do
    case $(basename "$s") in prune|compress|speed|report) ;; *) cp -n "$s" "$w/.done/" ;; esac
  done
  log "objective $obj: $w (PRUNE_EPOCHS=${PRUNE_EPOCHS:-default} PRUNE_ARGS=${PRUNE_ARGS:-default})"
  WORK=$w PRUNE_OBJECTIVE=$obj STOP_AFTER=prune bash "$ROOT/recipes/multi30k_en_de/run.sh"
  for subset in valid test; do
    out=$w/bleu_$subset.json
    [ -s "$out" ] && continue
    paths=()
    for r in $PRUNE_RATIOS; do paths+=(--path "$w/pruned_$r/checkpoint_best.pt" --name "$label/pruned_$r"); done
    fairseq-kd-speed "$WORK/bin" --user-dir "$ROOT/fairseq_kd" --gen-subset "$subset" --beam 1 5 --batch-size 64 \
      --repeats 1 --warmup 0 --threads "$THREADS" --ref "$WORK/raw/$subset.ref.de" --post-process sentencepiece \
      --max-len-a 1.2 --max-len-b 10 "${paths[@]}" --output "$out"
  done
done

# the table: every run under WORK/prune_objective (all objectives and variants measured so far)
python3 - "$WORK" "$OUTPUT" <<'EOF'
import json, os, sys
work, output = sys.argv[1], sys.argv[2]
root = os.path.join(work, "prune_objective")
objectives = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "bleu_test.json")))
student = open(os.path.join(root, objectives[0], "pruned_student.txt")).read().strip()
rows = []
for obj in objectives:
    for subset in ("valid", "test"):
        for r in json.load(open(os.path.join(root, obj, f"bleu_{subset}.json")))["results"]:
            rows.append({"objective": obj, "ratio": r["model"].split("pruned_")[1], "subset": subset, "beam": r["beam"],
                         "bleu": r["bleu"], "params_nonzero": r["params_nonzero"], "signature": r["bleu_signature"]})
bleu = {(r["objective"], r["ratio"], r["subset"], r["beam"]): r["bleu"] for r in rows}
lines = [f"Student: {student}, pruned class-blind, retrained by the recipe's prune stage with each objective. "
         "Δ: against the same objective's 0% row (the same retraining without pruning).", "",
         "| objective | pruned | nonzero params | valid greedy | valid beam 5 | test2016 greedy | Δ | test2016 beam 5 | Δ |",
         "|---|---|---|---|---|---|---|---|---|"]
for obj in objectives:
    for ratio in sorted({r["ratio"] for r in rows if r["objective"] == obj}, key=float):
        nz = next(r["params_nonzero"] for r in rows if r["objective"] == obj and r["ratio"] == ratio)
        cells = [f"{bleu[(obj, ratio, 'valid', b)]:.2f}" for b in (1, 5)]
        for b in (1, 5):
            v, ref = bleu[(obj, ratio, "test", b)], bleu[(obj, "0.0", "test", b)]
            cells += [f"{v:.2f}", f"{v - ref:+.2f}"]
        lines.append(f"| {obj} | {float(ratio):.0%} | {nz:,} | " + " | ".join(cells) + " |")
seconds = {}
for obj in objectives:
    with open(os.path.join(root, obj, "stage_times.txt")) as f:
        seconds[obj] = {}
        for stage, t in (line.split() for line in f):  # summed over a stage's runs (reruns for more ratios)
            seconds[obj][stage] = seconds[obj].get(stage, 0) + int(t)
lines += ["", "Wall time of the stages each run ran (s): " + "; ".join(
    f"{obj}: " + ", ".join(f"{stage} {t}" for stage, t in seconds[obj].items()) for obj in objectives)]
lines += ["", f"sacreBLEU: `{rows[0]['signature']}`"]
os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
with open(output + ".json", "w") as f:
    json.dump({"command": "bash benchmarks/prune_objective.sh", "student": student, "stage_seconds": seconds,
               "rows": rows}, f, indent=2)
with open(output + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
