"""Results of a recipe run: $WORK/<name>.md (+ .json; the Pareto plot <name>.png sits next to it) from the speed JSONs, the tables and the stage
times, with the project's targets marked met / not met by the measured numbers.

    python recipes/report.py --work WORK --title T --command C --pruned-student NAME --prune-ratios 0.5 0.8 0.9 \\
        --compress-ratio 0.8 --output-md results.md --output-json results.json

Targets (Kim & Rush 2016 claims, measured on this run's test set):
  1. Seq-KD student greedy BLEU >= baseline (NLL) student greedy BLEU + 1.5
  2. best student greedy BLEU within 0.5 of the teacher's beam BLEU
  3. student greedy words/s >= 20x teacher beam words/s (batched and batch 1 reported separately; the student is
     the Seq-KD one, as in the paper's table)
  4. pruning and compression (issue #8): 80% pruned within 0.3 BLEU of unpruned and 90% within 1.0 (greedy and
     beam; unpruned = the student retrained unpruned, pruned_0.0, when the run has it); the 80% model as
     sparse+int8: file <= 0.15x the dense fp32 file, <= 0.3 BLEU lost, >= 1.5x greedy words/s
Status is by the measured difference. When the speed stage kept its hypotheses (fairseq-kd-speed --hyp-dir), the
BLEU differences of target 4 also get the 95 % confidence interval and p-value of sacreBLEU's paired bootstrap test
(fairseq_kd/significance.py): on 1,000 sentences a few tenths of BLEU can be chance.
"""
import argparse
import functools
import json
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


def target(name, ok, measured, goal, test=None):
    out = {"target": name, "status": "not measured" if ok is None else "met" if ok else "not met",
           "measured": measured, "goal": goal}
    if test is not None:
        out["paired_bs"] = test
    return out


def versus(score, base, test=None):
    """'24.91 vs 25.41 (-0.50)', with the paired bootstrap's 95 % CI and p-value of the difference if tested."""
    extra = "" if test is None else f", 95% CI {test['ci95'][0]:+.2f}..{test['ci95'][1]:+.2f}, p = {test['p_value']:.3f}"
    return f"{score:.2f} vs {base:.2f} ({score - base:+.2f}{extra})"


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


def targets(batched, batch1, pruned_student, compress_ratio):
    b, b1 = rows_by(batched), rows_by(batch1)
    beam = max(r["beam"] for r in batched["results"])
    bs = max(r["batch_size"] for r in batched["results"])

    def bleu(model, k):
        r = b.get((model, k, bs))
        return r["bleu"] if r and "bleu" in r else None

    def wps(rows, model, k, size):
        r = rows.get((model, k, size))
        return r["words_per_s"]["median"] if r else None

    out = []
    nll, seqkd = bleu("student_nll", 1), bleu("student_seqkd", 1)
    out.append(target("Seq-KD student greedy >= baseline student greedy + 1.5 BLEU",
                      None if None in (nll, seqkd) else seqkd >= nll + 1.5,
                      None if None in (nll, seqkd) else f"{seqkd:.2f} vs {nll:.2f} ({seqkd - nll:+.2f})", "+1.5"))
    students = sorted({m for (m, _, _) in b if m.startswith("student_")})
    teacher_beam = bleu("teacher", beam)
    if students and teacher_beam is not None:
        best = max(students, key=lambda m: bleu(m, 1) or -1)
        gap = bleu(best, 1) - teacher_beam
        out.append(target(f"best student greedy within 0.5 BLEU of teacher beam {beam}", gap >= -0.5,
                          f"{best} {bleu(best, 1):.2f} vs teacher {teacher_beam:.2f} ({gap:+.2f})", ">= -0.5"))
    for label, report, rows, size in (("batched", batched, b, bs), ("batch 1", batch1, b1, 1)):
        fast, t = fastest(report, "student_seqkd", 1, size), wps(rows, "teacher", beam, size)
        s = fast["words_per_s"]["median"] if fast else None
        engine = fast.get("engine", "fairseq") if fast else None
        out.append(target(f"Seq-KD student greedy (its fastest engine) >= 20x teacher beam {beam} words/s in fairseq "
                          f"({label})", None if None in (s, t) else s >= 20 * t,
                          None if None in (s, t) else f"{s:.0f} ({engine}) vs {t:.0f} words/s ({s / t:.1f}x)", ">= 20x"))

    def test(base, system, k):
        return paired_test(batched["data"], b.get((base, k, bs)), b.get((system, k, bs)))

    out += pruning_targets(b, b1, bleu, wps, test, pruned_student, compress_ratio, beam, bs)
    return out


def pruning_targets(b, b1, bleu, wps, test, pruned_student, compress_ratio, beam, bs):
    """Issue #8's targets. "Unpruned" is the same student retrained unpruned (pruned_0.0, as the pruned ones
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
    for label, rows, size in (("batched", b, bs), ("batch 1", b1, 1)):
        u, p = wps(rows, dense, 1, size), wps(rows, small, 1, size)
        out.append(target(f"sparse+int8 greedy >= 1.5x dense fp32 words/s ({label})",
                          None if None in (u, p) else p >= 1.5 * u,
                          None if None in (u, p) else f"{p:.0f} vs {u:.0f} words/s ({p / u:.2f}x)", ">= 1.5x"))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--pruned-student", required=True)
    p.add_argument("--prune-ratios", nargs="*", default=[])
    p.add_argument("--compress-ratio", required=True)
    p.add_argument("--output-md", required=True)
    p.add_argument("--output-json", required=True)
    p.add_argument("--notes", default=None, help="markdown file appended as the results' Notes section")
    a = p.parse_args()
    batched = load(os.path.join(a.work, "speed_batched.json"))
    batch1 = load(os.path.join(a.work, "speed_batch1.json"))
    env = batched["environment"]
    signature = next((r["bleu_signature"] for r in batched["results"] if "bleu_signature" in r), "n/a")
    times = stage_times(os.path.join(a.work, "stage_times.txt"))
    checks = targets(batched, batch1, a.pruned_student, a.compress_ratio)
    with open(os.path.join(a.work, "table_batched.md")) as f:
        table_batched = f.read()
    with open(os.path.join(a.work, "table_batch1.md")) as f:
        table_batch1 = f.read()

    md = [f"# {a.title}", "", "Reproduce:", "", "```", a.command, "```", "",
          f"Machine: {env['cpu']}, {env['threads']} threads, {env['device']}; python {platform.python_version()}, "
          f"torch {env['torch']}, fairseq {env['fairseq']}, fairseq_kd {env['fairseq_kd']}; measured {env['timestamp']}.",
          "", f"sacreBLEU signature: `{signature}`",
          "", f"BLEU on all {batched['data']['sentences']} test sentences (detokenized, cased). "
              f"Pruned models: {a.pruned_student} (best greedy valid BLEU among the students) pruned class-blind to "
              f"{', '.join(a.prune_ratios)} and retrained; sparse / sparse_int8 are the {a.compress_ratio} model "
              "compressed by fairseq-kd-compress.", "",
          "## Targets", "", "| target | goal | measured | status |", "|---|---|---|---|"]
    md += [f"| {c['target']} | {c['goal']} | {c['measured'] or '–'} | **{c['status']}** |" for c in checks]
    md += ["", "## BLEU and speed, batch size 64 (all of test)", "", table_batched,
           f"## Speed at batch size 1 (first {batch1['data']['sentences']} test sentences)", "", table_batch1,
           f"![BLEU vs speed]({os.path.splitext(os.path.basename(a.output_md))[0]}.png)", "", "## Wall time per stage", "", "| stage | seconds |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in times.items()]
    md += [f"| **total** | **{sum(times.values())}** ({sum(times.values()) / 60:.0f} min) |", ""]
    if a.notes:
        with open(a.notes) as f:
            md += ["## Notes", "", f.read().strip(), ""]
    with open(a.output_md, "w") as f:
        f.write("\n".join(md))
    with open(a.output_json, "w") as f:
        json.dump({"title": a.title, "command": a.command, "environment": env, "bleu_signature": signature,
                   "targets": checks, "stage_seconds": times, "pruned_student": a.pruned_student,
                   "batched": batched, "batch1": batch1}, f, indent=2)
    print(f"wrote {a.output_md} and {a.output_json}")
    for c in checks:
        print(f"  [{c['status']}] {c['target']}: {c['measured']}")


if __name__ == "__main__":
    main()
