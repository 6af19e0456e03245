"""The README's headline table from a recipe's results JSON (written by recipes/report.py): one row per model, its
BLEU, size, and greedy words/s with fairseq and with its fastest engine.

    python recipes/headline.py docs/results/multi30k.json                    print the table
    python recipes/headline.py docs/results/multi30k.json --readme README.md rewrite README.md's table, the lines
                                                                             between <!-- headline --> and <!-- /headline -->

BLEU is fairseq's (all of test, batch 64), or the engine's for a model only one engine decodes (a CTranslate2
export: fairseq's words/s are then '–'); "fastest" is the engine with the highest greedy words/s among those the
speed stage measured (fairseq-kd-speed --engine), at batch 64 over all of test and at batch 1 over its first
sentences, as in the results' tables. tests/test_headline.py checks that the README's table is this script's
output for the committed results, so the two cannot drift apart.
"""
import argparse
import json
import re
import sys

MAX_ROWS = 15
BEGIN, END = "<!-- headline -->", "<!-- /headline -->"


def by_key(report):
    return {(r["model"], r.get("engine", "fairseq"), r["beam"]): r for r in report["results"]}


def models_in_order(report):
    seen = []
    for r in report["results"]:
        if r["model"] not in seen:
            seen.append(r["model"])
    return seen


def fastest_cell(rows, model, fairseq_row):
    """'8,765 (ctranslate2)': the model's best greedy words/s over its engines, or '–' when that is fairseq's."""
    best = max((r for (m, _, k), r in rows.items() if m == model and k == 1),
               key=lambda r: r["words_per_s"]["median"], default=None)
    if best is None or best is fairseq_row:
        return "–"
    return f"{best['words_per_s']['median']:,.0f} ({best['engine']})"


def wps_cell(row):
    return "–" if row is None else f"{row['words_per_s']['median']:,.0f}"


def table(results, models=None):
    """The headline table (markdown lines) of a results JSON's batched and batch-1 rows."""
    batched = by_key(results["batched"])
    batch1 = by_key(results["batch1"]) if results.get("batch1") else None  # LATENCY_SENTENCES=0: no batch-1 rows
    beam = max(k for (_, _, k) in batched)
    models = models or models_in_order(results["batched"])
    if len(models) > MAX_ROWS:
        raise SystemExit(f"error: {len(models)} models, the headline table takes at most {MAX_ROWS}: choose with --models")
    head = (f"| model | params (nonzero) | file | BLEU greedy | BLEU beam {beam} | greedy words/s, batch 64: fairseq "
            "| fastest engine |")
    if batch1 is not None:
        head += f" batch 1 ({results['batch1']['data']['sentences']} sentences): fairseq | fastest engine |"
    lines = [head, "|---" * head.count(" | ") + "|---|"]
    for m in models:
        # BLEU and size from fairseq's rows, or from the only engine that decodes the model (a CTranslate2 export)
        engines = [e for (mm, e, k) in batched if mm == m and k == 1]
        if not engines:
            raise SystemExit(f"error: no greedy row of model {m!r} in the results")
        engine = "fairseq" if "fairseq" in engines else engines[0]
        g, b = batched[m, engine, 1], batched.get((m, engine, beam))
        f = batched.get((m, "fairseq", 1))
        line = (f"| {m} | {g['params_total'] / 1e6:.2f}M ({g['params_nonzero'] / 1e6:.2f}M) | "
                f"{g['file_size_bytes'] / 1e6:.1f} MB | {g['bleu']:.2f} | {b['bleu']:.2f} | "
                f"{wps_cell(f)} | {fastest_cell(batched, m, f)} |")
        if batch1 is not None:
            f1 = batch1.get((m, "fairseq", 1))
            line += f" {wps_cell(f1)} | {fastest_cell(batch1, m, f1)} |"
        lines.append(line)
    return lines


def replace_block(text, lines):
    """`text` with the lines between the headline markers replaced by `lines`."""
    pattern = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"error: no {BEGIN} ... {END} block to replace")
    return pattern.sub(lambda _: "\n".join([BEGIN, *lines, END]), text, count=1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="a recipe's results JSON (RESULTS_DIR/RESULTS_NAME.json)")
    p.add_argument("--models", nargs="+", default=None, help="the rows, in this order (default: every model)")
    p.add_argument("--readme", default=None, help="rewrite this file's headline block instead of printing")
    a = p.parse_args(argv)
    with open(a.results) as f:
        lines = table(json.load(f), a.models)
    if a.readme is None:
        print("\n".join(lines))
        return
    with open(a.readme) as f:
        text = replace_block(f.read(), lines)
    with open(a.readme, "w") as f:
        f.write(text)
    print(f"wrote the headline table of {a.results} into {a.readme}", file=sys.stderr)


if __name__ == "__main__":
    main()
