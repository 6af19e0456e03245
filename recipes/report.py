"""Results of a recipe run: $WORK/<name>.md (+ .json; the Pareto plot <name>.png sits next to it) from the speed JSONs, the tables and the stage
times, with the project's targets marked met / not met by the measured numbers.

    python recipes/report.py --work WORK --title T --command C --pruned-student NAME --prune-ratios 0.5 0.8 0.9 \\
        --compress-ratio 0.8 --tracks lstm tf [--teacher-goal 33] --output-md results.md --output-json results.json
    python recipes/report.py ... --best-student NAME ...      the student in int8 (<NAME>_int8), with or without pruning

Targets (issue #25; on this run's test set, greedy = beam 1, "beam" = the run's largest beam):
  1. the teacher's beam BLEU >= --teacher-goal (when given)
  2. per track T: Seq-KD student (student_T_seqkd) greedy >= the NLL student (student_T_nll) greedy + 3 BLEU
  3. the best student with at least 2.5x fewer parameters than the teacher: greedy within 1.0 BLEU of the teacher's
     beam; and its greedy words/s with its fastest engine (or its int8 form's, <name>_int8, when that loses at most
     0.3 greedy BLEU) >= 20x (batched) and >= 10x (batch 1) the teacher's beam words/s in fairseq
  4. pruning and compression: 80% pruned within 0.3 BLEU of unpruned and 90% within 1.0 (greedy and beam;
     unpruned = the student retrained unpruned, pruned_0.0, when the run has it); the 80% model as sparse+int8:
     file <= 0.15x the dense fp32 file, <= 0.3 BLEU lost; the --best-student's int8 model (<name>_int8) <= 0.3 BLEU
     lost
A target is met when the point estimate meets it. When the speed stage kept its hypotheses (fairseq-kd-speed
--hyp-dir), every BLEU difference also gets the 95 % confidence interval and p-value of sacreBLEU's paired bootstrap
test (fairseq_kd/significance.py): on 1,000 sentences a few tenths of BLEU can be chance.
"""
import argparse
import functools
import glob
import json
import math
import os
import platform


def load(path):
    with open(path) as f:
        return json.load(f)


def rows_by(report):
    """fairseq's rows (the engine every model has) by (model, beam, batch size)."""
    return {(r["model"], r["beam"], r["batch_size"]): r for r in report["results"] if r.get("engine", "fairseq") == "fairseq"}


def fastest(report, model, beam, size):
    """The model's fastest row at (beam, batch size) over the engines measured (the speed stage's --engine)."""
    rows = [r for r in report["results"] if (r["model"], r["beam"], r["batch_size"]) == (model, beam, size)]
    return max(rows, key=lambda r: r["words_per_s"]["median"]) if rows else None


def stage_times(path):
    times = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                name, seconds = line.split()
                times[name] = int(seconds)  # a stage redone (STAGE=...) counts with its last run
    return times


def stages_wall_seconds(work, times):
    """The stages' wall time: the union of their [end - seconds, end] intervals, each end read from the stage's
    stamp ($WORK/.done/<stage>, recipes/lib.sh), so stages run side by side (STUDENT_JOBS) count once. A stage
    without a stamp is being redone (STAGE=..., this report stage itself) and counts with its last time; None when
    a stamp cannot be read."""
    spans, unstamped = [], 0
    for name, seconds in times.items():
        path = os.path.join(work, ".done", name)
        if not os.path.exists(path):
            unstamped += seconds
            continue
        try:
            with open(path) as f:
                end = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        spans.append((end - seconds, end))
    total, reached = unstamped, None
    for start, end in sorted(spans):
        if reached is None or start >= reached:
            total, reached = total + end - start, end
        elif end > reached:
            total, reached = total + end - reached, end
    return total


def target(name, ok, measured, goal, test=None, key=None):
    """One target's entry; `key` names it for readers of the JSON (the demo's summary): <objective>_vs_nll:<track>
    (seqkd_vs_nll:tf, word_kd_vs_nll:tf, ...), best_vs_teacher, speed_batched, speed_batch1."""
    out = {"target": name, "status": "not measured" if ok is None else "met" if ok else "not met",
           "measured": measured, "goal": goal}
    if key is not None:
        out["key"] = key
    if test is not None:
        out["paired_bs"] = test
    return out


def versus(score, base, test=None):
    """'24.91 vs 25.41 (-0.50)'; with a paired bootstrap test, its numbers (the same BLEU scores to 0.01, the
    difference as the test computed it, so the text and the test's files agree) and its 95 % CI and p-value."""
    if test is None:
        return f"{score:.2f} vs {base:.2f} ({score - base:+.2f})"
    return (f"{test['system']:.2f} vs {test['baseline']:.2f} ({test['delta']:+.2f}, 95% CI {test['ci95'][0]:+.2f}.."
            f"{test['ci95'][1]:+.2f}, p = {test['p_value']:.3f})")


@functools.lru_cache(maxsize=None)
def detokenized(path, detok):
    """A file's lines as scored (the reference and a row's hypotheses are each read once per report)."""
    from fairseq_kd.bleu import detokenize, read_lines
    return tuple(detokenize(read_lines(path), detok))


def paired_test(data, base, system):
    """sacreBLEU's paired bootstrap test of two rows' hypotheses (None unless the speed stage wrote them)."""
    if not (base and system and "hypotheses" in base and "hypotheses" in system and data.get("ref")):
        return None
    from fairseq_kd import significance
    base_hyps, sys_hyps, refs = (list(detokenized(p, data.get("detok")))
                                 for p in (base["hypotheses"], system["hypotheses"], data["ref"]))
    return significance.paired_bootstrap(base_hyps, sys_hyps, refs[:len(base_hyps)])


PARAMS_RATIO = 2.5  # a student has at least this many times fewer parameters than the teacher
# the distilled objectives of recipes/kd_pipeline.sh (student_TRACK_OBJECTIVE), each compared with the track's NLL one
OBJECTIVES = {"word_kd": "Word-KD", "seqkd": "Seq-KD", "seqkd_seqinter": "Seq-Inter", "seqkd_word_kd": "Seq-KD + Word-KD",
              "block_kd": "block_kd"}


def targets(batched, batch1, pruned_student, compress_ratio, tracks=(), teacher_goal=None, best_student=None,
            valid_bleu=None):
    """The target lines. valid_bleu (student name -> greedy valid BLEU): the best student is chosen on it, so that
    test BLEU only measures it; without it (older runs), on test."""
    b, b1 = rows_by(batched), rows_by(batch1) if batch1 else {}
    beam = max(r["beam"] for r in batched["results"])
    bs = max(r["batch_size"] for r in batched["results"])

    def bleu(model, k):
        r = b.get((model, k, bs))
        return r["bleu"] if r and "bleu" in r else None

    def wps(rows, model, k, size):
        r = rows.get((model, k, size))
        return r["words_per_s"]["median"] if r else None

    def test(base, system, k, base_k=None):
        return paired_test(batched["data"], b.get((base, k if base_k is None else base_k, bs)), b.get((system, k, bs)))

    out = []
    teacher_beam = bleu("teacher", beam)
    if teacher_goal is not None:
        out.append(target(f"teacher beam {beam} >= {teacher_goal:g} BLEU",
                          None if teacher_beam is None else teacher_beam >= teacher_goal,
                          None if teacher_beam is None else f"{teacher_beam:.2f}", f">= {teacher_goal:g}"))
    trained = {m for (m, _, _) in b}
    for track in tracks:
        # each distilled student of the track against its NLL student: Seq-KD's goal is Kim & Rush's margin, the
        # others' to be above it (95 % CI above zero)
        nll_name = f"student_{track}_nll"
        for objective in OBJECTIVES:
            name = f"student_{track}_{objective}"
            if name not in trained:
                continue
            nll, kd = bleu(nll_name, 1), bleu(name, 1)
            paired = None if None in (nll, kd) else test(nll_name, name, 1)
            if objective == "seqkd":
                ok = None if None in (nll, kd) else kd >= nll + 3
                wanted, goal = ">= NLL student greedy + 3 BLEU", "+3"
            else:
                ok = None if None in (nll, kd) else kd > nll and (paired is None or paired["ci95"][0] > 0)
                wanted, goal = "BLEU > NLL student greedy (95 % CI above 0)", "> 0"
            out.append(target(f"{track}: {OBJECTIVES[objective]} student greedy {wanted}", ok,
                              None if None in (nll, kd) else versus(kd, nll, paired), goal, paired,
                              key=f"{objective}_vs_nll:{track}"))
    teacher_row = b.get(("teacher", beam, bs))
    small = [m for (m, k, _), r in b.items() if m.startswith("student_") and not m.endswith("_int8") and k == 1
             and teacher_row and r["params_total"] * PARAMS_RATIO <= teacher_row["params_total"]]
    on_valid = bool(small) and bool(valid_bleu) and all(m in valid_bleu for m in small)
    best = max(small, key=(lambda m: valid_bleu[m]) if on_valid else (lambda m: bleu(m, 1) or -1)) if small else None
    gap = None if best is None or bleu(best, 1) is None or teacher_beam is None else bleu(best, 1) - teacher_beam
    paired = None if gap is None else test("teacher", best, 1, base_k=beam)
    out.append(target(f"best student (>= {PARAMS_RATIO:g}x fewer parameters, chosen on {'valid' if on_valid else 'test'} "
                      f"BLEU) greedy within 1.0 BLEU of teacher beam {beam}", None if gap is None else gap >= -1.0,
                      None if gap is None else f"{best} ({b[best, 1, bs]['params_total'] / 1e6:.2f}M params vs "
                                               f"{teacher_row['params_total'] / 1e6:.2f}M) "
                                               + versus(bleu(best, 1), teacher_beam, paired), ">= -1.0", paired,
                      key="best_vs_teacher"))
    out[-1]["model"] = best
    # the best student's speed: its fastest engine, or its int8 form's (<best>_int8, the compress stage's) on an
    # engine where that loses at most INT8_LOSS greedy BLEU against the student (batched rows)
    int8_engines = int8_within(batched, best, INT8_LOSS) if best else set()
    for label, report, rows, size, goal in (("batched", batched, b, bs, 20), ("batch 1", batch1, b1, 1, 10)):
        candidates = [r for r in report["results"] if r["beam"] == 1 and r["batch_size"] == size and (
            r["model"] == best or (r["model"] == f"{best}_int8" and r.get("engine", "fairseq") in int8_engines))] \
            if best and report else []
        fast = max(candidates, key=lambda r: r["words_per_s"]["median"]) if candidates else None  # no report: not measured
        t = wps(rows, "teacher", beam, size)
        s = fast["words_per_s"]["median"] if fast else None
        engine = fast.get("engine", "fairseq") if fast else None
        out.append(target(f"best student greedy (its fastest engine; int8 if <= {INT8_LOSS} BLEU lost) >= {goal}x "
                          f"teacher beam {beam} words/s in fairseq ({label})", None if None in (s, t) else s >= goal * t,
                          None if None in (s, t) else f"{fast['model']} {s:.0f} ({engine}) vs {t:.0f} words/s ({ratio_text(s / t)})",
                          f">= {goal}x", key="speed_" + label.replace(" ", "")))
        if None not in (s, t):  # for readers of the JSON (the demo's summary): the form and engine counted
            out[-1].update(model=fast["model"], engine=engine, words_per_s=s, teacher_words_per_s=t)

    if pruned_student:
        out += pruning_targets(b, bleu, test, pruned_student, compress_ratio, beam, bs)
    if best_student:
        out += int8_targets(batched, best_student, beam, bs)
    return out


INT8_LOSS = 0.3  # the greedy BLEU an int8 form may lose and still count for its student's speed (issue #24)


def ratio_text(ratio):
    """'19.9x' for 19.99: cut, not rounded, to one decimal, so a ratio shown at a goal (20.0x) has met it."""
    return f"{math.floor(ratio * 10 + 1e-9) / 10:.1f}x"


def valid_bleu(work):
    """Each student's greedy valid BLEU (WORK/eval/student_*.valid.json, the recipe's eval stage), by name."""
    out = {}
    for path in sorted(glob.glob(os.path.join(work, "eval", "student_*.valid.json"))):
        out[os.path.basename(path)[: -len(".valid.json")]] = load(path)["results"][0]["bleu"]
    return out


def rows_at(batched, bs):
    """The rows at batch size `bs`, by (model, engine, beam)."""
    return {(r["model"], r.get("engine", "fairseq"), r["beam"]): r for r in batched["results"] if r["batch_size"] == bs}


def int8_within(batched, student, loss):
    """The engines on which <student>_int8's batched greedy BLEU is at least the student's (same engine) less `loss`."""
    rows = rows_at(batched, max(r["batch_size"] for r in batched["results"]))
    bleu = {(m, e): r["bleu"] for (m, e, k), r in rows.items() if k == 1 and "bleu" in r}
    return {e for (m, e), q in bleu.items() if m == f"{student}_int8" and (student, e) in bleu and q >= bleu[student, e] - loss}


def int8_targets(batched, student, beam, bs):
    """The best student's int8 model (<student>_int8) loses at most 0.3 BLEU against the student decoded by the same
    engine (a CTranslate2 export has CTranslate2's rows only)."""
    rows = rows_at(batched, bs)
    small = f"{student}_int8"
    engines = [e for (m, e, k) in rows if m == small and k == 1]
    engine = "fairseq" if "fairseq" in engines else engines[0] if engines else None
    out = []
    for k in (1, beam):
        u, q = rows.get((student, engine, k)), rows.get((small, engine, k))
        ok = u is not None and q is not None and "bleu" in u and "bleu" in q
        paired = paired_test(batched["data"], u, q) if ok else None
        out.append(target(f"{student} in int8 loses <= 0.3 BLEU ({'greedy' if k == 1 else f'beam {k}'})",
                          q["bleu"] >= u["bleu"] - 0.3 if ok else None,
                          f"{versus(q['bleu'], u['bleu'], paired)} ({engine})" if ok else None, ">= -0.3", paired))
    return out


def pruning_targets(b, bleu, test, pruned_student, compress_ratio, beam, bs):
    """The pruning and compression targets. "Unpruned" is the same student retrained unpruned (pruned_0.0, as the pruned ones
    are retrained) when the run has it, else the student the pruned models come from; both are shown."""
    out = []
    reference = "pruned_0.0" if bleu("pruned_0.0", 1) is not None else pruned_student
    for ratio, goal in (("0.8", 0.3), ("0.9", 1.0)):
        for k in (1, beam):
            u, p, orig = bleu(reference, k), bleu(f"pruned_{ratio}", k), bleu(pruned_student, k)
            measured = paired = None
            if None not in (u, p):
                paired = test(reference, f"pruned_{ratio}", k)
                measured = versus(p, u, paired)
                if reference != pruned_student and orig is not None:
                    measured += f"; vs {pruned_student} {orig:.2f} ({p - orig:+.2f})"
            out.append(target(f"{float(ratio):.0%} pruned within {goal} BLEU of unpruned "
                              f"({'greedy' if k == 1 else f'beam {k}'})",
                              None if measured is None else p >= u - goal, measured, f">= -{goal}", paired))
    dense, small = f"pruned_{compress_ratio}", f"pruned_{compress_ratio}_sparse_int8"
    d, q = b.get((dense, 1, bs)), b.get((small, 1, bs))
    ratio = q["file_size_bytes"] / d["file_size_bytes"] if d and q else None
    out.append(target(f"sparse+int8 file <= 0.15x the dense fp32 file ({dense})", None if ratio is None else ratio <= 0.15,
                      None if ratio is None else f"{q['file_size_bytes'] / 1e6:.2f} vs {d['file_size_bytes'] / 1e6:.2f} MB "
                                                 f"({ratio:.3f}x)", "<= 0.15x"))
    for k in (1, beam):
        u, p = bleu(dense, k), bleu(small, k)
        paired = None if None in (u, p) else test(dense, small, k)
        out.append(target(f"sparse+int8 loses <= 0.3 BLEU ({'greedy' if k == 1 else f'beam {k}'})",
                          None if None in (u, p) else p >= u - 0.3,
                          None if None in (u, p) else versus(p, u, paired), ">= -0.3", paired))
    return out


def compressed_text(a):
    """What the results say of the pruned and compressed models."""
    out = []
    if a.pruned_student:
        out.append(f"Pruned models: {a.pruned_student} (best greedy valid BLEU among the students) pruned class-blind "
                   f"to {', '.join(a.prune_ratios)} and retrained; sparse / sparse_int8 are the {a.compress_ratio} model "
                   "compressed by fairseq-kd-compress.")
    else:
        out.append("No pruning.")
    if a.best_student:
        out.append(f"{a.best_student}_int8 is {a.best_student} ({'the student pruned' if a.pruned_student else 'best greedy valid BLEU among the students'}) in "
                   "int8 for its fastest engine (a CTranslate2 export of a transformer, fairseq-kd-compress of a kd_lstm).")
    return " ".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--pruned-student", default=None, help="the student the pruned models come from")
    p.add_argument("--best-student", default=None, help="the student compressed to int8 (<name>_int8)")
    p.add_argument("--prune-ratios", nargs="*", default=[])
    p.add_argument("--compress-ratio", default=None)
    p.add_argument("--tracks", nargs="*", default=[], help="the student tracks (STUDENT_ARCHS' names)")
    p.add_argument("--teacher-goal", type=float, default=None, help="the teacher's beam BLEU target")
    p.add_argument("--output-md", required=True)
    p.add_argument("--output-json", required=True)
    p.add_argument("--notes", default=None, help="markdown file appended as the results' Notes section")
    a = p.parse_args()
    batched = load(os.path.join(a.work, "speed_batched.json"))
    path1 = os.path.join(a.work, "speed_batch1.json")  # absent: the speed stage ran with LATENCY_SENTENCES=0
    batch1 = load(path1) if os.path.exists(path1) else None
    env = batched["environment"]
    signature = next((r["bleu_signature"] for r in batched["results"] if "bleu_signature" in r), "n/a")
    times = stage_times(os.path.join(a.work, "stage_times.txt"))
    wall = stages_wall_seconds(a.work, times)
    total = wall if wall is not None else sum(times.values())
    checks = targets(batched, batch1, a.pruned_student, a.compress_ratio, a.tracks, a.teacher_goal, a.best_student,
                     valid_bleu(a.work))
    with open(os.path.join(a.work, "table_batched.md")) as f:
        table_batched = f.read()
    table_batch1 = None
    if batch1 is not None:
        with open(os.path.join(a.work, "table_batch1.md")) as f:
            table_batch1 = f.read()

    cores = f" ({env['visible_cores']} cores visible)" if env.get("visible_cores") else ""  # older speed files: absent
    md = [f"# {a.title}", "", "Reproduce:", "", "```", a.command, "```", "",
          f"Machine: {env['cpu']}{cores}, {env['threads']} threads, {env['device']}; python {platform.python_version()}, "
          f"torch {env['torch']}, fairseq {env['fairseq']}, fairseq_kd {env['fairseq_kd']}; measured {env['timestamp']}.",
          "", f"sacreBLEU signature: `{signature}`",
          "", f"BLEU on all {batched['data']['sentences']} test sentences (detokenized, cased). " + compressed_text(a), "",
          "## Targets", "", "| target | goal | measured | status |", "|---|---|---|---|"]
    md += [f"| {c['target']} | {c['goal']} | {c['measured'] or '–'} | **{c['status']}** |" for c in checks]
    md += ["", "## BLEU and speed, batch size 64 (all of test)", "", table_batched]
    if batch1 is not None:
        md += [f"## Speed at batch size 1 (first {batch1['data']['sentences']} test sentences)", "", table_batch1]
    md += [f"![BLEU vs speed]({os.path.splitext(os.path.basename(a.output_md))[0]}.png)", "", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in times.items()]
    overlap = " (stages side by side counted once)" if wall is not None and wall < sum(times.values()) else ""
    md += [f"| **total**{overlap} | **{total}** ({total / 60:.0f} min) |", ""]
    if a.notes:
        with open(a.notes) as f:
            md += ["## Notes", "", f.read().strip(), ""]
    with open(a.output_md, "w") as f:
        f.write("\n".join(md))
    with open(a.output_json, "w") as f:
        json.dump({"title": a.title, "command": a.command, "environment": env, "bleu_signature": signature,
                   "targets": checks, "stage_seconds": times, "stages_wall_seconds": wall,
                   "pruned_student": a.pruned_student,
                   "best_student": a.best_student,
                   "batched": batched, "batch1": batch1}, f, indent=2)
    print(f"wrote {a.output_md} and {a.output_json}")
    for c in checks:
        print(f"  [{c['status']}] {c['target']}: {c['measured']}")


if __name__ == "__main__":
    main()
