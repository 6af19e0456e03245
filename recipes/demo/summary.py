"""What `make demo` prints at the end: every model's row (recipes/headline.py's table) and, in a line each, whether
distillation paid and how far and how fast the best student is from the teacher, read from the results JSON that
recipes/report.py wrote (its paired bootstrap tests included).

    python recipes/demo/summary.py demo_work/results.json

Distillation "paid" for a track's distilled student (Word-KD, Seq-KD, ...) when its greedy BLEU is above the track's
NLL student's and the paired bootstrap 95 % confidence interval of the difference lies above zero; otherwise the line says it did not, and points
to the full run's measured numbers. When the best student is not within 1.0 BLEU of the teacher's beam (the
project's target), one more line says a demo's minutes cannot buy that, beside the full run's measured best student
(read from docs/results/multi30k.json).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import headline  # noqa: E402  (recipes/headline.py)
import report  # noqa: E402  (recipes/report.py)

FULL_RUN = "docs/results/multi30k.md"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLOSE = "within 1.0 BLEU of teacher beam"  # the target (recipes/report.py)


def full_run_closeness(path=os.path.join(ROOT, FULL_RUN[:-3] + ".json")):
    """The full multi30k run's measured best student against its teacher (its results JSON's target), or None."""
    try:
        with open(path) as f:
            targets = json.load(f)["targets"]
    except (OSError, ValueError, KeyError):
        return None
    for t in targets:  # runs before the targets had keys name it only
        if t.get("key") == "best_vs_teacher" or (t.get("target", "").startswith("best student") and CLOSE in t["target"]):
            return t["measured"]
    return None


def rows(results):
    """fairseq's batched rows (or the only engine's, for an export) by (model, beam), and the fastest greedy
    words/s per model over its engines."""
    bleu, fastest = {}, {}
    for r in results["batched"]["results"]:
        key = (r["model"], r["beam"])
        if r.get("engine", "fairseq") == "fairseq" or key not in bleu:
            bleu[key] = r
        if r["beam"] == 1 and r["words_per_s"]["median"] > fastest.get(r["model"], (0, ""))[0]:
            fastest[r["model"]] = (r["words_per_s"]["median"], r.get("engine", "fairseq"))
    return bleu, fastest


def ci(test):
    return f"95 % CI {test['ci95'][0]:+.2f}..{test['ci95'][1]:+.2f}"


def verdict(results):
    """The summary's lines (without the table)."""
    targets = {t["key"]: t for t in results["targets"] if "key" in t}
    bleu, fastest = rows(results)
    beam = max(k for (_, k) in bleu)
    lines = []
    for key, t in targets.items():
        objective, _, track = key.partition("_vs_nll:")
        if not track:
            continue
        nll, seqkd = f"student_{track}_nll", f"student_{track}_{objective}"
        test = t.get("paired_bs")
        if test is None:
            lines.append(f"{track}: no paired test of {seqkd} against {nll} (their hypotheses were not kept)")
            continue
        params = bleu[seqkd, 1]["params_total"] / 1e6
        said = (f"{seqkd} {test['system']:.2f} greedy BLEU against {nll} {test['baseline']:.2f}, "
                f"{test['delta']:+.2f} ({ci(test)}), both {params:.2f}M parameters")
        if test["delta"] > 0 and test["ci95"][0] > 0:
            lines.append(f"Distillation paid: {said}.")
        else:
            lines.append(f"Distillation did not pay in this budget: {said}; the full multi30k run measures it with "
                         f"a converged teacher ({FULL_RUN}).")
    best = targets.get("best_vs_teacher", {})
    name, test, teacher = best.get("model"), best.get("paired_bs"), bleu.get(("teacher", beam))
    if name and test and teacher:
        # the speed the report's target counts: the student's fastest engine, or its int8 form's where that loses
        # at most 0.3 BLEU (results before the target named its form: the student's own fastest engine)
        speed = targets.get("speed_batched", {})
        if speed.get("words_per_s"):
            wps, engine, t_wps = speed["words_per_s"], speed["engine"], speed["teacher_words_per_s"]
            if speed["model"] != name:
                engine += ", its int8 form"
        else:
            (wps, engine), t_wps = fastest[name], teacher["words_per_s"]["median"]
        lines.append(f"The best student, {name} ({bleu[name, 1]['params_total'] / 1e6:.2f}M parameters against "
                     f"the teacher's {teacher['params_total'] / 1e6:.2f}M): greedy {test['system']:.2f} against "
                     f"the teacher's beam {beam} {test['baseline']:.2f} ({test['delta']:+.2f}, {ci(test)}); "
                     f"{wps:,.0f} words/s ({engine}) against the teacher's {t_wps:,.0f} "
                     f"(fairseq, beam {beam}): {report.ratio_text(wps / t_wps)}.")
        if best.get("status") != "met":
            full = full_run_closeness()
            lines.append(f"Not within 1.0 BLEU of the teacher's beam {beam} (the goal): a demo's minutes cannot buy "
                         f"that; the full multi30k run's best student ({FULL_RUN}): {full or 'not found'}.")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="the demo's results JSON (recipes/report.py)")
    a = p.parse_args(argv)
    with open(a.results) as f:
        results = json.load(f)
    print()
    print(f"multi30k test2016, {results['batched']['data']['sentences']} sentences, sacreBLEU "
          f"{results['bleu_signature']}:")
    print("\n".join(headline.table(results)))
    print()
    print("\n".join(verdict(results)))
    times = results.get("stage_seconds") or {}
    if times:
        wall = results.get("stages_wall_seconds")  # older results: none, and no stages side by side
        side = " (the students side by side)" if wall is not None and wall < sum(times.values()) else ""
        print(f"Stages: {', '.join(f'{k} {v} s' for k, v in times.items())}; "
              f"total {(sum(times.values()) if wall is None else wall) / 60:.1f} min{side}.")


if __name__ == "__main__":
    main()
