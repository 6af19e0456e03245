#!/usr/bin/env bash
# After a run of the multi30k recipe's defaults: its report into docs/results/multi30k.{md,json,png} (with
# docs/results/multi30k_notes.md as its Notes), the run's stage times, greedy valid BLEU files and the epoch lines of
# each training log into docs/results/multi30k_run/, the control's paired test against the student it was retrained
# from into docs/results/multi30k_paired_bs/, and the README's headline table.
#
#   RUN=../proof bash benchmarks/multi30k_publish.sh
#
# RUN: the checkout the run was made in (its work/multi30k_en_de and .venv); this checkout receives the files. Move
# the previous run's files to dated names first (multi30k_YYYY-MM-DD.*, _run/, _paired_bs/, _notes.md) and write the
# new run's notes; the report reads them.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${RUN:?set RUN to the checkout the recipe ran in}"
M=$PWD R=$PWD/docs/results
RUN=$(cd "$RUN" && pwd)
W=$RUN/work/multi30k_en_de
[ -s "$W/results.json" ] || { echo "error: $W/results.json missing: the run has not finished its report stage" >&2; exit 1; }
[ -f "$R/multi30k_notes.md" ] || { echo "error: write $R/multi30k_notes.md (the run's notes) first" >&2; exit 1; }
(cd "$RUN" && STAGE=report RESULTS_DIR=$R RESULTS_NAME=multi30k RESULTS_NOTES=$R/multi30k_notes.md \
  bash recipes/multi30k_en_de/run.sh)
mkdir -p "$R/multi30k_run/train_logs" "$R/multi30k_paired_bs"
cp "$W/stage_times.txt" "$W"/eval/*.valid.json "$R/multi30k_run/"
for f in "$W"/logs/*.log; do
  n=$(basename "$f" .log)
  case $n in
    seqkd_data) grep -aE "generated .* tokens in|^wrote " "$f" > "$R/multi30k_run/train_logs/seqkd_data.summary.log" || true ;;
    *) grep -aE "\| (valid|train) \| epoch" "$f" > "$R/multi30k_run/train_logs/$n.epochs.log" \
         || rm -f "$R/multi30k_run/train_logs/$n.epochs.log" ;;
  esac
done
best=$(cat "$W/best_student.txt")
"$RUN/.venv/bin/fairseq-kd-score" "$W/hyps/$best.beam1.batch64.txt" "$W/hyps/pruned_0.0.beam1.batch64.txt" --text \
  --ref "$W/raw/test.ref.de" --paired-bs --json "$R/multi30k_paired_bs/control_vs_${best}_beam1.json"
"$M/.venv/bin/python" recipes/headline.py docs/results/multi30k.json --readme README.md
